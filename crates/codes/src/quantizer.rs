//! The one interface every code implements (issue 3): a block code of `dim()` weights stored in
//! exactly `bits()` bits, with a reference per-block encoder/decoder and parallel batch helpers.
//!
//! A code is a `u64` per block (every code here fits: Λ24(M) indices plus gain bits stay ≤ 64,
//! E8P12 uses 16). What is stored is exactly `bits()` bits per block, so the rate of a method is
//! `bits() / dim()` bits per weight with nothing left out: codebooks and fitted scales are part
//! of the SPEC (see [`crate::spec`]), not of the per-block payload.
//!
//! The quantizer works in its design units (each code is designed for i.i.d. N(0,1) weights).
//! The pipeline uses the `_scaled` forms: block i is encoded as x_i / s_i and decoded as
//! s_i · x̂_i, so per-block (or per-group) scales stay outside the code, as in App. D.1.

use rayon::prelude::*;

use crate::error::CodeError;
use crate::spec::CodeId;

/// The grid a code's decoded values lie on (the "grid view" used by the runtime's packed
/// layout, issue 9 item 3): every decoded block is `mult · lut[level_i] + offset` with one
/// `(mult, offset)` per block and one `lut` per code, so a block is stored as small integer
/// levels and two floats. `lut.len() ≤ 16` means 4-bit levels, `≤ 256` 8-bit levels.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelGrid {
    /// Level → value (before the block's mult/offset). `lut[n] == n` is the identity fast path.
    pub lut: Vec<f32>,
}

impl LevelGrid {
    /// The identity grid with `2^bits` levels (`bits` is 4 or 8).
    pub fn identity(bits: u32) -> LevelGrid {
        LevelGrid {
            lut: (0..1u32 << bits).map(|n| n as f32).collect(),
        }
    }

    /// Bits per level: 4 when the LUT has at most 16 entries, else 8.
    pub fn level_bits(&self) -> u32 {
        if self.lut.len() <= 16 {
            4
        } else {
            8
        }
    }

    /// Whether `lut[n] == n` for every entry (the kernels then skip the table).
    pub fn is_identity(&self) -> bool {
        self.lut.iter().enumerate().all(|(n, &v)| v == n as f32)
    }
}

/// Blocks per rayon task in the batch helpers.
const CHUNK: usize = 1024;

/// A fixed-rate block quantizer. Object safe: choose one at run time with
/// [`crate::from_spec`] and hold it as `Box<dyn Quantizer>`.
pub trait Quantizer: Send + Sync {
    /// The registry entry (name and stable numeric id).
    fn method(&self) -> CodeId;
    /// Canonical SPEC including every fitted parameter: `from_spec(q.spec())` rebuilds the
    /// same code without refitting, so it is what an output file records.
    fn spec(&self) -> String;
    /// Weights per block.
    fn dim(&self) -> usize;
    /// Exact bits stored per block.
    fn bits(&self) -> u32;
    /// Reference encoder of one block (`x.len() == dim()`), in design units.
    fn encode_block(&self, x: &[f32]) -> Result<u64, CodeError>;
    /// Reference decoder of one block into `out` (`out.len() == dim()`), in design units.
    fn decode_block(&self, code: u64, out: &mut [f32]) -> Result<(), CodeError>;

    /// The grid of [`Quantizer::decode_block_grid`], or `None` when decoded values do not lie on
    /// a small grid (the runtime then falls back to dense weights).
    fn grid(&self) -> Option<LevelGrid> {
        None
    }

    /// Decodes one block as grid levels (`levels.len() == dim()`, each `< grid().lut.len()`):
    /// returns `(mult, offset)` with `decode_block(code)[i] == mult · lut[levels[i]] + offset`
    /// up to f32 rounding.
    fn decode_block_grid(&self, code: u64, levels: &mut [u8]) -> Result<(f32, f32), CodeError> {
        let _ = (code, levels);
        Err(CodeError::NoGrid {
            method: self.method().name(),
        })
    }

    /// Bits per weight.
    fn rate(&self) -> f64 {
        self.bits() as f64 / self.dim() as f64
    }

    /// Encodes then decodes one block: the code and its reconstruction (what block-LDLQ needs).
    fn quantize_block(&self, x: &[f32], out: &mut [f32]) -> Result<u64, CodeError> {
        let c = self.encode_block(x)?;
        self.decode_block(c, out)?;
        Ok(c)
    }

