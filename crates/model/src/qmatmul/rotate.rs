//! Online rotations in f32 (issue 9 item 5): `x ← R·x` or `x ← Rᵀ·x` for the activations of a
//! compressed layer, with R = H·D/√n the seeded randomized Hadamard transform of
//! [`crate::hadamard::Rotation`] (paper §5.3: the file stores Ŵ' = R_out·W·R_inᵀ).
//!
//! H is the Kronecker product of the factors of [`hadamard_factors`] (Paley orders, then the
//! Sylvester power of two, outermost first), so R·x costs n·(Σ p_i + log₂ 2^k) additions
//! instead of n². The f64 transform of `hadamard` converts every activation to f64 and back;
//! this one stays in f32 and, for a block of t ≥ [`BLOCK_MIN`] rows, works on the transposed
//! block so that every step is an add or subtract of contiguous vectors of `stride·t` floats
//! (what the CPU vectorizes), transposing back at the end.
//!
//! [`FastRotation::new`] rebuilds the factors from the public API (`hadamard_factors`,
//! `hadamard`, the seed's [`SplitMix64`] signs) and checks itself against the f64 transform on
//! a probe vector; a fallback rotation (no Hadamard matrix of order n) or any disagreement gives
//! `None`, and [`OnlineRotation`] then keeps the f64 path.

use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;

use crate::hadamard::{hadamard, hadamard_factors, Rotation, SplitMix64};

/// From this many rows on, a block is transposed so the transform runs on long vectors.
pub const BLOCK_MIN: usize = 8;
/// Rows per rayon task of a large block (64 rows × 1536 × 4 bytes × 2 buffers = 768 KiB).
const TASK_ROWS: usize = 64;

/// One Kronecker factor acting along the axis whose element stride is `stride`.
#[derive(Clone, Debug)]
enum Axis {
    /// Unnormalized Sylvester `H_{2^k}` along the innermost axis (stride 1), by butterflies.
    Sylvester { order: usize },
    /// A dense ±1 matrix (`m` row-major and its transpose `mt`).
    Dense {
        order: usize,
        stride: usize,
        m: Vec<f32>,
        mt: Vec<f32>,
    },
}

/// R = H·D/√n in f32 for a non-fallback [`Rotation`].
#[derive(Clone, Debug)]
pub struct FastRotation {
    n: usize,
    /// `d_i/√n`.
    signs: Vec<f32>,
    axes: Vec<Axis>,
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
        let mut axes = Vec::new();
        let mut stride = n;
        for &p in &orders {
            stride /= p;
            if p == 1 {
                continue;
            }
            if p.is_power_of_two() {
                if stride != 1 {
                    return None;
                }
                axes.push(Axis::Sylvester { order: p });
            } else {
                // The Paley factor as `hadamard` builds it for order p alone.
                if hadamard_factors(p)? != [p] {
                    return None;
                }
                let m: Vec<f32> = hadamard(p)?.into_iter().map(f32::from).collect();
                let mt = (0..p * p).map(|i| m[(i % p) * p + i / p]).collect();
                axes.push(Axis::Dense {
                    order: p,
                    stride,
                    m,
                    mt,
                });
            }
        }
        let fast = FastRotation { n, signs, axes };
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
        if t * self.n >= 64 * 1024 && t >= 2 * BLOCK_MIN {
            x.par_chunks_mut(TASK_ROWS * self.n).for_each(|blk| {
                SCRATCH.with(|s| self.rows_with(blk, blk.len() / self.n, transpose, &mut s.borrow_mut()))
            });
        } else {
            SCRATCH.with(|s| self.rows_with(x, t, transpose, &mut s.borrow_mut()));
        }
    }

    /// [`FastRotation::rows`] on the calling thread with caller-owned scratch.
    pub fn rows_with(&self, x: &mut [f32], t: usize, transpose: bool, scratch: &mut Vec<f32>) {
        let n = self.n;
        if t < BLOCK_MIN {
            if scratch.len() < n {
                scratch.resize(n, 0.0);
            }
            for row in x.chunks_exact_mut(n) {
                self.block(row, 1, transpose, &mut scratch[..n]);
            }
            return;
        }
        // Transposed: element j of every row is the contiguous vector buf[j·t..(j+1)·t].
        if scratch.len() < 2 * n * t {
            scratch.resize(2 * n * t, 0.0);
        }
        let (buf, tmp) = scratch[..2 * n * t].split_at_mut(n * t);
        transpose_into(x, t, n, buf);
        self.block(buf, t, transpose, tmp);
        transpose_into(buf, n, t, x);
    }

    /// The transform on `n` elements that are each a contiguous vector of `w` floats.
    fn block(&self, v: &mut [f32], w: usize, transpose: bool, tmp: &mut [f32]) {
        if !transpose {
            scale(v, w, &self.signs);
        }
        for axis in &self.axes {
            match axis {
                Axis::Sylvester { order } => {
                    for seg in v.chunks_exact_mut(order * w) {
                        fwht(seg, w);
                    }
                }
                Axis::Dense { order, stride, m, mt } => {
                    let (p, len) = (*order, stride * w);
                    let m = if transpose { mt } else { m };
                    let tmp = &mut tmp[..p * len];
                    for blk in v.chunks_exact_mut(p * len) {
                        tmp.copy_from_slice(blk);
                        for (out, row) in blk.chunks_exact_mut(len).zip(m.chunks_exact(p)) {
                            out.copy_from_slice(&tmp[..len]);
                            if row[0] < 0.0 {
                                out.iter_mut().for_each(|o| *o = -*o);
                            }
                            for (src, &f) in tmp.chunks_exact(len).zip(row).skip(1) {
                                if f > 0.0 {
                                    out.iter_mut().zip(src).for_each(|(o, s)| *o += s);
                                } else {
                                    out.iter_mut().zip(src).for_each(|(o, s)| *o -= s);
                                }
                            }
                        }
                    }
                }
            }
        }
        if transpose {
            scale(v, w, &self.signs);
        }
    }
}

