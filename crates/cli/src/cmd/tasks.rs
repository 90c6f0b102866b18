//! `llvq eval tasks`: zero-shot accuracy on the paper's CSR tasks (see `llvq_model::tasks`).
use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use llvq_model::tasks::score::mean_stderr;
use llvq_model::tasks::{self, mmlu, EvalOptions, Scoring, TaskResult, CSR_TASKS, DEFAULT_PACK_TOKENS};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::common::{load_model, set_threads, DEFAULT_MODEL};

#[derive(Args)]
pub struct TasksArgs {
    /// A .gguf file, a Hugging Face directory or a file written by `llvq quantize`.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Comma-separated task names; default: the paper's CSR six. `mmlu` (0-shot) and
    /// `mmlu_5shot` expand to their 57 subjects (`mmlu_<subject>`, `mmlu_5shot_<subject>`).
    #[arg(long, value_delimiter = ',', default_values_t = CSR_TASKS.iter().map(|s| s.to_string()))]
    pub tasks: Vec<String>,
    /// Score only the first N documents of each task (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Where `llvq fetch-defaults --tasks` put `tasks/`.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Write every document's log-likelihoods and choices as JSON Lines here.
    #[arg(long)]
    pub per_doc: Option<PathBuf>,
    /// How choices are run: `batched` (shared context and all choices of several documents
    /// in one forward pass), `kv` (context once into a KV cache, each choice from a clone) or
    /// `scratch` (every choice on its own); the last two are twins kept for timing.
    #[arg(long, value_enum, default_value_t = ScoringArg::Batched)]
    pub scoring: ScoringArg,
    /// Tokens per forward pass when `--scoring batched` packs documents together.
    #[arg(long, default_value_t = DEFAULT_PACK_TOKENS)]
    pub pack_tokens: usize,
    /// Worker threads (sets RAYON_NUM_THREADS); default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: super::common::RuntimeArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ScoringArg {
    Batched,
    Kv,
    Scratch,
}

impl ScoringArg {
    fn scoring(self) -> Scoring {
        match self {
            ScoringArg::Batched => Scoring::Batched,
            ScoringArg::Kv => Scoring::KvCache,
            ScoringArg::Scratch => Scoring::Scratch,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ScoringArg::Batched => "batched",
            ScoringArg::Kv => "kv",
            ScoringArg::Scratch => "scratch",
        }
    }
}

#[derive(serde::Serialize)]
struct Row {
    #[serde(flatten)]
    result: TaskResult,
    seconds: f64,
    tokens_per_s: f64,
    docs_per_s: f64,
}

