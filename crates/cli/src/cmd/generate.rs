//! `llvq generate`: sample text from a model with a KV cache.
use anyhow::Result;
use clap::Args;
use llvq_model::generate::{generate, GenParams};
use std::path::PathBuf;

#[derive(Args)]
pub struct GenerateArgs {
    /// A .gguf file, a Hugging Face directory or a file written by `llvq quantize`.
    #[arg(long, default_value = super::common::DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Prompt text (used as is; no chat template).
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 64)]
    pub n: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0, value_parser = super::common::non_negative)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (sets RAYON_NUM_THREADS).
    #[arg(long, value_parser = super::common::threads)]
    pub threads: Option<usize>,
    /// Print one JSON object (text and timings) instead of streaming.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: super::common::RuntimeArgs,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    super::common::set_threads(a.threads);
    let (model, tok) = super::common::load_model(&a.model, &a.runtime)?;
    let params = GenParams {
        max_new: a.n,
        temperature: a.temperature,
        seed: a.seed,
        stop_at_eos: true,
    };
    let mut text = String::new();
    let json = a.json;
    if !json {
        out!("{}", a.prompt)?;
    }
    // The first write error ends the streaming; it is reported after the call returns.
    let mut write_err = None;
    let stats = generate(&model, &tok, &a.prompt, &params, &mut |piece| {
        text.push_str(piece);
        if !json && write_err.is_none() {
            write_err = out!("{piece}").and_then(|()| crate::out::flush()).err();
        }
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    if json {
        let mut v = serde_json::to_value(&stats)?;
        v["prompt"] = a.prompt.into();
        v["text"] = text.into();
        outln!("{v}")?;
    } else {
        outln!()?;
        eprintln!(
            "prompt {} tokens ({:.0} tokens/s), generated {} tokens ({:.1} tokens/s)",
            stats.prompt_tokens, stats.prefill_tok_s, stats.generated, stats.decode_tok_s
        );
    }
    Ok(())
}
