//! Reading `requests.jsonl.gz` and `config.json` of one task into documents with choices.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{task_info, Result, TaskError, UNCOND_DOC_ID};

/// One log-likelihood request line (only the fields we use; the rest is ignored).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Request {
    pub doc_id: u64,
    /// Position of this choice within its document.
    pub idx: usize,
    /// Index of the gold choice.
    pub label: usize,
    pub request: Pair,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Pair {
    pub context: String,
    pub continuation: String,
}

/// A document: its choices in `idx` order and the gold index.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub doc_id: u64,
    pub label: usize,
    /// `(context, continuation)` per choice.
    pub choices: Vec<(String, String)>,
}

/// The part of `config.json` we report.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct TaskConfig {
    #[serde(default)]
    pub task_name: String,
    #[serde(default)]
    pub num_instances: Option<usize>,
    #[serde(default)]
    pub task_config: TaskConfigInner,
}

#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct TaskConfigInner {
    /// olmo-eval's headline metric (`acc_raw`, `acc_per_char`).
    #[serde(default)]
    pub primary_metric: Option<String>,
    #[serde(default)]
    pub split: Option<String>,
}

/// A task's documents, in `doc_id` order.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub path: PathBuf,
    pub config: TaskConfig,
    pub docs: Vec<Doc>,
}

/// `data_dir/tasks/<task>/<variant>/<file>`, where `fetch-defaults --tasks` unpacks it.
pub fn task_file(data_dir: &Path, task: &str, variant: &str, file: &str) -> PathBuf {
    data_dir.join("tasks").join(task).join(variant).join(file)
}

/// Load a known task from `data_dir`.
pub fn load_task(data_dir: &Path, name: &str) -> Result<Task> {
    let info = task_info(name)?;
    let req = task_file(data_dir, name, info.variant, "requests.jsonl.gz");
    let cfg_path = task_file(data_dir, name, info.variant, "config.json");
    let open = |p: &Path| {
        std::fs::File::open(p).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => TaskError::MissingData {
                task: name.to_string(),
                path: p.to_path_buf(),
            },
            _ => TaskError::Io {
                task: name.to_string(),
                path: p.to_path_buf(),
                err,
            },
        })
    };
    let mut cfg_text = String::new();
    open(&cfg_path)?
        .read_to_string(&mut cfg_text)
        .map_err(|err| TaskError::Io {
            task: name.to_string(),
            path: cfg_path.clone(),
            err,
        })?;
    let config: TaskConfig = serde_json::from_str(&cfg_text).map_err(|e| TaskError::Parse {
        task: name.to_string(),
        path: cfg_path.clone(),
        line: e.line(),
        reason: e.to_string(),
    })?;
    let gz = flate2::read::GzDecoder::new(open(&req)?);
    let docs = parse_requests(name, &req, BufReader::new(gz))?;
    Ok(Task {
        name: name.to_string(),
        path: req,
        config,
        docs,
    })
}

/// Parse request lines (JSON Lines) into documents, skipping unconditional requests.
///
/// Checks that each document's choices are numbered `0..n` without gaps or repeats, that
/// they agree on the label, and that the label is one of them.
pub fn parse_requests(task: &str, path: &Path, reader: impl BufRead) -> Result<Vec<Doc>> {
    let err = |line: usize, reason: String| TaskError::Parse {
        task: task.to_string(),
        path: path.to_path_buf(),
        line,
        reason,
    };
    // doc_id -> (label, first line, idx -> pair)
    let mut docs: BTreeMap<u64, (usize, usize, BTreeMap<usize, Pair>)> = BTreeMap::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| err(n, format!("read failed: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: Request = serde_json::from_str(&line).map_err(|e| err(n, e.to_string()))?;
        if r.doc_id >= UNCOND_DOC_ID {
            continue;
        }
        let d = docs.entry(r.doc_id).or_insert_with(|| (r.label, n, BTreeMap::new()));
        if d.0 != r.label {
            return Err(err(
                n,
                format!(
                    "doc {} has label {} here but {} on line {}",
                    r.doc_id, r.label, d.0, d.1
                ),
            ));
        }
        if d.2.insert(r.idx, r.request).is_some() {
            return Err(err(n, format!("doc {} repeats choice idx {}", r.doc_id, r.idx)));
        }
    }
    let mut out = Vec::with_capacity(docs.len());
    for (doc_id, (label, line, choices)) in docs {
        let k = choices.len();
        if choices.keys().enumerate().any(|(i, &idx)| i != idx) {
            return Err(err(line, format!("doc {doc_id}: choice idx are not 0..{k}")));
        }
        if k < 2 || label >= k {
            return Err(err(line, format!("doc {doc_id}: label {label} with {k} choices")));
        }
        let choices = choices.into_values().map(|p| (p.context, p.continuation)).collect();
        out.push(Doc { doc_id, label, choices });
    }
    if out.is_empty() {
        return Err(err(0, "no documents".into()));
    }
    Ok(out)
}
