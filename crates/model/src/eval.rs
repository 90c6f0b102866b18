//! Perplexity over non-overlapping windows.
//!
//! The text is tokenized whole (no BOS), cut into `floor(n / ctx)` windows of `ctx` tokens
//! (the tail is dropped, as in GPTQ-style evaluation), and every token of a window but the
//! first is scored given the tokens before it in that window. Perplexity is the exponential
//! of the mean negative log-likelihood over all scored tokens. The fingerprint hashes `ctx`
//! and the scored token ids, so two runs (or two implementations) can be shown to have
//! scored exactly the same tokens.
use crate::error::{ModelError, Result, TensorContext};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// Settings for [`perplexity`].
#[derive(Debug, Clone, Copy)]
pub struct PplParams {
    /// Window length in tokens.
    pub ctx: usize,
    /// Evaluate at most this many windows (the first ones).
    pub max_windows: Option<usize>,
}

impl Default for PplParams {
    fn default() -> Self {
        PplParams {
            ctx: 512,
            max_windows: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PplResult {
    pub ppl: f64,
    pub mean_nll: f64,
    pub tokens_scored: usize,
    pub windows: usize,
    pub ctx: usize,
    /// Tokens in the whole text (before windowing).
    pub text_tokens: usize,
    /// FNV-1a 64 of `ctx` and the scored token ids, hex.
    pub fingerprint: String,
}

/// Line endings normalized to `\n`, so CRLF and LF copies of a text give the same tokens.
pub fn normalize_text(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Tokenize a text for evaluation (normalized line endings, no special tokens).
pub fn tokenize_text(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let text = normalize_text(text);
    if text.trim().is_empty() {
        return Err(ModelError::Input("the evaluation text is empty".into()));
    }
    tok.encode(&text)
}

pub use llvq_lattice::seed::{fnv1a, FNV_OFFSET};

/// Fingerprint of the tokens that [`perplexity`] scores for these ids and params.
pub fn fingerprint(ids: &[u32], p: &PplParams) -> String {
    let mut h = fnv1a(FNV_OFFSET, &(p.ctx as u64).to_le_bytes());
    for w in windows(ids, p) {
        for id in &w[1..] {
            h = fnv1a(h, &id.to_le_bytes());
        }
    }
    format!("{h:016x}")
}

fn windows<'a>(ids: &'a [u32], p: &PplParams) -> impl Iterator<Item = &'a [u32]> {
    let n = ids.len() / p.ctx.max(1);
    let n = p.max_windows.map_or(n, |m| m.min(n));
    ids.chunks_exact(p.ctx.max(1)).take(n)
}

/// Negative log-likelihoods of `ids[1..]` given their prefixes, in f64.
pub fn token_nlls(model: &Model, ids: &[u32]) -> Result<Vec<f64>> {
    let logits = model.logits(ids)?;
    let rows = logits.to_vec2::<f32>().ctx("logits")?;
    let mut out = Vec::with_capacity(ids.len().saturating_sub(1));
    for (i, row) in rows.iter().enumerate().take(ids.len() - 1) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        let nll = lse - row[ids[i + 1] as usize] as f64;
        if !nll.is_finite() {
            return Err(ModelError::Input(format!(
                "non-finite log-likelihood at position {}",
                i + 1
            )));
        }
        out.push(nll);
    }
    Ok(out)
}

/// Perplexity of `model` on token ids; `progress(done, total)` is called after each window.
pub fn perplexity(
    model: &Model,
    ids: &[u32],
    p: &PplParams,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PplResult> {
    if p.ctx < 2 {
        return Err(ModelError::Input(format!("ctx must be at least 2, got {}", p.ctx)));
    }
    let total = windows(ids, p).count();
    if total == 0 {
        return Err(ModelError::Input(format!(
            "the text has {} tokens, fewer than one window of {}",
            ids.len(),
            p.ctx
        )));
    }
    let mut sum = 0.0f64;
    let mut scored = 0usize;
    for (wi, w) in windows(ids, p).enumerate() {
        let nlls = token_nlls(model, w)?;
        sum += nlls.iter().sum::<f64>();
        scored += nlls.len();
        progress(wi + 1, total);
    }
    let mean_nll = sum / scored as f64;
    Ok(PplResult {
        ppl: mean_nll.exp(),
        mean_nll,
        tokens_scored: scored,
        windows: total,
        ctx: p.ctx,
        text_tokens: ids.len(),
        fingerprint: fingerprint(ids, p),
    })
}
