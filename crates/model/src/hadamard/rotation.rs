//! `Rotation`: the seeded randomized Hadamard transform R = H·D/√n and its apply paths (vectors,
//! rows, columns, Hessian conjugation).

use rayon::prelude::*;
use std::fmt;

use super::kernels::{describe, kron_apply, scale_rows, DenseLabel, Factor};
use super::mixer::{random_orthogonal, Mixer};
use super::paley::{plan_table, with_sylvester};
use super::*;

/// `R = H·D/√n`, a seeded randomized Hadamard transform of order `n` (orthogonal), or
/// the documented fallback `(Q_r ⊗ H_h/√h)·D` when no Hadamard matrix of order `n` is
/// constructed here. Deterministic in `(n, seed)`.
#[derive(Clone)]
pub struct Rotation {
    n: usize,
    seed: u64,
    /// Kronecker factors, outermost axis first.
    factors: Vec<Factor>,
    /// `d_i / √h`: the random signs with the Hadamard normalization folded in.
    pub(crate) signs: Vec<f64>,
    fallback: bool,
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotation")
            .field("n", &self.n)
            .field("seed", &self.seed)
            .field("structure", &self.describe())
            .finish()
    }
}

impl Rotation {
    /// The rotation of order `n` for `seed`. Never fails for `n ≥ 1` (fallback).
    ///
    /// # Panics
    /// If `n == 0`.
    #[must_use]
    pub fn new(n: usize, seed: u64) -> Rotation {
        assert!(n > 0, "Rotation::new: the dimension must be at least 1");
        let mut rng = SplitMix64::new(seed);
        let signs_pm: Vec<f64> = (0..n).map(|_| rng.next_sign()).collect();
        let (divs, best) = plan_table(n);
        // Largest constructible divisor h (n itself when a Hadamard matrix exists).
        let (h, paley) = divs
            .iter()
            .zip(&best)
            .rev()
            .find_map(|(&d, b)| b.as_ref().map(|(_, p)| (d, p.clone())))
            .expect("1 is always constructible");
        let r = n / h;
        let mut factors = Vec::new();
        if r > 1 {
            factors.push(if r <= MAX_DENSE_FALLBACK {
                Factor::Dense {
                    order: r,
                    label: DenseLabel::Random,
                    m: random_orthogonal(r, &mut rng),
                }
            } else {
                Factor::Mixer(Box::new(Mixer::new(r, &mut rng)))
            });
        }
        factors.extend(
            with_sylvester(h, &paley)
                .into_iter()
                .filter(|&o| o > 1 || r == 1)
                .map(Factor::hadamard),
        );
        let scale = 1.0 / (h as f64).sqrt();
        Rotation {
            n,
            seed,
            factors,
            signs: signs_pm.into_iter().map(|s| s * scale).collect(),
            fallback: r > 1,
        }
    }

