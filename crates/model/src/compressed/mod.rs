//! How a compressed file is run (issue 9): the read side of the `.llvq` format and the loader
//! that turns a file into a runnable [`Model`](crate::Model).
//!
//! - [`header`]: the typed, versioned metadata ([`Header`], [`LinearMeta`], bit accounting);
//! - [`file`]: reading the safetensors container, validating and decoding code streams;
//! - [`glvq`]: the decode of GLVQ linears (learned per-group lattices, issue 12);
//! - [`load`]: building a model from a file, either *compressed* (the default: every linear
//!   stays in an execution layout and runs through [`crate::linear::Exec`] kernels with its
//!   rotations applied to activations) or *dense* (`--dense`: every linear decoded to f32,
//!   today's reference path).
//!
//! Writing files is the quantizer's job (`llvq-quant`'s `format::write`); nothing here depends
//! on the calibration or factorisation code.

pub mod file;
pub mod glvq;
pub mod header;
pub mod load;

pub use file::{
    is_llvq_file, linear_bits, read, CodeCache, FileContents, Plain, QuantLinear, INPUT_SCALE, TOKENIZER_TENSOR,
};
pub use header::{Bits, Header, LinearMeta, LinearStats, Rotate, Tuned, CODEC_VERSION, FORMAT, FORMAT_VERSION};
pub use load::{load, load_any, load_contents, Activations, HeadFormat, LoadOptions};
