//! What a run takes and what it reports: the calibration mode, the parameters that determine
//! the output file, progress events, timings and the report.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::calib::CalibParams;
use crate::format::{Bits, LinearStats, Rotate};
use crate::ldlq::LdlqParams;

/// Where each layer's Hessians come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibMode {
    /// Inputs from the already-quantized layers before (GPTQ-style).
    Sequential,
    /// Inputs from the full-precision model.
    Full,
}

impl CalibMode {
    pub fn name(self) -> &'static str {
        match self {
            CalibMode::Sequential => "sequential",
            CalibMode::Full => "full",
        }
    }
}

impl std::str::FromStr for CalibMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<CalibMode, String> {
        match s {
            "sequential" => Ok(CalibMode::Sequential),
            "full" => Ok(CalibMode::Full),
            _ => Err(format!("calibration mode {s:?} must be sequential or full")),
        }
    }
}

/// Everything that determines the output file.
#[derive(Clone, Debug)]
pub struct QuantizeParams {
    /// Pipeline method SPEC ([`Method`]).
    pub method: String,
    pub rotate: Rotate,
    /// Seed of the rotations (per-matrix seeds are derived from it).
    pub seed: u64,
    pub calib_text: PathBuf,
    pub calib: CalibParams,
    pub mode: CalibMode,
    pub ldlq: LdlqParams,
    /// Store embeddings (and an untied LM head) as f16 instead of f32.
    pub embed_f16: bool,
}

/// Progress of a run, for a progress bar. The callback returns [`ControlFlow::Break`] to stop the
/// run after a finished layer ([`QuantError::Interrupted`]; `resume` continues it).
pub enum Event<'a> {
    /// A phase outside the layer loop started.
    Phase(&'a str),
    /// Layer `layer` of `layers` is at `step`.
    Layer { layer: usize, layers: usize, step: &'a str },
    /// Layer finished (`resumed`: taken from a part file).
    LayerDone { layer: usize, layers: usize, resumed: bool },
    /// The memory a job estimates it needs, in bytes, before it starts, and the bytes of
    /// calibration activations it keeps on disk instead ([`super::Placement`]).
    Memory { needs: u64, on_disk: Option<u64> },
}

/// Wall time by phase, in seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub load: f64,
    pub tokenize: f64,
    /// Layer forward passes with Hessian accumulation.
    pub calibration: f64,
    /// Rotation, factorisation, LDLQ, decode and statistics.
    pub quantization: f64,
    /// Recomputing layer outputs from quantized weights (sequential mode) or reloading parts.
    pub propagation: f64,
    pub write: f64,
    pub total: f64,
}

/// What a run reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub out: PathBuf,
    pub method: String,
    pub code: String,
    pub rotate: Rotate,
    pub mode: CalibMode,
    /// All-in bits of the quantized linears.
    pub linears: Bits,
    /// File size and the parameters of the whole model.
    pub file_bytes: u64,
    pub params: u64,
    pub layers_resumed: usize,
    pub calib_tokens: usize,
    pub timings: Timings,
    /// Peak resident memory of the process (VmHWM), bytes, where the OS reports it.
    pub peak_rss: Option<u64>,
    pub stats: Vec<LinearStats>,
}

impl Report {
    /// All-in bits per weight of the quantized linears.
    pub fn bpw(&self) -> f64 {
        self.linears.bpw()
    }
    /// File bits per parameter of the whole model (embeddings, norms, everything).
    pub fn file_bpw(&self) -> f64 {
        self.file_bytes as f64 * 8.0 / self.params.max(1) as f64
    }
}
