//! `llvq eval`: perplexity and inference speed of a model.
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use llvq_model::eval::{perplexity, tokenize_text, PplParams};
use llvq_model::generate::{generate, GenParams};
use llvq_model::{Model, Tokenizer};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::common::{load_model, median, set_threads, RuntimeArgs, DEFAULT_MODEL};

const WIKITEXT: &str = "shared/data/wikitext-2-raw/wiki.test.raw";

#[derive(Subcommand)]
pub enum EvalCmd {
    /// Perplexity over non-overlapping windows of a text.
    Ppl(PplArgs),
    /// Benchmark: prefill tokens/s at a context length and generation tokens/s.
    Speed(SpeedArgs),
    /// Zero-shot accuracy on downstream tasks (default: the paper's CSR six).
    Tasks(super::tasks::TasksArgs),
}

#[derive(Args)]
pub struct PplArgs {
    /// A .gguf file, a Hugging Face directory or a file written by `llvq quantize`.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Text file to score; defaults to WikiText-2 test from ../shared when present.
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Window length in tokens.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score only the first N windows (quick checks).
    #[arg(long)]
    pub max_windows: Option<usize>,
    /// Worker threads (sets RAYON_NUM_THREADS); default: all cores.
    #[arg(long, value_parser = super::common::threads)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Args)]
pub struct SpeedArgs {
    /// A .gguf file, a Hugging Face directory or a file written by `llvq quantize`.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Prefill length in tokens.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Tokens to generate for the decode measurement.
    #[arg(short = 'n', long, default_value_t = 64)]
    pub gen: usize,
    /// Rounds of prefill and generation (medians are reported); with `--compare` the two ways of
    /// holding the model alternate within each round.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Worker threads (sets RAYON_NUM_THREADS).
    #[arg(long, default_value_t = 2, value_parser = super::common::threads)]
    pub threads: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Also measure the dense (decoded to f32) path of the same file in the same process, and
    /// report it under `dense` with the ratios.
    #[arg(long)]
    pub compare: bool,
}

/// WikiText-2 test from `../shared` (relative to the working directory or the repository).
pub fn default_text() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    [Path::new("..").join(WIKITEXT), repo.join(WIKITEXT)]
        .into_iter()
        .find(|p| p.is_file())
}

pub fn run(cmd: EvalCmd) -> Result<()> {
    match cmd {
        EvalCmd::Ppl(a) => ppl(a),
        EvalCmd::Speed(a) => speed(a),
        EvalCmd::Tasks(a) => super::tasks::run(a),
    }
}

fn ppl(a: PplArgs) -> Result<()> {
    set_threads(a.threads);
    let text_path = match a.text.clone().or_else(default_text) {
        Some(p) => p,
        None => bail!("no --text given and ../shared/data/wikitext-2-raw/wiki.test.raw not found"),
    };
    let text = std::fs::read_to_string(&text_path).with_context(|| format!("reading {}", text_path.display()))?;
    let t0 = Instant::now();
    let (model, tok) = load_model(&a.model, &a.runtime)?;
    let load_s = t0.elapsed().as_secs_f64();
    let ids = tokenize_text(&tok, &text).with_context(|| format!("tokenizing {}", text_path.display()))?;
    let params = PplParams {
        ctx: a.ctx,
        max_windows: a.max_windows,
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} windows  {elapsed_precise} eta {eta}")
            .expect("valid template"),
    );
    let t1 = Instant::now();
    let r = perplexity(&model, &ids, &params, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let eval_s = t1.elapsed().as_secs_f64();
    let tok_s = (r.windows * r.ctx) as f64 / eval_s;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["model"] = a.model.display().to_string().into();
        v["text"] = text_path.display().to_string().into();
        v["load_s"] = load_s.into();
        v["eval_s"] = eval_s.into();
        v["tokens_per_s"] = tok_s.into();
        outln!("{v}")?;
    } else {
        outln!("model        {}", a.model.display())?;
        outln!("text         {} ({} tokens)", text_path.display(), r.text_tokens)?;
        outln!("ctx          {}", r.ctx)?;
        outln!("windows      {}", r.windows)?;
        outln!("tokens       {}", r.tokens_scored)?;
        outln!("mean NLL     {:.6}", r.mean_nll)?;
        outln!("perplexity   {:.4}", r.ppl)?;
        outln!("fingerprint  {}", r.fingerprint)?;
        outln!("time         {eval_s:.1} s ({tok_s:.0} tokens/s, load {load_s:.1} s)")?;
    }
    Ok(())
}

/// What `llvq eval speed` measures for one way of holding the model.
#[derive(serde::Serialize)]
struct Speed {
    prefill_s: f64,
    prefill_tokens_per_s: f64,
    generated: usize,
    gen_tokens_per_s: f64,
    /// Bytes of weights resident in memory (all weights: linears as held, embeddings, norms).
    weight_bytes: usize,
    /// Resident bits per weight of the decoder's linear layers.
    resident_bits_per_weight: f64,
    load_s: f64,
}

