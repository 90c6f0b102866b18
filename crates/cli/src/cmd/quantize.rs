//! `llvq quantize`: the post-training pipeline on a model, writing one compressed file.
use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use llvq_quant::ldlq::LdlqParams;
use llvq_quant::pipeline::{quantize_layers, quantize_model_with, Budget, Event, LayerRange, Placement};
use llvq_quant::{CalibMode, QuantizeParams, Rotate};
use std::path::PathBuf;

#[derive(Args)]
pub struct QuantizeArgs {
    /// A .gguf file or a Hugging Face directory.
    #[arg(long, default_value = super::common::DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Method SPEC: a code of the lab (`llvq-sg:m=12,gain=1`, `llvq-ss:m=13`, `e8p12`,
    /// `lloyd:bits=2`, ...) or `rtn[:bits=2]` / `gptq[:bits=2]`; pipeline keys `ldlq=0|1` and
    /// `group=G` (columns per scale) may be added to any.
    #[arg(long, default_value = "llvq-sg:m=12,gain=1")]
    pub method: String,
    #[command(flatten)]
    pub calibration: super::common::CalibArgs,
    /// Randomized Hadamard transforms: none, input, output or both sides of every weight.
    #[arg(long, default_value = "both")]
    pub rotate: Rotate,
    /// Where each layer's Hessians come from: `sequential` (outputs of the quantized layers
    /// before it) or `full` (the full-precision model).
    #[arg(long, default_value = "sequential")]
    pub mode: CalibMode,
    /// Diagonal damping of the Hessians, relative to their mean diagonal.
    #[arg(long, default_value_t = LdlqParams::default().damp, value_parser = super::common::non_negative)]
    pub damp: f64,
    /// Seed of the rotations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep the token embeddings (and an untied LM head) in f32 instead of f16.
    #[arg(long)]
    pub embed_f32: bool,
    /// Output file (with --hessians: a part file for `llvq merge`).
    #[arg(long)]
    pub out: PathBuf,
    /// Quantize from offline Hessians (`llvq calibrate`, merged): layers become independent
    /// jobs, read one at a time. Needs --mode full.
    #[arg(long)]
    pub hessians: Option<PathBuf>,
    /// With --hessians: the layers of this job, `A..B` (B excluded) or `A`; default all.
    #[arg(long, requires = "hessians")]
    pub layers: Option<LayerRange>,
    /// Refuse to start when the memory estimate (printed as "needs about X GB") exceeds this
    /// (`24G`, `1500M`).
    #[arg(long, value_parser = super::common::bytes)]
    pub max_memory: Option<u64>,
    /// Where the calibration activations live between layers: `memory`, `disk` (a scratch file
    /// in OUT.parts/, one window in memory at a time; same output), or `auto` (disk when the
    /// in-memory estimate exceeds --max-memory or the memory available).
    #[arg(long, default_value = "auto")]
    pub activations: Placement,
    /// Continue an interrupted run from the finished layers in OUT.parts/.
    #[arg(long)]
    pub resume: bool,
    /// Worker threads (sets RAYON_NUM_THREADS); default: all cores.
    #[arg(long, value_parser = super::common::threads)]
    pub threads: Option<usize>,
    /// Then tune the input scales for this many tokens (§5.4, as `llvq finetune`; 0: no tuning).
    #[arg(long, default_value_t = 0)]
    pub finetune_tokens: usize,
    #[command(flatten)]
    pub tune: super::finetune::TuneArgs,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    super::common::set_threads(a.threads);
    super::common::check_default_model(&a.model)?;
    let params = QuantizeParams {
        method: a.method.clone(),
        rotate: a.rotate,
        seed: a.seed,
        calib_text: a.calibration.calib.clone(),
        calib: a.calibration.params(),
        mode: a.mode,
        ldlq: LdlqParams {
            damp: a.damp,
            ..Default::default()
        },
        embed_f16: !a.embed_f32,
    };
    let bar = bar("quantize");
    let mut on_event = |e: Event<'_>| show(&bar, e);
    // Both paths read one decoder layer at a time.
    super::common::fixed_mmap_threshold();
    if let Some(hdir) = &a.hessians {
        if a.resume {
            bail!(
                "--resume does not apply to --hessians jobs: rerun the job (its part is written whole or not at all)"
            );
        }
        let layers = match a.layers {
            Some(r) => r.0,
            None => 0..llvq_quant::hessians::read_manifest(hdir)?.num_layers,
        };
        let r = quantize_layers(&a.model, hdir, layers, &a.out, &params, a.max_memory, &mut on_event)?;
        bar.finish_and_clear();
        return super::calibrate::report(&r, a.json);
    }
    let budget = Budget {
        max_memory: a.max_memory,
        activations: a.activations,
    };
    let r = quantize_model_with(&a.model, &a.out, &params, a.resume, budget, &mut on_event)?;
    bar.finish_and_clear();
    // The file is tuned in place (read whole, written to a temporary name, renamed).
    let tuned = match a.finetune_tokens {
        0 => None,
        n => Some(super::finetune::tune(
            &a.out,
            &a.out,
            &a.tune.params(n, &a.model, &a.calibration.calib),
            a.resume,
        )?),
    };
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["bpw"] = r.bpw().into();
        v["file_bpw"] = r.file_bpw().into();
        if let Some(t) = &tuned {
            v["finetune"] = serde_json::to_value(t)?;
            v["bpw"] = t.linears.bpw().into();
        }
        outln!("{v}")?;
        return Ok(());
    }
    if let Some(t) = &tuned {
        super::finetune::print_report(t, false)?;
    }
    let t = &r.timings;
    outln!("wrote        {} ({:.1} MB)", r.out.display(), r.file_bytes as f64 / 1e6)?;
    outln!("method       {} (code {})", r.method, r.code)?;
    outln!(
        "rotate       {}   calibration {} ({} tokens)",
        r.rotate.name(),
        serde_json::to_value(r.mode)?.as_str().unwrap_or(""),
        r.calib_tokens
    )?;
    let b = &r.linears;
    outln!(
        "linears      {} weights, {:.4} bits/weight all-in (code {:.4}, scales {:.4}, seeds {:.5})",
        b.weights,
        r.bpw(),
        b.code as f64 / b.weights as f64,
        b.scale as f64 / b.weights as f64,
        b.seed as f64 / b.weights as f64
    )?;
    outln!(
        "file         {:.3} bits per model parameter ({} parameters)",
        r.file_bpw(),
        r.params
    )?;
    let mean_proxy = r.stats.iter().map(|s| s.proxy_rel).sum::<f64>() / r.stats.len().max(1) as f64;
    outln!("proxy loss   mean relative tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) = {mean_proxy:.5}")?;
    outln!(
        "time         {:.1} s: load {:.1}, tokenize {:.1}, calibration {:.1}, quantization {:.1}, propagation {:.1}, write {:.1}{}",
        t.total,
        t.load,
        t.tokenize,
        t.calibration,
        t.quantization,
        t.propagation,
        t.write,
        if r.layers_resumed > 0 { format!(" ({} layers resumed)", r.layers_resumed) } else { String::new() }
    )?;
    if let Some(m) = r.peak_rss {
        outln!("peak RSS     {:.0} MB", m as f64 / 1e6)?;
    }
    Ok(())
}

