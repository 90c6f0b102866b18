//! Reading a compressed file: the safetensors container, its typed [`Header`], the quantized
//! linears' code streams and scales, and the tensors stored as they are.
//!
//! Contents of a file (written by `llvq-quant`'s `format::write`):
//! - every quantized linear `W` (HF name `model.layers.L.….weight`, `[rows, cols]`) as two
//!   tensors: `NAME.llvq_codes` (U8, the packed code stream: one `bits`-bit code per block,
//!   blocks row-major over the zero-padded columns, [`llvq_lattice::pack`] layout) and
//!   `NAME.llvq_scales` (F16 `[rows, groups]`), plus its [`LinearMeta`] in the header;
//! - the untouched tensors under their HF names (token embeddings and an untied LM head in F16 or
//!   F32, norms and biases in F32);
//! - `llvq.tokenizer` (U8): the `tokenizer.json` bytes;
//! - in a tuned file only, `NAME.llvq_input_scale` (F16 or F32 `[cols]`) for every quantized
//!   linear: the input scales s of §5.4, W = R_outᵀ · Ŵ' · R_in · diag(s) (so y = W_q·(s ⊙ x)).
//!   When the header's `tuned.tied` is set, linears that read one input (q/k/v, gate/up) share
//!   one vector and only the first of each group (q, gate) stores it;
//! - one metadata key, `llvq`, holding the [`Header`].
//!
//! A weight is W = R_outᵀ · Ŵ' · R_in (§5.3): Ŵ' = s·decode(code) per block, cropped to the real
//! columns; the randomized Hadamard transforms are those of [`crate::hadamard`].

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;
use llvq_codes::{from_spec, Quantizer};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use serde_json::Value;

use super::glvq::{self, GlvqSide};
use super::header::{Bits, Header, LinearMeta, FORMAT, FORMAT_VERSION};
use crate::error::{ModelError, Result};
use crate::hadamard::Rotation;

/// Suffixes of a quantized linear's two tensors.
pub const CODES: &str = ".llvq_codes";
pub const SCALES: &str = ".llvq_scales";
/// Suffix of a quantized linear's tuned input scales (a plain F16 or F32 tensor, tuned files only).
pub const INPUT_SCALE: &str = ".llvq_input_scale";
/// Name of the U8 tensor holding `tokenizer.json`.
pub const TOKENIZER_TENSOR: &str = "llvq.tokenizer";

/// A quantized linear: metadata, packed codes and f16 scales.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantLinear {
    pub name: String,
    pub meta: LinearMeta,
    pub codes: Vec<u8>,
    /// f16 bit patterns, `rows × groups` row-major (GLVQ: one per group).
    pub scales: Vec<u16>,
    /// GLVQ's lattices, µ and bit widths ([`super::glvq`]); `None` for a block code.
    pub glvq: Option<GlvqSide>,
}

/// An untouched tensor as stored.
#[derive(Clone, Debug)]
pub struct Plain {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// The parts of a file: its header, the quantized linears and the plain tensors.
#[derive(Clone, Debug)]
pub struct FileContents {
    pub header: Header,
    pub linears: Vec<QuantLinear>,
    pub plain: Vec<Plain>,
}

/// All-in bits (codes, scales, seeds) of quantized linears: the one count every report quotes.
pub fn linear_bits(linears: &[QuantLinear]) -> Bits {
    let mut bits = Bits::default();
    for l in linears {
        bits.add(&l.meta.bits_stored());
    }
    bits
}

impl FileContents {
    /// Parameters of the whole model: the quantized weights plus every stored tensor but the
    /// tokenizer and the tuned input scales (embeddings, norms, an untied head).
    pub fn params(&self) -> u64 {
        let plain: u64 = self
            .plain
            .iter()
            .filter(|p| p.name != TOKENIZER_TENSOR && !p.name.ends_with(INPUT_SCALE))
            .map(|p| p.shape.iter().product::<usize>() as u64)
            .sum();
        linear_bits(&self.linears).weights + plain
    }