/// Element j (a vector of `w` floats) times `s[j]`.
fn scale(v: &mut [f32], w: usize, s: &[f32]) {
    for (e, &f) in v.chunks_exact_mut(w).zip(s) {
        e.iter_mut().for_each(|x| *x *= f);
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

/// `dst` (c × r) = `src` (r × c)ᵀ, in 8 × 8 tiles (eight-register AVX transposes for the
/// whole tiles where the CPU has AVX2: the scalar loop was 6-7% of prefill).
fn transpose_into(src: &[f32], r: usize, c: usize, dst: &mut [f32]) {
    const B: usize = 8;
    assert!(
        src.len() >= r * c && dst.len() >= r * c,
        "transpose_into: short buffers"
    );
    #[cfg(target_arch = "x86_64")]
    let simd = super::kernels::best() != super::kernels::Isa::Scalar;
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    for i0 in (0..r).step_by(B) {
        for j0 in (0..c).step_by(B) {
            if simd && i0 + B <= r && j0 + B <= c {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 detected above; the tile's 8 source rows of 8 values start at
                // src[(i0 + i)·c + j0] and its 8 destination rows at dst[(j0 + j)·r + i0], all
                // inside the buffers checked above.
                unsafe {
                    transpose8(src.as_ptr().add(i0 * c + j0), c, dst.as_mut_ptr().add(j0 * r + i0), r)
                };
                continue;
            }
            for i in i0..(i0 + B).min(r) {
                for j in j0..(j0 + B).min(c) {
                    dst[j * r + i] = src[i * c + j];
                }
            }
        }
    }
}

/// One 8 × 8 tile: row i of `src` (stride `ss`) becomes column i of `dst` (stride `ds`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose8(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    let mut r = [_mm256_setzero_ps(); 8];
    for (i, v) in r.iter_mut().enumerate() {
        *v = _mm256_loadu_ps(src.add(i * ss));
    }
    // Pairs of rows interleaved (t), then pairs of pairs (u: u[j] holds columns j and j + 4 of
    // rows 0-3, u[j + 4] of rows 4-7), then the 128-bit halves recombined.
    let mut t = [_mm256_setzero_ps(); 8];
    for p in 0..4 {
        t[2 * p] = _mm256_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    let mut u = [_mm256_setzero_ps(); 8];
    for q in [0, 4] {
        u[q] = _mm256_shuffle_ps::<0x44>(t[q], t[q + 2]);
        u[q + 1] = _mm256_shuffle_ps::<0xEE>(t[q], t[q + 2]);
        u[q + 2] = _mm256_shuffle_ps::<0x44>(t[q + 1], t[q + 3]);
        u[q + 3] = _mm256_shuffle_ps::<0xEE>(t[q + 1], t[q + 3]);
    }
    for j in 0..4 {
        _mm256_storeu_ps(dst.add(j * ds), _mm256_permute2f128_ps::<0x20>(u[j], u[j + 4]));
        _mm256_storeu_ps(dst.add((j + 4) * ds), _mm256_permute2f128_ps::<0x31>(u[j], u[j + 4]));
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
