//! [`I8Weight`]: 4-bit levels with int8 activations for generation (an option; see the README
//! for its effect on perplexity).
//!
//! A matrix-vector product on [`PackedWeight`] converts every 4-bit level to f32 before its
//! multiply-add: several instructions per 8 weights. As llama.cpp does for its 4-bit formats,
//! this layout instead rounds the activation to int8 once per product, one scale per chunk
//! (d_c = max|x_c|/127, q_j = round(x_j/d_c)), and multiplies levels and q as integers:
//!
//! `y_r = Σ_c mult_rc·d_c·Σ_{j∈c} n_j·q_j + offset_rc·S_c`, S_c = Σ_{j∈c} x_j (exact, in f32),
//!
//! so the offset term is exact and only the rounding of x (|x_j − d_c·q_j| ≤ d_c/2) enters.
//! Levels are stored chunk-interleaved (8 chunks of a row per group, lane k of each 32-byte
//! block holding chunk k: see [`super::kernels::int8`]), which gives 8 chunk sums per vector
//! next to 8 contiguous mults. Resident bits are those of [`PackedWeight`] (4 per level plus
//! f32 mult and offset per chunk), plus the padding of each row to whole groups.
//! Prefill (`t > 2` vectors) expands tiles to f32 and calls `gemm` with f32 activations, as
//! [`PackedWeight`] does, unless [`I8Weight::set_int8_prefill`] asks for integers there too.
//!
//! [`ActBits::I16`] rounds the activation to 16 bits instead (d_c = max|x_c|/32639, stored as
//! low and high bytes, see [`super::kernels::int8`]): twice the integer products of int8, but a
//! rounding error 257× smaller, below the f32 path's own error in practice.

use std::cell::RefCell;

use rayon::prelude::*;

use super::kernels::{self, DotI8, Isa, Layout, Run};
use super::packed::{get, PackedWeight};
use super::{check_io, rows_per_task, team, tile, MatVec, PackError};

/// A `rows × cols` matrix in the chunk-interleaved 4-bit layout (identity LUT).
#[derive(Clone, Debug)]
pub struct I8Weight {
    rows: usize,
    cols: usize,
    chunk: usize,
    /// Chunks per row: a multiple of 8 (padding chunks have mult = offset = 0).
    nch: usize,
    levels: Vec<u8>,
    mult: Vec<f32>,
    offset: Vec<f32>,
    int8_prefill: bool,
    bits: ActBits,
}

/// Precision of the rounded activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ActBits {
    /// int8, |q| ≤ 127 (as llama.cpp's q8 blocks).
    #[default]
    I8,
    /// 16 bits, |q| ≤ 32639 = 127·256 + 127 (the largest value whose high and low bytes are
    /// both signed bytes).
    I16,
}

impl ActBits {
    /// The largest |q|.
    pub fn qmax(self) -> f32 {
        match self {
            ActBits::I8 => 127.0,
            ActBits::I16 => 32639.0,
        }
    }
}

/// Scratch of one product: the quantized, interleaved activation (low bytes, and high bytes
/// for 16 bits) and its chunk scales and sums, with the input and layout they were made for:
/// q, k and v (gate and up) multiply the same input, so the second and third product find it
/// prepared (an exact comparison of the input, far cheaper than rounding it again).
#[derive(Default, Debug)]
pub struct I8Scratch {
    xq: Vec<i8>,
    xh: Vec<i8>,
    d: Vec<f32>,
    sums: Vec<f32>,
    /// (input, chunk, chunks, precision) of the prepared activation.
    made_for: Option<(Vec<f32>, usize, usize, ActBits)>,
}

thread_local! {
    static SCRATCH: RefCell<I8Scratch> = RefCell::default();
}

impl I8Weight {
    /// Re-lays a 4-bit identity-LUT [`PackedWeight`] (every LLVQ, E8P12 and uniform code);
    /// other layouts give [`PackError::NoChunk`] (keep them as [`PackedWeight`]).
    pub fn from_packed(p: &PackedWeight) -> Result<I8Weight, PackError> {
        if p.layout() != Layout::Nib4 || !matches!(p.chunk, 8 | 16 | 24 | 32) {
            return Err(PackError::NoChunk {
                method: "int8 activations (4-bit identity levels only)",
                dim: p.chunk,
            });
        }
        let c = p.chunk;
        let old = p.k / c;
        let nch = old.div_ceil(8) * 8;
        let rb = nch * c / 2;
        let (prb, cols) = (p.row_bytes(), p.cols);
        let mut w = I8Weight {
            rows: p.rows,
            cols,
            chunk: c,
            nch,
            levels: vec![0; p.rows * rb],
            mult: vec![0.0; p.rows * nch],
            offset: vec![0.0; p.rows * nch],
            int8_prefill: false,
            bits: ActBits::I8,
        };
        w.levels
            .par_chunks_mut(rb.max(1))
            .zip(w.mult.par_chunks_mut(nch.max(1)))
            .zip(w.offset.par_chunks_mut(nch.max(1)))
            .enumerate()
            .for_each(|(r, ((lrow, mrow), orow))| {
                let src = &p.levels[r * prb..(r + 1) * prb];
                for j in 0..cols {
                    let (pos, hi) = position(c, j);
                    lrow[pos] |= get(src, 4, j) << if hi { 4 } else { 0 };
                }
                mrow[..old].copy_from_slice(&p.mult[r * old..(r + 1) * old]);
                orow[..old].copy_from_slice(&p.offset[r * old..(r + 1) * old]);
            });
        Ok(w)
    }

