//! Building a runnable model from a compressed file.
//!
//! Compressed (default): each quantized linear is decoded once, at load, into an execution
//! layout (see [`exec_for`]) and wrapped in a [`Compressed`] linear whose rotations are applied
//! to activations; the file's f16 embedding table stays f16 (with tied embeddings the LM head
//! and the embedding lookups share one copy), or the head is re-quantized to 8 bits per weight
//! with one scale per row ([`HeadFormat::Q8`]). Dense (`dense: true`): every linear is decoded to
//! f32, W = R_outᵀ Ŵ' R_in, exactly as before the compressed runtime existed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use half::f16;
use llvq_codes::Quantizer;
use safetensors::tensor::Dtype;

use super::file::{self, CodeCache, Plain, QuantLinear, TOKENIZER_TENSOR};
use super::header::Header;
use crate::config::Config;
use crate::error::{ModelError, Result, TensorContext};
use crate::hadamard::Rotation;
use crate::linear::{Compressed, Exec, F32Rows, Linear, Weight};
use crate::model::Model;
use crate::qmatmul::int8::ActBits;
use crate::qmatmul::rotate::OnlineRotation;
use crate::qmatmul::{F16Matrix, I8Weight, MatVec, PackError, PackedWeight};
use crate::tokenizer::Tokenizer;
use crate::weights::{expected_tensors, Weights};

/// Storage of the LM head when a file is run compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeadFormat {
    /// As stored in the file (f16 by default).
    #[default]
    Stored,
    /// 8 bits per weight, one f32 scale per row (symmetric).
    Q8,
}

impl HeadFormat {
    /// The name the CLI's `--head` takes (and `llvq eval speed --json` reports).
    pub fn name(self) -> &'static str {
        match self {
            HeadFormat::Stored => "f16",
            HeadFormat::Q8 => "q8",
        }
    }
}

impl std::str::FromStr for HeadFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<HeadFormat, String> {
        match s {
            "f16" | "stored" => Ok(HeadFormat::Stored),
            "q8" => Ok(HeadFormat::Q8),
            _ => Err(format!("head format {s:?} must be f16 or q8")),
        }
    }
}

/// Activations of the compressed linears' products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// f32 activations everywhere: the products equal the dense path's to f32 rounding.
    #[default]
    F32,
    /// Generation (matrix-vector products) rounds activations to int8 per chunk and multiplies
    /// integers ([`crate::qmatmul::I8Weight`]); prefill keeps f32 activations.
    I8,
    /// int8 activations in prefill too (one matrix-vector product per token: slow; for
    /// measuring what int8 activations cost in perplexity).
    I8All,
    /// As `I8` with activations rounded to 16 bits (two int8 products per level vector).
    I16,
    /// 16-bit activations in prefill too (for measuring).
    I16All,
}

impl Activations {
    /// The integer precision, if any.
    pub fn bits(self) -> Option<ActBits> {
        match self {
            Activations::F32 => None,
            Activations::I8 | Activations::I8All => Some(ActBits::I8),
            Activations::I16 | Activations::I16All => Some(ActBits::I16),
        }
    }

    /// Whether prefill uses the integer products too.
    pub fn all(self) -> bool {
        matches!(self, Activations::I8All | Activations::I16All)
    }
}

impl Activations {
    const ALL: [Activations; 5] = [
        Activations::F32,
        Activations::I8,
        Activations::I16,
        Activations::I8All,
        Activations::I16All,
    ];

    /// The name the CLI's `--act` takes (and `llvq eval speed --json` reports).
    pub fn name(self) -> &'static str {
        match self {
            Activations::F32 => "f32",
            Activations::I8 => "i8",
            Activations::I8All => "i8-all",
            Activations::I16 => "i16",
            Activations::I16All => "i16-all",
        }
    }
}

impl std::str::FromStr for Activations {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Activations, String> {
        Activations::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("activations {s:?} must be f32, i8, i16, i8-all or i16-all"))
    }
}

