//! Sampling text with a KV cache.
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Instant;

use crate::error::{ModelError, Result, TensorContext};
use crate::model::{KvCache, Model, NoHook};
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, Copy)]
pub struct GenParams {
    /// Tokens to generate.
    pub max_new: usize,
    /// 0 means greedy.
    pub temperature: f64,
    pub seed: u64,
    /// Stop at the model's EOS token.
    pub stop_at_eos: bool,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            max_new: 64,
            temperature: 0.0,
            seed: 0,
            stop_at_eos: true,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GenStats {
    pub prompt_tokens: usize,
    pub generated: usize,
    pub prefill_s: f64,
    pub decode_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub tokens: Vec<u32>,
}

/// Index of the sampled token: argmax at temperature 0, else softmax(logits / T).
pub fn sample(logits: &[f32], temperature: f64, rng: &mut StdRng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold(
                (0usize, f32::NEG_INFINITY),
                |b, (i, &x)| if x > b.1 { (i, x) } else { b },
            )
            .0 as u32
    };
    if temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let p: Vec<f64> = logits.iter().map(|&x| ((x as f64 - max) / temperature).exp()).collect();
    let total: f64 = p.iter().sum();
    let mut r = rng.random::<f64>() * total;
    for (i, &pi) in p.iter().enumerate() {
        r -= pi;
        if r <= 0.0 {
            return i as u32;
        }
    }
    argmax()
}

/// Runs `f` on a worker of rayon's global pool. A forward pass issues one parallel product
/// per linear (~150 per token on the default model); issued from a thread outside the pool,
/// each would sleep the caller and wake workers, while on a worker the caller takes its share
/// of every product and only the other workers are woken.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Generate from `prompt`, calling `on_token` with each new token's text as it comes.
pub fn generate(
    model: &Model,
    tok: &Tokenizer,
    prompt: &str,
    p: &GenParams,
    on_token: &mut dyn FnMut(&str),
) -> Result<GenStats> {
    let ids = tok.encode(prompt)?;
    if ids.is_empty() {
        return Err(ModelError::Input("the prompt is empty".into()));
    }
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut cache = KvCache::new(model.config().num_layers);
    let t0 = Instant::now();
    let logits = on_pool(|| model.forward(&ids, Some(&mut cache), &mut NoHook))?;
    let last = logits
        .get(ids.len() - 1)
        .ctx("logits")?
        .to_vec1::<f32>()
        .ctx("logits")?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let mut next = sample(&last, p.temperature, &mut rng);
    let mut out = Vec::new();
    let mut text_so_far = String::new();
    let t1 = Instant::now();
    for step in 0..p.max_new {
        if p.stop_at_eos && Some(next) == model.config().eos_token_id {
            break;
        }
        out.push(next);
        // Decode the whole continuation so multi-byte characters split across tokens print whole.
        let text = tok.decode(&out)?;
        if text.len() > text_so_far.len() && text.starts_with(&text_so_far) {
            on_token(&text[text_so_far.len()..]);
            text_so_far = text;
        }
        if step + 1 == p.max_new {
            break;
        }
        let logits = on_pool(|| model.forward(&[next], Some(&mut cache), &mut NoHook))?;
        let row = logits.get(0).ctx("logits")?.to_vec1::<f32>().ctx("logits")?;
        next = sample(&row, p.temperature, &mut rng);
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let steps = out.len().saturating_sub(1).max(1) as f64;
    Ok(GenStats {
        prompt_tokens: ids.len(),
        generated: out.len(),
        prefill_s,
        decode_s,
        prefill_tok_s: ids.len() as f64 / prefill_s.max(1e-9),
        decode_tok_s: steps / decode_s.max(1e-9),
        tokens: out,
    })
}
