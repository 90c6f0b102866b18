//! The typed metadata of a compressed file: the `llvq` JSON object in the safetensors header.
//!
//! One struct, [`Header`], versioned by [`FORMAT_VERSION`]; readers check the version before
//! anything else, so a file from a newer llvq is a clear error rather than a misread. The
//! per-linear entries ([`LinearMeta`]) hold everything needed to decode a code stream; the
//! all-in bit accounting ([`Bits`]) is derived from them, never stored separately.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The container's format name (the safetensors metadata key) and version.
pub const FORMAT: &str = "llvq";
pub const FORMAT_VERSION: u32 = 1;
/// Version of the codec (index layout, code registry) that wrote the codes.
pub const CODEC_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Bits stored per rotation seed.
pub const SEED_BITS: u64 = 64;
/// Bits per stored scale (f16).
pub const SCALE_BITS: u64 = 16;

/// Which sides of a weight get a randomized Hadamard transform (Table 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotate {
    None,
    Input,
    Output,
    Both,
}

impl Rotate {
    pub fn input(self) -> bool {
        matches!(self, Rotate::Input | Rotate::Both)
    }
    pub fn output(self) -> bool {
        matches!(self, Rotate::Output | Rotate::Both)
    }
    pub fn name(self) -> &'static str {
        match self {
            Rotate::None => "none",
            Rotate::Input => "input",
            Rotate::Output => "output",
            Rotate::Both => "both",
        }
    }
}

impl std::str::FromStr for Rotate {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Rotate, String> {
        match s {
            "none" => Ok(Rotate::None),
            "input" => Ok(Rotate::Input),
            "output" => Ok(Rotate::Output),
            "both" => Ok(Rotate::Both),
            _ => Err(format!("rotation {s:?} must be none, input, output or both")),
        }
    }
}

/// What is stored for one linear besides its code stream (the metadata entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearMeta {
    pub rows: usize,
    pub cols: usize,
    /// Canonical code SPEC including fitted values: `from_spec` rebuilds the code exactly.
    pub code: String,
    /// Stable method id of the code (registry of `llvq-codes`).
    pub method_id: u16,
    /// Weights per block and bits per block.
    pub block: usize,
    pub bits: u32,
    /// Columns per scale group (a multiple of `block`; the padded width for one scale per row).
    pub group: usize,
    /// Seeds of the input-side and output-side randomized Hadamard transforms.
    pub rot_in: Option<u64>,
    pub rot_out: Option<u64>,
    /// GLVQ's fields (issue 12): present for a GLVQ linear, whose `block` is d, `bits` the target
    /// bits per d-vector and `group` its column group ([`super::glvq`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glvq: Option<super::glvq::GlvqMeta>,
}

impl LinearMeta {
    /// Columns rounded up to whole blocks (the tail block is zero-padded, App. D.3).
    pub fn padded_cols(&self) -> usize {
        self.cols.div_ceil(self.block) * self.block
    }
    pub fn groups(&self) -> usize {
        self.padded_cols().div_ceil(self.group)
    }
    pub fn blocks(&self) -> usize {
        self.rows * self.padded_cols() / self.block
    }
    pub fn code_bytes(&self) -> usize {
        llvq_lattice::pack::packed_len(self.blocks(), self.bits)
    }
    /// Everything stored for this linear, in bits.
    /// A GLVQ linear's codes are exactly `blocks · bits` (SDBA keeps the average; checked on
    /// read), its scales one per group, and its G_g, µ_g, B_g are `side`.
    pub fn bits_stored(&self) -> Bits {
        let glvq = self.glvq.as_ref();
        Bits {
            weights: (self.rows * self.cols) as u64,
            code: self.blocks() as u64 * self.bits as u64,
            scale: match glvq {
                Some(_) => super::glvq::scale_bits(self),
                None => (self.rows * self.groups()) as u64 * SCALE_BITS,
            },
            seed: (self.rot_in.is_some() as u64 + self.rot_out.is_some() as u64) * SEED_BITS,
            input_scale: 0,
            side: glvq.map_or(0, |g| super::glvq::side_bits(self, g.compand)),
        }
    }
}