/// A progress bar over layers.
pub fn bar(prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{prefix:>12} {bar:30} {pos}/{len} layers {msg:24} {elapsed_precise} eta {eta}")
            .expect("valid template"),
    );
    bar.set_prefix(prefix);
    bar
}

/// Shows a pipeline event on `bar`; the memory estimate goes to stderr before the work starts.
pub fn show(bar: &ProgressBar, e: Event<'_>) -> std::ops::ControlFlow<()> {
    match e {
        Event::Phase(p) => bar.set_message(p.to_string()),
        Event::Layer { layer, layers, step } => {
            bar.set_length(layers as u64);
            bar.set_message(format!("layer {layer}: {step}"));
        }
        Event::LayerDone { layer, layers, resumed } => {
            bar.set_length(layers as u64);
            bar.set_position(layer as u64 + 1);
            if resumed {
                bar.set_message(format!("layer {layer}: resumed"));
            }
        }
        Event::Memory { needs, on_disk } => bar.suspend(|| match on_disk {
            None => eprintln!("needs about {:.2} GB", needs as f64 / 1e9),
            Some(d) => eprintln!(
                "needs about {:.2} GB, and {:.2} GB of disk for the calibration activations",
                needs as f64 / 1e9,
                d as f64 / 1e9
            ),
        }),
    }
    std::ops::ControlFlow::Continue(())
}
