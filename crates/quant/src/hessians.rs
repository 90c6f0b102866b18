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
        format!(
            "{:016x}",
            llvq_model::eval::fnv1a(llvq_model::eval::FNV_OFFSET, text.as_bytes())
        )
    }

    /// Why two directories' sums cannot be added (another model, text or window size), if so.
    fn mismatch(&self, other: &HessianManifest) -> Option<String> {
        let fields = [
            ("model_fnv1a", self.model_fnv1a.clone(), other.model_fnv1a.clone()),
            (
                "calib_text_fnv1a",
                self.calib_text_fnv1a.clone(),
                other.calib_text_fnv1a.clone(),
            ),
            ("calib", format!("{:?}", self.calib), format!("{:?}", other.calib)),
            ("num_layers", self.num_layers.to_string(), other.num_layers.to_string()),
            ("version", self.version.to_string(), other.version.to_string()),
        ];
        fields
            .into_iter()
            .find(|(_, a, b)| a != b)
            .map(|(k, a, b)| format!("{k} is {b}, expected {a}"))
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
        return Err(QuantError::format(
            &path,
            format!(
                "format {} v{}, expected {HESSIANS_FORMAT} v{HESSIANS_VERSION}",
                m.format, m.version
            ),
        ));
    }
    Ok(m)
}

pub(crate) fn write_manifest(dir: &Path, m: &HessianManifest) -> Result<()> {
    let path = manifest_path(dir);
    let tmp = with_suffix(&path, ".tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(m).expect("plain struct"))
        .map_err(|e| QuantError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| QuantError::io(&path, e))
}

/// Writes the exact sums of one layer (atomically), streamed: a safetensors file whose data
/// is converted to bytes as it is written, so writing costs no second copy of the sums.
pub fn write_layer(path: &Path, h: &LayerHessians) -> Result<()> {
    use std::io::Write;
    let mut entries: Vec<(String, &[i128], usize)> = Vec::new();
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for input in INPUTS {
        let name = format!("{input:?}");
        let hs = h
            .get(input)
            .ok_or_else(|| QuantError::Calibration(format!("layer {}: input {name} was never observed", h.layer)))?;
        let fixed = hs
            .fixed()
            .ok_or_else(|| QuantError::tensor(&name, "only exact Hessians are stored"))?;
        let len = fixed.len() * 16;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "U8", "shape": [hs.n, hs.n, 16], "data_offsets": [off, off + len]}),
        );
        entries.push((name, fixed, hs.n));
        off += len;
    }
    let tokens = h.get(INPUTS[0]).map_or(0, Hessian::tokens);
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"layer": h.layer.to_string(), "tokens": tokens.to_string()}),
    );
    let mut hb = serde_json::to_vec(&header).expect("plain JSON");
    // Data starts 8-byte aligned, as the safetensors writer does.
    hb.resize(hb.len().div_ceil(8) * 8, b' ');
    let tmp = with_suffix(path, ".tmp");
    let io = |e| QuantError::io(&tmp, e);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    f.write_all(&(hb.len() as u64).to_le_bytes()).map_err(io)?;
    f.write_all(&hb).map_err(io)?;
    for (_, fixed, _) in &entries {
        for v in fixed.iter() {
            f.write_all(&v.to_le_bytes()).map_err(io)?;
        }
    }
    f.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| QuantError::io(path, e))
}

