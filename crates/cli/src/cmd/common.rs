//! What several subcommands share: the default model, thread setup, loading a model for
//! evaluation (GGUF, Hugging Face directory or `.llvq`, compressed or dense), and argument
//! parsers that refuse values which would otherwise reach the numerics.
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use llvq_model::compressed::{Activations, HeadFormat, LoadOptions};
use llvq_quant::calib::CalibParams;

/// Where `llvq fetch-defaults` puts the default model.
pub const DEFAULT_MODEL: &str = "data/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where `llvq fetch-defaults` puts the calibration text.
pub const DEFAULT_CALIB: &str = "data/calib.txt";

/// Refuses a missing default model with the command that fetches it (any other missing path
/// is left to the loader, whose error names it).
pub fn check_default_model(path: &Path) -> Result<()> {
    if !path.exists() && path == Path::new(DEFAULT_MODEL) {
        bail!(
            "{} not found: run `llvq fetch-defaults` first, or pass --model",
            path.display()
        );
    }
    Ok(())
}

/// The calibration text and windows, one set of flags for `quantize` and `calibrate` so their
/// names and defaults cannot drift apart.
#[derive(Args, Clone, Debug)]
pub struct CalibArgs {
    /// Calibration text.
    #[arg(long, default_value = DEFAULT_CALIB)]
    pub calib: PathBuf,
    /// Calibration sequences (for `calibrate --shard`: all shards together).
    #[arg(long, default_value_t = CalibParams::default().seqs)]
    pub calib_seqs: usize,
    /// Tokens per calibration sequence.
    #[arg(long, default_value_t = CalibParams::default().ctx)]
    pub calib_ctx: usize,
}

impl CalibArgs {
    pub fn params(&self) -> CalibParams {
        CalibParams {
            seqs: self.calib_seqs,
            ctx: self.calib_ctx,
        }
    }
}

/// Set the thread count before candle/rayon start their pools.
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n {
        // SAFETY: called at start-up before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string()) };
    }
}

/// How a compressed (`.llvq`) model is held in memory; shared by every command that runs one.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct RuntimeArgs {
    /// Decode every compressed linear to a dense f32 matrix (the reference path) instead of
    /// running it compressed.
    #[arg(long)]
    pub dense: bool,
    /// LM head of a compressed model: `f16` as stored, or `q8` (8 bits per weight, one scale
    /// per row; smaller and faster, see the README for its effect on perplexity).
    #[arg(long, default_value = "f16")]
    pub head: HeadFormat,
    /// Activations of the compressed products in generation (one token at a time): `i16`
    /// (rounded to 16 bits per chunk, integer products: the fast default, see the README for
    /// its effect), `i8` (faster, less exact) or `f32` (exact). Prefill always runs f32
    /// activations; `i8-all` / `i16-all` use integers there too (one product per token; for
    /// measuring).
    #[arg(long, default_value = "i16")]
    pub act: Activations,
}

impl RuntimeArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            dense: self.dense,
            head: self.head,
            act: self.act,
        }
    }
}

/// The one place the CLI loads a model for evaluation (GGUF, HF directory or `.llvq`).
pub fn load_model(path: &Path, rt: &RuntimeArgs) -> Result<(llvq_model::Model, llvq_model::Tokenizer)> {
    check_default_model(path)?;
    // The library's errors already name the file or tensor.
    Ok(llvq_model::compressed::load_any(path, &rt.options())?)
}

/// `--threads`: a positive count (0 would leave rayon to pick, silently).
pub fn threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite, non-negative float (`--damp`, `--temperature`): NaN or a negative value would
/// otherwise reach the numerics and come out as NaN weights or NaN probabilities.
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Ok(x) => Err(format!("{x} is not a finite non-negative number")),
        Err(e) => Err(e.to_string()),
    }
}

/// A byte count: plain, or with a K/M/G/T suffix (powers of 1024), e.g. `24G`.
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    match num.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok((x * mul as f64) as u64),
        _ => Err(format!("{s:?} is not a size (e.g. 24G, 1500M)")),
    }
}

/// For jobs whose memory must not grow with depth (`calibrate`, `quantize`): glibc
/// raises its mmap threshold after each large free (up to 32 MB), after which the per-layer
/// buffers come from heap arenas that keep freed memory, and the peak creeps up layer by layer
/// (measured: 594 → 728 MB from 4 to 16 layers). A fixed 1 MiB threshold hands every large
/// buffer back to the OS when it is freed.
pub fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: glibc's documented tuning call, made at start-up before the job's allocations.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 1 << 20);
        }
    }
}

/// Median of a non-empty list (the benchmarks report medians of repeated runs).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
