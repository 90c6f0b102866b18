//! Named f32 tensors in Hugging Face layout, and the safetensors files that hold them.
//!
//! Every loader (GGUF, HF directory) produces a [`Weights`] keyed by the HF tensor names
//! (`model.layers.3.self_attn.q_proj.weight`, …) with `[out, in]` linear weights, so the
//! model, the exporter and the quantization pipeline see one naming scheme.
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{ModelError, Result, TensorContext};

/// The HF name and expected shape of every tensor the model needs, in load order.
pub fn expected_tensors(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (h, d, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let (q, kv) = (cfg.num_heads * d, cfg.num_kv_heads * d);
    let mut v = vec![("model.embed_tokens.weight".to_string(), vec![cfg.vocab_size, h])];
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        v.push((format!("{p}.input_layernorm.weight"), vec![h]));
        v.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
        v.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
        v.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
        if cfg.qkv_bias {
            v.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
            v.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            v.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
        }
        if cfg.qk_norm {
            v.push((format!("{p}.self_attn.q_norm.weight"), vec![d]));
            v.push((format!("{p}.self_attn.k_norm.weight"), vec![d]));
        }
        v.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        v.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        v.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        v.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        v.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
    }
    v.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_embeddings {
        v.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    v
}

/// Fewest tensors one decoder layer has: two norms and seven linear weights.
pub const MIN_TENSORS_PER_LAYER: usize = 9;

/// Bounds the config's layer count by the tensors a file actually holds, *before*
/// [`expected_tensors`] allocates a name per tensor: a header claiming 4·10⁹ layers would
/// otherwise allocate until the process is killed.
pub fn check_layer_count(cfg: &Config, tensors_present: usize, path: &Path) -> Result<()> {
    let most = tensors_present / MIN_TENSORS_PER_LAYER;
    if cfg.num_layers > most {
        return Err(ModelError::Config(format!(
            "{}: {} layers need at least {} tensors, the file holds {tensors_present} (at most {most} layers)",
            path.display(),
            cfg.num_layers,
            cfg.num_layers.saturating_mul(MIN_TENSORS_PER_LAYER)
        )));
    }
    Ok(())
}

/// Names present in a file that the config does not use are an error: a config with fewer
/// layers than the file holds would otherwise load silently as a truncated model.
pub fn check_unused<'a>(
    path: &Path,
    present: impl IntoIterator<Item = &'a str>,
    used: &std::collections::BTreeSet<String>,
) -> Result<()> {
    let unused: Vec<&str> = present.into_iter().filter(|n| !used.contains(*n)).collect();
    if let Some(first) = unused.first() {
        return Err(ModelError::UnusedTensors {
            path: path.to_path_buf(),
            count: unused.len(),
            first: format!("`{first}`"),
            more: if unused.len() > 1 { ", …" } else { "" },
        });
    }
    Ok(())
}

/// Check that a tensor has the expected shape and only finite values.
pub fn check_tensor(name: &str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.dims() != expected {
        return Err(ModelError::Shape {
            name: name.to_string(),
            got: t.dims().to_vec(),
            expected: expected.to_vec(),
        });
    }
    let flat = t.flatten_all().ctx(name)?.to_dtype(DType::F32).ctx(name)?;
    let vals = flat.to_vec1::<f32>().ctx(name)?;
    if let Some(index) = vals.iter().position(|x| !x.is_finite()) {
        return Err(ModelError::NonFinite {
            name: name.to_string(),
            index,
        });
    }
    Ok(())
}

/// f32 tensors keyed by Hugging Face names.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    pub tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.to_string() })
    }

    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.to_string() })
    }

    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.tensors.insert(name.into(), t);
    }

    /// Every tensor the config needs is present, has the right shape and is finite.
    pub fn validate(&self, cfg: &Config) -> Result<()> {
        for (name, shape) in expected_tensors(cfg) {
            check_tensor(&name, self.get(&name)?, &shape)?;
        }
        Ok(())
    }

    /// Write all tensors to one safetensors file (f32).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let map: std::collections::HashMap<String, Tensor> =
            self.tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        candle_core::safetensors::save(&map, path).map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            format: "safetensors",
            reason: format!("write failed: {e}"),
        })
    }

    /// Load the tensors `cfg` needs from safetensors files, converted to f32.
    ///
    /// Files are memory-mapped and only the needed tensors are copied out. Tensors absent
    /// from every file are reported by name; a tied `lm_head.weight`, if present, is ignored.
    pub fn load_safetensors(files: &[PathBuf], cfg: &Config) -> Result<Weights> {
        let st = MappedSafetensors::open(files)?;
        st.check_names(cfg)?;
        let mut w = Weights::default();
        for (name, shape) in expected_tensors(cfg) {
            let t = st.load(&name, &shape)?;
            w.insert(name, t);
        }
        Ok(w)
    }
}

/// Memory-mapped safetensors files (one checkpoint, possibly sharded): names are indexed when
/// opened, and tensors are copied out and converted to f32 one at a time, so a caller that
/// drops each layer after use holds one layer in memory whatever the checkpoint's size.
pub struct MappedSafetensors {
    files: Vec<PathBuf>,
    mmaps: Vec<candle_core::safetensors::MmapedSafetensors>,
    index: BTreeMap<String, usize>,
}

impl MappedSafetensors {
    pub fn open(files: &[PathBuf]) -> Result<MappedSafetensors> {
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut mmaps = Vec::with_capacity(files.len());
        for (fi, path) in files.iter().enumerate() {
            // SAFETY: the file is only read; a concurrent writer truncating it would be a
            // user error that can at worst produce garbage values, which validation catches.
            let st =
                unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.map_err(|e| ModelError::Format {
                    path: path.clone(),
                    format: "safetensors",
                    reason: e.to_string(),
                })?;
            for (name, _) in st.tensors() {
                index.insert(name, fi);
            }
            mmaps.push(st);
        }
        Ok(MappedSafetensors {
            files: files.to_vec(),
            mmaps,
            index,
        })
    }

    /// The tensors present are those `cfg` needs: too few for its layer count, or any the
    /// config does not use, is an error before anything is read.
    pub fn check_names(&self, cfg: &Config) -> Result<()> {
        let dir = self.files.first().and_then(|f| f.parent()).unwrap_or(Path::new("."));
        check_layer_count(cfg, self.index.len(), dir)?;
        // A tied `lm_head.weight` (ignored) and RoPE buffers older exports carry are not weights.
        let ignorable = |n: &str| (cfg.tie_embeddings && n == "lm_head.weight") || n.ends_with("rotary_emb.inv_freq");
        let used: std::collections::BTreeSet<String> = expected_tensors(cfg).into_iter().map(|(n, _)| n).collect();
        check_unused(
            dir,
            self.index.keys().map(String::as_str).filter(|n| !ignorable(n)),
            &used,
        )
    }

    /// The files opened, and for each tensor name the index of the file holding it.
    pub fn files(&self) -> (&[PathBuf], &BTreeMap<String, usize>) {
        (&self.files, &self.index)
    }

    /// Tensor `name` as f32 (from f32, f16 or bf16 storage), shape and finiteness checked.
    pub fn load(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let fi = *self
            .index
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.to_string() })?;
        let t = self.mmaps[fi]
            .load(name, &Device::Cpu)
            .map_err(|e| ModelError::Format {
                path: self.files[fi].clone(),
                format: "safetensors",
                reason: format!("tensor `{name}`: {e}"),
            })?
            .to_dtype(DType::F32)
            .ctx(name)?;
        check_tensor(name, &t, shape)?;
        Ok(t)
    }
}
