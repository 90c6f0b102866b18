//! Tiny synthetic models and a byte-level tokenizer for tests (this crate's and the pipeline's).
//! Not for production use.
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::{Arch, Config};
use crate::weights::{expected_tensors, Weights};

/// A fresh directory under the system temp dir, unique to this process and `name`.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llvq-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A two-layer model, 32 wide, of the given architecture.
pub fn tiny_config(arch: Arch) -> Config {
    Config {
        arch,
        vocab_size: 262,
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        rope_theta: 10_000.0,
        rope_scaling: None,
        rms_eps: 1e-5,
        max_position: 256,
        tie_embeddings: arch == Arch::Llama,
        qkv_bias: arch == Arch::Qwen2,
        qk_norm: arch == Arch::Qwen3,
        bos_token_id: Some(0),
        eos_token_id: Some(0),
    }
}

/// Uniform random weights (norms near 1) for every tensor `cfg` needs.
pub fn random_weights(cfg: &Config, seed: u64) -> Weights {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = Weights::default();
    for (name, shape) in expected_tensors(cfg) {
        let n: usize = shape.iter().product();
        let norm = name.contains("norm");
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let u = rng.random::<f32>() * 2.0 - 1.0;
                if norm {
                    1.0 + 0.2 * u
                } else {
                    0.3 * u
                }
            })
            .collect();
        w.insert(name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    }
    w
}

pub use crate::tokenizer::{tiny_tokenizer, tiny_vocab};

/// `n` words of a ten-word lattice vocabulary drawn by a seeded LCG, space-separated: a
/// calibration text for tiny models (deterministic in `seed`).
pub fn word_text(seed: u64, n: usize) -> String {
    let words = [
        "the", "lattice", "in", "leech", "golay", "code", "shell", "theta", "gain", "shape",
    ];
    let mut x = seed;
    let text: Vec<&str> = (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            words[(x >> 60) as usize % words.len()]
        })
        .collect();
    text.join(" ")
}
