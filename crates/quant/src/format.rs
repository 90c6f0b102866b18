//! The compressed model file: one safetensors container a user can move.
//!
//! Contents:
//! - every quantized linear `W` (HF name `model.layers.L.….weight`, `[rows, cols]`) as two
//!   tensors: `NAME.llvq_codes` (U8, the packed code stream: one `bits`-bit code per block,
//!   blocks row-major over the zero-padded columns, [`llvq_lattice::pack`] layout) and
//!   `NAME.llvq_scales` (F16 `[rows, groups]`), plus its entry in the metadata (code SPEC with
//!   every fitted value, method id, rotation seeds);
//! - the untouched tensors under their HF names (token embeddings and an untied LM head in F16 or
//!   F32, norms and biases in F32);
//! - `llvq.tokenizer` (U8): the `tokenizer.json` bytes;
//! - one metadata key, `llvq`, holding a JSON object: format name and version, codec version,
//!   the HF `config.json`, the run's parameters, the per-linear entries and statistics.
//!
//! A weight is restored as W = R_outᵀ · Ŵ' · R_in (§5.3): Ŵ' = s·decode(code) per block, cropped
//! to the real columns, then the randomized Hadamard transforms undone ([`crate::hadamard`]).
//! The file is deterministic for given inputs (no timings, one metadata key), and is written to a
//! temporary name and renamed into place.

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;
use llvq_codes::{from_spec, Quantizer};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{QuantError, Result};
use crate::hadamard::Rotation;

/// The container's format name and version, written into every file.
pub const FORMAT: &str = "llvq";
pub const FORMAT_VERSION: u32 = 1;
/// Version of the codec (index layout, code registry) that wrote the codes.
pub const CODEC_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Bits stored per rotation seed.
pub const SEED_BITS: u64 = 64;
/// Bits per stored scale (f16).
pub const SCALE_BITS: u64 = 16;

/// Which sides of a weight get a randomized Hadamard transform (Table 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotate {
    None,
    Input,
    Output,
    Both,
}

impl Rotate {
    pub fn input(self) -> bool {
        matches!(self, Rotate::Input | Rotate::Both)
    }
    pub fn output(self) -> bool {
        matches!(self, Rotate::Output | Rotate::Both)
    }
    pub fn name(self) -> &'static str {
        match self {
            Rotate::None => "none",
            Rotate::Input => "input",
            Rotate::Output => "output",
            Rotate::Both => "both",
        }
    }
}

impl std::str::FromStr for Rotate {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Rotate, String> {
        match s {
            "none" => Ok(Rotate::None),
            "input" => Ok(Rotate::Input),
            "output" => Ok(Rotate::Output),
            "both" => Ok(Rotate::Both),
            _ => Err(format!("rotation {s:?} must be none, input, output or both")),
        }
    }
}

/// What is stored for one linear besides its code stream (the metadata entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearMeta {
    pub rows: usize,
    pub cols: usize,
    /// Canonical code SPEC including fitted values: `from_spec` rebuilds the code exactly.
    pub code: String,
    /// Stable method id of the code (registry of `llvq-codes`).
    pub method_id: u16,
    /// Weights per block and bits per block.
    pub block: usize,
    pub bits: u32,
    /// Columns per scale group (a multiple of `block`; the padded width for one scale per row).
    pub group: usize,
    /// Seeds of the input-side and output-side randomized Hadamard transforms.
    pub rot_in: Option<u64>,
    pub rot_out: Option<u64>,
}

impl LinearMeta {
    /// Columns rounded up to whole blocks (the tail block is zero-padded, App. D.3).
    pub fn padded_cols(&self) -> usize {
        self.cols.div_ceil(self.block) * self.block
    }
    pub fn groups(&self) -> usize {
        self.padded_cols().div_ceil(self.group)
    }
    pub fn blocks(&self) -> usize {
        self.rows * self.padded_cols() / self.block
    }
    pub fn code_bytes(&self) -> usize {
        llvq_lattice::pack::packed_len(self.blocks(), self.bits)
    }
    /// Everything stored for this linear, in bits.
    pub fn bits_stored(&self) -> Bits {
        Bits {
            weights: (self.rows * self.cols) as u64,
            code: self.blocks() as u64 * self.bits as u64,
            scale: (self.rows * self.groups()) as u64 * SCALE_BITS,
            seed: (self.rot_in.is_some() as u64 + self.rot_out.is_some() as u64) * SEED_BITS,
        }
    }
}

