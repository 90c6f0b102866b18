//! Online rotations in f32 (issue 9 item 5): `x ← R·x` or `x ← Rᵀ·x` for the activations of a
//! compressed layer, with R = H·D/√n the seeded randomized Hadamard transform of
//! [`crate::hadamard::Rotation`] (paper §5.3: the file stores Ŵ' = R_out·W·R_inᵀ).
//!
//! H is the Kronecker product of the factors of [`hadamard_factors`] (Paley orders, then the
//! Sylvester power of two, outermost first). Kronecker factors act on separate axes of the
//! index and commute, so each is applied on its own, to row-major activations, with no
//! transposes:
//!
//! - the Sylvester factor (innermost, stride 1) as butterflies: vector adds for distances of 8
//!   and more, a swap and a multiply-add in registers for 1, 2 and 4;
//! - each Paley factor of order p and stride s as one GEMM with its p × p matrix, on the runs
//!   of s floats gathered by factor index (576 = 12·12·4: runs of 48 and of 4 floats;
//!   1536 = 12·128: runs of 128), which keeps the sums in registers instead of p passes of an
//!   add loop.
//!
//! So R·x costs a few passes over x (576: 24 multiply-adds per value) instead of the n² of a
//! dense rotation.
//!
//! [`FastRotation::new`] rebuilds the factors from the public API (`hadamard_factors`,
//! `hadamard`, the seed's [`SplitMix64`] signs) and checks itself against the f64 transform on
//! a probe vector; a fallback rotation (no Hadamard matrix of order n) or any disagreement gives
//! `None`, and [`OnlineRotation`] then keeps the f64 path.

use std::cell::RefCell;
use std::sync::Arc;

use crate::hadamard::{hadamard, hadamard_factors, Rotation, SplitMix64};

/// Rows per parallel task of a large block.
const TASK_ROWS: usize = 64;
/// Rows transformed at once: the two scratch buffers of a 1536-wide block stay in L2.
pub const SUB_ROWS: usize = 16;
/// From this many values per factor index on, a Paley factor runs as a GEMM (a loop below).
const GEMM_LEN: usize = 16;

/// A dense ±1 factor of order `p` acting on the axis of stride `stride`.
#[derive(Clone, Debug)]
struct Dense {
    p: usize,
    stride: usize,
    /// Row-major, and its transpose.
    m: Vec<f32>,
    mt: Vec<f32>,
}

impl Dense {
    fn new(p: usize, stride: usize, m: Vec<f32>) -> Dense {
        let mt = (0..p * p).map(|i| m[(i % p) * p + i / p]).collect();
        Dense { p, stride, m, mt }
    }

    /// M, or Mᵀ for Hᵀ (Sylvester's factors are symmetric, Paley's need not be).
    fn matrix(&self, transpose: bool) -> &[f32] {
        if transpose {
            &self.mt
        } else {
            &self.m
        }
    }
}

