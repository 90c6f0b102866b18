//! [`PackedWeight`]: levels + per-chunk (mult, offset) + one LUT (see the module doc above).

use std::cell::RefCell;

use llvq_codes::Quantizer;
use rayon::prelude::*;

use super::kernels::{self, Layout, Run};
use super::{check_io, rows_per_task, team, tile, MatVec, PackError};

/// A `rows × cols` matrix as `W[r, j] = mult[r, j/c] · lut[level[r, j]] + offset[r, j/c]`.
///
/// Levels: 8 weights per unit; 4-bit units are 4 bytes, byte i holding weight i in its low
/// nibble and weight i + 4 in its high nibble (one broadcast, one variable shift and one mask
/// give the 8 levels in order); 8-bit units are 8 bytes in order.
#[derive(Clone, Debug)]
pub struct PackedWeight {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Row length in weights: cols rounded up to the chunk (a multiple of 8).
    pub(crate) k: usize,
    /// Chunk length c (a multiple of 8).
    pub(crate) chunk: usize,
    /// 4 or 8.
    pub(crate) bits: u32,
    /// 16 or 256 entries (unused entries 0).
    pub(crate) lut: Vec<f32>,
    pub(crate) identity: bool,
    /// `rows × row_bytes`.
    pub(crate) levels: Vec<u8>,
    /// `rows × k/c`.
    pub(crate) mult: Vec<f32>,
    pub(crate) offset: Vec<f32>,
}

/// Scratch of one matrix-vector product: the zero-padded input and its chunk sums.
#[derive(Default, Debug)]
pub struct Scratch {
    x: Vec<f32>,
    sums: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Writes level `n` of weight `j` into a row of 4- or 8-bit units.
#[inline]
fn put(row: &mut [u8], bits: u32, j: usize, n: u8) {
    if bits == 8 {
        row[j] = n;
    } else {
        let (unit, w) = (j / 8, j % 8);
        let b = &mut row[unit * 4 + w % 4];
        *b |= (n & 0xF) << (if w < 4 { 0 } else { 4 });
    }
}

/// Reads level j of a row.
#[inline]
pub(crate) fn get(row: &[u8], bits: u32, j: usize) -> u8 {
    if bits == 8 {
        row[j]
    } else {
        let (unit, w) = (j / 8, j % 8);
        let b = row[unit * 4 + w % 4];
        if w < 4 {
            b & 0xF
        } else {
            b >> 4
        }
    }
}

impl PackedWeight {
    /// An all-zero matrix of the given layout (levels 0, mult and offset 0).
    fn empty(rows: usize, cols: usize, chunk: usize, lut: &[f32]) -> PackedWeight {
        let bits = if lut.len() <= 16 { 4 } else { 8 };
        let k = cols.div_ceil(chunk).max(1) * chunk;
        let mut table = vec![0f32; 1 << bits];
        table[..lut.len()].copy_from_slice(lut);
        let identity = table.iter().enumerate().all(|(n, &v)| v == n as f32);
        PackedWeight {
            rows,
            cols,
            k,
            chunk,
            bits,
            lut: table,
            identity,
            levels: vec![0; rows * k * bits as usize / 8],
            mult: vec![0.0; rows * (k / chunk)],
            offset: vec![0.0; rows * (k / chunk)],
        }
    }

