//! Offline Hessians (issue 14): the full-precision model's per-layer Hessian sums (App. D.2,
//! Eq. 25; what `--mode full` uses) kept on disk, so calibration can be sharded by data over
//! processes or machines and the layers quantized as independent jobs.
//!
//! A Hessian directory (`HDIR`) holds `layer-NNNN.safetensors`, one per decoder layer, with the
//! exact fixed-point sums ([`Hessian::exact`]) of its four inputs (tensors `Qkv`, `O`,
//! `GateUp`, `Down`: `U8 [n, n, 16]`, little-endian i128 in units of 2⁻⁶⁴), and a
//! `manifest.json` ([`HessianManifest`]): the model's content hash, the calibration text's
//! hash and parameters, the windows covered and the tokens summed. Sums of disjoint window
//! sets add exactly, so `merge` of any sharding gives the bits of a single run. A directory
//! is written under a temporary name and renamed into place when complete.

use std::path::{Path, PathBuf};

use llvq_model::LinearInput;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::calib::{CalibParams, Hessian, LayerHessians};
use crate::error::{QuantError, Result};
use crate::format::with_suffix;

/// `format` of a Hessian directory's manifest.
pub const HESSIANS_FORMAT: &str = "llvq-hessians";
pub const HESSIANS_VERSION: u32 = 1;

/// The four inputs, in the order they are stored and quantized.
pub const INPUTS: [LinearInput; 4] = [LinearInput::Qkv, LinearInput::O, LinearInput::GateUp, LinearInput::Down];

/// What a Hessian directory holds and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HessianManifest {
    pub format: String,
    pub version: u32,
    /// The model as it was given (for messages; identity is the hash).
    pub model: String,
    /// FNV-1a 64 of the model's files (`llvq_model::model_files`).
    pub model_fnv1a: String,
    pub calib_text_fnv1a: String,
    pub calib: CalibParams,
    pub num_layers: usize,
    /// Calibration windows summed, ascending (all of `0..calib.seqs` once merged).
    pub windows: Vec<usize>,
    /// Tokens summed per Hessian.
    pub tokens: usize,
}

impl HessianManifest {
    /// Whether every calibration window is summed (what quantizing needs).
    pub fn complete(&self) -> bool {
        self.windows.len() == self.calib.seqs && self.windows.iter().enumerate().all(|(i, &w)| i == w)
    }

    /// A short identity of the sums (FNV-1a of the manifest's JSON), recorded in every part
    /// quantized from them so `llvq merge` can refuse parts from other Hessians.
    pub fn id(&self) -> String {
        let text = serde_json::to_string(self).expect("plain struct");
        format!("{:016x}", llvq_model::eval::fnv1a(llvq_model::eval::FNV_OFFSET, text.as_bytes()))
    }

    /// Why two directories' sums cannot be added (another model, text or window size), if so.
    fn mismatch(&self, other: &HessianManifest) -> Option<String> {
        let fields = [
            ("model_fnv1a", self.model_fnv1a.clone(), other.model_fnv1a.clone()),
            ("calib_text_fnv1a", self.calib_text_fnv1a.clone(), other.calib_text_fnv1a.clone()),
            ("calib", format!("{:?}", self.calib), format!("{:?}", other.calib)),
            ("num_layers", self.num_layers.to_string(), other.num_layers.to_string()),
            ("version", self.version.to_string(), other.version.to_string()),
        ];
        fields.into_iter().find(|(_, a, b)| a != b).map(|(k, a, b)| format!("{k} is {b}, expected {a}"))
    }
}

pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("manifest.json")
}

pub fn layer_path(dir: &Path, l: usize) -> PathBuf {
    dir.join(format!("layer-{l:04}.safetensors"))
}

/// Reads and checks a directory's manifest.
pub fn read_manifest(dir: &Path) -> Result<HessianManifest> {
    let path = manifest_path(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| QuantError::io(&path, e))?;
    let m: HessianManifest = serde_json::from_str(&text).map_err(|e| QuantError::format(&path, e.to_string()))?;
    if m.format != HESSIANS_FORMAT || m.version != HESSIANS_VERSION {
        return Err(QuantError::format(&path, format!("format {} v{}, expected {HESSIANS_FORMAT} v{HESSIANS_VERSION}", m.format, m.version)));
    }
    Ok(m)
}