    /// The tuned input scales by linear name, each checked against its linear (F16 or F32,
    /// `[cols]`, finite); empty for an untuned file. A scale tensor without its linear is an
    /// error. In a tied file the first linear of each input group lends its vector to the others.
    pub fn input_scales(&self, path: &Path) -> Result<BTreeMap<String, Vec<f32>>> {
        let bad = |r: String| ModelError::llvq_format(path, r);
        let mut out = BTreeMap::new();
        for p in self.plain.iter().filter(|p| p.name.ends_with(INPUT_SCALE)) {
            let lin = &p.name[..p.name.len() - INPUT_SCALE.len()];
            let ql = self
                .linears
                .iter()
                .find(|l| l.name == lin)
                .ok_or_else(|| bad(format!("`{}` scales no quantized linear", p.name)))?;
            let width = match p.dtype {
                Dtype::F32 => 4,
                Dtype::F16 => 2,
                _ => 0,
            };
            if width == 0 || p.shape != [ql.meta.cols] || p.data.len() != width * ql.meta.cols {
                return Err(bad(format!(
                    "`{}` is {:?} {:?}, expected F16 or F32 [{}]",
                    p.name, p.dtype, p.shape, ql.meta.cols
                )));
            }
            let v = p.to_f32()?;
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!("`{}`: input scale {i} is {}", p.name, v[i])));
            }
            out.insert(lin.to_string(), v);
        }
        if self.header.tuned.as_ref().is_some_and(|t| t.tied) {
            let lent: Vec<(String, Vec<f32>)> = out
                .iter()
                .filter_map(|(name, v)| Some((input_group(name)?, v)))
                .flat_map(|(group, v)| group.into_iter().skip(1).map(move |n| (n, v.clone())))
                .collect();
            for (name, v) in lent {
                if self.linears.iter().any(|l| l.name == name) {
                    out.entry(name).or_insert(v);
                }
            }
        }
        Ok(out)
    }

    /// Stores `scales` (linear name → one scale per column) as the file's input scales,
    /// replacing any it had: in F16 when `f16` (half the bits; the scales stay near 1, where
    /// F16 keeps 11 significant bits), and when `tied` only the first linear of each input group
    /// (the others must hold the same vector; [`FileContents::input_scales`] lends it back).
    pub fn set_input_scales(&mut self, scales: &BTreeMap<String, Vec<f32>>, f16: bool, tied: bool) {
        self.plain.retain(|p| !p.name.ends_with(INPUT_SCALE));
        for (name, s) in scales {
            if tied {
                if let Some(group) = input_group(name) {
                    if group[0] != *name {
                        debug_assert_eq!(scales.get(&group[0]), Some(s), "{name}: tied scales differ");
                        continue;
                    }
                }
            }
            self.plain
                .push(Plain::from_f32(&format!("{name}{INPUT_SCALE}"), &[s.len()], s, f16));
        }
        self.plain.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// All-in bits of the quantized linears, input scales included.
    pub fn bits(&self) -> Bits {
        let mut b = linear_bits(&self.linears);
        for p in self.plain.iter().filter(|p| p.name.ends_with(INPUT_SCALE)) {
            b.add(&Bits::input_scales(p.shape.iter().product(), p.dtype.bitsize() as u64));
        }
        b
    }
}

/// The linears that read the same input as the decoder linear `name` (its HF weight name):
/// `name`'s group in [`LinearInput::linears`](crate::LinearInput::linears) order (q, k, v or
/// gate, up; a group of one for o and down). `None` for a name outside the decoder layers.
fn input_group(name: &str) -> Option<Vec<String>> {
    let l: usize = name.strip_prefix("model.layers.")?.split('.').next()?.parse().ok()?;
    let lin = crate::LinearName::ALL.into_iter().find(|n| n.weight_name(l) == name)?;
    Some(lin.input().linears().iter().map(|n| n.weight_name(l)).collect())
}