/// How to hold a compressed file in memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Decode every linear to a dense f32 matrix (the reference path).
    pub dense: bool,
    pub head: HeadFormat,
    pub act: Activations,
}

/// Loads any model: an llvq file (by its header, or by a `.llvq` name so a broken file gets an
/// llvq error), a `.gguf` file or a Hugging Face directory.
pub fn load_any(path: &Path, opts: &LoadOptions) -> Result<(Model, Tokenizer)> {
    let llvq_name = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("llvq")) && !is_gguf_file(path);
    if path.is_file() && (llvq_name || file::is_llvq_file(path)) {
        let (m, t, _) = load(path, opts)?;
        Ok((m, t))
    } else {
        crate::load(path)
    }
}

/// Whether the file starts with the GGUF magic.
fn is_gguf_file(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

/// Loads a compressed file. Every tensor is checked against the config (counts bounded by the
/// tensors present before anything is allocated, unused tensors are an error), and a bad code or
/// scale is reported with the file's name.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<(Model, Tokenizer, Header)> {
    load_contents(path, file::read(path)?, opts)
}

/// [`load`] on the contents of `path` already read (e.g. with its input scales replaced).
///
/// Input scales of a tuned file (§5.4) are applied by both paths: dense folds them into the
/// weight's columns (W·diag(s)), compressed scales the input before the input rotation.
pub fn load_contents(path: &Path, mut c: file::FileContents, opts: &LoadOptions) -> Result<(Model, Tokenizer, Header)> {
    let bad = |r: String| ModelError::llvq_format(path, r);
    let in_scales = c.input_scales(path)?;
    c.plain.retain(|p| !p.name.ends_with(file::INPUT_SCALE));
    let cfg_value = c
        .header
        .config
        .as_ref()
        .ok_or_else(|| bad("no model config (a part file of an unfinished run?)".into()))?;
    let cfg = Config::from_hf_value(cfg_value, path)?;
    crate::weights::check_layer_count(&cfg, c.linears.len() + c.plain.len(), path)?;
    cfg.validate()?;
    {
        let used: std::collections::BTreeSet<String> = expected_tensors(&cfg).into_iter().map(|(n, _)| n).collect();
        let present = c
            .linears
            .iter()
            .map(|l| l.name.as_str())
            .chain(c.plain.iter().map(|p| p.name.as_str()));
        crate::weights::check_unused(path, present.filter(|n| *n != TOKENIZER_TENSOR), &used)?;
    }
    // Shapes are checked against the config before anything is decoded (or allocated).
    let expected: BTreeMap<String, Vec<usize>> = expected_tensors(&cfg).into_iter().collect();
    for ql in &c.linears {
        let (rows, cols) = (ql.meta.rows, ql.meta.cols);
        match expected.get(&ql.name) {
            Some(shape) if shape == &[rows, cols] => {}
            Some(shape) => {
                return Err(bad(format!(
                    "linear `{}` is {rows}×{cols}, the config says {shape:?}",
                    ql.name
                )))
            }
            None => return Err(bad(format!("linear `{}` is not a tensor of this model", ql.name))),
        }
    }
    let mut tok = None;
    let mut w = Weights::default();
    let mut big: BTreeMap<String, Plain> = BTreeMap::new();
    for pl in c.plain {
        if pl.name == TOKENIZER_TENSOR {
            let s = String::from_utf8(pl.data).map_err(|e| bad(format!("tokenizer: {e}")))?;
            tok = Some(Tokenizer::from_json_str(s)?);
        } else if !opts.dense && (pl.name == "model.embed_tokens.weight" || pl.name == "lm_head.weight") {
            big.insert(pl.name.clone(), pl);
        } else {
            let v = pl.to_f32()?;
            w.insert(
                pl.name.clone(),
                Tensor::from_vec(v, pl.shape.as_slice(), &Device::Cpu).ctx(&pl.name)?,
            );
        }
    }
    let tok = tok.ok_or_else(|| bad(format!("no `{TOKENIZER_TENSOR}` tensor")))?;
    let mut codes = CodeCache::default();
    let mut given = BTreeMap::new();
    let mut rotations: BTreeMap<(usize, u64), Arc<OnlineRotation>> = BTreeMap::new();
    let mut rotation = |n: usize, seed: Option<u64>| {
        seed.map(|s| {
            rotations
                .entry((n, s))
                .or_insert_with(|| Arc::new(OnlineRotation::new(Arc::new(Rotation::new(n, s)))))
                .clone()
        })
    };
    // A bad code or scale is a fault of this file: say which file.
    let in_file = |e: ModelError| ModelError::llvq_format(path, e.to_string());
    for ql in &c.linears {
        if opts.dense {
            let mut dw = ql.restore(&mut codes).map_err(in_file)?;
            if let Some(s) = in_scales.get(&ql.name) {
                crate::linear::scale_columns(&mut dw, s);
            }
            let v: Vec<f32> = dw.into_iter().map(|x| x as f32).collect();
            w.insert(
                ql.name.clone(),
                Tensor::from_vec(v, (ql.meta.rows, ql.meta.cols), &Device::Cpu).ctx(&ql.name)?,
            );
        } else {
            let exec = if ql.is_glvq() {
                glvq_exec(ql).map_err(in_file)?
            } else {
                exec_for(ql, codes.get(&ql.meta.code).map_err(in_file)?, opts.act).map_err(in_file)?
            };
            let compressed = Compressed {
                rows: ql.meta.rows,
                cols: ql.meta.cols,
                exec,
                rot_in: rotation(ql.meta.cols, ql.meta.rot_in),
                rot_out: rotation(ql.meta.rows, ql.meta.rot_out),
            };
            given.insert(ql.name.clone(), Weight::Compressed(compressed));
        }
    }
    drop(c.linears);
    let head = if opts.dense {
        None
    } else {
        Some(head_linear(&cfg, &mut big, &mut w, opts.head)?)
    };
    let mut model = Model::assemble(cfg, w, given, head)?;
    if !opts.dense && !in_scales.is_empty() {
        // Equal scale vectors (tied ones) share one `Arc`, so their input is scaled and rotated once.
        let mut shared: BTreeMap<Vec<u32>, Arc<[f32]>> = BTreeMap::new();
        for l in 0..model.layers().len() {
            for name in crate::model::LinearName::ALL {
                if let Some(s) = in_scales.get(&name.weight_name(l)) {
                    let s = shared
                        .entry(s.iter().map(|x| x.to_bits()).collect())
                        .or_insert_with(|| s.as_slice().into())
                        .clone();
                    let lin = model.layers()[l].linear(name).clone().with_input_scale(s);
                    model.layers_mut()[l].set_linear(name, lin)?;
                }
            }
        }
    }
    Ok((model, tok, c.header))
}

