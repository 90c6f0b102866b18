//! Matrix products on compressed weights (issue 9 items 3, 4 and 6): the execution layout that
//! a `.llvq` file is decoded into once at load, and its kernels.
//!
//! # Why decode once
//! Decoding a 24-weight Λ24 block (paper §3.3: class lookup, Golay word, ranks, signs) costs
//! hundreds of instructions, far more than the 24 multiply-adds the block contributes to a
//! matrix-vector product, so decoding the 2-bit stream anew for every token would make
//! generation slower than the f32 path (measured in the README). Every code's blocks lie on a
//! small grid instead ([`llvq_codes::Quantizer::decode_block_grid`]): Λ24(M ≤ 15) points are
//! x = 2n − 16 + p with 4-bit levels n and one parity p per block, E8P12 and the E8 ball are
//! half-integers with 4-bit levels, scalar codes are their own indices. So the runtime keeps
//!
//! - `levels`: 4-bit (two per byte) or 8-bit, `rows × K` (K = cols rounded up to the chunk);
//! - per chunk of `c` weights of one row (c = the code's block dimension, 24 or 8, or 32 for
//!   scalar codes): an f32 `mult` and `offset` (block scale, gain/|x|, parity and shift folded in);
//! - one LUT per tensor (the identity for every code but Lloyd-Max);
//!
//! and `W[r, j] = mult[r, j/c] · lut[level[r, j]] + offset[r, j/c]`. A matrix-vector product
//! then needs, per input vector, the chunk sums S_c = Σ_{j∈c} x_j once (shared by every row):
//! `y_r = Σ_c mult_rc · Σ_{j∈c} lut[n_j]·x_j + offset_rc · S_c`.
//!
//! # Bits per weight
//! 4-bit levels + 64 bits per 24-weight chunk = 6.67 resident bits per weight for `llvq-sg` /
//! `llvq-ss` (8 for E8P12's 8-weight chunks, 6 for 32-weight scalar chunks) against 32 for
//! f32; the file on disk stays at ~2 bits. [`PackedWeight::bits_per_weight`] counts it.
//!
//! # Kernels
//! [`PackedWeight::matvec`] (generation) runs an AVX2/FMA kernel threaded over output rows on
//! the spinning thread team of `team.rs`, without allocation per call (thread-local scratch, or
//! [`PackedWeight::matvec_with`]); [`PackedWeight::matmul`] (prefill) expands a tile of rows to
//! f32 in a thread-local buffer and calls the `gemm` crate on it (tiles on the same team). [`F16Matrix`] offers the same interface for the f16 tied
//! embedding / LM head. Every kernel has a plain `*_ref` twin that the tests compare against.

mod dense;
pub mod int8;
pub mod kernels;
pub mod packed;
pub mod rotate;
mod team;
mod tile;
pub(crate) use tile::matmul_tiles;

pub use dense::F16Matrix;
pub use int8::I8Weight;
pub use packed::PackedWeight;

use llvq_codes::CodeError;

/// Errors of the packed layout. The caller adds the tensor name (and may fall back to dense
/// weights on [`PackError::NoGrid`]).
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("code {method} has no grid view; keep this tensor dense")]
    NoGrid { method: &'static str },
    #[error("code {method}: blocks of {dim} weights cannot be grouped into chunks of 8, 16, 24 or 32 weights sharing one scale")]
    NoChunk { method: &'static str, dim: usize },
    #[error("{what}: got {got}, expected {expected}")]
    Shape {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{what} {index} is {value}, not finite{}", if *.positive { " and positive" } else { "" })]
    BadValue {
        what: &'static str,
        index: usize,
        value: f32,
        positive: bool,
    },
    #[error("block {block}: {err}")]
    Code { block: usize, err: CodeError },
}

/// The interface shared by [`PackedWeight`] and [`F16Matrix`]: `y = W·x` with W `rows × cols`.
pub trait MatVec: Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// `y = W·x` (`x.len() == cols`, `y.len() == rows`).
    fn matvec(&self, x: &[f32], y: &mut [f32]);
    /// `Y = X·Wᵀ` for `t` row vectors: `x` is `t × cols`, `y` is `t × rows`, both row-major.
    fn matmul(&self, x: &[f32], y: &mut [f32]);
    /// Bytes of weights held in memory.
    fn resident_bytes(&self) -> usize;
    /// Resident bits per weight.
    fn bits_per_weight(&self) -> f64 {
        self.resident_bytes() as f64 * 8.0 / (self.rows() * self.cols()).max(1) as f64
    }
}

/// Below this many bytes of levels a matrix-vector product runs on the calling thread: waking
/// the other threads costs more than the product (measured on the 192 × 576 k/v projections).
pub(crate) const INLINE_BYTES: usize = 64 * 1024;

/// Rows per parallel task: enough work per task to amortise the scheduling (≥ ~32 KiB of weights),
/// and enough tasks (≥ 4 per thread) to balance.
pub(crate) fn rows_per_task(rows: usize, row_bytes: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_balance = rows.div_ceil(4 * threads);
    let by_size = (32 * 1024 / row_bytes.max(1)).max(1);
    by_balance.max(by_size.min(rows)).clamp(1, rows.max(1))
}

#[track_caller]
pub(crate) fn check_io(rows: usize, cols: usize, x: usize, y: usize, t: usize) {
    assert!(
        x == t * cols && y == t * rows,
        "matmul shape: x has {x} values and y {y} for {t} vectors of a {rows}×{cols} matrix"
    );
}
