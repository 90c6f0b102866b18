//! `llvq calibrate`: the full-precision model's Hessians on disk, for one shard of the
//! calibration windows; `llvq calibrate merge` adds shards (exactly: any sharding gives the bits
//! of a single run).
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use llvq_quant::pipeline::{calibrate, CalibrateParams, Event, JobReport, Placement, Shard};

use super::quantize::bar;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CalibrateArgs {
    #[command(subcommand)]
    pub cmd: Option<CalibrateCmd>,
    #[command(flatten)]
    pub run: CalibrateRun,
}

#[derive(Subcommand)]
pub enum CalibrateCmd {
    /// Add the Hessian sums of shards (disjoint windows of one model and text) into one directory.
    Merge {
        /// Hessian directories written by `llvq calibrate --shard`.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output directory (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct CalibrateRun {
    /// A .gguf file or a Hugging Face directory.
    #[arg(long, default_value = super::common::DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Output Hessian directory (must not exist; written whole or not at all).
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// This process's slice of the calibration windows, `i/n` with 0 ≤ i < n.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    #[command(flatten)]
    pub calibration: super::common::CalibArgs,
    /// Refuse to start when the memory estimate exceeds this (`24G`, `1500M`, bytes).
    #[arg(long, value_parser = super::common::bytes)]
    pub max_memory: Option<u64>,
    /// Where the shard's activations live between layers: `memory`, `disk` (a scratch file in
    /// the output's temporary directory), or `auto` (disk when the in-memory estimate exceeds
    /// --max-memory or the memory available).
    #[arg(long, default_value = "auto")]
    pub activations: Placement,
    /// Worker threads (sets RAYON_NUM_THREADS); default: all cores.
    #[arg(long, value_parser = super::common::threads)]
    pub threads: Option<usize>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CalibrateArgs) -> Result<()> {
    if let Some(CalibrateCmd::Merge { dirs, out }) = a.cmd {
        let m = llvq_quant::hessians::merge(&dirs, &out)?;
        outln!(
            "wrote        {} ({} windows of {}, {} tokens{})",
            out.display(),
            m.windows.len(),
            m.calib.seqs,
            m.tokens,
            if m.complete() { "" } else { "; incomplete" }
        )?;
        return Ok(());
    }
    let a = a.run;
    super::common::set_threads(a.threads);
    super::common::fixed_mmap_threshold();
    let out = a.out.expect("required by clap");
    super::common::check_default_model(&a.model)?;
    let p = CalibrateParams {
        calib: a.calibration.params(),
        calib_text: a.calibration.calib,
        shard: a.shard,
        max_memory: a.max_memory,
        activations: a.activations,
    };
    let pb = bar("calibrate");
    let mut on_event = |e: Event<'_>| super::quantize::show(&pb, e);
    let r = calibrate(&a.model, &out, &p, &mut on_event)?;
    pb.finish_and_clear();
    report(&r, a.json)
}

/// Prints a job's report.
pub fn report(r: &JobReport, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_value(r)?)?;
        return Ok(());
    }
    outln!(
        "wrote        {} ({:.1} MB)",
        r.out.display(),
        r.bytes_written as f64 / 1e6
    )?;
    if let Some(w) = &r.windows {
        outln!("windows      {}..{}", w.start, w.end)?;
    }
    let n = r.layer_seconds.len().max(1) as f64;
    outln!(
        "layers       {}..{}: {:.1} s, {:.2} s per layer",
        r.layers.start,
        r.layers.end,
        r.seconds,
        r.layer_seconds.iter().sum::<f64>() / n
    )?;
    outln!(
        "memory       estimated {:.2} GB, peak RSS {}",
        r.needs_bytes as f64 / 1e9,
        r.peak_rss
            .map_or("unknown".into(), |m| format!("{:.2} GB", m as f64 / 1e9))
    )?;
    Ok(())
}
