//! `llvq finetune`: tune the input scales of a compressed file (§5.4), codes frozen.
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use llvq_quant::finetune::{finetune, FinetuneParams, FinetuneReport, FtEvent, Objective};

#[derive(Args)]
pub struct FinetuneArgs {
    /// A file written by `llvq quantize` (a tuned file is tuned further from its scales).
    pub input: PathBuf,
    /// Output file (may be the input).
    #[arg(long)]
    pub out: PathBuf,
    /// Training tokens (one window of `--tune-ctx` tokens per Adam step).
    #[arg(long, default_value_t = FinetuneParams::default().tokens)]
    pub tokens: usize,
    /// Tuning text (its last `--held-out` windows are held out for early stopping); default:
    /// data/calib.txt. Same as `--tune-calib`, the name `llvq quantize --finetune-tokens` uses.
    #[arg(long, conflicts_with = "tune_calib")]
    pub calib: Option<PathBuf>,
    #[command(flatten)]
    pub tune: TuneArgs,
    /// Continue an interrupted run from OUT.finetune.
    #[arg(long)]
    pub resume: bool,
    /// Worker threads (sets RAYON_NUM_THREADS); default: all cores.
    #[arg(long, value_parser = super::common::threads)]
    pub threads: Option<usize>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The tuning flags, shared with `llvq quantize --finetune-tokens`.
#[derive(Args, Clone)]
pub struct TuneArgs {
    /// Full-precision model the file was quantized from (the teacher of `--objective kl`);
    /// default: the default model (`llvq finetune`) or `--model` (`llvq quantize`).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Tuning text (its last `--held-out` windows are held out for early stopping); default:
    /// the calibration text.
    #[arg(long)]
    pub tune_calib: Option<PathBuf>,
    /// Tokens per training window.
    #[arg(long, default_value_t = FinetuneParams::default().ctx)]
    pub tune_ctx: usize,
    /// `kl` (match the teacher's next-token distributions) or `ce` (cross-entropy of the text).
    #[arg(long, default_value = "kl")]
    pub objective: Objective,
    /// Adam peak learning rate (warmup over 5% of the steps, cosine decay to a tenth).
    #[arg(long, default_value_t = FinetuneParams::default().lr, value_parser = super::common::non_negative)]
    pub lr: f64,
    /// One scale vector per shared input (q/k/v, gate/up) instead of one per linear.
    #[arg(long)]
    pub tied: bool,
    /// Storage of the tuned scales: `f16` (16 bits per column; the kept scales are chosen and
    /// reported after rounding) or `f32` (exactly as trained).
    #[arg(long, default_value = "f16", value_parser = ["f16", "f32"])]
    pub scale_dtype: String,
    /// Held-out windows.
    #[arg(long, default_value_t = FinetuneParams::default().held_out)]
    pub held_out: usize,
    /// Held-out evaluations without improvement before stopping early.
    #[arg(long, default_value_t = FinetuneParams::default().patience)]
    pub patience: usize,
}

impl TuneArgs {
    /// The run's parameters; `teacher` and `calib` are the defaults of the calling command.
    pub fn params(&self, tokens: usize, teacher: &Path, calib: &Path) -> FinetuneParams {
        FinetuneParams {
            teacher: self.teacher.clone().unwrap_or_else(|| teacher.to_path_buf()),
            calib_text: self.tune_calib.clone().unwrap_or_else(|| calib.to_path_buf()),
            tokens,
            ctx: self.tune_ctx,
            held_out: self.held_out,
            objective: self.objective,
            lr: self.lr,
            tied: self.tied,
            f16: self.scale_dtype == "f16",
            eval_every: 0,
            patience: self.patience,
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    // A second Ctrl-C kills the process as usual.
    // SAFETY: `signal` is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// The first Ctrl-C asks the run to stop after its current step (it keeps the best scales).
fn catch_ctrl_c() {
    // SAFETY: installs a handler that only stores to an atomic and resets itself.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
}

pub fn run(a: FinetuneArgs) -> Result<()> {
    super::common::set_threads(a.threads);
    let p = a.tune.params(
        a.tokens,
        Path::new(super::common::DEFAULT_MODEL),
        a.calib.as_deref().unwrap_or(Path::new(super::common::DEFAULT_CALIB)),
    );
    let r = tune(&a.input, &a.out, &p, a.resume)?;
    print_report(&r, a.json)
}

/// Runs a tuning with a progress bar and Ctrl-C handling.
pub fn tune(input: &Path, out: &Path, p: &FinetuneParams, resume: bool) -> Result<FinetuneReport> {
    if p.objective == Objective::Kl && !p.teacher.exists() {
        bail!(
            "teacher {} not found: pass --teacher (the model the file was quantized from)",
            p.teacher.display()
        );
    }
    catch_ctrl_c();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{prefix:>12} {bar:30} {pos}/{len} steps {msg:40} {elapsed_precise} eta {eta}")
            .expect("valid template"),
    );
    bar.set_prefix("finetune");
    let mut running: Option<f64> = None;
    let mut best = f64::NAN;
    let mut on_event = |e: FtEvent<'_>| {
        match e {
            FtEvent::Phase(s) => bar.set_message(s.to_string()),
            FtEvent::Step {
                step,
                steps,
                loss,
                tokens_per_s,
            } => {
                let r = running.map_or(loss, |r| 0.9 * r + 0.1 * loss);
                running = Some(r);
                bar.set_length(steps);
                bar.set_position(step);
                bar.set_message(format!("loss {r:.4} held-out {best:.4} {tokens_per_s:.0} tok/s"));
            }
            FtEvent::Eval { best: b, .. } => best = b,
        }
        if STOP.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let r = finetune(input, out, p, resume, &mut on_event)?;
    bar.finish_and_clear();
    Ok(r)
}

pub fn print_report(r: &FinetuneReport, json: bool) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(r)?;
        v["bpw"] = r.linears.bpw().into();
        outln!("{v}")?;
        return Ok(());
    }
    let b = &r.linears;
    let w = b.weights.max(1) as f64;
    outln!(
        "wrote        {}{}",
        r.out.display(),
        if r.interrupted {
            " (interrupted: best scales so far; --resume continues)"
        } else {
            ""
        }
    )?;
    outln!(
        "tuned        {} steps of {} ({} tokens{}), objective {}, best at step {}",
        r.steps,
        r.steps_planned,
        r.tokens,
        r.resumed_at.map_or(String::new(), |s| format!(", resumed at step {s}")),
        r.objective.name(),
        r.best_step
    )?;
    outln!(
        "held-out     {:.5} → {:.5}{}",
        r.held_out_before,
        r.held_out_after,
        if r.early_stopped { " (stopped early)" } else { "" }
    )?;
    outln!(
        "linears      {:.4} bits/weight all-in, input scales {:.5}",
        b.bpw(),
        b.input_scale as f64 / w
    )?;
    outln!(
        "time         {:.1} s, {:.1} training tokens/s",
        r.seconds,
        r.tokens_per_s
    )?;
    Ok(())
}
