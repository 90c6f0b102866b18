//! The post-training pipeline (§5, Algorithm 1, App. D), one decoder layer at a time:
//!
//! 1. **calibration** — run the layer on the calibration windows, accumulating the four input
//!    Hessians ([`crate::calib`]);
//! 2. **rotation** — W' = R_out W R_inᵀ and H' = R_in H R_inᵀ with seeded randomized Hadamard
//!    transforms ([`crate::hadamard`]; sides chosen by [`Rotate`]);
//! 3. **scales** — one f16 scale per row (or per group of columns): the RMS of W' there, so the
//!    code sees unit-variance blocks, which is what every code of the lab is designed for;
//! 4. **block LDLQ** — Hessian-corrected quantization of column blocks ([`crate::ldlq`]), or plain
//!    rounding for `ldlq=0`;
//! 5. **pack and write** — the layer's codes go to a part file, atomically; at the end the parts
//!    and the untouched tensors are assembled into one file ([`crate::format`]).
//!
//! Calibration modes ([`CalibMode`]): `sequential` (default) feeds each layer the outputs of the
//! already-quantized layers before it, as GPTQ does, so later layers correct for earlier
//! errors; `full` takes every Hessian from the full-precision model (one forward pass, no
//! recomputation). The README's table measures both.
//!
//! Resuming: finished layers live in `OUT.parts/layer-NNNN.safetensors` next to a manifest of
//! the run's parameters. `resume` checks the manifest, reloads finished layers (and, in
//! sequential mode, runs the calibration windows through their quantized weights) and goes on;
//! every step is deterministic, so the final file has the same bytes as an uninterrupted run.
//!
//! Files: [`params`] (what a run takes and reports), [`layer`] (one layer's maths), [`resume`]
//! (manifest and part files), [`driver`] (the loop), [`hidden`] (the calibration activations
//! between layers, in memory or on disk), [`load`] (dense loading), [`memory`] (estimates and measured peaks),
//! [`jobs`] (offline Hessians, layer-range jobs and their merge: models that do not fit).

mod driver;
mod hidden;
mod jobs;
mod layer;
mod load;
mod memory;
mod params;
mod resume;

pub use driver::{quantize_model, quantize_model_eager, quantize_model_with, Budget};
pub use hidden::Placement;
pub use jobs::{
    calibrate, merge_parts, quantize_layers, read_part_header, sharded_run, CalibrateParams, JobReport, LayerRange,
    PartInfo, Shard, PART_KEY,
};
pub use layer::quantize_linear;
pub use load::{load_any, load_llvq};
pub use memory::{calibrate_memory, peak_rss, quantize_memory, run_memory};
pub use params::{CalibMode, Event, QuantizeParams, Report, Timings};
pub use resume::parts_dir;
