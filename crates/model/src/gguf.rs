//! GGUF (llama.cpp) files: hyper-parameters, tokenizer and f32 weights in HF layout.
//!
//! Tensors are dequantized with candle's GGML kernels (F32, F16, BF16, Q4_0, Q4_1, Q5_x,
//! Q8_0, K-quants). llama.cpp's converter permutes the rows of `attn_q`/`attn_k` of Llama
//! models so its interleaved RoPE works; we invert that permutation so the weights match
//! Hugging Face's rotate-half RoPE (Qwen models are stored unpermuted).
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::config::{Arch, Config};
use crate::error::{ModelError, Result, TensorContext};
use crate::tokenizer::{tokenizer_json_from_gguf, GgufVocab, Tokenizer};
use crate::weights::{check_layer_count, check_tensor, check_unused, expected_tensors, Weights};

/// An opened GGUF file: its header is parsed, tensor data is read on demand.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

fn as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x as u64),
        Value::U16(x) => Some(x as u64),
        Value::U32(x) => Some(x as u64),
        Value::U64(x) => Some(x),
        Value::I8(x) if x >= 0 => Some(x as u64),
        Value::I16(x) if x >= 0 => Some(x as u64),
        Value::I32(x) if x >= 0 => Some(x as u64),
        Value::I64(x) if x >= 0 => Some(x as u64),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(x) => Some(x as f64),
        Value::F64(x) => Some(x),
        _ => as_u64(v).map(|x| x as f64),
    }
}

/// HF tensor name → GGUF tensor name (`None` for names GGUF does not have).
pub fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let mapped = match tail {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{mapped}"))
}