pub(crate) fn write_manifest(dir: &Path, m: &HessianManifest) -> Result<()> {
    let path = manifest_path(dir);
    let tmp = with_suffix(&path, ".tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(m).expect("plain struct")).map_err(|e| QuantError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| QuantError::io(&path, e))
}

/// Writes the exact sums of one layer (atomically).
pub fn write_layer(path: &Path, h: &LayerHessians) -> Result<()> {
    let mut bytes: Vec<(String, usize, Vec<u8>)> = Vec::new();
    for input in INPUTS {
        let name = format!("{input:?}");
        let hs = h.get(input).ok_or_else(|| QuantError::Calibration(format!("layer {}: input {name} was never observed", h.layer)))?;
        let fixed = hs.fixed().ok_or_else(|| QuantError::tensor(&name, "only exact Hessians are stored"))?;
        bytes.push((name, hs.n, fixed.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let tokens = h.get(INPUTS[0]).map_or(0, Hessian::tokens);
    let mut views = Vec::new();
    for (name, n, b) in &bytes {
        views.push((name.clone(), TensorView::new(Dtype::U8, vec![*n, *n, 16], b).map_err(|e| QuantError::tensor(name, e.to_string()))?));
    }
    let meta = std::collections::HashMap::from([
        ("layer".to_string(), h.layer.to_string()),
        ("tokens".to_string(), tokens.to_string()),
    ]);
    let tmp = with_suffix(path, ".tmp");
    safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| QuantError::format(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| QuantError::io(path, e))
}

/// Reads the exact sums of layer `l`, checking the file is that layer's with `tokens` tokens.
pub fn read_layer(path: &Path, l: usize, tokens: usize) -> Result<LayerHessians> {
    let bad = |r: String| QuantError::format(path, r);
    let bytes = std::fs::read(path).map_err(|e| QuantError::io(path, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| meta.get(k).and_then(|v| v.parse::<usize>().ok()).ok_or_else(|| bad(format!("no `{k}` in the metadata")));
    if get("layer")? != l {
        return Err(bad(format!("holds layer {}, expected {l}", get("layer")?)));
    }
    if get("tokens")? != tokens {
        return Err(bad(format!("sums {} tokens, the manifest says {tokens}", get("tokens")?)));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = LayerHessians::exact(l);
    for input in INPUTS {
        let name = format!("{input:?}");
        let t = st.tensor(&name).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        let n = t.shape().first().copied().unwrap_or(0);
        if t.dtype() != Dtype::U8 || t.shape() != [n, n, 16] {
            return Err(bad(format!("tensor `{name}` is {:?} {:?}, expected U8 [n, n, 16]", t.dtype(), t.shape())));
        }
        let sum = t.data().chunks_exact(16).map(|c| i128::from_le_bytes(c.try_into().expect("16 bytes"))).collect();
        out.hessians.push((input, Hessian::from_fixed(n, sum, tokens)?));
    }
    Ok(out)
}

/// Adds the sums of `dirs` (disjoint window sets of one model and text) into `out`, one layer at
/// a time; nothing is written unless every input agrees.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<HessianManifest> {
    let first = dirs.first().ok_or_else(|| QuantError::Calibration("no Hessian directories to merge".into()))?;
    let mans: Vec<HessianManifest> = dirs.iter().map(|d| read_manifest(d)).collect::<Result<_>>()?;
    let mut windows: Vec<usize> = Vec::new();
    for (d, m) in dirs.iter().zip(&mans) {
        if let Some(why) = mans[0].mismatch(m) {
            return Err(QuantError::Calibration(format!("{}: not from the same model and calibration as {}: {why}", d.display(), first.display())));
        }
        windows.extend(&m.windows);
    }
    windows.sort_unstable();
    if let Some(w) = windows.windows(2).find(|w| w[0] == w[1]) {
        let who: Vec<String> = dirs.iter().zip(&mans).filter(|(_, m)| m.windows.contains(&w[0])).map(|(d, _)| d.display().to_string()).collect();
        return Err(QuantError::Calibration(format!("window {} is summed twice (in {})", w[0], who.join(" and "))));
    }
    let tokens = mans.iter().map(|m| m.tokens).sum();
    let man = HessianManifest { windows, tokens, model: mans[0].model.clone(), ..mans[0].clone() };
    let tmp = begin_dir(out)?;
    for l in 0..man.num_layers {
        let mut acc = read_layer(&layer_path(first, l), l, mans[0].tokens)?;
        for (d, m) in dirs.iter().zip(&mans).skip(1) {
            let h = read_layer(&layer_path(d, l), l, m.tokens)?;
            for ((input, a), (_, b)) in acc.hessians.iter_mut().zip(&h.hessians) {
                a.merge(b, &format!("{} layer {l} input {input:?}", d.display()))?;
            }
        }
        write_layer(&layer_path(&tmp, l), &acc)?;
    }
    finish_dir(&tmp, out, &man)?;
    Ok(man)
}

/// Creates the temporary directory an output Hessian directory is written in (refusing an
/// existing output: sums are never overwritten in place).
pub(crate) fn begin_dir(out: &Path) -> Result<PathBuf> {
    if out.exists() {
        return Err(QuantError::Output { path: out.to_path_buf(), reason: "exists; remove it or choose another directory".into() });
    }
    let tmp = with_suffix(out, ".tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| QuantError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| QuantError::io(&tmp, e))?;
    Ok(tmp)
}

/// Writes the manifest and renames the finished directory into place.
pub(crate) fn finish_dir(tmp: &Path, out: &Path, man: &HessianManifest) -> Result<()> {
    write_manifest(tmp, man)?;
    std::fs::rename(tmp, out).map_err(|e| QuantError::io(out, e))
}
