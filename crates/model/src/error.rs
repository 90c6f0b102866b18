//! One error type for the crate. Every variant names the file or tensor it is about, so a
//! message read without the backtrace still says what to fix.
use std::path::PathBuf;

/// Errors from loading, running and evaluating models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    // The cause is shown in the message and not exposed as `source()`, so error chains
    // (anyhow's `{:#}`) do not print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a valid {format} file: {reason}")]
    Format {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("{path}: missing metadata key `{key}`")]
    MissingKey { path: PathBuf, key: String },
    #[error("unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArch { arch: String, supported: &'static str },
    #[error("missing tensor `{name}`")]
    MissingTensor { name: String },
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tensor `{name}` has a non-finite value at flat index {index}")]
    NonFinite { name: String, index: usize },
    #[error("tensor `{name}`: {err}")]
    Tensor { name: String, err: candle_core::Error },
    #[error("tensor `{name}`: {reason}")]
    BadTensor { name: String, reason: String },
    #[error("tensor `{name}`: {err}")]
    Code {
        name: String,
        err: Box<llvq_codes::CodeError>,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{path}: {count} tensor(s) the config does not use ({first}{more}); is the config's layer count right?")]
    UnusedTensors {
        path: PathBuf,
        count: usize,
        first: String,
        more: &'static str,
    },
    #[error("invalid config: {0}")]
    Config(String),
    #[error("{0}")]
    Input(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// Attach a tensor (or operation) name to a candle error.
pub(crate) trait TensorContext<T> {
    fn ctx(self, name: &str) -> Result<T>;
}

impl<T> TensorContext<T> for candle_core::Result<T> {
    fn ctx(self, name: &str) -> Result<T> {
        self.map_err(|err| ModelError::Tensor {
            name: name.to_string(),
            err,
        })
    }
}

impl ModelError {
    /// A tensor whose stored data is inconsistent (sizes, scales, dtype).
    pub fn bad_tensor(name: impl Into<String>, reason: impl Into<String>) -> Self {
        ModelError::BadTensor {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// A file that is not a valid llvq file.
    pub fn llvq_format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ModelError::Format {
            path: path.into(),
            format: "llvq",
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            err: source,
        }
    }
}