    /// Decodes a code stream once into the packed layout.
    ///
    /// `codes` are the blocks row-major over `padded_cols` columns (as
    /// [`Quantizer::decode_scaled`] takes them) and `block_scales` one positive scale per block.
    /// The matrix keeps `cols ≤ padded_cols` columns: pass `cols = padded_cols` when the input is
    /// rotated over the padded width. Blocks are decoded in parallel through the code's grid view;
    /// a code without one gives [`PackError::NoGrid`] (the caller keeps that tensor dense).
    pub fn from_codes(
        code: &dyn Quantizer,
        rows: usize,
        cols: usize,
        padded_cols: usize,
        codes: &[u64],
        block_scales: &[f32],
    ) -> Result<PackedWeight, PackError> {
        let method = code.method().name();
        let d = code.dim();
        let grid = code.grid().ok_or(PackError::NoGrid { method })?;
        if padded_cols % d != 0 || padded_cols < cols {
            return Err(PackError::Shape {
                what: "padded columns",
                got: padded_cols,
                expected: cols.div_ceil(d) * d,
            });
        }
        let per_row = padded_cols / d;
        if codes.len() != rows * per_row {
            return Err(PackError::Shape {
                what: "blocks",
                got: codes.len(),
                expected: rows * per_row,
            });
        }
        if block_scales.len() != codes.len() {
            return Err(PackError::Shape {
                what: "block scales",
                got: block_scales.len(),
                expected: codes.len(),
            });
        }
        if let Some(i) = block_scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(PackError::BadValue {
                what: "block scale",
                index: i,
                value: block_scales[i],
                positive: true,
            });
        }
        // Decode every block once: levels (one byte per weight) and scaled (mult, offset).
        let mut lv = vec![0u8; rows * padded_cols];
        let mut mo = vec![(0f32, 0f32); codes.len()];
        lv.par_chunks_mut(d * 256)
            .zip(mo.par_chunks_mut(256))
            .enumerate()
            .try_for_each(|(t, (l, m))| {
                for (i, (lb, mb)) in l.chunks_exact_mut(d).zip(m.iter_mut()).enumerate() {
                    let b = t * 256 + i;
                    let (mu, of) = code
                        .decode_block_grid(codes[b], lb)
                        .map_err(|err| PackError::Code { block: b, err })?;
                    *mb = (mu * block_scales[b], of * block_scales[b]);
                }
                Ok::<(), PackError>(())
            })?;
        // Chunk: the block itself when it is a multiple of 8 weights; otherwise the largest
        // multiple of 8 (≤ 32) made of whole blocks that share one (mult, offset) everywhere.
        let chunk = if d % 8 == 0 {
            d
        } else {
            [32, 24, 16, 8]
                .into_iter()
                .filter(|c| c % d == 0)
                .find(|&c| {
                    let bpc = c / d;
                    mo.chunks(per_row)
                        .all(|row| row.chunks(bpc).all(|ch| ch.iter().all(|v| *v == ch[0])))
                })
                .ok_or(PackError::NoChunk { method, dim: d })?
        };
        let bpc = chunk / d;
        let mut w = PackedWeight::empty(rows, cols, chunk, &grid.lut);
        let (rb, nch, bits) = (w.row_bytes(), w.k / chunk, w.bits);
        w.levels
            .par_chunks_mut(rb)
            .zip(w.mult.par_chunks_mut(nch))
            .zip(w.offset.par_chunks_mut(nch))
            .enumerate()
            .for_each(|(r, ((lrow, mrow), orow))| {
                let src = &lv[r * padded_cols..(r + 1) * padded_cols];
                for (j, &n) in src.iter().enumerate().take(cols) {
                    put(lrow, bits, j, n);
                }
                for (c, (m, o)) in mrow.iter_mut().zip(orow.iter_mut()).enumerate() {
                    let b = c * bpc;
                    if b < per_row {
                        (*m, *o) = mo[r * per_row + b];
                    }
                }
            });
        Ok(w)
    }

    /// 8-bit symmetric quantization of a dense `rows × cols` matrix (the optional 8-bit LM head,
    /// issue 9 item 6): one scale s per `chunk` weights of a row (`chunk` a multiple of 8; pass
    /// `cols` rounded up to 8 for one scale per row), q = round(w/s) ∈ −127..=127 stored as the
    /// level q + 128, so mult = s and offset = −128·s.
    pub fn q8_rows(rows: usize, cols: usize, w: &[f32], chunk: usize) -> Result<PackedWeight, PackError> {
        if w.len() != rows * cols {
            return Err(PackError::Shape {
                what: "weights",
                got: w.len(),
                expected: rows * cols,
            });
        }
        if chunk == 0 || chunk % 8 != 0 {
            return Err(PackError::Shape {
                what: "q8 chunk (a multiple of 8)",
                got: chunk,
                expected: 32,
            });
        }
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(PackError::BadValue {
                what: "weight",
                index: i,
                value: w[i],
                positive: false,
            });
        }
        let ident: Vec<f32> = (0..256).map(|n| n as f32).collect();
        let mut p = PackedWeight::empty(rows, cols, chunk, &ident);
        let (rb, nch) = (p.row_bytes(), p.k / chunk);
        p.levels
            .par_chunks_mut(rb)
            .zip(p.mult.par_chunks_mut(nch))
            .zip(p.offset.par_chunks_mut(nch))
            .zip(w.par_chunks(cols))
            .for_each(|(((lrow, mrow), orow), wr)| {
                for c in 0..nch {
                    let seg = &wr[(c * chunk).min(cols)..((c + 1) * chunk).min(cols)];
                    let amax = seg.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
                    for (i, &v) in seg.iter().enumerate() {
                        lrow[c * chunk + i] = ((v / s).round().clamp(-127.0, 127.0) as i32 + 128) as u8;
                    }
                    // Padded weights: level 128 is 0.
                    for l in &mut lrow[c * chunk + seg.len()..(c + 1) * chunk] {
                        *l = 128;
                    }
                    mrow[c] = s;
                    orow[c] = -128.0 * s;
                }
            });
        Ok(p)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Weights per (mult, offset) pair.
    pub fn chunk(&self) -> usize {
        self.chunk
    }
    /// Bits per level: 4 or 8.
    pub fn level_bits(&self) -> u32 {
        self.bits
    }
    /// Whether the LUT is the identity (the kernels' fast path).
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    pub(crate) fn row_bytes(&self) -> usize {
        self.k * self.bits as usize / 8
    }

