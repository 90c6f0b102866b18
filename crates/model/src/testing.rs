//! Tiny synthetic models and a byte-level tokenizer for tests (this crate's and the pipeline's).
//! Not for production use.
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::{Arch, Config};
use crate::tokenizer::{tokenizer_json_from_gguf, GgufVocab, Tokenizer};
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

/// GPT-2's byte → printable character map.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// Vocabulary: `<|endoftext|>`, the 256 byte symbols, then 5 merges.
pub fn tiny_vocab() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut tokens = vec!["<|endoftext|>".to_string()];
    let mut types = vec![3];
    for b in 0..=255u8 {
        tokens.push(byte_char(b).to_string());
        types.push(1);
    }
    let sp = byte_char(b' ');
    let merges: Vec<(String, String)> = vec![
        ("t".into(), "h".into()),
        ("th".into(), "e".into()),
        (sp.to_string(), "the".into()),
        ("i".into(), "n".into()),
        (sp.to_string(), "in".into()),
    ];
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    let merges = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
    (tokens, merges, types)
}

/// The byte-level BPE tokenizer of [`tiny_vocab`] (`smollm` pre-tokenizer).
pub fn tiny_tokenizer() -> Tokenizer {
    let (tokens, merges, token_types) = tiny_vocab();
    let json = tokenizer_json_from_gguf(&GgufVocab {
        model: "gpt2",
        pre: "smollm",
        tokens,
        merges,
        token_types,
    })
    .expect("the tiny vocabulary is valid");
    Tokenizer::from_json_str(json).expect("the tiny tokenizer builds")
}
