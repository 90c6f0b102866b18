//! Codebook design for scalar sources: the Lloyd algorithm (Lloyd 1982; Max 1960).
//!
//! Two exact forms, no Monte Carlo:
//! - N(0,1): cell masses and centroids in closed form from Φ and φ, so [`lloyd_gaussian`] gives
//!   the Lloyd-Max code and [`gaussian_mse`] the exact distortion of any level set;
//! - any other density (the χ_n gain of App. B, the optimal-scale gain ⟨w, ŝ⟩ of App. C Fig. 4):
//!   a fine midpoint-rule grid of weighted points ([`Grid`]), on which Lloyd is exact up to the
//!   quadrature error (grid spacing ~1e-3 of the range).

/// Standard normal density.
pub fn phi(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal CDF.
pub fn big_phi(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Decision thresholds of nearest-level quantization: midpoints of sorted levels.
pub fn thresholds(levels: &[f64]) -> Vec<f64> {
    levels.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect()
}

/// Exact MSE of nearest-level quantization of N(0,1) with sorted `levels`:
/// Σ_k ∫_{t_k}^{t_{k+1}} (x − c_k)² φ(x) dx, using ∫x²φ = Φ − xφ, ∫xφ = −φ.
pub fn gaussian_mse(levels: &[f64]) -> f64 {
    let t = thresholds(levels);
    let mut total = 0.0;
    for (k, &c) in levels.iter().enumerate() {
        let a = if k == 0 { f64::NEG_INFINITY } else { t[k - 1] };
        let b = if k == levels.len() - 1 { f64::INFINITY } else { t[k] };
        let (pa, pb) = (big_phi(a), big_phi(b));
        let (fa, fb) = (
            if a.is_finite() { phi(a) } else { 0.0 },
            if b.is_finite() { phi(b) } else { 0.0 },
        );
        let xa = if a.is_finite() { a * fa } else { 0.0 };
        let xb = if b.is_finite() { b * fb } else { 0.0 };
        let m0 = pb - pa;
        let m1 = fa - fb;
        let m2 = (pb - xb) - (pa - xa);
        total += m2 - 2.0 * c * m1 + c * c * m0;
    }
    total
}

/// Lloyd-Max levels (sorted) for N(0,1) with `n` levels, by the Lloyd iteration with closed-form
/// centroids E[x | a < x < b] = (φ(a) − φ(b)) / (Φ(b) − Φ(a)).
pub fn lloyd_gaussian(n: usize) -> Vec<f64> {
    // Start from the centroids of equal-probability cells.
    let mut levels: Vec<f64> = (0..n).map(|k| 3.0 * ((k as f64 + 0.5) / n as f64 - 0.5)).collect();
    for _ in 0..100_000 {
        let t = thresholds(&levels);
        let mut moved = 0.0f64;
        for k in 0..n {
            let a = if k == 0 { f64::NEG_INFINITY } else { t[k - 1] };
            let b = if k == n - 1 { f64::INFINITY } else { t[k] };
            let fa = if a.is_finite() { phi(a) } else { 0.0 };
            let fb = if b.is_finite() { phi(b) } else { 0.0 };
            let mass = big_phi(b) - big_phi(a);
            if mass > 0.0 {
                let c = (fa - fb) / mass;
                moved = moved.max((c - levels[k]).abs());
                levels[k] = c;
            }
        }
        if moved < 1e-13 {
            break;
        }
    }
    levels
}

/// Minimises a unimodal function on [lo, hi] by golden-section search.
pub fn golden_min(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = hi - g * (hi - lo);
    let mut x2 = lo + g * (hi - lo);
    let (mut f1, mut f2) = (f(x1), f(x2));
    while hi - lo > 1e-10 * (1.0 + hi.abs()) {
        if f1 < f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = f(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = f(x2);
        }
    }
    0.5 * (lo + hi)
}

/// A piecewise-constant density on a uniform grid of cells (the midpoint rule of a smooth
/// density), with prefix sums of the cell masses and moments. Partial cells are integrated
/// exactly, so cell masses and centroids are continuous in the thresholds and Lloyd converges to
/// the optimum of this density instead of stalling on grid points.
#[derive(Clone, Debug)]
pub struct Grid {
    lo: f64,
    h: f64,
    /// Cell masses (normalised).
    w: Vec<f64>,
    p0: Vec<f64>,
    p1: Vec<f64>,
    p2: Vec<f64>,
}

impl Grid {
    /// `n` cells on [lo, hi] with masses ∝ `density` at the cell midpoints.
    pub fn from_density(density: impl Fn(f64) -> f64, lo: f64, hi: f64, n: usize) -> Grid {
        let h = (hi - lo) / n as f64;
        let w: Vec<f64> = (0..n).map(|i| density(lo + (i as f64 + 0.5) * h)).collect();
        Grid::from_masses(lo, hi, &w)
    }

    /// Cells of equal width on [lo, hi] with the given (unnormalised) masses.
    pub fn from_masses(lo: f64, hi: f64, w: &[f64]) -> Grid {
        let h = (hi - lo) / w.len() as f64;
        let total: f64 = w.iter().sum();
        let w: Vec<f64> = w.iter().map(|v| v / total).collect();
        let (mut p0, mut p1, mut p2) = (vec![0.0], vec![0.0], vec![0.0]);
        for (i, &wi) in w.iter().enumerate() {
            let (a, b) = (lo + i as f64 * h, lo + (i + 1) as f64 * h);
            p0.push(p0.last().unwrap() + wi);
            p1.push(p1.last().unwrap() + wi * (a + b) / 2.0);
            p2.push(p2.last().unwrap() + wi * (a * a + a * b + b * b) / 3.0);
        }
        Grid { lo, h, w, p0, p1, p2 }
    }

    /// Mean of the density.
    pub fn mean(&self) -> f64 {
        *self.p1.last().unwrap()
    }

    /// (∫ p, ∫ x p, ∫ x² p) over (−∞, t].
    fn cumulative(&self, t: f64) -> [f64; 3] {
        let n = self.w.len();
        let u = ((t - self.lo) / self.h).clamp(0.0, n as f64);
        let i = (u.floor() as usize).min(n);
        let mut c = [self.p0[i], self.p1[i], self.p2[i]];
        if i < n {
            let a = self.lo + i as f64 * self.h;
            let t = a + (u - i as f64) * self.h;
            let d = self.w[i] / self.h;
            c[0] += d * (t - a);
            c[1] += d * (t * t - a * a) / 2.0;
            c[2] += d * (t * t * t - a * a * a) / 3.0;
        }
        c
    }

    /// Per-level (mass, first moment, second moment) of nearest-level quantization.
    fn cells(&self, levels: &[f64]) -> Vec<[f64; 3]> {
        let mut bounds = vec![[0.0; 3]];
        for t in thresholds(levels) {
            bounds.push(self.cumulative(t));
        }
        bounds.push([self.p0[self.w.len()], self.p1[self.w.len()], self.p2[self.w.len()]]);
        bounds
            .windows(2)
            .map(|b| [b[1][0] - b[0][0], b[1][1] - b[0][1], b[1][2] - b[0][2]])
            .collect()
    }

    /// MSE of nearest-level quantization with sorted `levels`.
    pub fn mse(&self, levels: &[f64]) -> f64 {
        self.cells(levels)
            .iter()
            .zip(levels)
            .map(|(m, &c)| m[2] - 2.0 * c * m[1] + c * c * m[0])
            .sum()
    }

    /// Lloyd levels (sorted) with `n` levels, started from equal-mass cells.
    pub fn lloyd(&self, n: usize) -> Vec<f64> {
        let quantile = |q: f64| {
            let i = self.p0.partition_point(|&p| p < q).clamp(1, self.w.len());
            self.lo + (i as f64 - 0.5) * self.h
        };
        let mut levels: Vec<f64> = (0..n).map(|k| quantile((k as f64 + 0.5) / n as f64)).collect();
        for _ in 0..100_000 {
            let mut moved = 0.0f64;
            for (k, m) in self.cells(&levels).iter().enumerate() {
                if m[0] > 1e-300 {
                    let c = m[1] / m[0];
                    moved = moved.max((c - levels[k]).abs());
                    levels[k] = c;
                }
            }
            levels.sort_by(f64::total_cmp);
            if moved < 1e-12 {
                break;
            }
        }
        levels
    }
}

/// Density of the χ_n distribution (the norm of an n-dimensional N(0, I) vector, App. B).
pub fn chi_density(n: u32, r: f64) -> f64 {
    if r <= 0.0 {
        return 0.0;
    }
    let k = n as f64;
    ((k - 1.0) * r.ln() - 0.5 * r * r - (0.5 * k - 1.0) * std::f64::consts::LN_2 - libm::lgamma(0.5 * k)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Max's 1960 table gives the 4-level Gaussian code ±0.4528, ±1.510 with MSE 0.1175.
    #[test]
    fn lloyd_max_four_levels_matches_max() {
        let l = lloyd_gaussian(4);
        assert!((l[3] - 1.510).abs() < 1e-3 && (l[2] - 0.4528).abs() < 1e-3, "{l:?}");
        assert!((l[0] + l[3]).abs() < 1e-9);
        assert!((gaussian_mse(&l) - 0.1175).abs() < 2e-4);
    }

    /// One level at 0 leaves the variance; the grid and the closed form agree.
    #[test]
    fn grid_agrees_with_closed_form() {
        assert!((gaussian_mse(&[0.0]) - 1.0).abs() < 1e-12);
        let g = Grid::from_density(phi, -10.0, 10.0, 200_000);
        for n in [2, 4, 8] {
            let a = lloyd_gaussian(n);
            let b = g.lloyd(n);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-6, "{a:?} {b:?}");
            }
            assert!((g.mse(&a) - gaussian_mse(&a)).abs() < 1e-6);
        }
    }

    #[test]
    fn chi_density_integrates_to_one_with_mean() {
        let h = 1e-3;
        let (mut s, mut m) = (0.0, 0.0);
        for i in 0..20_000 {
            let r = (i as f64 + 0.5) * h;
            s += chi_density(24, r) * h;
            m += r * chi_density(24, r) * h;
        }
        assert!((s - 1.0).abs() < 1e-9);
        // E χ_24 = √2 Γ(12.5)/Γ(12).
        let expect = 2f64.sqrt() * (libm::lgamma(12.5) - libm::lgamma(12.0)).exp();
        assert!((m - expect).abs() < 1e-9);
    }
}
