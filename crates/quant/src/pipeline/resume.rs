//! Resumable runs: the parameter manifest, the part files of finished layers, and refusing an
//! output path that would overwrite an input.

use llvq_lattice::seed::{fnv1a, FNV_OFFSET};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::params::QuantizeParams;
use crate::error::{QuantError, Result};
use crate::format::{self};
use crate::method::Method;

/// FNV-1a 64 of the contents of `files`, in order, as hex (streamed: a model can be GBs).
pub(super) fn content_hash(files: &[PathBuf]) -> Result<String> {
    use std::io::Read;
    let mut h = FNV_OFFSET;
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = std::fs::File::open(path).map_err(|e| QuantError::io(path, e))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| QuantError::io(path, e))?;
            if n == 0 {
                break;
            }
            h = fnv1a(h, &buf[..n]);
        }
    }
    Ok(format!("{h:016x}"))
}

/// The absolute, symlink-free form of an existing path (for comparing runs and files).
pub(super) fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| QuantError::io(path, e))
}

/// Refuses an output that would destroy an input or fail only after all the work: an
/// existing directory, a missing parent directory, or the same file as the model (any of an
/// HF directory's files) or the calibration text, after resolving links.
pub(super) fn check_output(out: &Path, model: &Path, calib: &Path) -> Result<()> {
    let bad = |reason: String| {
        Err(QuantError::Output {
            path: out.to_path_buf(),
            reason,
        })
    };
    if out.is_dir() {
        return bad("is an existing directory; give a file name".into());
    }
    let parent = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return bad(format!("the directory {} does not exist", parent.display()));
    }
    if !out.exists() {
        return Ok(());
    }
    let target = canonical(out)?;
    let inputs = llvq_model::model_files(model).unwrap_or_else(|_| vec![model.to_path_buf()]);
    for (what, input) in inputs
        .iter()
        .map(|f| ("the input model", f))
        .chain([("the calibration text", &calib.to_path_buf())])
    {
        if std::fs::canonicalize(input).is_ok_and(|c| c == target) || same_inode(input, out) {
            return bad(format!("is {what} ({}); refusing to overwrite it", input.display()));
        }
    }
    Ok(())
}

/// Hard links to one file have different canonical paths but one inode.
#[cfg(unix)]
pub(super) fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
pub(super) fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

pub(super) fn write_json_atomic(path: &Path, v: &Value) -> Result<()> {
    let tmp = format::with_suffix(path, ".tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(v).expect("json")).map_err(|e| QuantError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| QuantError::io(path, e))
}

/// The part-file directory of an output file.
pub fn parts_dir(out: &Path) -> PathBuf {
    format::with_suffix(out, ".parts")
}

/// Creates the parts directory with its manifest, or checks the manifest of an interrupted run
/// (before any heavy work, so a mismatch fails fast).
pub(super) fn open_parts(parts: &Path, man: &Value, resume: bool) -> Result<()> {
    let man_path = parts.join("manifest.json");
    // A directory without finished layers holds no work to lose (a run that failed before
    // its first layer): it is started afresh rather than blocking the corrected rerun.
    if !parts.exists() || !has_layers(parts) {
        std::fs::create_dir_all(parts).map_err(|e| QuantError::io(parts, e))?;
        return write_json_atomic(&man_path, man);
    }
    if !resume {
        return Err(QuantError::Resume(format!(
            "{} exists (an interrupted run): pass --resume to continue it, or remove it",
            parts.display()
        )));
    }
    let text = std::fs::read_to_string(&man_path).map_err(|e| QuantError::io(&man_path, e))?;
    let old: Value = serde_json::from_str(&text).map_err(|e| QuantError::format(&man_path, e.to_string()))?;
    if &old != man {
        let keys: Vec<String> = man
            .as_object()
            .expect("the manifest is an object")
            .iter()
            .filter(|(k, v)| old.get(k.as_str()) != Some(v))
            .map(|(k, v)| format!("{k}: was {}, now {v}", old.get(k.as_str()).unwrap_or(&Value::Null)))
            .collect();
        return Err(QuantError::Resume(format!(
            "{} was made with other parameters ({})",
            man_path.display(),
            keys.join("; ")
        )));
    }
    Ok(())
}

/// Whether a parts directory holds at least one finished layer.
pub(super) fn has_layers(parts: &Path) -> bool {
    std::fs::read_dir(parts).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("layer-"))
    })
}

pub(super) fn part_path(parts: &Path, l: usize) -> PathBuf {
    parts.join(format!("layer-{l:04}.safetensors"))
}

/// The manifest of a run: everything the output depends on. Inputs are named by canonical
/// path *and* content hash, so a calibration text edited in place (same path, same size) or
/// a model replaced by another is refused on `--resume` instead of mixing old and new layers.
pub(super) fn manifest(model: &Path, calib_text: &[u8], p: &QuantizeParams, method: &Method) -> Result<Value> {
    let model_files = llvq_model::model_files(model)?;
    Ok(json!({
        "format_version": format::FORMAT_VERSION,
        "model": canonical(model)?.display().to_string(),
        "model_fnv1a": content_hash(&model_files)?,
        "method": method.name,
        "code": method.code_spec(),
        "ldlq": method.ldlq(),
        "group": method.group(),
        "rotate": p.rotate,
        "seed": p.seed,
        "calib_text": canonical(&p.calib_text)?.display().to_string(),
        "calib_text_fnv1a": format!("{:016x}", fnv1a(FNV_OFFSET, calib_text)),
        "calib": p.calib,
        "mode": p.mode,
        "damp": p.ldlq.damp,
        "embed_f16": p.embed_f16,
    }))
}