pub fn run(a: TasksArgs) -> Result<()> {
    set_threads(a.threads);
    // Load every task first, so a missing or broken file fails before the model loads.
    let names = tasks::expand_names(&a.tasks)?;
    let loaded: Vec<tasks::Task> = names
        .iter()
        .map(|t| tasks::load_task(&a.data_dir, t))
        .collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    let (model, tok) = load_model(&a.model, &a.runtime)?;
    let load_s = t0.elapsed().as_secs_f64();

    let mut rows = Vec::new();
    for task in &loaded {
        let n = a.limit.map_or(task.docs.len(), |l| l.min(task.docs.len()));
        let bar = ProgressBar::new(n as u64).with_style(
            ProgressStyle::with_template("{prefix:>14} {bar:40} {pos}/{len} docs  {elapsed_precise} eta {eta}")
                .expect("valid template"),
        );
        bar.set_prefix(task.name.clone());
        let t1 = Instant::now();
        let opts = EvalOptions {
            limit: a.limit,
            scoring: a.scoring.scoring(),
            pack_tokens: a.pack_tokens.max(1),
        };
        let result = tasks::evaluate(&model, &tok, task, opts, &mut |done, _| bar.set_position(done as u64))?;
        bar.finish_and_clear();
        let seconds = t1.elapsed().as_secs_f64();
        let tokens_per_s = result.tokens as f64 / seconds;
        let docs_per_s = result.docs as f64 / seconds;
        if !a.json {
            eprintln!(
                "{:<14} acc {:.4} ± {:.4}  acc_norm {:.4} ± {:.4}  ({} docs, {:.0} s)",
                task.name, result.acc, result.acc_stderr, result.acc_norm, result.acc_norm_stderr, result.docs, seconds
            );
        }
        rows.push(Row {
            result,
            seconds,
            tokens_per_s,
            docs_per_s,
        });
    }
    if let Some(path) = &a.per_doc {
        write_per_doc(path, &rows)?;
    }
    // Averages over the request-file tasks (CSR when all six are there); MMLU subjects are
    // summarised per group instead.
    let plain: Vec<&TaskResult> = rows
        .iter()
        .map(|r| &r.result)
        .filter(|t| mmlu::parse_name(&t.task).is_none())
        .collect();
    let is_csr = CSR_TASKS.iter().all(|t| plain.iter().any(|r| r.task == *t));
    let mean = |f: fn(&TaskResult) -> f64| plain.iter().map(|r| f(r)).sum::<f64>() / plain.len() as f64;
    let (avg_acc, avg_norm) = (mean(|r| r.acc), mean(|r| r.acc_norm));
    let groups = mmlu_groups(&rows);
    let total_s: f64 = rows.iter().map(|r| r.seconds).sum();
    let total_tok: usize = rows.iter().map(|r| r.result.tokens).sum();
    let total_docs: usize = rows.iter().map(|r| r.result.docs).sum();
    if a.json {
        let v = serde_json::json!({
            "model": a.model.display().to_string(),
            "limit": a.limit,
            "scoring": a.scoring.name(),
            "pack_tokens": a.pack_tokens,
            "tasks": rows,
            "average_acc": avg_acc,
            "average_acc_norm": avg_norm,
            "csr": is_csr.then_some(avg_acc),
            "mmlu": groups,
            "load_s": load_s,
            "eval_s": total_s,
            "tokens_per_s": total_tok as f64 / total_s,
            "docs_per_s": total_docs as f64 / total_s,
        });
        println!("{v}");
    } else {
        println!("model  {}", a.model.display());
        println!(
            "{:<14} {:>5} {:>16} {:>16} {:>13} {:>7} {:>8} {:>7}",
            "task", "docs", "acc", "acc_norm", "olmo metric", "s", "tok/s", "docs/s"
        );
        for r in &rows {
            let t = &r.result;
            println!(
                "{:<14} {:>5} {:>7.2} ± {:>5.2} {:>7.2} ± {:>5.2} {:>13} {:>7.1} {:>8.0} {:>7.2}",
                t.task,
                t.docs,
                100.0 * t.acc,
                100.0 * t.acc_stderr,
                100.0 * t.acc_norm,
                100.0 * t.acc_norm_stderr,
                t.olmo_primary_metric.as_deref().unwrap_or("-"),
                r.seconds,
                r.tokens_per_s,
                r.docs_per_s
            );
        }
        if !plain.is_empty() {
            let label = if is_csr { "CSR (acc)" } else { "average" };
            println!(
                "{label:<14} {:>5} {:>7.2} {:>16.2}",
                "",
                100.0 * avg_acc,
                100.0 * avg_norm
            );
        }
        for g in &groups {
            println!(
                "{:<14} {:>5} {:>7.2} macro over {} subjects, {:.2} ± {:.2} micro",
                g.group,
                g.docs,
                100.0 * g.macro_acc,
                g.subjects,
                100.0 * g.micro_acc,
                100.0 * g.micro_stderr
            );
        }
        println!(
            "time   {total_s:.1} s ({:.0} tokens/s, {:.2} docs/s, load {load_s:.1} s)",
            total_tok as f64 / total_s,
            total_docs as f64 / total_s
        );
    }
    Ok(())
}

/// An MMLU group's score over the subjects run: the mean of the subjects' `acc` (macro) and
/// the accuracy over all their questions (micro).
#[derive(serde::Serialize)]
struct Group {
    group: &'static str,
    subjects: usize,
    docs: usize,
    macro_acc: f64,
    micro_acc: f64,
    micro_stderr: f64,
}

fn mmlu_groups(rows: &[Row]) -> Vec<Group> {
    mmlu::GROUPS
        .iter()
        .filter_map(|&(group, shots)| {
            let subj: Vec<&TaskResult> = rows
                .iter()
                .map(|r| &r.result)
                .filter(|t| mmlu::parse_name(&t.task).is_some_and(|(s, _)| s == shots))
                .collect();
            if subj.is_empty() {
                return None;
            }
            let hits: Vec<bool> = subj
                .iter()
                .flat_map(|t| t.per_doc.iter().map(|d| d.pred == d.label))
                .collect();
            let (micro_acc, micro_stderr) = mean_stderr(&hits);
            Some(Group {
                group,
                subjects: subj.len(),
                docs: hits.len(),
                macro_acc: subj.iter().map(|t| t.acc).sum::<f64>() / subj.len() as f64,
                micro_acc,
                micro_stderr,
            })
        })
        .collect()
}

/// One JSON object per document (task, doc_id, label, lls, chars, pred, pred_norm), written to
/// a temporary file and renamed.
fn write_per_doc(path: &std::path::Path, rows: &[Row]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    for r in rows {
        for d in &r.result.per_doc {
            let mut v = serde_json::to_value(d)?;
            v["task"] = r.result.task.clone().into();
            writeln!(f, "{v}").with_context(|| format!("writing {}", tmp.display()))?;
        }
    }
    f.into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}
