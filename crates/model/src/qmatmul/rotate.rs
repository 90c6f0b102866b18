//! Online rotations in f32 (issue 9 item 5): `x ← R·x` or `x ← Rᵀ·x` for the activations of a
//! compressed layer, with R = H·D/√n the seeded randomized Hadamard transform of
//! [`crate::hadamard::Rotation`] (paper §5.3: the file stores Ŵ' = R_out·W·R_inᵀ).
//!
//! H is the Kronecker product of the factors of [`hadamard_factors`] (Paley orders, then the
//! Sylvester power of two, outermost first). Kronecker factors act on separate axes of the
//! index and commute, so each is applied on its own, to row-major activations:
//!
//! - the innermost factors, merged while their product is at most [`INNER_MAX`] (576 = 12·12·4:
//!   a 48 × 48 block), as one GEMM of the rows' contiguous segments with that block;
//! - a Sylvester factor too large to merge (1536 = 12·128) as butterflies over 8-float
//!   elements, its H_8 part going to the inner block;
//! - every other (outer) Paley factor of order p and stride s as one GEMM of p × p with the
//!   block's s-float runs gathered by factor index (a copy of whole runs, not a transpose).
//!
//! GEMMs keep their sums in registers, so R·x costs a few passes over x instead of the
//! n² of a dense rotation or the p passes of an add loop per Paley factor.
//!
//! [`FastRotation::new`] rebuilds the factors from the public API (`hadamard_factors`,
//! `hadamard`, the seed's [`SplitMix64`] signs) and checks itself against the f64 transform on
//! a probe vector; a fallback rotation (no Hadamard matrix of order n) or any disagreement gives
//! `None`, and [`OnlineRotation`] then keeps the f64 path.

use std::cell::RefCell;
use std::sync::Arc;

use crate::hadamard::{hadamard, hadamard_factors, Rotation, SplitMix64};