    /// The order `n`.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.n
    }

    /// The seed it was built from.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The Kronecker structure, outermost factor first, e.g.
    /// `"paley12 x paley12 x sylvester4"` or `"random43 x sylvester4 (fallback)"`.
    #[must_use]
    pub fn describe(&self) -> String {
        let s = describe(&self.factors);
        if self.fallback {
            format!("{s} (fallback)")
        } else {
            s
        }
    }

    /// True when `n` has no Hadamard matrix here and a random orthogonal part is used.
    #[must_use]
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// Length of scratch that [`Rotation::apply_with`] may grow its buffer to
    /// (an upper bound, for callers that preallocate).
    #[must_use]
    pub fn scratch_len(&self) -> usize {
        self.n
    }

    /// `x ← R x` (allocates a small scratch buffer; see [`Rotation::apply_with`]).
    ///
    /// # Panics
    /// If `x.len() != n` (likewise for the other `apply*` methods).
    pub fn apply(&self, x: &mut [f64]) {
        self.apply_with(x, &mut Vec::new());
    }

    /// `x ← Rᵀ x`, the inverse of [`Rotation::apply`].
    pub fn apply_t(&self, x: &mut [f64]) {
        self.apply_t_with(x, &mut Vec::new());
    }

    /// `x ← R x` with a caller-owned scratch buffer (grown as needed, reusable).
    pub fn apply_with(&self, x: &mut [f64], scratch: &mut Vec<f64>) {
        assert_eq!(x.len(), self.n, "Rotation::apply: vector length != dimension");
        self.rows_in_place(x, false, scratch);
    }

    /// `x ← Rᵀ x` with a caller-owned scratch buffer.
    pub fn apply_t_with(&self, x: &mut [f64], scratch: &mut Vec<f64>) {
        assert_eq!(x.len(), self.n, "Rotation::apply_t: vector length != dimension");
        self.rows_in_place(x, true, scratch);
    }

    /// Every length-`n` row `v` of `data` becomes `R v` (or `Rᵀ v`).
    fn rows_in_place(&self, data: &mut [f64], transpose: bool, scratch: &mut Vec<f64>) {
        if transpose {
            kron_apply(data, &self.factors, 1, true, scratch);
            scale_rows(data, 1, &self.signs);
        } else {
            scale_rows(data, 1, &self.signs);
            kron_apply(data, &self.factors, 1, false, scratch);
        }
    }

    /// `(R ⊗ I_w) v` (or transposed) for a row-major `[n, w]` panel: acts down columns.
    fn leading_in_place(&self, data: &mut [f64], w: usize, transpose: bool, scratch: &mut Vec<f64>) {
        if transpose {
            kron_apply(data, &self.factors, w, true, scratch);
            scale_rows(data, w, &self.signs);
        } else {
            scale_rows(data, w, &self.signs);
            kron_apply(data, &self.factors, w, false, scratch);
        }
    }

    fn rotate_rows_impl(&self, m: &mut [f64], rows: usize, transpose: bool) {
        assert_eq!(m.len(), rows * self.n, "Rotation::rotate_rows: len != rows * n");
        let per_task = (ROW_TASK_ELEMS / self.n).max(1) * self.n;
        m.par_chunks_mut(per_task)
            .for_each_init(Vec::new, |scratch, chunk| self.rows_in_place(chunk, transpose, scratch));
    }

    /// Row-major `M [rows, n]`: each row `v ← R v`, i.e. `M ← M Rᵀ`. Parallel over rows.
    ///
    /// # Panics
    /// If `m.len() != rows * n` (likewise `rotate_cols*` with `n * cols`, and
    /// `conjugate*` with `n * n`).
    pub fn rotate_rows(&self, m: &mut [f64], rows: usize) {
        self.rotate_rows_impl(m, rows, false);
    }

    /// Row-major `M [rows, n]`: each row `v ← Rᵀ v`, i.e. `M ← M R`.
    pub fn rotate_rows_t(&self, m: &mut [f64], rows: usize) {
        self.rotate_rows_impl(m, rows, true);
    }

    /// Column panels of width ≤ `PANEL_ELEMS / n` are copied into a contiguous `[n, w]`
    /// buffer (cache-resident), rotated along the leading axis, and written back;
    /// panels run in parallel.
    fn rotate_cols_impl(&self, m: &mut [f64], cols: usize, transpose: bool) {
        let n = self.n;
        assert_eq!(m.len(), n * cols, "Rotation::rotate_cols: len != n * cols");
        if cols == 0 {
            return;
        }
        let width = (PANEL_ELEMS / n).clamp(16, TILE).min(cols);
        let total_panels = cols.div_ceil(width);
        let per_wave = (MAX_PANEL_REFS / n)
            .max(2 * rayon::current_num_threads())
            .clamp(1, total_panels);
        let mut c0 = 0;
        while c0 < cols {
            let c1 = (c0 + per_wave * width).min(cols);
            let mut panels: Vec<Vec<&mut [f64]>> =
                (0..(c1 - c0).div_ceil(width)).map(|_| Vec::with_capacity(n)).collect();
            for row in m.chunks_exact_mut(cols) {
                for (panel, piece) in panels.iter_mut().zip(row[c0..c1].chunks_mut(width)) {
                    panel.push(piece);
                }
            }
            panels.into_par_iter().for_each_init(
                || (Vec::new(), Vec::new()),
                |(buf, scratch), mut pieces| {
                    let w = pieces[0].len();
                    buf.clear();
                    for piece in &pieces {
                        buf.extend_from_slice(piece);
                    }
                    self.leading_in_place(buf, w, transpose, scratch);
                    for (piece, src) in pieces.iter_mut().zip(buf.chunks_exact(w)) {
                        piece.copy_from_slice(src);
                    }
                },
            );
            c0 = c1;
        }
    }

    /// Row-major `M [n, cols]`: `M ← R M` (each column rotated).
    pub fn rotate_cols(&self, m: &mut [f64], cols: usize) {
        self.rotate_cols_impl(m, cols, false);
    }

    /// Row-major `M [n, cols]`: `M ← Rᵀ M`.
    pub fn rotate_cols_t(&self, m: &mut [f64], cols: usize) {
        self.rotate_cols_impl(m, cols, true);
    }

    /// `H ← R H Rᵀ` for a row-major `n × n` matrix (the Hessian transform).
    pub fn conjugate(&self, h: &mut [f64]) {
        self.rotate_rows(h, self.n);
        self.rotate_cols(h, self.n);
    }

    /// `H ← Rᵀ H R`, the inverse of [`Rotation::conjugate`].
    pub fn conjugate_t(&self, h: &mut [f64]) {
        self.rotate_rows_t(h, self.n);
        self.rotate_cols_t(h, self.n);
    }

    /// The dense matrix `R` (`n × n`, row-major). For tests and small checks only.
    #[must_use]
    pub fn to_dense(&self) -> Vec<f64> {
        let n = self.n;
        let mut m = vec![0.0; n * n];
        m.iter_mut().step_by(n + 1).for_each(|v| *v = 1.0);
        self.rotate_cols(&mut m, n);
        m
    }
}
