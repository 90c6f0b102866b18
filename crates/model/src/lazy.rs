//! Lazy access to a checkpoint's tensors, for pipelines whose memory must not grow with the
//! model's depth: safetensors files are memory-mapped (bf16, f16 or f32 storage) and GGUF
//! tensors are read and dequantized one at a time. Each tensor is converted to f32 in HF
//! layout and validated (shape, finite) as it is read, exactly as the eager loaders do, so a
//! layer built here is bit-identical to the same layer of [`crate::load`].
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::model::Layer;
use crate::tokenizer::Tokenizer;
use crate::weights::{expected_tensors, MappedSafetensors, Weights};

enum Source {
    /// The files, and the file of each tensor. Files are mapped afresh for each batch of
    /// tensors and unmapped after: mapped pages a load touched count as resident memory for
    /// as long as the mapping lives, which would grow with every layer read.
    Safetensors {
        files: Vec<std::path::PathBuf>,
        index: BTreeMap<String, usize>,
    },
    Gguf(Box<GgufFile>),
}

/// A checkpoint opened for reading tensor by tensor.
pub struct LazyWeights {
    cfg: Config,
    src: Source,
    shapes: BTreeMap<String, Vec<usize>>,
}

/// Opens a `.gguf` file or an HF directory: config and tokenizer are read, tensor names are
/// checked against the config, no tensor data is read yet.
pub fn open(path: &Path) -> Result<(Config, Tokenizer, LazyWeights)> {
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    let (cfg, tok, src) = if meta.is_dir() {
        let cfg = Config::from_hf_json(&path.join("config.json"))?;
        let tok = Tokenizer::from_file(&path.join("tokenizer.json"))?;
        let st = MappedSafetensors::open(&crate::hf::safetensors_files(path)?)?;
        st.check_names(&cfg)?;
        let (files, index) = st.files();
        (
            cfg,
            tok,
            Source::Safetensors {
                files: files.to_vec(),
                index: index.clone(),
            },
        )
    } else {
        let g = GgufFile::open(path)?;
        let cfg = g.config()?;
        let tok = g.tokenizer()?;
        g.check_names(&cfg)?;
        (cfg, tok, Source::Gguf(Box::new(g)))
    };
    let shapes = expected_tensors(&cfg).into_iter().collect();
    Ok((cfg.clone(), tok, LazyWeights { cfg, src, shapes }))
}

impl LazyWeights {
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// One tensor the config needs, by HF name, f32 in HF layout, validated.
    pub fn tensor(&mut self, name: &str) -> Result<Tensor> {
        let mut w = self.tensors(&[name.to_string()])?;
        w.take(name)
    }

    /// Tensors the config needs, by HF name, f32 in HF layout, validated.
    pub fn tensors(&mut self, names: &[String]) -> Result<Weights> {
        let mut w = Weights::default();
        let shape = |n: &str| {
            self.shapes.get(n).ok_or_else(|| ModelError::MissingTensor {
                name: format!("{n} (not a tensor of this config)"),
            })
        };
        match &mut self.src {
            Source::Safetensors { files, index } => {
                let mut fis: Vec<usize> = names.iter().filter_map(|n| index.get(n).copied()).collect();
                fis.sort_unstable();
                fis.dedup();
                let st = MappedSafetensors::open(&fis.iter().map(|&i| files[i].clone()).collect::<Vec<_>>())?;
                for n in names {
                    w.insert(n.clone(), st.load(n, shape(n)?)?);
                }
            }
            Source::Gguf(g) => {
                for n in names {
                    let t = g.tensor_hf(&self.cfg, n, shape(n)?)?;
                    w.insert(n.clone(), t);
                }
            }
        }
        Ok(w)
    }

    /// The names of the tensors of decoder layer `l`, in load order.
    pub fn layer_names(&self, l: usize) -> Vec<String> {
        let p = format!("model.layers.{l}.");
        expected_tensors(&self.cfg)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(&p))
            .collect()
    }

    /// Every tensor of decoder layer `l`.
    pub fn layer_weights(&mut self, l: usize) -> Result<Weights> {
        self.tensors(&self.layer_names(l))
    }

    /// Decoder layer `l`, built alone.
    pub fn layer(&mut self, l: usize) -> Result<Layer> {
        let mut w = self.layer_weights(l)?;
        Layer::load(&self.cfg, &mut w, l)
    }

    /// The names of the tensors outside the decoder layers, sorted.
    pub fn outer_names(&self) -> Vec<String> {
        self.shapes
            .keys()
            .filter(|n| !n.starts_with("model.layers."))
            .cloned()
            .collect()
    }

    /// The tensors outside the decoder layers: embeddings, final norm, an untied LM head.
    pub fn outer_weights(&mut self) -> Result<Weights> {
        self.tensors(&self.outer_names())
    }

    /// The number of parameters of the whole model (every tensor the config needs).
    pub fn num_params(&self) -> u64 {
        self.shapes.values().map(|s| s.iter().product::<usize>() as u64).sum()
    }

    /// f32 bytes of the largest decoder layer and of the tensors outside the layers (for
    /// memory estimates before any work).
    pub fn f32_bytes(&self) -> (u64, u64) {
        let bytes = |s: &Vec<usize>| s.iter().product::<usize>() as u64 * 4;
        let layer: u64 = self
            .shapes
            .iter()
            .filter(|(n, _)| n.starts_with("model.layers.0."))
            .map(|(_, s)| bytes(s))
            .sum();
        let outer: u64 = self
            .shapes
            .iter()
            .filter(|(n, _)| !n.starts_with("model.layers."))
            .map(|(_, s)| bytes(s))
            .sum();
        (layer, outer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;
    use crate::testing::{random_weights, tiny_config, tiny_tokenizer, tmpdir};

    /// A layer read lazily from bf16 safetensors equals the eager load of the same file, and
    /// both equal the f32 weights rounded to bf16.
    #[test]
    fn bf16_safetensors_load_lazily_and_match_the_eager_loader() {
        let root = tmpdir("lazy-bf16");
        let dir = root.join("model");
        let cfg = tiny_config(Arch::Qwen3);
        let w = random_weights(&cfg, 11);
        crate::export::export_hf(&cfg, &tiny_tokenizer(), &w, &dir).unwrap();
        let bf: std::collections::HashMap<String, Tensor> = w
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.to_dtype(candle_core::DType::BF16).unwrap()))
            .collect();
        candle_core::safetensors::save(&bf, dir.join("model.safetensors")).unwrap();
        let (c, _, mut lazy) = open(&dir).unwrap();
        assert_eq!(c.num_layers, cfg.num_layers);
        let (_, _, eager) = crate::load_parts(&dir).unwrap();
        for name in lazy.layer_names(1) {
            let a: Vec<f32> = lazy.tensor(&name).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = eager.get(&name).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let want: Vec<f32> = w.get(&name).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a, b, "{name}");
            for (x, y) in a.iter().zip(&want) {
                assert_eq!(*x, half::bf16::from_f32(*y).to_f32(), "{name}");
            }
        }
        assert!(lazy.layer(1).is_ok());
        let outer = lazy.outer_weights().unwrap();
        assert!(outer.tensors.keys().all(|n| !n.starts_with("model.layers.")));
        assert!(lazy
            .tensor("model.layers.9.mlp.up_proj.weight")
            .unwrap_err()
            .to_string()
            .contains("layers.9"));
        std::fs::remove_dir_all(&root).ok();
    }
}