/// Codes rebuilt from their canonical SPEC, once per distinct SPEC.
#[derive(Default)]
pub struct CodeCache(BTreeMap<String, Box<dyn Quantizer>>);

impl CodeCache {
    pub fn get(&mut self, spec: &str) -> Result<&dyn Quantizer> {
        if !self.0.contains_key(spec) {
            let code = from_spec(spec).map_err(|err| ModelError::Code {
                name: spec.to_string(),
                err: Box::new(err),
            })?;
            self.0.insert(spec.to_string(), code);
        }
        Ok(self.0[spec].as_ref())
    }
}

impl Plain {
    /// f32 values as F32 or F16 bytes.
    pub fn from_f32(name: &str, shape: &[usize], v: &[f32], f16_storage: bool) -> Plain {
        let (dtype, data) = if f16_storage {
            (
                Dtype::F16,
                v.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect(),
            )
        } else {
            (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
        };
        Plain {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            data,
        }
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        match self.dtype {
            Dtype::F32 => Ok(self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()),
            Dtype::F16 => Ok(self
                .data
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()),
            d => Err(ModelError::bad_tensor(
                &self.name,
                format!("dtype {d:?} is not F32 or F16"),
            )),
        }
    }
}

impl QuantLinear {
    /// Checks that the stored sizes agree with the metadata and the code, and that every scale
    /// is a positive finite number.
    pub fn validate(&self, code: &dyn Quantizer) -> Result<()> {
        let m = &self.meta;
        let bad = |r: String| Err(ModelError::bad_tensor(&self.name, r));
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
            return bad(format!(
                "{} scales, expected {}",
                self.scales.len(),
                m.rows * m.groups()
            ));
        }
        if let Some(i) = self
            .scales
            .iter()
            .position(|&s| !(f16::from_bits(s).to_f32() > 0.0 && f16::from_bits(s).is_finite()))
        {
            return bad(format!("scale {i} is {}", f16::from_bits(self.scales[i])));
        }
        Ok(())
    }

    /// The code stream as one `u64` per block, row-major over the padded columns (validated).
    pub fn unpack_codes(&self, code: &dyn Quantizer) -> Result<Vec<u64>> {
        self.validate(code)?;
        llvq_lattice::pack::unpack(&self.codes, self.meta.bits, self.meta.blocks())
            .map_err(|e| ModelError::bad_tensor(&self.name, e.to_string()))
    }

    /// The scale of every block (its row's, or its group's), as f32.
    pub fn block_scales(&self) -> Vec<f32> {
        let m = &self.meta;
        let per_row = m.padded_cols() / m.block;
        let per_group = m.group / m.block;
        let groups = m.groups();
        (0..m.blocks())
            .map(|k| f16::from_bits(self.scales[(k / per_row) * groups + (k % per_row) / per_group]).to_f32())
            .collect()
    }

    /// Ŵ' in the rotated domain, `rows × padded_cols` (scales applied, before un-rotating).
    pub fn decode_rotated(&self, code: &dyn Quantizer) -> Result<Vec<f32>> {
        let codes = self.unpack_codes(code)?;
        let mut out = vec![0f32; self.meta.rows * self.meta.padded_cols()];
        code.decode_scaled(&codes, &self.block_scales(), &mut out)
            .map_err(|err| ModelError::Code {
                name: self.name.clone(),
                err: Box::new(err),
            })?;
        Ok(out)
    }

    /// Whether this linear is GLVQ (decoded by [`super::glvq`], not by a block code).
    pub fn is_glvq(&self) -> bool {
        self.meta.glvq.is_some()
    }

    /// The restored `rows × cols` weight, whatever the method: a GLVQ linear through
    /// [`super::glvq`], a block code through `codes`.
    pub fn restore(&self, codes: &mut CodeCache) -> Result<Vec<f64>> {
        if self.is_glvq() {
            let mut w = glvq::decode_rotated(self)?;
            unrotate(&mut w, &self.meta);
            Ok(w)
        } else {
            self.decode(codes.get(&self.meta.code)?)
        }
    }