    pub(crate) fn layout(&self) -> Layout {
        match (self.bits, self.identity) {
            (4, true) => Layout::Nib4,
            (4, false) => Layout::Nib4Lut,
            (_, true) => Layout::Byte8,
            (_, false) => Layout::Byte8Lut,
        }
    }

    /// Weight (r, j) by the definition (reference path).
    pub fn weight(&self, r: usize, j: usize) -> f32 {
        let c = r * (self.k / self.chunk) + j / self.chunk;
        let n = get(
            &self.levels[r * self.row_bytes()..(r + 1) * self.row_bytes()],
            self.bits,
            j,
        );
        self.mult[c] * self.lut[n as usize] + self.offset[c]
    }

    /// The dense `rows × cols` matrix, row-major.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols.max(1)).enumerate().for_each(|(r, o)| {
            for (j, v) in o.iter_mut().enumerate() {
                *v = self.weight(r, j);
            }
        });
        out
    }

    /// Rows `r0..r0 + out.len()/k` expanded to f32, `k` values per row (padding included).
    pub(crate) fn expand_rows(&self, r0: usize, out: &mut [f32]) {
        let (k, c, rb, nch) = (self.k, self.chunk, self.row_bytes(), self.k / self.chunk);
        let isa = kernels::best();
        for (i, o) in out.chunks_exact_mut(k).enumerate() {
            let r = r0 + i;
            let row = &self.levels[r * rb..(r + 1) * rb];
            let pr = kernels::PackedRow {
                layout: self.layout(),
                row,
                lut: &self.lut,
                mult: &self.mult[r * nch..(r + 1) * nch],
                offset: &self.offset[r * nch..(r + 1) * nch],
                chunk: c,
            };
            kernels::expand_row(isa, &pr, o);
        }
    }

    /// Plain scalar `y = W·x` (f64 accumulation): the oracle of every SIMD path.
    pub fn matvec_ref(&self, x: &[f32], y: &mut [f32]) {
        check_io(self.rows, self.cols, x.len(), y.len(), 1);
        for (r, yr) in y.iter_mut().enumerate() {
            *yr = (0..self.cols)
                .map(|j| self.weight(r, j) as f64 * x[j] as f64)
                .sum::<f64>() as f32;
        }
    }

    /// Plain scalar `Y = X·Wᵀ`.
    pub fn matmul_ref(&self, x: &[f32], y: &mut [f32]) {
        let t = x.len() / self.cols.max(1);
        check_io(self.rows, self.cols, x.len(), y.len(), t);
        for (xt, yt) in x.chunks_exact(self.cols).zip(y.chunks_exact_mut(self.rows)) {
            self.matvec_ref(xt, yt);
        }
    }

    /// `y = W·x` with caller-owned scratch (no allocation once the scratch has grown).
    pub fn matvec_with(&self, x: &[f32], y: &mut [f32], scratch: &mut Scratch) {
        self.matvec_on(x, y, scratch, kernels::best())
    }

    /// `y = W·x` on a chosen kernel family (tests run every family the CPU has).
    pub fn matvec_on(&self, x: &[f32], y: &mut [f32], scratch: &mut Scratch, isa: kernels::Isa) {
        check_io(self.rows, self.cols, x.len(), y.len(), 1);
        let (k, c, nch, rb) = (self.k, self.chunk, self.k / self.chunk, self.row_bytes());
        scratch.x.clear();
        scratch.x.extend_from_slice(x);
        scratch.x.resize(k, 0.0);
        scratch.sums.clear();
        scratch
            .sums
            .extend(scratch.x.chunks_exact(c).map(|ch| ch.iter().sum::<f32>()));
        let dot = kernels::Dot {
            layout: self.layout(),
            run: Run {
                levels: &self.levels,
                rb,
                mult: &self.mult,
                offset: &self.offset,
            },
            lut: &self.lut,
            chunk: c,
            x: &scratch.x,
            sums: &scratch.sums,
        };
        if self.levels.len() < super::INLINE_BYTES {
            kernels::rows_dot(isa, &dot, y);
            return;
        }
        let per = rows_per_task(self.rows, rb);
        team::chunks_mut(y, per, |t, ys| {
            let run = dot.run.rows(t * per, ys.len(), nch);
            kernels::rows_dot(isa, &kernels::Dot { run, ..dot }, ys);
        });
    }
}

impl MatVec for PackedWeight {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    /// Thread-local scratch: no allocation after the first call on a thread.
    fn matvec(&self, x: &[f32], y: &mut [f32]) {
        SCRATCH.with(|s| self.matvec_with(x, y, &mut s.borrow_mut()))
    }
    fn matmul(&self, x: &[f32], y: &mut [f32]) {
        tile::matmul(self, self.k, x, y, |r0, buf| self.expand_rows(r0, buf));
    }
    fn resident_bytes(&self) -> usize {
        self.levels.len() + 4 * (self.mult.len() + self.offset.len() + self.lut.len())
    }
}