/// A quantized linear: metadata, packed codes and f16 scales.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantLinear {
    pub name: String,
    pub meta: LinearMeta,
    pub codes: Vec<u8>,
    /// f16 bit patterns, `rows × groups` row-major.
    pub scales: Vec<u16>,
}

/// Bits stored, by kind (all-in accounting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bits {
    /// Weights these bits represent.
    pub weights: u64,
    /// Code stream (includes the zero-padded tail blocks).
    pub code: u64,
    /// Scales.
    pub scale: u64,
    /// Rotation seeds.
    pub seed: u64,
}

impl Bits {
    pub fn total(&self) -> u64 {
        self.code + self.scale + self.seed
    }
    /// All-in bits per weight.
    pub fn bpw(&self) -> f64 {
        self.total() as f64 / self.weights.max(1) as f64
    }
    pub fn add(&mut self, o: &Bits) {
        self.weights += o.weights;
        self.code += o.code;
        self.scale += o.scale;
        self.seed += o.seed;
    }
}

/// Codes rebuilt from their canonical SPEC, once per distinct SPEC.
#[derive(Default)]
pub struct CodeCache(BTreeMap<String, Box<dyn Quantizer>>);

impl CodeCache {
    pub fn get(&mut self, spec: &str) -> Result<&dyn Quantizer> {
        if !self.0.contains_key(spec) {
            self.0.insert(spec.to_string(), from_spec(spec)?);
        }
        Ok(self.0[spec].as_ref())
    }
}

impl QuantLinear {
    /// Checks that the stored sizes agree with the metadata and the code.
    pub fn validate(&self, code: &dyn Quantizer) -> Result<()> {
        let m = &self.meta;
        let bad = |r: String| Err(QuantError::tensor(&self.name, r));
        if code.dim() != m.block || code.bits() != m.bits || code.method().id() != m.method_id {
            return bad(format!(
                "code {} has block {} and {} bits (id {}); the file says {} and {} (id {})",
                m.code,
                code.dim(),
                code.bits(),
                code.method().id(),
                m.block,
                m.bits,
                m.method_id
            ));
        }
        if m.rows == 0 || m.cols == 0 || m.group == 0 || m.group % m.block != 0 {
            return bad(format!("bad shape {}×{} or group {}", m.rows, m.cols, m.group));
        }
        if self.codes.len() != m.code_bytes() {
            return bad(format!("{} code bytes, expected {}", self.codes.len(), m.code_bytes()));
        }
        if self.scales.len() != m.rows * m.groups() {
            return bad(format!("{} scales, expected {}", self.scales.len(), m.rows * m.groups()));
        }
        if let Some(i) = self.scales.iter().position(|&s| !(f16::from_bits(s).to_f32() > 0.0 && f16::from_bits(s).is_finite())) {
            return bad(format!("scale {i} is {}", f16::from_bits(self.scales[i])));
        }
        Ok(())
    }

    /// Ŵ' in the rotated domain, `rows × padded_cols` (scales applied, before un-rotating).
    pub fn decode_rotated(&self, code: &dyn Quantizer) -> Result<Vec<f32>> {
        self.validate(code)?;
        let m = &self.meta;
        let codes = llvq_lattice::pack::unpack(&self.codes, m.bits, m.blocks())?;
        let per_row = m.padded_cols() / m.block;
        let per_group = m.group / m.block;
        let groups = m.groups();
        let block_scales: Vec<f32> = (0..m.blocks())
            .map(|k| f16::from_bits(self.scales[(k / per_row) * groups + (k % per_row) / per_group]).to_f32())
            .collect();
        let mut out = vec![0f32; m.rows * m.padded_cols()];
        code.decode_scaled(&codes, &block_scales, &mut out)
            .map_err(|err| QuantError::Code { name: self.name.clone(), err: Box::new(err) })?;
        Ok(out)
    }

    /// The restored `rows × cols` weight W = R_outᵀ Ŵ' R_in (f64, row-major).
    pub fn decode(&self, code: &dyn Quantizer) -> Result<Vec<f64>> {
        let m = &self.meta;
        let rot = self.decode_rotated(code)?;
        let pc = m.padded_cols();
        let mut w: Vec<f64> = rot.chunks_exact(pc).flat_map(|r| r[..m.cols].iter().map(|&v| v as f64)).collect();
        unrotate(&mut w, m);
        Ok(w)
    }
}