/// Measures every model in `models` (the file as loaded, and with `--compare` its dense twin)
/// in interleaved rounds — prefill of A, of B, generation of A, of B, then again — so that a
/// noisy machine slows both alike, and reports the medians over `--reps` rounds.
fn measure(a: &SpeedArgs, models: &[(Model, Tokenizer, f64)]) -> Result<Vec<Speed>> {
    let vocab = models[0].0.config().vocab_size as u64;
    // A fixed pseudo-random token sequence: the cost does not depend on the content.
    let ids: Vec<u32> = (0..a.ctx as u64)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % vocab) as u32)
        .collect();
    for (model, _, _) in models {
        model.logits(&ids[..a.ctx.min(16)])?; // warm-up
    }
    let params = GenParams {
        max_new: a.gen,
        temperature: 0.0,
        seed: 0,
        stop_at_eos: false,
    };
    let mut prefill = vec![Vec::new(); models.len()];
    let mut gen = vec![Vec::new(); models.len()];
    let mut generated = vec![0; models.len()];
    for _ in 0..a.reps.max(1) {
        for (i, (model, _, _)) in models.iter().enumerate() {
            let t = Instant::now();
            model.logits(&ids)?;
            prefill[i].push(t.elapsed().as_secs_f64());
        }
        for (i, (model, tok, _)) in models.iter().enumerate() {
            let g = generate(model, tok, "The history of mathematics", &params, &mut |_| {})?;
            gen[i].push(g.decode_tok_s);
            generated[i] = g.generated;
        }
    }
    let mut out = Vec::new();
    for (i, (model, _, load_s)) in models.iter().enumerate() {
        let prefill_s = median(std::mem::take(&mut prefill[i]));
        let (weights, bytes) = model.linear_footprint();
        out.push(Speed {
            prefill_s,
            prefill_tokens_per_s: a.ctx as f64 / prefill_s,
            generated: generated[i],
            gen_tokens_per_s: median(std::mem::take(&mut gen[i])),
            weight_bytes: model.resident_weight_bytes(),
            resident_bits_per_weight: bytes as f64 * 8.0 / weights.max(1) as f64,
            load_s: *load_s,
        });
    }
    Ok(out)
}

fn speed(a: SpeedArgs) -> Result<()> {
    set_threads(Some(a.threads));
    let load = |rt: &RuntimeArgs| -> Result<(Model, Tokenizer, f64)> {
        let t0 = Instant::now();
        let (model, tok) = load_model(&a.model, rt)?;
        Ok((model, tok, t0.elapsed().as_secs_f64()))
    };
    let mut models = vec![load(&a.runtime)?];
    if a.compare && !a.runtime.dense {
        models.push(load(&RuntimeArgs {
            dense: true,
            ..a.runtime
        })?);
    }
    let mut speeds = measure(&a, &models)?.into_iter();
    let s = speeds.next().expect("one model at least");
    let dense = speeds.next();
    if a.json {
        let mut v = serde_json::to_value(&s)?;
        v["model"] = a.model.display().to_string().into();
        v["threads"] = a.threads.into();
        v["ctx"] = a.ctx.into();
        v["compressed"] = (!a.runtime.dense).into();
        v["act"] = a.runtime.act.name().into();
        v["head"] = a.runtime.head.name().into();
        if let Some(d) = &dense {
            v["dense"] = serde_json::to_value(d)?;
            v["ratios"] = serde_json::json!({
                "prefill": s.prefill_tokens_per_s / d.prefill_tokens_per_s,
                "gen": s.gen_tokens_per_s / d.gen_tokens_per_s,
                "weight_bytes": s.weight_bytes as f64 / d.weight_bytes as f64,
            });
        }
        outln!("{v}")?;
    } else {
        let show = |label: &str, s: &Speed| -> Result<()> {
            outln!("{label}")?;
            outln!(
                "  prefill      {} tokens in {:.3} s = {:.0} tokens/s (median of {} interleaved rounds)",
                a.ctx,
                s.prefill_s,
                s.prefill_tokens_per_s,
                a.reps.max(1)
            )?;
            outln!(
                "  generation   {} tokens at {:.1} tokens/s (KV cache, median of {})",
                s.generated,
                s.gen_tokens_per_s,
                a.reps.max(1)
            )?;
            outln!(
                "  weights      {:.1} MB resident, linears at {:.2} bits/weight",
                s.weight_bytes as f64 / 1e6,
                s.resident_bits_per_weight
            )?;
            Ok(())
        };
        outln!("threads        {}", a.threads)?;
        show(
            if a.runtime.dense {
                "dense (decoded to f32)"
            } else {
                "as loaded"
            },
            &s,
        )?;
        if let Some(d) = &dense {
            show("dense (decoded to f32)", d)?;
            outln!(
                "ratios         prefill {:.2}x  generation {:.2}x  weight bytes {:.3}",
                s.prefill_tokens_per_s / d.prefill_tokens_per_s,
                s.gen_tokens_per_s / d.gen_tokens_per_s,
                s.weight_bytes as f64 / d.weight_bytes as f64
            )?;
        }
    }
    Ok(())
}
