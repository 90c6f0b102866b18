//! The LLVQ post-training pipeline (issue 5; paper §5, Algorithm 1, App. D).
//!
//! Calibration → rotation → block LDLQ → pack → write, one module each:
//! - [`calib`]: calibration windows and the per-input Hessians H = E[xxᵀ] (Eq. 25);
//! - [`hadamard`]: randomized Hadamard transforms of any order (incoherence processing, §5.3),
//!   re-exported from `llvq-model`, whose runtime applies them to activations;
//! - [`ldlq`]: Hessian-corrected quantization of column blocks (App. D.2);
//! - [`method`]: pipeline methods, named by the SPEC strings of the lab (`llvq-sg:m=12,gain=1`,
//!   `e8p12`, `rtn`, `gptq`, ...);
//! - [`format`]: writing the compressed model file (its read side is `llvq_model::compressed`);
//! - [`glvq`]: GLVQ, learned per-group lattices (arXiv 2510.20984), one layer at a time;
//! - [`pipeline`]: the layer-by-layer driver with resumable part files, and layer-range jobs;
//! - [`hessians`]: offline Hessian sums on disk, sharded by calibration windows.
//! - [`finetune`]: tuning the input scales of a quantized file (§5.4).

pub mod calib;
pub mod error;
pub mod finetune;
pub mod format;
pub mod glvq;
pub mod hessians;
pub mod ldlq;
pub mod method;
pub mod pipeline;

pub use error::{QuantError, Result};
pub use format::{Bits, Rotate};
pub use llvq_model::hadamard;
pub use method::Method;
pub use pipeline::{load_any, load_llvq, quantize_model, CalibMode, QuantizeParams, Report};