/// W' = R_out W R_inᵀ for the seeds in `m` (`rows × cols`, row-major, in place).
pub fn rotate(w: &mut [f64], m: &LinearMeta) {
    if let Some(s) = m.rot_in {
        Rotation::new(m.cols, s).rotate_rows(w, m.rows);
    }
    if let Some(s) = m.rot_out {
        Rotation::new(m.rows, s).rotate_cols(w, m.cols);
    }
}

/// Inverse of [`rotate`]: W = R_outᵀ W' R_in.
pub fn unrotate(w: &mut [f64], m: &LinearMeta) {
    if let Some(s) = m.rot_out {
        Rotation::new(m.rows, s).rotate_cols_t(w, m.cols);
    }
    if let Some(s) = m.rot_in {
        Rotation::new(m.cols, s).rotate_rows_t(w, m.rows);
    }
}

/// An untouched tensor as stored.
#[derive(Clone, Debug)]
pub struct Plain {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Plain {
    /// f32 values as F32 or F16 bytes.
    pub fn from_f32(name: &str, shape: &[usize], v: &[f32], f16_storage: bool) -> Plain {
        let (dtype, data) = if f16_storage {
            (Dtype::F16, v.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect())
        } else {
            (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
        };
        Plain { name: name.to_string(), dtype, shape: shape.to_vec(), data }
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        match self.dtype {
            Dtype::F32 => Ok(self.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
            Dtype::F16 => Ok(self.data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
            d => Err(QuantError::tensor(&self.name, format!("dtype {d:?} is not F32 or F16"))),
        }
    }
}

/// The parts of a file: its metadata object, the quantized linears and the plain tensors.
#[derive(Clone, Debug)]
pub struct FileContents {
    pub meta: Value,
    pub linears: Vec<QuantLinear>,
    pub plain: Vec<Plain>,
}

const CODES: &str = ".llvq_codes";
const SCALES: &str = ".llvq_scales";
/// Name of the U8 tensor holding `tokenizer.json`.
pub const TOKENIZER_TENSOR: &str = "llvq.tokenizer";

/// Writes `c` to `path` atomically (temporary file, then rename). `c.meta` gets the format
/// fields and a `linears` object keyed by tensor name.
pub fn write(path: &Path, c: &FileContents) -> Result<()> {
    let mut meta = c.meta.clone();
    if !meta.is_object() {
        meta = Value::Object(Default::default());
    }
    meta["format"] = FORMAT.into();
    meta["format_version"] = FORMAT_VERSION.into();
    meta["codec_version"] = CODEC_VERSION.into();
    let linears: serde_json::Map<String, Value> = c
        .linears
        .iter()
        .map(|l| (l.name.clone(), serde_json::to_value(&l.meta).expect("plain struct")))
        .collect();
    meta["linears"] = Value::Object(linears);
    let scale_bytes: Vec<Vec<u8>> =
        c.linears.iter().map(|l| l.scales.iter().flat_map(|s| s.to_le_bytes()).collect()).collect();
    let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
    for (l, sb) in c.linears.iter().zip(&scale_bytes) {
        views.push((format!("{}{CODES}", l.name), tv(&l.name, Dtype::U8, vec![l.codes.len()], &l.codes)?));
        views.push((format!("{}{SCALES}", l.name), tv(&l.name, Dtype::F16, vec![l.meta.rows, l.meta.groups()], sb)?));
    }
    for p in &c.plain {
        views.push((p.name.clone(), tv(&p.name, p.dtype, p.shape.clone(), &p.data)?));
    }
    let info = std::collections::HashMap::from([(FORMAT.to_string(), meta.to_string())]);
    let tmp = with_suffix(path, ".tmp");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| QuantError::io(dir, e))?;
    }
    safetensors::serialize_to_file(views, Some(info), &tmp).map_err(|e| QuantError::format(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| QuantError::io(path, e))
}

/// `path` with `suffix` appended to its file name (`model.llvq` → `model.llvq.tmp`): temporary
/// and part-file names that keep the user's whole name, whatever its extension.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

fn tv<'a>(name: &str, d: Dtype, s: Vec<usize>, b: &'a [u8]) -> Result<TensorView<'a>> {
    TensorView::new(d, s, b).map_err(|e| QuantError::tensor(name, e.to_string()))
}

/// Whether `path` is an llvq file (a safetensors container with the `llvq` metadata key).
pub fn is_llvq_file(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(len);
    if n == 0 || n > 100 << 20 {
        return false;
    }
    let mut head = vec![0u8; n as usize];
    if f.read_exact(&mut head).is_err() {
        return false;
    }
    serde_json::from_slice::<Value>(&head)
        .ok()
        .and_then(|v| v.get("__metadata__")?.get(FORMAT).cloned())
        .is_some()
}

/// Reads a file written by [`write`]. Every inconsistency is an error naming the file and tensor.
pub fn read(path: &Path) -> Result<FileContents> {
    let bytes = std::fs::read(path).map_err(|e| QuantError::io(path, e))?;
    let bad = |r: String| QuantError::format(path, r);
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let text = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(FORMAT))
        .ok_or_else(|| bad(format!("no `{FORMAT}` metadata: not written by llvq")))?;
    let meta: Value = serde_json::from_str(text).map_err(|e| bad(format!("metadata: {e}")))?;
    if meta.get("format_version").and_then(Value::as_u64) != Some(FORMAT_VERSION as u64) {
        return Err(bad(format!("format_version {:?}, this build reads {FORMAT_VERSION}", meta.get("format_version"))));
    }
    let entries = meta.get("linears").and_then(Value::as_object).ok_or_else(|| bad("metadata has no `linears`".into()))?;
    let mut linears = Vec::new();
    for (name, m) in entries {
        let lm: LinearMeta = serde_json::from_value(m.clone()).map_err(|e| bad(format!("linear `{name}`: {e}")))?;
        let get = |suffix: &str, dtype: Dtype| -> Result<Vec<u8>> {
            let t = st.tensor(&format!("{name}{suffix}")).map_err(|e| bad(format!("tensor `{name}{suffix}`: {e}")))?;
            if t.dtype() != dtype {
                return Err(bad(format!("tensor `{name}{suffix}` is {:?}, expected {dtype:?}", t.dtype())));
            }
            Ok(t.data().to_vec())
        };
        let codes = get(CODES, Dtype::U8)?;
        let scales = get(SCALES, Dtype::F16)?.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
        linears.push(QuantLinear { name: name.clone(), meta: lm, codes, scales });
    }
    let mut plain = Vec::new();
    for (name, t) in st.tensors() {
        if name.ends_with(CODES) || name.ends_with(SCALES) {
            continue;
        }
        plain.push(Plain { name, dtype: t.dtype(), shape: t.shape().to_vec(), data: t.data().to_vec() });
    }
    plain.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(FileContents { meta, linears, plain })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileContents {
        let meta = LinearMeta {
            rows: 3,
            cols: 20,
            code: "e8p12:scale=1.0374103".into(),
            method_id: 4,
            block: 8,
            bits: 16,
            group: 24,
            rot_in: Some(7),
            rot_out: None,
        };
        let l = QuantLinear {
            name: "model.layers.0.mlp.down_proj.weight".into(),
            codes: (0..meta.code_bytes()).map(|i| (i * 37 % 251) as u8).collect(),
            scales: vec![f16::from_f32(0.5).to_bits(); 3],
            meta,
        };
        let p = Plain::from_f32("model.norm.weight", &[4], &[1.0, 2.0, 3.0, 4.5], false);
        FileContents { meta: serde_json::json!({"method": "e8p12"}), linears: vec![l], plain: vec![p] }
    }

