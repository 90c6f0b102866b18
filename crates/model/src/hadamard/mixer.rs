//! The fallback for orders with no Hadamard matrix here: a seeded dense random orthogonal matrix
//! (small remainders) or the structured mixer (large ones); module doc, "Fallback".

use super::kernels::{axpy, dot, ensure, kron_apply, scale_rows, Factor};
use super::paley::paley_kind;
use super::*;

/// Seeded random orthogonal `r × r` matrix (row-major): Gaussian rows orthonormalized
/// by modified Gram–Schmidt, twice ("twice is enough" for orthogonality to rounding).
pub(crate) fn random_orthogonal(r: usize, rng: &mut SplitMix64) -> Vec<f64> {
    let mut q = vec![0.0f64; r * r];
    for i in 0..r {
        let (done, rest) = q.split_at_mut(i * r);
        let v = &mut rest[..r];
        loop {
            for pair in v.chunks_mut(2) {
                let (a, b) = rng.next_gaussian_pair();
                pair[0] = a;
                if let Some(x) = pair.get_mut(1) {
                    *x = b;
                }
            }
            for _ in 0..2 {
                for qj in done.chunks_exact(r) {
                    let d = dot(v, qj);
                    axpy(v, -d, qj);
                }
            }
            let norm = dot(v, v).sqrt();
            // A Gaussian row is (almost surely) independent of the previous ones; redraw
            // in the measure-zero degenerate case.
            if norm > 1e-6 && norm.is_finite() {
                let inv = 1.0 / norm;
                v.iter_mut().for_each(|x| *x *= inv);
                break;
            }
        }
    }
    q
}

/// A permutation `y_i = x_{π(i)}` stored as its nontrivial cycles, for in-place
/// application on rows.
#[derive(Clone)]
pub(crate) struct Permutation {
    cycles: Vec<usize>,
    bounds: Vec<usize>,
}

impl Permutation {
    pub(crate) fn random(r: usize, rng: &mut SplitMix64) -> Permutation {
        let mut pi: Vec<usize> = (0..r).collect();
        for i in (1..r).rev() {
            pi.swap(i, rng.next_below(i + 1));
        }
        let mut seen = vec![false; r];
        let (mut cycles, mut bounds) = (Vec::new(), vec![0]);
        for start in 0..r {
            if seen[start] || pi[start] == start {
                continue;
            }
            let mut c = start;
            while !seen[c] {
                seen[c] = true;
                cycles.push(c);
                c = pi[c];
            }
            bounds.push(cycles.len());
        }
        Permutation { cycles, bounds }
    }

    /// Permutes the rows (length `w`) of `block`; `inverse` applies `Pᵀ`.
    pub(crate) fn apply(&self, block: &mut [f64], w: usize, inverse: bool, scratch: &mut Vec<f64>) {
        ensure(scratch, w);
        let tmp = &mut scratch[..w];
        for k in 0..self.bounds.len() - 1 {
            let cyc = &self.cycles[self.bounds[k]..self.bounds[k + 1]];
            let row = |i: usize| i * w..(i + 1) * w;
            if inverse {
                // y[c_{j+1}] = x[c_j]
                tmp.copy_from_slice(&block[row(cyc[cyc.len() - 1])]);
                for j in (1..cyc.len()).rev() {
                    block.copy_within(row(cyc[j - 1]), cyc[j] * w);
                }
                block[row(cyc[0])].copy_from_slice(tmp);
            } else {
                // y[c_j] = x[c_{j+1}]
                tmp.copy_from_slice(&block[row(cyc[0])]);
                for j in 0..cyc.len() - 1 {
                    block.copy_within(row(cyc[j + 1]), cyc[j] * w);
                }
                block[row(cyc[cyc.len() - 1])].copy_from_slice(tmp);
            }
        }
    }
}

#[derive(Clone)]
pub(crate) enum MixOp {
    Signs(Vec<f64>),
    /// Normalized Hadamard on coordinates `0..m`.
    Head,
    /// Normalized Hadamard on coordinates `r-m..r`.
    Tail,
    Permute(Permutation),
}

/// Structured random orthogonal matrix of order `order` (see the module doc).
#[derive(Clone)]
pub(crate) struct Mixer {
    pub(crate) order: usize,
    block: usize,
    pub(crate) block_factors: Vec<Factor>,
    block_scale: f64,
    ops: Vec<MixOp>,
}

impl Mixer {
    pub(crate) fn new(r: usize, rng: &mut SplitMix64) -> Mixer {
        // Largest m = p·2^k ≤ r with p = 1 or a small Paley order (m > r/2 by p = 1).
        let mut best = (0usize, 0usize, 0usize); // (m, p, 2^k)
        for p in (1..=MIXER_MAX_PALEY.min(r)).filter(|&p| p == 1 || paley_kind(p, MIXER_MAX_PALEY).is_some()) {
            let mut pow = 1;
            while p * pow * 2 <= r {
                pow *= 2;
            }
            if p * pow > best.0 {
                best = (p * pow, p, pow);
            }
        }
        let (m, p, pow) = best;
        let mut block_factors = Vec::new();
        if p > 1 {
            block_factors.push(Factor::hadamard(p));
        }
        if pow > 1 || block_factors.is_empty() {
            block_factors.push(Factor::Sylvester { order: pow });
        }
        let mut ops = Vec::with_capacity(5 * MIXER_ROUNDS);
        for _ in 0..MIXER_ROUNDS {
            ops.push(MixOp::Signs((0..r).map(|_| rng.next_sign()).collect()));
            ops.push(MixOp::Head);
            ops.push(MixOp::Permute(Permutation::random(r, rng)));
            ops.push(MixOp::Signs((0..r).map(|_| rng.next_sign()).collect()));
            ops.push(MixOp::Tail);
        }
        Mixer {
            order: r,
            block: m,
            block_factors,
            block_scale: 1.0 / (m as f64).sqrt(),
            ops,
        }
    }

    pub(crate) fn apply_op(&self, op: &MixOp, block: &mut [f64], w: usize, transpose: bool, scratch: &mut Vec<f64>) {
        match op {
            MixOp::Signs(s) => scale_rows(block, w, s),
            MixOp::Head | MixOp::Tail => {
                let off = if matches!(op, MixOp::Head) {
                    0
                } else {
                    self.order - self.block
                };
                let sub = &mut block[off * w..(off + self.block) * w];
                kron_apply(sub, &self.block_factors, w, transpose, scratch);
                let s = self.block_scale;
                sub.iter_mut().for_each(|v| *v *= s);
            }
            MixOp::Permute(p) => p.apply(block, w, transpose, scratch),
        }
    }

    pub(crate) fn apply_axis(&self, data: &mut [f64], inner: usize, transpose: bool, scratch: &mut Vec<f64>) {
        for block in data.chunks_exact_mut(self.order * inner) {
            if transpose {
                for op in self.ops.iter().rev() {
                    self.apply_op(op, block, inner, true, scratch);
                }
            } else {
                for op in &self.ops {
                    self.apply_op(op, block, inner, false, scratch);
                }
            }
        }
    }
}