    /// The restored `rows × cols` weight W = R_outᵀ Ŵ' R_in (f64, row-major).
    pub fn decode(&self, code: &dyn Quantizer) -> Result<Vec<f64>> {
        let m = &self.meta;
        let rot = self.decode_rotated(code)?;
        let pc = m.padded_cols();
        let mut w: Vec<f64> = rot
            .chunks_exact(pc)
            .flat_map(|r| r[..m.cols].iter().map(|&v| v as f64))
            .collect();
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

/// Whether `path` looks like an llvq file: a safetensors container whose header has the `llvq`
/// metadata key. Reads only the header.
pub fn is_llvq_file(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
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

/// Parses the `llvq` metadata object, checking the format version first.
pub fn parse_header(path: &Path, text: &str) -> Result<Header> {
    let bad = |r: String| ModelError::llvq_format(path, r);
    let raw: Value = serde_json::from_str(text).map_err(|e| bad(format!("metadata: {e}")))?;
    match raw.get("format_version").and_then(Value::as_u64) {
        Some(v) if v == FORMAT_VERSION as u64 => {}
        Some(v) if v > FORMAT_VERSION as u64 => {
            return Err(bad(format!(
                "format version {v} was written by a newer llvq; this build reads version {FORMAT_VERSION}"
            )))
        }
        v => return Err(bad(format!("format_version {v:?}, this build reads {FORMAT_VERSION}"))),
    }
    serde_json::from_value(raw).map_err(|e| bad(format!("metadata: {e}")))
}

/// Reads a whole file. Every inconsistency is an error naming the file and tensor.
pub fn read(path: &Path) -> Result<FileContents> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    read_bytes(path, &bytes)
}

/// [`read`] on the bytes of `path` already in memory.
pub fn read_bytes(path: &Path, bytes: &[u8]) -> Result<FileContents> {
    let bad = |r: String| ModelError::llvq_format(path, r);
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let (_, st_header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let text = st_header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(FORMAT))
        .ok_or_else(|| bad(format!("no `{FORMAT}` metadata: not written by llvq")))?;
    let header = parse_header(path, text)?;
    let mut linears = Vec::new();
    for (name, lm) in &header.linears {
        let get = |suffix: &str, dtype: Dtype| -> Result<Vec<u8>> {
            let t = st
                .tensor(&format!("{name}{suffix}"))
                .map_err(|e| bad(format!("tensor `{name}{suffix}`: {e}")))?;
            if t.dtype() != dtype {
                return Err(bad(format!(
                    "tensor `{name}{suffix}` is {:?}, expected {dtype:?}",
                    t.dtype()
                )));
            }
            Ok(t.data().to_vec())
        };
        let u16s = |b: Vec<u8>| -> Vec<u16> { b.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect() };
        let codes = get(CODES, Dtype::U8)?;
        let scales = u16s(get(SCALES, Dtype::F16)?);
        let side = match &lm.glvq {
            None => None,
            Some(g) => Some(GlvqSide {
                lattice: u16s(get(glvq::LATTICE, Dtype::F16)?),
                mu: if g.compand {
                    u16s(get(glvq::MU, Dtype::F16)?)
                } else {
                    vec![]
                },
                vector_bits: u16s(get(glvq::VECTOR_BITS, Dtype::U16)?),
            }),
        };
        linears.push(QuantLinear {
            name: name.clone(),
            meta: lm.clone(),
            codes,
            scales,
            glvq: side,
        });
    }
    let mut plain = Vec::new();
    for (name, t) in st.tensors() {
        if [CODES, SCALES, glvq::LATTICE, glvq::MU, glvq::VECTOR_BITS]
            .iter()
            .any(|x| name.ends_with(x))
        {
            continue;
        }
        plain.push(Plain {
            name,
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            data: t.data().to_vec(),
        });
    }
    plain.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(FileContents { header, linears, plain })
}