    #[test]
    fn write_read_round_trip_and_determinism() {
        let dir = std::env::temp_dir().join(format!("llvq-format-{}", std::process::id()));
        let (a, b) = (dir.join("a.llvq"), dir.join("b.llvq"));
        let c = sample();
        write(&a, &c).unwrap();
        write(&b, &c).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert!(is_llvq_file(&a));
        let r = read(&a).unwrap();
        assert_eq!(r.linears, c.linears);
        assert_eq!(r.plain[0].to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.5]);
        assert_eq!(r.meta["method"], "e8p12");
        // Bits: 3 rows × 3 blocks × 16 bits, 3 scales, one seed.
        assert_eq!(c.linears[0].meta.bits_stored(), Bits { weights: 60, code: 144, scale: 48, seed: 64 });
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("llvq-format-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.llvq");
        write(&p, &sample()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("x.llvq"), "{e}");
        std::fs::write(&p, b"not a file").unwrap();
        assert!(read(&p).is_err());
        assert!(!is_llvq_file(&p));
        // A code stream of the wrong length is caught before decoding.
        let mut c = sample();
        c.linears[0].codes.pop();
        let code = from_spec(&c.linears[0].meta.code).unwrap();
        let e = c.linears[0].decode(code.as_ref()).unwrap_err().to_string();
        assert!(e.contains("down_proj") && e.contains("code bytes"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
