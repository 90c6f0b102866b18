//! Prefill: expand a tile of rows to f32 in a thread-local buffer and multiply it with the
//! `gemm` crate (the microkernels candle uses). Expansion costs one pass over the tile per call;
//! the product costs `t` passes, so for t ≫ 1 this runs at dense GEMM speed on compact weights.

use std::cell::RefCell;

use gemm::Parallelism;

/// Up to this many vectors, `matmul` runs one matrix-vector product per vector instead.
pub(crate) const MATVEC_TOKENS: usize = 2;
/// Most expanded f32 values per tile (1 MiB): the tile is `gemm`'s right-hand side, and every
/// tile re-packs the activations, so tiles are as large as this allows.
const TILE_FLOATS: usize = 1 << 18;

/// Rows per tile: the fewest tiles of at most [`TILE_FLOATS`] values, in a multiple of the
/// thread count so every thread gets the same number of equal tiles (a 576-row layer in 64-row
/// tiles gave 5 tiles to one thread and 4 to the other; 192 rows gave 2 and 1).
fn tile_rows(rows: usize, k: usize, threads: usize) -> usize {
    let threads = threads.max(1);
    let tiles = (rows * k).div_ceil(TILE_FLOATS).div_ceil(threads) * threads;
    rows.div_ceil(tiles.min(rows).max(1))
}

thread_local! {
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `*mut f32` that parallel tasks may share: each task writes a disjoint set of columns of `y`.
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
    let tr = tile_rows(rows, k, rayon::current_num_threads());
    super::team::for_each(rows.div_ceil(tr), |ti| {
        let r0 = ti * tr;
        let n = tr.min(rows - r0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_stay_bounded_and_split_evenly_over_threads() {
        for rows in [1, 7, 9, 64, 192, 576, 1536, 49_152] {
            for k in [24, 576, 1536, 1 << 19] {
                for threads in [1, 2, 3, 16] {
                    let tr = tile_rows(rows, k, threads);
                    assert!(tr >= 1 && tr <= rows, "{rows} {k} {threads}");
                    // at most one row above the budget (a row never splits)
                    assert!((tr - 1) * k < TILE_FLOATS, "{rows} {k} {threads}: {tr} rows");
                }
            }
        }
        // The default model's shapes on 2 threads: an even number of tiles, so no thread idles.
        for (rows, k) in [(576usize, 576), (192, 576), (1536, 576), (576, 1536), (49_152, 576)] {
            assert_eq!(rows.div_ceil(tile_rows(rows, k, 2)) % 2, 0, "{rows} x {k}");
        }
    }
}
