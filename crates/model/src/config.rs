//! Hyper-parameters of a decoder-only transformer, in Hugging Face terms.
//!
//! One `Config` serves every supported family; the family only switches on the few
//! differences that matter for the forward pass (q/k/v biases for Qwen2, per-head q/k
//! RMSNorm for Qwen3, RoPE scaling for Llama 3.1).
use serde_json::{json, Value};
use std::path::Path;

use crate::error::{ModelError, Result};

/// Supported architecture families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 2/3, SmolLM/SmolLM2, Mistral-style (no biases, no q/k norm).
    Llama,
    /// Qwen2 / Qwen2.5: biases on q, k and v.
    Qwen2,
    /// Qwen3: per-head RMSNorm on q and k before RoPE.
    Qwen3,
}

pub const SUPPORTED_ARCHS: &str = "llama, mistral, qwen2, qwen3";

impl Arch {
    /// Parse a Hugging Face `model_type` or GGUF `general.architecture`.
    pub fn parse(name: &str) -> Result<Arch> {
        match name.to_ascii_lowercase().as_str() {
            "llama" | "mistral" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            _ => Err(ModelError::UnsupportedArch {
                arch: name.to_string(),
                supported: SUPPORTED_ARCHS,
            }),
        }
    }

    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    fn hf_class(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Qwen3 => "Qwen3ForCausalLM",
        }
    }
}

/// Llama 3.1-style RoPE frequency scaling (`rope_scaling.rope_type == "llama3"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    pub rms_eps: f64,
    pub max_position: usize,
    pub tie_embeddings: bool,
    /// Biases on the q, k and v projections (Qwen2, or Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Per-head RMSNorm on q and k (Qwen3).
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl Config {
    /// Check the relations the forward pass relies on, so a bad file fails here and not
    /// as a shape error deep inside a matmul.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.intermediate_size == 0 {
            return bad("vocab_size, hidden_size and intermediate_size must be positive".into());
        }
        if self.num_layers == 0 || self.num_heads == 0 || self.num_kv_heads == 0 {
            return bad("num_layers, num_heads and num_kv_heads must be positive".into());
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return bad(format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return bad(format!("head_dim {} must be even and positive", self.head_dim));
        }
        // Written to catch NaN as well as non-positive values.
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 || self.rms_eps.is_nan() || self.rms_eps <= 0.0 {
            return bad("rope_theta and rms_norm_eps must be positive".into());
        }
        Ok(())
    }

    /// Read a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            format: "JSON",
            reason: e.to_string(),
        })?;
        Self::from_hf_value(&v, path)
    }

    pub fn from_hf_value(v: &Value, path: &Path) -> Result<Config> {
        let missing = |key: &str| ModelError::MissingKey {
            path: path.to_path_buf(),
            key: key.to_string(),
        };
        let usize_key = |key: &str| -> Result<usize> {
            v.get(key)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| missing(key))
        };
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("model_type"))?;
        let arch = Arch::parse(model_type)?;
        let hidden_size = usize_key("hidden_size")?;
        let num_heads = usize_key("num_attention_heads")?;
        let head_dim = match v.get("head_dim").and_then(Value::as_u64) {
            Some(d) => d as usize,
            None => hidden_size / num_heads.max(1),
        };
        let rope_scaling = match v.get("rope_scaling") {
            None | Some(Value::Null) => None,
            Some(s) => {
                let kind = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if kind != "llama3" {
                    return Err(ModelError::Config(format!(
                        "{}: rope_scaling type `{kind}` is not supported (only llama3)",
                        path.display()
                    )));
                }
                let f = |k: &str| s.get(k).and_then(Value::as_f64).ok_or_else(|| missing(k));
                Some(Llama3Scaling {
                    factor: f("factor")?,
                    low_freq_factor: f("low_freq_factor")?,
                    high_freq_factor: f("high_freq_factor")?,
                    original_max_position: f("original_max_position_embeddings")? as usize,
                })
            }
        };
        let token = |k: &str| match v.get(k) {
            Some(Value::Number(n)) => n.as_u64().map(|x| x as u32),
            Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|x| x as u32),
            _ => None,
        };
        let cfg = Config {
            arch,
            vocab_size: usize_key("vocab_size")?,
            hidden_size,
            intermediate_size: usize_key("intermediate_size")?,
            num_layers: usize_key("num_hidden_layers")?,
            num_heads,
            num_kv_heads: v
                .get("num_key_value_heads")
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .unwrap_or(num_heads),
            head_dim,
            rope_theta: v.get("rope_theta").and_then(Value::as_f64).unwrap_or(10_000.0),
            rope_scaling,
            rms_eps: v.get("rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6),
            max_position: v.get("max_position_embeddings").and_then(Value::as_u64).unwrap_or(2048) as usize,
            tie_embeddings: v.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            qkv_bias: match arch {
                Arch::Qwen2 => true,
                _ => v.get("attention_bias").and_then(Value::as_bool).unwrap_or(false),
            },
            qk_norm: arch == Arch::Qwen3,
            bos_token_id: token("bos_token_id"),
            eos_token_id: token("eos_token_id"),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The `config.json` that `transformers` needs to load an exported directory.
    pub fn to_hf_json(&self) -> Value {
        let mut v = json!({
            "architectures": [self.arch.hf_class()],
            "model_type": self.arch.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_eps,
            "max_position_embeddings": self.max_position,
            "tie_word_embeddings": self.tie_embeddings,
            "attention_bias": self.qkv_bias,
            "torch_dtype": "float32",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
        });
        if let Some(s) = &self.rope_scaling {
            v["rope_scaling"] = json!({
                "rope_type": "llama3",
                "factor": s.factor,
                "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position,
            });
        }
        v
    }

    /// RoPE inverse frequencies, one per pair of head dimensions (HF "rotate_half" layout).
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim;
        let mut f: Vec<f64> = (0..d / 2)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / d as f64))
            .collect();
        if let Some(s) = &self.rope_scaling {
            // Llama 3.1: keep high frequencies, divide low ones by `factor`, blend between.
            let old = s.original_max_position as f64;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            for x in f.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *x;
                if wavelen > low_wavelen {
                    *x /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                    *x = (1.0 - smooth) * *x / s.factor + smooth * *x;
                }
            }
        }
        f
    }
}