/// Reads the exact sums of layer `l`, checking the file is that layer's with `tokens` tokens.
/// Streamed, one input at a time. With `rounded` the sums come back already rounded to f64
/// ([`Hessian::from_rounded`]: same means, half the memory) for quantizing; without, as the
/// exact integers, for merging.
pub fn read_layer(path: &Path, l: usize, tokens: usize, rounded: bool) -> Result<LayerHessians> {
    use std::io::{Read, Seek, SeekFrom};
    let bad = |r: String| QuantError::format(path, r);
    let io = |e| QuantError::io(path, e);
    let file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut f = std::io::BufReader::with_capacity(1 << 20, file);
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("shorter than a safetensors header".into()))?;
    let hlen = u64::from_le_bytes(len);
    if hlen > (1 << 20) || 8 + hlen > file_len {
        return Err(bad(format!("a header of {hlen} bytes")));
    }
    let mut hb = vec![0u8; hlen as usize];
    f.read_exact(&mut hb).map_err(|_| bad("truncated header".into()))?;
    let v: serde_json::Value = serde_json::from_slice(&hb).map_err(|e| bad(e.to_string()))?;
    let meta = |k: &str| {
        v.get("__metadata__")
            .and_then(|m| m.get(k))
            .and_then(|x| x.as_str())
            .and_then(|x| x.parse::<usize>().ok())
            .ok_or_else(|| bad(format!("no `{k}` in the metadata")))
    };
    if meta("layer")? != l {
        return Err(bad(format!("holds layer {}, expected {l}", meta("layer")?)));
    }
    if meta("tokens")? != tokens {
        return Err(bad(format!(
            "sums {} tokens, the manifest says {tokens}",
            meta("tokens")?
        )));
    }
    let mut out = LayerHessians::exact(l);
    let mut buf = vec![0u8; 1 << 20];
    for input in INPUTS {
        let name = format!("{input:?}");
        let e = v.get(&name).ok_or_else(|| bad(format!("no tensor `{name}`")))?;
        let nums = |k: &str| -> Vec<u64> {
            e.get(k)
                .and_then(|x| x.as_array())
                .map_or(vec![], |a| a.iter().filter_map(|x| x.as_u64()).collect())
        };
        let (shape, offs) = (nums("shape"), nums("data_offsets"));
        let n = shape.first().copied().unwrap_or(0);
        let ok = e.get("dtype").and_then(|x| x.as_str()) == Some("U8")
            && shape == [n, n, 16]
            && offs.len() == 2
            && offs[1] >= offs[0]
            && offs[1] - offs[0] == n * n * 16;
        if !ok || 8 + hlen + offs[1] > file_len {
            return Err(bad(format!(
                "tensor `{name}` is not U8 [n, n, 16] within the file ({e})"
            )));
        }
        let n = n as usize;
        f.seek(SeekFrom::Start(8 + hlen + offs[0])).map_err(io)?;
        let (mut exact, mut approx) = (Vec::new(), Vec::new());
        let mut left = n * n * 16;
        while left > 0 {
            let k = left.min(buf.len());
            f.read_exact(&mut buf[..k]).map_err(io)?;
            for c in buf[..k].chunks_exact(16) {
                let x = i128::from_le_bytes(c.try_into().expect("16 bytes"));
                if rounded {
                    approx.push(Hessian::round_fixed(x));
                } else {
                    exact.push(x);
                }
            }
            left -= k;
        }
        let h = if rounded {
            Hessian::from_rounded(n, approx, tokens)?
        } else {
            Hessian::from_fixed(n, exact, tokens)?
        };
        out.hessians.push((input, h));
    }
    Ok(out)
}

/// Adds the sums of `dirs` (disjoint window sets of one model and text) into `out`, one layer at
/// a time; nothing is written unless every input agrees.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<HessianManifest> {
    let first = dirs
        .first()
        .ok_or_else(|| QuantError::Calibration("no Hessian directories to merge".into()))?;
    let mans: Vec<HessianManifest> = dirs.iter().map(|d| read_manifest(d)).collect::<Result<_>>()?;
    let mut windows: Vec<usize> = Vec::new();
    for (d, m) in dirs.iter().zip(&mans) {
        if let Some(why) = mans[0].mismatch(m) {
            return Err(QuantError::Calibration(format!(
                "{}: not from the same model and calibration as {}: {why}",
                d.display(),
                first.display()
            )));
        }
        windows.extend(&m.windows);
    }
    windows.sort_unstable();
    if let Some(w) = windows.windows(2).find(|w| w[0] == w[1]) {
        let who: Vec<String> = dirs
            .iter()
            .zip(&mans)
            .filter(|(_, m)| m.windows.contains(&w[0]))
            .map(|(d, _)| d.display().to_string())
            .collect();
        return Err(QuantError::Calibration(format!(
            "window {} is summed twice (in {})",
            w[0],
            who.join(" and ")
        )));
    }
    let tokens = mans.iter().map(|m| m.tokens).sum();
    let man = HessianManifest {
        windows,
        tokens,
        model: mans[0].model.clone(),
        ..mans[0].clone()
    };
    let tmp = begin_dir(out)?;
    for l in 0..man.num_layers {
        let mut acc = read_layer(&layer_path(first, l), l, mans[0].tokens, false)?;
        for (d, m) in dirs.iter().zip(&mans).skip(1) {
            let h = read_layer(&layer_path(d, l), l, m.tokens, false)?;
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
        return Err(QuantError::Output {
            path: out.to_path_buf(),
            reason: "exists; remove it or choose another directory".into(),
        });
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