/// The execution layout of one quantized linear: Ŵ' (rotated domain, scales applied) decoded
/// once into the packed layout of [`crate::qmatmul`] (re-laid for integer activations when `act`
/// asks for them, the levels are 4-bit identity ones and the re-laid rows need at most 25% more
/// memory); a code with no grid view is kept as f32.
pub fn exec_for(ql: &QuantLinear, code: &dyn Quantizer, act: Activations) -> Result<Arc<dyn Exec>> {
    let m = &ql.meta;
    let codes = ql.unpack_codes(code)?;
    match PackedWeight::from_codes(code, m.rows, m.cols, m.padded_cols(), &codes, &ql.block_scales()) {
        Ok(p) if act == Activations::F32 => Ok(Arc::new(p)),
        Ok(p) => match I8Weight::from_packed(&p) {
            // The interleaved layout pads rows to groups of 8 chunks: where that costs more
            // than a quarter of the memory (rows of fewer than ~32 chunks, e.g. tiny test
            // models), keep the packed layout and f32 activations.
            Ok(w) if w.resident_bytes() * 4 > p.resident_bytes() * 5 => Ok(Arc::new(p)),
            Ok(mut w) => {
                w.set_int8_prefill(act.all());
                w.set_act_bits(act.bits().unwrap_or_default());
                Ok(Arc::new(w))
            }
            Err(_) => Ok(Arc::new(p)),
        },
        Err(PackError::NoGrid { .. }) => {
            let pc = m.padded_cols();
            let w: Vec<f32> = ql
                .decode_rotated(code)?
                .chunks_exact(pc)
                .flat_map(|r| r[..m.cols].to_vec())
                .collect();
            Ok(Arc::new(F32Rows::new(m.rows, m.cols, w)))
        }
        Err(e) => Err(ModelError::bad_tensor(&ql.name, e.to_string())),
    }
}

