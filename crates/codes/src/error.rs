//! Typed errors of the codes crate; each carries the failing value.

use llvq_lattice::LatticeError;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CodeError {
    #[error("unknown method {name:?} in SPEC {spec:?} (known: {known})")]
    UnknownMethod { name: String, spec: String, known: String },
    #[error("malformed SPEC {spec:?}: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("{method}: unknown parameter {key:?} (accepted: {accepted})")]
    UnknownParam {
        method: &'static str,
        key: String,
        accepted: &'static str,
    },
    #[error("{method}: parameter {key}={value:?} is invalid: {reason}")]
    BadParam {
        method: &'static str,
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("input has {got} values; expected a multiple of the block dimension {dim}")]
    BadLength { got: usize, dim: usize },
    #[error("{got} scales for {blocks} blocks")]
    ScaleCount { got: usize, blocks: usize },
    #[error("scale {scale} of block {block} is not finite and positive")]
    BadScale { block: usize, scale: f32 },
    #[error("input value {value} at position {position} is not finite")]
    NonFinite { position: usize, value: f32 },
    #[error("code {code:#x} is out of range for a {bits}-bit code of {method}")]
    CodeOutOfRange { code: u64, bits: u32, method: &'static str },
    #[error("{method}: {bits} bits per block does not fit in a 64-bit code")]
    TooManyBits { method: &'static str, bits: u32 },
    #[error("{method}: decoded values do not lie on a small grid (no packed layout)")]
    NoGrid { method: &'static str },
    #[error("{method}: a block of {dim} weights cannot be written into {got} levels")]
    GridLength {
        method: &'static str,
        dim: usize,
        got: usize,
    },
    #[error("cannot write figure {path}: {reason}")]
    Plot { path: String, reason: String },
    #[error(transparent)]
    Lattice(#[from] LatticeError),
}
