//! Typed errors of the pipeline; each names the file, tensor or value at fault.

use std::path::PathBuf;

use llvq_codes::CodeError;
use llvq_lattice::LatticeError;
use llvq_model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("method {spec:?}: {reason}")]
    Method { spec: String, reason: String },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a valid llvq file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
    #[error("tensor `{name}`: the Hessian is not positive definite even with damping {damp} (pivot {pivot})")]
    NotPositiveDefinite { name: String, damp: f64, pivot: usize },
    #[error("calibration: {0}")]
    Calibration(String),
    #[error("interrupted after layer {layer}; finished layers are kept for --resume")]
    Interrupted { layer: usize },
    #[error("output {path}: {reason}")]
    Output { path: PathBuf, reason: String },
    #[error("{what} needs about {:.2} GB, more than --max-memory {:.2} GB; {hint}", *needs as f64 / 1e9, *max as f64 / 1e9)]
    Memory {
        needs: u64,
        max: u64,
        what: String,
        hint: String,
    },
    #[error("resume: {0}")]
    Resume(String),
    #[error("tensor `{name}`: {err}")]
    Code { name: String, err: Box<CodeError> },
    #[error(transparent)]
    CodeSpec(Box<CodeError>),
    #[error(transparent)]
    Lattice(#[from] LatticeError),
    #[error(transparent)]
    Model(Box<ModelError>),
    #[error(transparent)]
    Glvq(Box<crate::glvq::GlvqError>),
}

impl From<crate::glvq::GlvqError> for QuantError {
    fn from(e: crate::glvq::GlvqError) -> QuantError {
        QuantError::Glvq(Box::new(e))
    }
}

// The large causes are boxed so `Result<T>` stays small on the hot paths.
impl From<CodeError> for QuantError {
    fn from(e: CodeError) -> QuantError {
        QuantError::CodeSpec(Box::new(e))
    }
}

impl From<ModelError> for QuantError {
    fn from(e: ModelError) -> QuantError {
        QuantError::Model(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, QuantError>;

impl QuantError {
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> QuantError {
        QuantError::Io { path: path.into(), err }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> QuantError {
        QuantError::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn tensor(name: impl Into<String>, reason: impl Into<String>) -> QuantError {
        QuantError::Tensor {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// Attaches a tensor name to a candle error.
pub(crate) trait CandleContext<T> {
    fn ctx(self, name: &str) -> Result<T>;
}

impl<T> CandleContext<T> for std::result::Result<T, llvq_model::candle_core::Error> {
    fn ctx(self, name: &str) -> Result<T> {
        self.map_err(|e| QuantError::tensor(name, e.to_string()))
    }
}