/// R = H·D/√n in f32 for a non-fallback [`Rotation`].
#[derive(Clone, Debug)]
pub struct FastRotation {
    n: usize,
    /// `d_i/√n`.
    signs: Vec<f32>,
    /// Order of the Sylvester factor (innermost; 1: none).
    sylvester: usize,
    /// The Paley factors, outermost first.
    paley: Vec<Dense>,
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl FastRotation {
    /// The f32 transform of `rot`, or `None` when `rot` is a fallback rotation or the rebuilt
    /// factors do not reproduce it (checked on a probe vector to 1e-4 relative).
    pub fn new(rot: &Rotation) -> Option<FastRotation> {
        if rot.is_fallback() {
            return None;
        }
        let n = rot.dim();
        let orders = hadamard_factors(n)?;
        let mut rng = SplitMix64::new(rot.seed());
        let scale = 1.0 / (n as f64).sqrt();
        let signs: Vec<f32> = (0..n).map(|_| (rng.next_sign() * scale) as f32).collect();
        let (mut sylvester, mut paley) = (1, Vec::new());
        let mut stride = n;
        for (i, &p) in orders.iter().enumerate() {
            stride /= p;
            if p == 1 {
                continue;
            }
            if p.is_power_of_two() {
                // Only the innermost factor may be Sylvester's (what `hadamard` builds).
                if i + 1 != orders.len() || stride != 1 {
                    return None;
                }
                sylvester = p;
            } else {
                // The Paley factor as `hadamard` builds it for order p alone.
                if hadamard_factors(p)? != [p] {
                    return None;
                }
                let m: Vec<f32> = hadamard(p)?.into_iter().map(f32::from).collect();
                paley.push(Dense::new(p, stride, m));
            }
        }
        let fast = FastRotation {
            n,
            signs,
            sylvester,
            paley,
        };
        fast.agrees_with(rot).then_some(fast)
    }

    /// The order n.
    pub fn dim(&self) -> usize {
        self.n
    }

    /// Both directions on a pseudo-random probe vector agree with the f64 transform.
    fn agrees_with(&self, rot: &Rotation) -> bool {
        let mut rng = SplitMix64::new(0x5eed ^ rot.seed());
        let x: Vec<f64> = (0..self.n).map(|_| rng.next_f64() - 0.5).collect();
        [false, true].into_iter().all(|transpose| {
            let mut want = x.clone();
            if transpose {
                rot.apply_t(&mut want);
            } else {
                rot.apply(&mut want);
            }
            let mut got: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let mut scratch = Vec::new();
            self.rows_with(&mut got, 1, transpose, &mut scratch);
            let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-30);
            let err = want
                .iter()
                .zip(&got)
                .map(|(w, &g)| (w - g as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            err <= 1e-4 * norm
        })
    }

    /// Every length-n row of `x` (`t` rows, row-major) becomes `R·row` (`Rᵀ·row` with
    /// `transpose`). Blocks of many rows run in parallel; no allocation after the first call on
    /// a thread.
    #[track_caller]
    pub fn rows(&self, x: &mut [f32], t: usize, transpose: bool) {
        assert_eq!(
            x.len(),
            t * self.n,
            "FastRotation::rows: {} values for {t} rows of {}",
            x.len(),
            self.n
        );
        if t * self.n >= 64 * 1024 && t >= 2 * SUB_ROWS {
            super::team::chunks_mut(x, TASK_ROWS * self.n, |_, blk| {
                SCRATCH.with(|s| self.rows_with(blk, blk.len() / self.n, transpose, &mut s.borrow_mut()))
            });
        } else {
            SCRATCH.with(|s| self.rows_with(x, t, transpose, &mut s.borrow_mut()));
        }
    }

    /// [`FastRotation::rows`] on the calling thread with caller-owned scratch.
    pub fn rows_with(&self, x: &mut [f32], t: usize, transpose: bool, scratch: &mut Vec<f32>) {
        let n = self.n;
        if t > SUB_ROWS {
            for blk in x.chunks_mut(SUB_ROWS * n) {
                self.rows_with(blk, blk.len() / n, transpose, scratch);
            }
            return;
        }
        let len = t * n;
        if scratch.len() < 2 * len {
            scratch.resize(2 * len, 0.0);
        }
        let (a, b) = scratch[..2 * len].split_at_mut(len);
        if !transpose {
            scale(x, &self.signs);
        }
        butterflies(x, self.sylvester);
        for d in &self.paley {
            paley_factor(x, d.p, d.stride, d.matrix(transpose), a, b);
        }
        if transpose {
            scale(x, &self.signs);
        }
    }
}

/// Every length-n row of `x` times the diagonal `s` (n = `s.len()`).
fn scale(x: &mut [f32], s: &[f32]) {
    for row in x.chunks_exact_mut(s.len()) {
        row.iter_mut().zip(s).for_each(|(v, &f)| *v *= f);
    }
}

/// Unnormalized Walsh–Hadamard butterflies over elements of `w` floats (Sylvester order).
fn fwht(seg: &mut [f32], w: usize) {
    let mut half = w;
    while half < seg.len() {
        for group in seg.chunks_exact_mut(2 * half) {
            let (a, b) = group.split_at_mut(half);
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                let (s, d) = (*x, *y);
                *x = s + d;
                *y = s - d;
            }
        }
        half *= 2;
    }
}

/// Sylvester's H_s on every run of `s` floats of `v`: [`fwht`] over 8-float elements for the
/// distances of 8 and more, then the distances below min(s, 8) in registers.
fn butterflies(v: &mut [f32], s: usize) {
    if s <= 1 {
        return;
    }
    if s > 8 {
        for seg in v.chunks_exact_mut(s) {
            fwht(seg, 8);
        }
    }
    let w = s.min(8);
    #[cfg(target_arch = "x86_64")]
    if v.len() % 8 == 0 && super::kernels::best() != super::kernels::Isa::Scalar {
        // SAFETY: AVX2 and FMA detected by `best()`.
        return unsafe { within8_avx2(v, w) };
    }
    for g in v.chunks_exact_mut(w) {
        fwht(g, 1);
    }
}

/// The butterflies of distance d < `w` (w = 2, 4 or 8) in every 8-float group of `v`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn within8_avx2(v: &mut [f32], w: usize) {
    use std::arch::x86_64::*;
    // Lane i of a stage of distance d: x_i + x_{i^d} where bit d of i is clear, x_{i^d} − x_i
    // where it is set, i.e. fma(x, sign, swapped x).
    let s1 = _mm256_setr_ps(1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0);
    let s2 = _mm256_setr_ps(1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0);
    let s4 = _mm256_setr_ps(1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0);
    for g in v.chunks_exact_mut(8) {
        let p = g.as_mut_ptr();
        let mut x = _mm256_loadu_ps(p);
        x = _mm256_fmadd_ps(x, s1, _mm256_permute_ps::<0b10_11_00_01>(x));
        if w >= 4 {
            x = _mm256_fmadd_ps(x, s2, _mm256_permute_ps::<0b01_00_11_10>(x));
        }
        if w >= 8 {
            x = _mm256_fmadd_ps(x, s4, _mm256_permute2f128_ps::<0x01>(x, x));
        }
        _mm256_storeu_ps(p, x);
    }
}