/// Undo llama.cpp's Q/K row permutation: GGUF rows are `(head, d/2, 2)`, HF rows `(head, 2, d/2)`.
pub fn unpermute_qk(t: &Tensor, n_heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    let half = rows / n_heads / 2;
    let rest: usize = dims[1..].iter().product();
    t.reshape((n_heads, half, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// The inverse of [`unpermute_qk`]: HF layout → llama.cpp layout (for tests and writers).
pub fn permute_qk(t: &Tensor, n_heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let half = dims[0] / n_heads / 2;
    let rest: usize = dims[1..].iter().product();
    t.reshape((n_heads, 2, half, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            format: "GGUF",
            reason: e.to_string(),
        })?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    pub fn metadata(&self) -> &std::collections::HashMap<String, Value> {
        &self.content.metadata
    }

    fn meta(&self, key: &str) -> Result<&Value> {
        self.content.metadata.get(key).ok_or_else(|| ModelError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn meta_usize(&self, key: &str) -> Result<usize> {
        as_u64(self.meta(key)?).map(|x| x as usize).ok_or_else(|| self.bad(key))
    }

    fn meta_str(&self, key: &str) -> Result<&str> {
        match self.meta(key)? {
            Value::String(s) => Ok(s),
            _ => Err(self.bad(key)),
        }
    }

    fn bad(&self, key: &str) -> ModelError {
        ModelError::Format {
            path: self.path.clone(),
            format: "GGUF",
            reason: format!("metadata key `{key}` has the wrong type"),
        }
    }

    /// Hyper-parameters from `<arch>.*` metadata keys.
    pub fn config(&self) -> Result<Config> {
        let arch_name = self.meta_str("general.architecture")?.to_string();
        let arch = Arch::parse(&arch_name)?;
        let a = |k: &str| format!("{arch_name}.{k}");
        let hidden_size = self.meta_usize(&a("embedding_length"))?;
        let num_heads = self.meta_usize(&a("attention.head_count"))?;
        let opt_usize = |k: &str| self.content.metadata.get(k).and_then(as_u64).map(|x| x as usize);
        let opt_f64 = |k: &str| self.content.metadata.get(k).and_then(as_f64);
        let vocab_size = match opt_usize(&a("vocab_size")) {
            Some(v) => v,
            None => match self.meta("tokenizer.ggml.tokens")? {
                Value::Array(t) => t.len(),
                _ => return Err(self.bad("tokenizer.ggml.tokens")),
            },
        };
        if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            return Err(ModelError::Config(format!(
                "{}: per-frequency RoPE factors (rope_freqs.weight, Llama 3.1 scaling) are not supported in GGUF; use the Hugging Face checkpoint",
                self.path.display()
            )));
        }
        let cfg = Config {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size: self.meta_usize(&a("feed_forward_length"))?,
            num_layers: self.meta_usize(&a("block_count"))?,
            num_heads,
            num_kv_heads: opt_usize(&a("attention.head_count_kv")).unwrap_or(num_heads),
            head_dim: opt_usize(&a("attention.key_length")).unwrap_or(hidden_size / num_heads.max(1)),
            rope_theta: opt_f64(&a("rope.freq_base")).unwrap_or(10_000.0),
            rope_scaling: None,
            rms_eps: opt_f64(&a("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
            max_position: opt_usize(&a("context_length")).unwrap_or(2048),
            tie_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            qkv_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            qk_norm: self.content.tensor_infos.contains_key("blk.0.attn_q_norm.weight"),
            bos_token_id: opt_usize("tokenizer.ggml.bos_token_id").map(|x| x as u32),
            eos_token_id: opt_usize("tokenizer.ggml.eos_token_id").map(|x| x as u32),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The tokenizer described by `tokenizer.ggml.*`.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let strings = |key: &str| -> Result<Vec<String>> {
            match self.meta(key)? {
                Value::Array(a) => a
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err(self.bad(key)),
                    })
                    .collect(),
                _ => Err(self.bad(key)),
            }
        };
        let token_types = match self.content.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match *v {
                    Value::I32(x) => x,
                    _ => as_u64(v).map(|x| x as i32).unwrap_or(1),
                })
                .collect(),
            _ => Vec::new(),
        };
        let pre = match self.content.metadata.get("tokenizer.ggml.pre") {
            Some(Value::String(s)) => s.as_str(),
            _ => "default",
        };
        let vocab = GgufVocab {
            model: self.meta_str("tokenizer.ggml.model")?,
            pre,
            tokens: strings("tokenizer.ggml.tokens")?,
            merges: strings("tokenizer.ggml.merges")?,
            token_types,
        };
        let json = tokenizer_json_from_gguf(&vocab).map_err(|e| ModelError::Format {
            path: self.path.clone(),
            format: "GGUF",
            reason: e.to_string(),
        })?;
        Tokenizer::from_json_str(json)
    }

    /// One tensor dequantized to f32, in GGUF layout (`[rows, cols]` = `[out, in]`).
    pub fn tensor_f32(&mut self, gguf_name: &str) -> Result<Tensor> {
        if !self.content.tensor_infos.contains_key(gguf_name) {
            return Err(ModelError::MissingTensor {
                name: format!("{gguf_name} (in {})", self.path.display()),
            });
        }
        let q = self
            .content
            .tensor(&mut self.reader, gguf_name, &Device::Cpu)
            .map_err(|e| ModelError::Format {
                path: self.path.clone(),
                format: "GGUF",
                reason: format!("tensor `{gguf_name}`: {e}"),
            })?;
        q.dequantize(&Device::Cpu).ctx(gguf_name)
    }

    /// The tensors present are those `cfg` needs (checked before anything is read).
    pub fn check_names(&self, cfg: &Config) -> Result<()> {
        check_layer_count(cfg, self.content.tensor_infos.len(), &self.path)?;
        let used: std::collections::BTreeSet<String> = expected_tensors(cfg)
            .iter()
            .map(|(hf, _)| gguf_name(hf).expect("every expected tensor has a GGUF name"))
            .collect();
        check_unused(&self.path, self.content.tensor_infos.keys().map(String::as_str), &used)
    }

    /// One tensor by its HF name, f32 in HF layout (Llama Q/K rows unpermuted), validated
    /// (shape, finite): read and dequantized alone, for loading one layer at a time.
    pub fn tensor_hf(&mut self, cfg: &Config, hf: &str, shape: &[usize]) -> Result<Tensor> {
        let gname = gguf_name(hf).ok_or_else(|| ModelError::MissingTensor {
            name: format!("{hf} (no GGUF name)"),
        })?;
        let mut t = self.tensor_f32(&gname)?;
        if t.dims() != shape {
            return Err(ModelError::Shape {
                name: format!("{gname} (in {})", self.path.display()),
                got: t.dims().to_vec(),
                expected: shape.to_vec(),
            });
        }
        if cfg.arch == Arch::Llama {
            if hf.contains("self_attn.q_proj") {
                t = unpermute_qk(&t, cfg.num_heads).ctx(hf)?;
            } else if hf.contains("self_attn.k_proj") {
                t = unpermute_qk(&t, cfg.num_kv_heads).ctx(hf)?;
            }
        }
        check_tensor(&gname, &t, shape)?;
        Ok(t)
    }

    /// All weights the model needs, f32, HF names and layout, validated (shape, finite).
    pub fn weights(&mut self, cfg: &Config) -> Result<Weights> {
        self.check_names(cfg)?;
        let mut w = Weights::default();
        for (hf, shape) in expected_tensors(cfg) {
            let t = self.tensor_hf(cfg, &hf, &shape)?;
            w.insert(hf, t);
        }
        Ok(w)
    }
}