    /// Also run prefill products (`t > 2` vectors) with int8 activations, one matrix-vector
    /// product per vector (slower than the f32 `gemm` path; for measuring the accuracy of int8
    /// activations on whole windows).
    pub fn set_int8_prefill(&mut self, on: bool) {
        self.int8_prefill = on;
    }

    /// Rounds activations to `bits` (int8 by default).
    pub fn set_act_bits(&mut self, bits: ActBits) {
        self.bits = bits;
    }

    pub fn act_bits(&self) -> ActBits {
        self.bits
    }

    pub fn chunk(&self) -> usize {
        self.chunk
    }

    fn row_bytes(&self) -> usize {
        self.nch * self.chunk / 2
    }

    /// Weight (r, j) by the definition.
    pub fn weight(&self, r: usize, j: usize) -> f32 {
        let (pos, hi) = position(self.chunk, j);
        let b = self.levels[r * self.row_bytes() + pos];
        let n = if hi { b >> 4 } else { b & 0xF };
        let ch = r * self.nch + j / self.chunk;
        self.mult[ch] * n as f32 + self.offset[ch]
    }

    /// The dense `rows × cols` matrix.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols.max(1)).enumerate().for_each(|(r, o)| {
            for (j, v) in o.iter_mut().enumerate() {
                *v = self.weight(r, j);
            }
        });
        out
    }

    /// Rows `r0..` expanded to f32, `nch·chunk` values per row (for the prefill tiles).
    fn expand_rows(&self, r0: usize, out: &mut [f32]) {
        let (k, rb, nch) = (self.nch * self.chunk, self.row_bytes(), self.nch);
        let isa = kernels::best();
        for (i, o) in out.chunks_exact_mut(k).enumerate() {
            let r = r0 + i;
            kernels::expand_row_interleaved(
                isa,
                &self.levels[r * rb..(r + 1) * rb],
                &self.mult[r * nch..(r + 1) * nch],
                &self.offset[r * nch..(r + 1) * nch],
                self.chunk,
                o,
            );
        }
    }

    /// Rounds `x` per chunk into `s` (interleaved; int8, or the low and high bytes of 16
    /// bits), with scales and exact f32 sums.
    fn prepare(&self, x: &[f32], s: &mut I8Scratch) {
        let c = self.chunk;
        let key = (c, self.nch, self.bits);
        if let Some((px, pc, pn, pb)) = &s.made_for {
            if (*pc, *pn, *pb) == key && px[..] == *x {
                return;
            }
        }
        let wide = self.bits == ActBits::I16;
        let qmax = self.bits.qmax();
        s.xq.clear();
        s.xq.resize(self.nch * c, 0);
        s.xh.clear();
        if wide {
            s.xh.resize(self.nch * c, 0);
        }
        s.d.clear();
        s.sums.clear();
        for ch in 0..self.nch {
            let seg = &x[(ch * c).min(self.cols)..((ch + 1) * c).min(self.cols)];
            let amax = seg.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / qmax;
            let inv = if amax > 0.0 { qmax / amax } else { 0.0 };
            s.d.push(d);
            s.sums.push(seg.iter().sum());
            // Weights 4i..4i + 4 of chunk ch (group g, lane k) sit at bytes base + 32i.. of the
            // activation stream (`position`).
            let (g, k) = (ch / 8, ch % 8);
            let base = g * 8 * c + k * 4;
            let round = |v: f32| (v * inv).round_ties_even().clamp(-qmax, qmax) as i32;
            for (i, v4) in seg.chunks(4).enumerate() {
                let at = base + 32 * i;
                if wide {
                    for (j, &v) in v4.iter().enumerate() {
                        // q = 256·h + l with l in −128..=127 (h = ⌊(q + 128)/256⌋).
                        let q = round(v);
                        let h = (q + 128) >> 8;
                        s.xh[at + j] = h as i8;
                        s.xq[at + j] = (q - 256 * h) as i8;
                    }
                } else {
                    for (j, &v) in v4.iter().enumerate() {
                        s.xq[at + j] = round(v) as i8;
                    }
                }
            }
        }
        match &mut s.made_for {
            Some((px, pc, pn, pb)) => {
                px.clear();
                px.extend_from_slice(x);
                (*pc, *pn, *pb) = key;
            }
            None => s.made_for = Some((x.to_vec(), key.0, key.1, key.2)),
        }
    }

    /// `y = W·x` with int8 activations on a chosen kernel family, caller-owned scratch.
    pub fn matvec_on(&self, x: &[f32], y: &mut [f32], s: &mut I8Scratch, isa: Isa) {
        check_io(self.rows, self.cols, x.len(), y.len(), 1);
        self.prepare(x, s);
        let (rb, nch) = (self.row_bytes(), self.nch);
        let dot = DotI8 {
            run: Run {
                levels: &self.levels,
                rb,
                mult: &self.mult,
                offset: &self.offset,
            },
            chunk: self.chunk,
            xq: &s.xq,
            xh: (self.bits == ActBits::I16).then_some(&s.xh[..]),
            d: &s.d,
            sums: &s.sums,
        };
        if self.levels.len() < super::INLINE_BYTES {
            kernels::rows_dot_i8(isa, &dot, y);
            return;
        }
        let per = rows_per_task(self.rows, rb);
        team::chunks_mut(y, per, |t, ys| {
            let run = dot.run.rows(t * per, ys.len(), nch);
            kernels::rows_dot_i8(isa, &DotI8 { run, ..dot }, ys);
        });
    }

    /// The exact product with f32 activations (f64 accumulation): the reference.
    pub fn matvec_ref(&self, x: &[f32], y: &mut [f32]) {
        check_io(self.rows, self.cols, x.len(), y.len(), 1);
        for (r, yr) in y.iter_mut().enumerate() {
            *yr = (0..self.cols)
                .map(|j| self.weight(r, j) as f64 * x[j] as f64)
                .sum::<f64>() as f32;
        }
    }

    /// A bound on |integer product − exact product| per row: Σ_j |mult·n_j|·d_c/2, plus f32
    /// rounding of the sums (1e-5 of Σ|w·x|).
    pub fn int8_error_bound(&self, x: &[f32]) -> Vec<f32> {
        let c = self.chunk;
        let qmax = self.bits.qmax() as f64;
        (0..self.rows)
            .map(|r| {
                let mut b = 0f64;
                for ch in 0..self.cols.div_ceil(c) {
                    let seg = &x[ch * c..((ch + 1) * c).min(self.cols)];
                    let d = seg.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / qmax;
                    let o = self.offset[r * self.nch + ch] as f64;
                    for (j, &xj) in seg.iter().enumerate() {
                        // |mult·n_j| = |w − offset|; x_j is rounded by at most d_c/2.
                        let w = self.weight(r, ch * c + j) as f64;
                        b += (w - o).abs() * d * 0.5 + 1e-5 * (w * xj as f64).abs();
                    }
                }
                (b * 1.001 + 1e-6) as f32
            })
            .collect()
    }
}

