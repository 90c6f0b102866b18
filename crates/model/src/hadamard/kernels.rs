//! Kernels: one Kronecker factor applied along one axis of a row-major tensor (fast Walsh–Hadamard
//! butterflies for Sylvester factors, a dense small matrix otherwise), and `kron_apply` over all.

use super::mixer::Mixer;
use super::paley::factor_matrix;
use super::*;

pub(crate) fn ensure(scratch: &mut Vec<f64>, len: usize) {
    if scratch.len() < len {
        scratch.resize(len, 0.0);
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

pub(crate) fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

pub(crate) fn scale_rows(data: &mut [f64], width: usize, scales: &[f64]) {
    for block in data.chunks_exact_mut(width * scales.len()) {
        for (row, &s) in block.chunks_exact_mut(width).zip(scales) {
            row.iter_mut().for_each(|v| *v *= s);
        }
    }
}

/// Unnormalized Walsh–Hadamard butterfly of `order` along an axis with stride `inner`
/// (data length a multiple of `order·inner`). Symmetric, so also its own transpose.
pub(crate) fn fwht_axis(data: &mut [f64], order: usize, inner: usize) {
    let end = order * inner;
    let mut half = inner;
    while half < end {
        for group in data.chunks_exact_mut(2 * half) {
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

/// `y = M x` (or `Mᵀ x`) for a dense `p × p` matrix along an axis with stride `inner`.
pub(crate) fn dense_axis(data: &mut [f64], m: &[f64], p: usize, inner: usize, transpose: bool, scratch: &mut Vec<f64>) {
    if inner == 1 {
        ensure(scratch, p);
        let y = &mut scratch[..p];
        for x in data.chunks_exact_mut(p) {
            if transpose {
                y.fill(0.0);
                for (&xi, row) in x.iter().zip(m.chunks_exact(p)) {
                    axpy(y, xi, row);
                }
            } else {
                for (yi, row) in y.iter_mut().zip(m.chunks_exact(p)) {
                    *yi = dot(row, x);
                }
            }
            x.copy_from_slice(y);
        }
        return;
    }
    ensure(scratch, p * inner.min(TILE));
    for block in data.chunks_exact_mut(p * inner) {
        let mut t0 = 0;
        while t0 < inner {
            let c = (inner - t0).min(TILE);
            let out = &mut scratch[..p * c];
            out.fill(0.0);
            for (i, orow) in out.chunks_exact_mut(c).enumerate() {
                for j in 0..p {
                    let f = if transpose { m[j * p + i] } else { m[i * p + j] };
                    let src = &block[j * inner + t0..j * inner + t0 + c];
                    axpy(orow, f, src);
                }
            }
            for (i, orow) in out.chunks_exact(c).enumerate() {
                block[i * inner + t0..i * inner + t0 + c].copy_from_slice(orow);
            }
            t0 += c;
        }
    }
}

/// Applies `(F_1 ⊗ … ⊗ F_k ⊗ I_inner)` (or its transpose) to every consecutive block of
/// `data` of length `(∏ p_i)·inner`.
pub(crate) fn kron_apply(data: &mut [f64], factors: &[Factor], inner: usize, transpose: bool, scratch: &mut Vec<f64>) {
    let mut stride = inner * factors.iter().map(Factor::order).product::<usize>();
    for f in factors {
        stride /= f.order();
        f.apply_axis(data, stride, transpose, scratch);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DenseLabel {
    Paley,
    Random,
}

#[derive(Clone)]
pub(crate) enum Factor {
    /// `H_{2^k}`, unnormalized, by butterflies.
    Sylvester { order: usize },
    /// Dense `order × order` matrix, row-major: an unnormalized ±1 Paley matrix or a
    /// normalized random orthogonal fallback.
    Dense {
        order: usize,
        label: DenseLabel,
        m: Vec<f64>,
    },
    /// Structured orthogonal fallback for large remainders.
    Mixer(Box<Mixer>),
}

impl Factor {
    pub(crate) fn hadamard(order: usize) -> Factor {
        if order.is_power_of_two() {
            Factor::Sylvester { order }
        } else {
            Factor::Dense {
                order,
                label: DenseLabel::Paley,
                m: factor_matrix(order).into_iter().map(f64::from).collect(),
            }
        }
    }

    pub(crate) fn order(&self) -> usize {
        match self {
            Factor::Sylvester { order } | Factor::Dense { order, .. } => *order,
            Factor::Mixer(mx) => mx.order,
        }
    }

    pub(crate) fn name(&self) -> String {
        match self {
            Factor::Sylvester { order } => format!("sylvester{order}"),
            Factor::Dense {
                order,
                label: DenseLabel::Paley,
                ..
            } => format!("paley{order}"),
            Factor::Dense {
                order,
                label: DenseLabel::Random,
                ..
            } => format!("random{order}"),
            Factor::Mixer(mx) => format!("mixer{}[{}]", mx.order, describe(&mx.block_factors)),
        }
    }

    /// Applies this factor along the axis whose stride is `inner`.
    pub(crate) fn apply_axis(&self, data: &mut [f64], inner: usize, transpose: bool, scratch: &mut Vec<f64>) {
        match self {
            Factor::Sylvester { order } => fwht_axis(data, *order, inner),
            Factor::Dense { order, m, .. } => dense_axis(data, m, *order, inner, transpose, scratch),
            Factor::Mixer(mx) => mx.apply_axis(data, inner, transpose, scratch),
        }
    }
}

pub(crate) fn describe(factors: &[Factor]) -> String {
    factors.iter().map(Factor::name).collect::<Vec<_>>().join(" x ")
}
