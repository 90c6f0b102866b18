//! Prefill: expand a tile of rows to f32 in a thread-local buffer and multiply it with the
//! `gemm` crate (the microkernels candle uses). Expansion costs one pass over the tile per call;
//! the product costs `t` passes, so for t ≫ 1 this runs at dense GEMM speed on compact weights.

use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

/// Up to this many vectors, `matmul` runs one matrix-vector product per vector instead.
pub(crate) const MATVEC_TOKENS: usize = 2;
/// Rows per tile: 64 rows × 1536 columns × 4 bytes = 384 KiB of expanded f32.
const TILE_ROWS: usize = 64;

thread_local! {
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `*mut f32` that rayon tasks may share: each task writes a disjoint set of columns of `y`.
#[derive(Clone, Copy)]
struct Out(*mut f32);
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// A method, so closures capture the whole `Out` (Send + Sync), not its raw field.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// `Y = X·Wᵀ` for `w` (`x` is `t × cols`, `y` is `t × rows`): one matrix-vector product per
/// vector up to [`MATVEC_TOKENS`] vectors, expanded tiles and `gemm` beyond (see
/// [`matmul_tiles`] for `k` and `expand`).
pub(crate) fn matmul<W: super::MatVec + ?Sized>(
    w: &W,
    k: usize,
    x: &[f32],
    y: &mut [f32],
    expand: impl Fn(usize, &mut [f32]) + Sync,
) {
    let (rows, cols) = (w.rows(), w.cols());
    let t = x.len() / cols.max(1);
    super::check_io(rows, cols, x.len(), y.len(), t);
    if t <= MATVEC_TOKENS {
        for (xt, yt) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
            w.matvec(xt, yt);
        }
    } else {
        matmul_tiles(rows, cols, k, x, y, expand);
    }
}

/// `Y = X·Wᵀ`: `x` is `t × cols`, `y` is `t × rows`; `expand(r0, buf)` writes rows
/// `r0..r0 + buf.len()/k` of W as f32, `k ≥ cols` values per row.
pub(crate) fn matmul_tiles(
    rows: usize,
    cols: usize,
    k: usize,
    x: &[f32],
    y: &mut [f32],
    expand: impl Fn(usize, &mut [f32]) + Sync,
) {
    let t = x.len() / cols;
    let out = Out(y.as_mut_ptr());
    (0..rows.div_ceil(TILE_ROWS)).into_par_iter().for_each(|ti| {
        let r0 = ti * TILE_ROWS;
        let n = TILE_ROWS.min(rows - r0);
        TILE.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < n * k {
                buf.resize(n * k, 0.0);
            }
            let tile = &mut buf[..n * k];
            expand(r0, tile);
            // SAFETY: dst covers y[0..t, r0..r0+n] (row stride `rows`), inside y and written by
            // this task only; lhs is x (t × cols, row stride cols); rhs(kk, j) = tile[j·k + kk]
            // (cols × n), inside the tile. gemm computes dst = 1·(lhs·rhs) with read_dst false.
            unsafe {
                gemm::gemm(
                    t,
                    n,
                    cols,
                    out.ptr().add(r0),
                    1,
                    rows as isize,
                    false,
                    x.as_ptr(),
                    1,
                    cols as isize,
                    tile.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        });
    });
}
