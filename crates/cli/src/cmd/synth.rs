//! `llvq synth` (hidden): a synthetic Hugging Face checkpoint with a real model's shapes but only
//! a few decoder layers, random weights, and the byte-level test tokenizer. Quantizing it
//! measures per-layer time, memory and bytes of models this machine cannot hold (issue 14).
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use llvq_model::candle_core::{DType, Device, Tensor};
use llvq_model::config::{Arch, Config};
use llvq_model::weights::expected_tensors;
use rand::{rngs::StdRng, Rng, SeedableRng};

#[derive(Args)]
pub struct SynthArgs {
    /// Shapes of: llama3-8b, qwen3-4b, llama2-70b, smollm2-135m, smollm2-360m.
    #[arg(long)]
    pub like: String,
    /// Decoder layers materialised (the checkpoint's config says this many).
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Override the vocabulary size (a smaller embedding table).
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Store f32 instead of bf16.
    #[arg(long)]
    pub f32: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

/// The published shapes (config.json of each model).
fn preset(name: &str) -> Result<Config> {
    let base = Config {
        arch: Arch::Llama,
        vocab_size: 0,
        hidden_size: 0,
        intermediate_size: 0,
        num_layers: 0,
        num_heads: 0,
        num_kv_heads: 0,
        head_dim: 0,
        rope_theta: 10_000.0,
        rope_scaling: None,
        rms_eps: 1e-5,
        max_position: 4096,
        tie_embeddings: false,
        qkv_bias: false,
        qk_norm: false,
        bos_token_id: Some(0),
        eos_token_id: Some(0),
    };
    let c = |vocab, hidden, inter, layers, heads, kv, hd| Config {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim: hd,
        ..base.clone()
    };
    Ok(match name {
        "llama3-8b" => Config {
            rope_theta: 500_000.0,
            ..c(128_256, 4096, 14_336, 32, 32, 8, 128)
        },
        "qwen3-4b" => Config {
            arch: Arch::Qwen3,
            rope_theta: 1e6,
            rms_eps: 1e-6,
            tie_embeddings: true,
            qk_norm: true,
            ..c(151_936, 2560, 9728, 36, 32, 8, 128)
        },
        "llama2-70b" => c(32_000, 8192, 28_672, 80, 64, 8, 128),
        "smollm2-135m" => Config {
            tie_embeddings: true,
            ..c(49_152, 576, 1536, 30, 9, 3, 64)
        },
        "smollm2-360m" => Config {
            tie_embeddings: true,
            ..c(49_152, 960, 2560, 32, 15, 5, 64)
        },
        _ => bail!("unknown shape {name:?}: llama3-8b, qwen3-4b, llama2-70b, smollm2-135m or smollm2-360m"),
    })
}

pub fn run(a: SynthArgs) -> Result<()> {
    let full = preset(&a.like)?;
    let cfg = Config {
        num_layers: a.layers,
        vocab_size: a.vocab.unwrap_or(full.vocab_size),
        ..full.clone()
    };
    cfg.validate()?;
    if a.out.exists() {
        bail!("{} exists; choose another directory", a.out.display());
    }
    let tmp = llvq_quant::format::with_suffix(&a.out, ".tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| tmp.display().to_string())?;
    std::fs::write(
        tmp.join("config.json"),
        serde_json::to_string_pretty(&cfg.to_hf_json())?,
    )?;
    std::fs::write(
        tmp.join("tokenizer.json"),
        llvq_model::tokenizer::tiny_tokenizer().json(),
    )?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let dtype = if a.f32 { DType::F32 } else { DType::BF16 };
    // One file per layer (and one for the rest), so writing holds one layer in memory.
    let mut groups: std::collections::BTreeMap<String, Vec<(String, Vec<usize>)>> = Default::default();
    for (name, shape) in expected_tensors(&cfg) {
        let file = match name.strip_prefix("model.layers.").and_then(|r| r.split('.').next()) {
            Some(l) => format!("layer-{:04}.safetensors", l.parse::<usize>()?),
            None => "outer.safetensors".into(),
        };
        groups.entry(file).or_default().push((name, shape));
    }
    let mut bytes = 0u64;
    for (file, tensors) in groups {
        let mut map = std::collections::HashMap::new();
        for (name, shape) in tensors {
            let n: usize = shape.iter().product();
            // Unit-variance outputs: uniform ±√(3/in) for weights, norms near 1.
            let r = if name.contains("norm") {
                0.2
            } else {
                (3.0 / *shape.last().unwrap_or(&1) as f32).sqrt()
            };
            let c = if name.contains("norm") { 1.0 } else { 0.0 };
            let v: Vec<f32> = (0..n).map(|_| c + r * (rng.random::<f32>() * 2.0 - 1.0)).collect();
            let t = Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype)?;
            bytes += (n * dtype.size_in_bytes()) as u64;
            map.insert(name, t);
        }
        llvq_model::candle_core::safetensors::save(&map, tmp.join(&file))?;
    }
    std::fs::rename(&tmp, &a.out).with_context(|| a.out.display().to_string())?;
    outln!(
        "wrote        {} ({} of {} layers of {}, {:.2} GB of {dtype:?})",
        a.out.display(),
        cfg.num_layers,
        full.num_layers,
        a.like,
        bytes as f64 / 1e9
    )?;
    Ok(())
}