    /// Encodes consecutive blocks of `xs` in parallel.
    fn encode(&self, xs: &[f32]) -> Result<Vec<u64>, CodeError> {
        let d = self.dim();
        check_len(xs.len(), d)?;
        let mut codes = vec![0u64; xs.len() / d];
        codes
            .par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK * d))
            .try_for_each(|(c, x)| {
                for (ci, xi) in c.iter_mut().zip(x.chunks_exact(d)) {
                    *ci = self.encode_block(xi)?;
                }
                Ok::<(), CodeError>(())
            })?;
        Ok(codes)
    }

    /// Decodes `codes` into `out` (`dim()` values per code) in parallel.
    fn decode(&self, codes: &[u64], out: &mut [f32]) -> Result<(), CodeError> {
        let d = self.dim();
        check_len_eq(out.len(), codes.len() * d)?;
        out.par_chunks_mut(CHUNK * d)
            .zip(codes.par_chunks(CHUNK))
            .try_for_each(|(o, c)| {
                for (oi, &ci) in o.chunks_exact_mut(d).zip(c) {
                    self.decode_block(ci, oi)?;
                }
                Ok(())
            })
    }

    /// Encodes block i of `xs` as `xs_i / scales[i]` (one positive scale per block).
    fn encode_scaled(&self, xs: &[f32], scales: &[f32]) -> Result<Vec<u64>, CodeError> {
        let d = self.dim();
        check_len(xs.len(), d)?;
        check_scales(scales, xs.len() / d)?;
        let mut codes = vec![0u64; xs.len() / d];
        codes
            .par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK * d))
            .zip(scales.par_chunks(CHUNK))
            .try_for_each(|((c, x), s)| {
                let mut buf = vec![0f32; d];
                for ((ci, xi), &si) in c.iter_mut().zip(x.chunks_exact(d)).zip(s) {
                    for (b, &v) in buf.iter_mut().zip(xi) {
                        *b = v / si;
                    }
                    *ci = self.encode_block(&buf)?;
                }
                Ok::<(), CodeError>(())
            })?;
        Ok(codes)
    }

    /// Decodes `codes`, multiplying block i by `scales[i]`.
    fn decode_scaled(&self, codes: &[u64], scales: &[f32], out: &mut [f32]) -> Result<(), CodeError> {
        check_scales(scales, codes.len())?;
        self.decode(codes, out)?;
        let d = self.dim();
        out.par_chunks_mut(d)
            .zip(scales.par_iter())
            .for_each(|(o, &s)| o.iter_mut().for_each(|v| *v *= s));
        Ok(())
    }
}

#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than the MSRV (1.85).
fn check_len(len: usize, dim: usize) -> Result<(), CodeError> {
    if len % dim != 0 {
        return Err(CodeError::BadLength { got: len, dim });
    }
    Ok(())
}

fn check_scales(scales: &[f32], blocks: usize) -> Result<(), CodeError> {
    if scales.len() != blocks {
        return Err(CodeError::ScaleCount {
            got: scales.len(),
            blocks,
        });
    }
    match scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        Some(i) => Err(CodeError::BadScale {
            block: i,
            scale: scales[i],
        }),
        None => Ok(()),
    }
}

/// Checks one input block: length and finiteness (the encoders' shared precondition).
pub(crate) fn check_block(x: &[f32], dim: usize) -> Result<(), CodeError> {
    check_len_eq(x.len(), dim)?;
    match x.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(CodeError::NonFinite {
            position: i,
            value: x[i],
        }),
        None => Ok(()),
    }
}

/// Checks that a code fits in `bits` bits.
pub(crate) fn check_code(code: u64, bits: u32, method: &'static str) -> Result<(), CodeError> {
    if bits < 64 && code >> bits != 0 {
        return Err(CodeError::CodeOutOfRange { code, bits, method });
    }
    Ok(())
}

/// `BadLength` unless a block buffer of `len` values holds exactly `dim`.
pub(crate) fn check_len_eq(len: usize, dim: usize) -> Result<(), CodeError> {
    if len != dim {
        return Err(CodeError::BadLength { got: len, dim });
    }
    Ok(())
}

/// [`check_len_eq`] for a `decode_block_grid` call: the error names the grid.
pub(crate) fn check_grid_len(method: &'static str, len: usize, dim: usize) -> Result<(), CodeError> {
    check_len_eq(len, dim).map_err(|_| CodeError::GridLength { method, dim, got: len })
}

/// A checked input block times `scale`: the codebook units the scaled codes search in.
pub(crate) fn scaled_block<const D: usize>(x: &[f32], scale: f32) -> Result<[f32; D], CodeError> {
    check_block(x, D)?;
    Ok(std::array::from_fn(|i| x[i] * scale))
}