/// Byte of a row and nibble (high?) holding weight j, for chunks of `c` weights: in its 8-weight
/// unit, weights 0-3 are the low nibbles of 4 bytes and 4-7 their high nibbles.
#[inline]
fn position(c: usize, j: usize) -> (usize, bool) {
    let jj = j % c;
    (kernels::interleaved_unit(c, j / c, jj / 8) + jj % 4, jj % 8 >= 4)
}

impl MatVec for I8Weight {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn matvec(&self, x: &[f32], y: &mut [f32]) {
        SCRATCH.with(|s| self.matvec_on(x, y, &mut s.borrow_mut(), kernels::best()))
    }
    fn matmul(&self, x: &[f32], y: &mut [f32]) {
        if self.int8_prefill {
            let t = x.len() / self.cols.max(1);
            check_io(self.rows, self.cols, x.len(), y.len(), t);
            for (xt, yt) in x.chunks_exact(self.cols).zip(y.chunks_exact_mut(self.rows)) {
                self.matvec(xt, yt);
            }
            return;
        }
        tile::matmul(self, self.nch * self.chunk, x, y, |r0, buf| self.expand_rows(r0, buf));
    }
    fn resident_bytes(&self) -> usize {
        self.levels.len() + 4 * (self.mult.len() + self.offset.len())
    }
}