/// A GLVQ linear's execution layout: Ŵ' (rotated domain) decoded once at load into f32 rows.
/// Its levels have a different lattice (and µ-law) per group, so there is no shared grid for the
/// packed 8-bit layout; the rotations stay on the activations as for every compressed linear.
pub fn glvq_exec(ql: &QuantLinear) -> Result<Arc<dyn Exec>> {
    let w: Vec<f32> = super::glvq::decode_rotated(ql)?.into_iter().map(|v| v as f32).collect();
    Ok(Arc::new(F32Rows::new(ql.meta.rows, ql.meta.cols, w)))
}

/// The LM head of a compressed run, and where embeddings come from: with tied embeddings and
/// the stored head, one table serves both (the embedding tensor is not kept separately).
fn head_linear(cfg: &Config, big: &mut BTreeMap<String, Plain>, w: &mut Weights, fmt: HeadFormat) -> Result<Linear> {
    let embed = big
        .remove("model.embed_tokens.weight")
        .ok_or_else(|| ModelError::MissingTensor {
            name: "model.embed_tokens.weight".into(),
        })?;
    let head = if cfg.tie_embeddings {
        None
    } else {
        Some(big.remove("lm_head.weight").ok_or_else(|| ModelError::MissingTensor {
            name: "lm_head.weight".into(),
        })?)
    };
    let shared = head.is_none() && fmt == HeadFormat::Stored;
    if !shared {
        w.insert(embed.name.clone(), stored_tensor(&embed)?);
    }
    let src = head.as_ref().unwrap_or(&embed);
    let (rows, cols) = check_2d(src)?;
    let packed = |e: PackError| ModelError::bad_tensor(&src.name, e.to_string());
    let exec: Arc<dyn Exec> = match fmt {
        HeadFormat::Stored => match src.dtype {
            Dtype::F16 => {
                let v: Vec<f16> = src
                    .data
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]))
                    .collect();
                Arc::new(F16Matrix::from_f16(rows, cols, v).map_err(packed)?)
            }
            _ => Arc::new(F32Rows::new(rows, cols, src.to_f32()?)),
        },
        // One scale per row.
        HeadFormat::Q8 => {
            Arc::new(PackedWeight::q8_rows(rows, cols, &src.to_f32()?, cols.div_ceil(8) * 8).map_err(packed)?)
        }
    };
    Ok(Linear::new(
        Weight::Compressed(Compressed {
            rows,
            cols,
            exec,
            rot_in: None,
            rot_out: None,
        }),
        None,
    ))
}

/// A plain tensor as a candle tensor in its stored dtype (f16 stays f16).
fn stored_tensor(p: &Plain) -> Result<Tensor> {
    match p.dtype {
        Dtype::F16 => {
            let v: Vec<f16> = p
                .data
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]))
                .collect();
            Tensor::from_vec(v, p.shape.as_slice(), &Device::Cpu).ctx(&p.name)
        }
        _ => Tensor::from_vec(p.to_f32()?, p.shape.as_slice(), &Device::Cpu).ctx(&p.name),
    }
}

fn check_2d(p: &Plain) -> Result<(usize, usize)> {
    match p.shape[..] {
        [r, c] if r * c * p.dtype.bitsize() == p.data.len() * 8 => Ok((r, c)),
        _ => Err(ModelError::bad_tensor(
            &p.name,
            format!("shape {:?} does not match {} bytes", p.shape, p.data.len()),
        )),
    }
}