/// Largest inner block merged from the innermost factors.
pub const INNER_MAX: usize = 64;
/// Rows per rayon task of a large block.
const TASK_ROWS: usize = 64;
/// Rows transformed at once: the two scratch buffers of a 1536-wide block stay in L2.
pub const SUB_ROWS: usize = 16;
/// From this many floats per factor index on, an outer factor runs as a GEMM (a loop below).
const GEMM_LEN: usize = 64;

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
    /// The merged innermost factors (stride 1).
    inner: Dense,
    /// Order of the Sylvester factor applied as butterflies over 8-float elements, if any.
    butterflies: Option<usize>,
    /// The other factors, outermost first.
    outer: Vec<Dense>,
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Sylvester's H_s in natural order: H[i][j] = (−1)^popcount(i & j) (what [`fwht`] applies).
fn sylvester(s: usize) -> Vec<f32> {
    (0..s * s)
        .map(|k| {
            if ((k / s) & (k % s)).count_ones() % 2 == 0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
}

/// A ⊗ B (A outer) for row-major square matrices.
fn kron(a: &[f32], pa: usize, b: &[f32], pb: usize) -> Vec<f32> {
    let n = pa * pb;
    (0..n * n)
        .map(|k| {
            let (r, c) = (k / n, k % n);
            a[(r / pb) * pa + c / pb] * b[(r % pb) * pb + c % pb]
        })
        .collect()
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
        // Innermost first: merge into the inner block while it stays small.
        let (mut b, mut k) = (1usize, vec![1f32]);
        let (mut butterflies, mut outer) = (None, Vec::new());
        let mut stride = 1;
        for (i, &p) in orders.iter().enumerate().rev() {
            if p == 1 {
                continue;
            }
            if p.is_power_of_two() {
                // Only the innermost factor may be Sylvester's (what `hadamard` builds).
                if i + 1 != orders.len() {
                    return None;
                }
                if p <= INNER_MAX {
                    (b, k) = (p, sylvester(p));
                } else {
                    butterflies = Some(p);
                }
            } else {
                if hadamard_factors(p)? != [p] {
                    return None;
                }
                let m: Vec<f32> = hadamard(p)?.into_iter().map(f32::from).collect();
                if butterflies.is_none() && outer.is_empty() && b * p <= INNER_MAX {
                    k = kron(&m, p, &k, b);
                    b *= p;
                } else {
                    outer.push(Dense::new(p, stride, m));
                }
            }
            stride *= p;
        }
        outer.reverse();
        let fast = FastRotation {
            n,
            signs,
            inner: Dense::new(b, 1, k),
            butterflies,
            outer,
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
        // After the inner GEMM the rows are in `a` until the next factor writes them back.
        let inner = &self.inner;
        let mut in_a = false;
        if inner.p > 1 {
            // Each b-float segment becomes K·segment: X (segments × b) · Kᵀ.
            gemm_into(
                len / inner.p,
                inner.p,
                inner.p,
                x,
                (inner.p, 1),
                inner.matrix(transpose),
                (1, inner.p),
                a,
            );
            in_a = true;
        }
        if let Some(s) = self.butterflies {
            let v = if in_a { &mut *a } else { &mut *x };
            for seg in v.chunks_exact_mut(s) {
                fwht(seg, 8);
            }
            fwht_within8(v);
        }
        for d in &self.outer {
            let m = d.matrix(transpose);
            if in_a {
                outer_factor(a, d.p, d.stride, m, b, x);
                in_a = false;
            } else {
                x_outer_factor(x, d.p, d.stride, m, a, b);
            }
        }
        if in_a {
            x.copy_from_slice(a);
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

/// The butterflies of distance 1, 2 and 4 in every group of 8 floats (`v.len()` a multiple
/// of 8): with AVX2 one swap and one multiply-add per stage, exactly x ± y as in [`fwht`].
fn fwht_within8(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::kernels::best() != super::kernels::Isa::Scalar {
        // SAFETY: AVX2 and FMA detected by `best()`.
        return unsafe { fwht_within8_avx2(v) };
    }
    for g in v.chunks_exact_mut(8) {
        fwht(g, 1);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fwht_within8_avx2(v: &mut [f32]) {
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
        x = _mm256_fmadd_ps(x, s2, _mm256_permute_ps::<0b01_00_11_10>(x));
        x = _mm256_fmadd_ps(x, s4, _mm256_permute2f128_ps::<0x01>(x, x));
        _mm256_storeu_ps(p, x);
    }
}

/// The factor M (p × p) on the axis of stride `st` of `src`, seen as `q × p × st` blocks, into
/// `dst`: dst[qi, i, :] = Σ_j M[i, j]·src[qi, j, :]. The runs are gathered to `g` as
/// p × (q·st) (a copy of whole runs, not a transpose), multiplied in one GEMM back into `src`
/// (free once gathered) and scattered to `dst`.
fn outer_factor(src: &mut [f32], p: usize, st: usize, m: &[f32], g: &mut [f32], dst: &mut [f32]) {
    let blk = p * st;
    let q = src.len() / blk;
    for (qi, block) in src.chunks_exact(blk).enumerate() {
        for (i, run) in block.chunks_exact(st).enumerate() {
            g[(i * q + qi) * st..][..st].copy_from_slice(run);
        }
    }
    gemm_into(p, q * st, p, m, (p, 1), g, (q * st, 1), src);
    for (qi, block) in dst.chunks_exact_mut(blk).enumerate() {
        for (i, run) in block.chunks_exact_mut(st).enumerate() {
            run.copy_from_slice(&src[(i * q + qi) * st..][..st]);
        }
    }
}

/// [`outer_factor`] in place on `x`; short runs (fewer than [`GEMM_LEN`] floats per factor
/// index) by an add loop per block instead of a GEMM.
fn x_outer_factor(x: &mut [f32], p: usize, st: usize, m: &[f32], a: &mut [f32], b: &mut [f32]) {
    let blk = p * st;
    if x.len() / blk * st >= GEMM_LEN {
        a.copy_from_slice(x);
        return outer_factor(a, p, st, m, b, x);
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
    fn butterflies_within_eight_match_the_portable_ones() {
        let mut rng = SplitMix64::new(3);
        let x: Vec<f32> = (0..8 * 37).map(|_| (rng.next_f64() - 0.5) as f32 * 7.0).collect();
        let mut want = x.clone();
        for g in want.chunks_exact_mut(8) {
            fwht(g, 1);
        }
        let mut got = x;
        fwht_within8(&mut got);
        assert_eq!(got, want);
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