/// The Paley factor M (p × p) on the axis of stride `st` of `x`, seen as `q × p × st` blocks:
/// x[qi, i, :] ← Σ_j M[i, j]·x[qi, j, :], with `a` and `b` (as long as `x`) to work in. With
/// enough values per factor index (q·st ≥ [`GEMM_LEN`]) the runs are gathered to `a` as
/// p × (q·st) (a copy of whole runs, not a transpose), multiplied in one GEMM into `b` and
/// scattered back; otherwise an add loop per block.
fn paley_factor(x: &mut [f32], p: usize, st: usize, m: &[f32], a: &mut [f32], b: &mut [f32]) {
    let blk = p * st;
    let q = x.len() / blk;
    if q * st >= GEMM_LEN {
        runs(x, p, st, q, a, false);
        gemm_into(p, q * st, p, m, (p, 1), a, (q * st, 1), b);
        runs(x, p, st, q, b, true);
        return;
    }
    let tmp = &mut a[..blk];
    for v in x.chunks_exact_mut(blk) {
        tmp.copy_from_slice(v);
        for (out, row) in v.chunks_exact_mut(st).zip(m.chunks_exact(p)) {
            out.fill(0.0);
            for (src, &f) in tmp.chunks_exact(st).zip(row) {
                if f > 0.0 {
                    out.iter_mut().zip(src).for_each(|(o, s)| *o += s);
                } else {
                    out.iter_mut().zip(src).for_each(|(o, s)| *o -= s);
                }
            }
        }
    }
}

/// Copies run (qi, i) of `st` floats between `blocks` (q × p × st) and `gathered` (p × q × st):
/// into `gathered`, or back into `blocks` with `scatter`. The common short runs get a length
/// known at compile time (fixed-size moves instead of a `memcpy` call per run).
fn runs(blocks: &mut [f32], p: usize, st: usize, q: usize, gathered: &mut [f32], scatter: bool) {
    /// `ST` > 0: runs of exactly `ST` floats; 0: of `st`.
    fn of<const ST: usize>(blocks: &mut [f32], p: usize, st: usize, q: usize, gathered: &mut [f32], scatter: bool) {
        let st = if ST > 0 { ST } else { st };
        for (qi, block) in blocks.chunks_exact_mut(p * st).enumerate() {
            for (i, run) in block.chunks_exact_mut(st).enumerate() {
                let g = &mut gathered[(i * q + qi) * st..][..st];
                if scatter {
                    run.copy_from_slice(g);
                } else {
                    g.copy_from_slice(run);
                }
            }
        }
    }
    match st {
        4 => of::<4>(blocks, p, st, q, gathered, scatter),
        8 => of::<8>(blocks, p, st, q, gathered, scatter),
        16 => of::<16>(blocks, p, st, q, gathered, scatter),
        _ => of::<0>(blocks, p, st, q, gathered, scatter),
    }
}