/// Bits stored, by kind (all-in accounting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bits {
    /// Weights these bits represent.
    pub weights: u64,
    /// Code stream (includes the zero-padded tail blocks).
    pub code: u64,
    /// Scales.
    pub scale: u64,
    /// Rotation seeds.
    pub seed: u64,
    /// Other side information: GLVQ's lattices G_g, µ_g and per-group bit widths.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub side: u64,
    /// Tuned input (column) scales, §5.4 (absent from untuned files, so their header is unchanged).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_scale: u64,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl Bits {
    pub fn total(&self) -> u64 {
        self.code + self.scale + self.seed + self.input_scale + self.side
    }
    /// All-in bits per weight.
    pub fn bpw(&self) -> f64 {
        self.total() as f64 / self.weights.max(1) as f64
    }
    pub fn add(&mut self, o: &Bits) {
        self.weights += o.weights;
        self.code += o.code;
        self.scale += o.scale;
        self.seed += o.seed;
        self.side += o.side;
        self.input_scale += o.input_scale;
    }

    /// The bits of one `bits_each`-bit input scale per column of a `cols`-wide linear.
    pub fn input_scales(cols: usize, bits_each: u64) -> Bits {
        Bits {
            input_scale: cols as u64 * bits_each,
            ..Bits::default()
        }
    }
}

/// One linear's quantization statistics (stored in the file; deterministic).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearStats {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    /// tr(ΔW H ΔWᵀ) / tr(W H Wᵀ) with the calibration Hessian (Eq. 24-25), original domain.
    pub proxy_rel: f64,
    /// |ΔW|² / |W|².
    pub mse_rel: f64,
    /// Relative damping the Cholesky needed.
    pub damp: f64,
}

/// The `llvq` metadata object. A whole model file has `config` and the run's parameters; a
/// per-layer part file of an unfinished run has `layer` and `stats` only. Keys are written in
/// sorted order (through `serde_json::Value`), so the bytes do not depend on field order here.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`]; set by the writer.
    #[serde(default)]
    pub format: String,
    /// Set by the writer; checked first by the reader.
    #[serde(default)]
    pub format_version: u32,
    #[serde(default)]
    pub codec_version: String,
    /// The Hugging Face `config.json` of the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// Pipeline method as the user named it (`llvq-sg:m=12,gain=1`, `gptq`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Canonical code SPEC with fitted values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldlq: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate: Option<Rotate>,
    /// Run seed the rotation seeds were derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Calibration mode (`sequential` or `full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Calibration parameters (windows, context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calib: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damp: Option<f64>,
    /// All-in bits of the quantized linears, and per weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits: Option<Bits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpw: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Vec<LinearStats>>,
    /// Set by `llvq finetune`: how the input scales were tuned (§5.4). `None`: not tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<Tuned>,
    /// Decoder layer of a part file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// One entry per quantized linear, by tensor name.
    #[serde(default)]
    pub linears: BTreeMap<String, LinearMeta>,
}

/// How a file's input scales were tuned (paper §5.4: one multiplicative scale per input column
/// of every quantized linear, trained with the codes frozen). Recorded by `llvq finetune`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    /// Training tokens seen, over all runs that tuned this file (a tuned file can be tuned again).
    pub tokens: u64,
    /// `kl` (KL(teacher ‖ student) of the next-token distributions) or `ce` (cross-entropy).
    pub objective: String,
    /// Adam peak learning rate and its schedule (e.g. `cosine`).
    pub lr: f64,
    pub schedule: String,
    /// Optimizer steps taken, and the step whose scales were kept (best held-out loss).
    pub steps: u64,
    pub best_step: u64,
    /// Tokens per step (context length of a window).
    pub ctx: usize,
    /// Whether linears that read the same input (q/k/v, gate/up) share one scale vector.
    pub tied: bool,
    /// Held-out objective before tuning and of the kept scales.
    pub held_out_before: f64,
    pub held_out_loss: f64,
    /// Wall time of the tuning run(s), seconds.
    pub seconds: f64,
    /// The run was interrupted; the best scales so far were kept.
    #[serde(default)]
    pub interrupted: bool,
}