/// `dst` (rows × cols, row-major, contiguous) = `lhs` (rows × k) · `rhs` (k × cols), where
/// `lhs` and `rhs` are given with their (row, column) strides.
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    rows: usize,
    cols: usize,
    k: usize,
    lhs: &[f32],
    (lrs, lcs): (usize, usize),
    rhs: &[f32],
    (rrs, rcs): (usize, usize),
    dst: &mut [f32],
) {
    let last = |r: usize, c: usize, rs: usize, cs: usize| (r.max(1) - 1) * rs + (c.max(1) - 1) * cs;
    assert!(
        lhs.len() > last(rows, k, lrs, lcs) && rhs.len() > last(k, cols, rrs, rcs) && dst.len() >= rows * cols,
        "gemm_into: short buffers"
    );
    // SAFETY: every index the strides reach is inside its slice (checked above); `dst` is a
    // distinct `&mut`, and gemm writes dst = 1·(lhs·rhs) without reading it.
    unsafe {
        gemm::gemm(
            rows,
            cols,
            k,
            dst.as_mut_ptr(),
            1,
            cols as isize,
            false,
            lhs.as_ptr(),
            lcs as isize,
            lrs as isize,
            rhs.as_ptr(),
            rcs as isize,
            rrs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-register stages equal the portable butterflies bit for bit.
    #[test]
    fn butterflies_in_registers_match_the_portable_ones() {
        let mut rng = SplitMix64::new(3);
        let x: Vec<f32> = (0..8 * 37).map(|_| (rng.next_f64() - 0.5) as f32 * 7.0).collect();
        let mut want = x.clone();
        for g in want.chunks_exact_mut(8) {
            fwht(g, 1);
        }
        let mut got = x.clone();
        butterflies(&mut got, 8);
        assert_eq!(got, want);
        for w in [2, 4] {
            let mut want = x.clone();
            for g in want.chunks_exact_mut(w) {
                fwht(g, 1);
            }
            let mut got = x.clone();
            butterflies(&mut got, w);
            assert_eq!(got, want, "runs of {w}");
        }
    }
}

/// A rotation of a compressed layer's input or output: the f32 [`FastRotation`] when the
/// rotation has one, else the f64 transform of `hadamard`.
#[derive(Clone, Debug)]
pub struct OnlineRotation {
    rot: Arc<Rotation>,
    fast: Option<FastRotation>,
}

impl OnlineRotation {
    pub fn new(rot: Arc<Rotation>) -> OnlineRotation {
        let fast = FastRotation::new(&rot);
        OnlineRotation { rot, fast }
    }

    /// The rotation itself (f64 reference).
    pub fn rotation(&self) -> &Rotation {
        &self.rot
    }

    pub fn seed(&self) -> u64 {
        self.rot.seed()
    }

    /// Whether the f32 transform is used.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// Every row of `x` (`t` rows) becomes `R·row` (`Rᵀ·row` with `transpose`), in place.
    pub fn rows(&self, x: &mut [f32], t: usize, transpose: bool) {
        if let Some(f) = &self.fast {
            return f.rows(x, t, transpose);
        }
        let mut xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        match (t, transpose) {
            (1, false) => self.rot.apply(&mut xd),
            (1, true) => self.rot.apply_t(&mut xd),
            (_, false) => self.rot.rotate_rows(&mut xd, t),
            (_, true) => self.rot.rotate_rows_t(&mut xd, t),
        }
        for (o, v) in x.iter_mut().zip(xd) {
            *o = v as f32;
        }
    }
}
