//! Group-specific µ-law companding (§3.4).
//!
//! ```text
//!     F_µ(x)  = sgn(x) · ln(1 + µ|x|) / ln(1 + µ)          (x = w/s, s = max|W_g|)
//!     F_µ⁻¹(y) = sgn(y) · ((1 + µ)^|y| − 1) / µ
//! ```
//!
//! F spends resolution near zero where heavy-tailed weights crowd. µ ∈ [10, 255] is learned with
//! G (its gradient through F⁻¹ is [`inv_dmu`]). The summary says µ starts "from the group's
//! kurtosis" without the map; ours is µ₀ = clamp(10 + 25·(κ − 3), 10, 255): a Gaussian group
//! (κ = 3) starts at the mildest curve, a Laplacian one (κ = 6) at 85, κ ≥ 12.6 at 255.

/// Bounds of µ (§3.4).
pub const MU_MIN: f64 = 10.0;
pub const MU_MAX: f64 = 255.0;

/// F_µ(x).
#[inline]
pub fn forward(x: f64, mu: f64) -> f64 {
    x.signum() * (mu * x.abs()).ln_1p() / mu.ln_1p()
}

/// F_µ⁻¹(y): the runtime's decode (`llvq_model::compressed::glvq`).
pub use llvq_model::compressed::glvq::mu_law_inverse as inverse;

/// ∂F_µ⁻¹(y)/∂y = ln(1 + µ)·(1 + µ)^|y| / µ.
#[inline]
pub fn inv_dy(y: f64, mu: f64) -> f64 {
    let l = mu.ln_1p();
    l * (y.abs() * l).exp() / mu
}

/// ∂F_µ⁻¹(y)/∂µ = sgn(y)·(|y|(1 + µ)^(|y|−1)/µ − ((1 + µ)^|y| − 1)/µ²).
#[inline]
pub fn inv_dmu(y: f64, mu: f64) -> f64 {
    let a = y.abs();
    let l = mu.ln_1p();
    y.signum() * (a * ((a - 1.0) * l).exp() / mu - (a * l).exp_m1() / (mu * mu))
}

/// µ₀ from the kurtosis κ = E[w⁴]/E[w²]² of the group (module doc).
pub fn mu_from_kurtosis(w: &[f64]) -> f64 {
    let n = w.len().max(1) as f64;
    let m2 = w.iter().map(|v| v * v).sum::<f64>() / n;
    let m4 = w.iter().map(|v| v.powi(4)).sum::<f64>() / n;
    if m2 <= 0.0 {
        return MU_MIN;
    }
    (10.0 + 25.0 * (m4 / (m2 * m2) - 3.0)).clamp(MU_MIN, MU_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companding_round_trips() {
        for mu in [MU_MIN, 37.5, MU_MAX] {
            for i in -100..=100 {
                let x = i as f64 / 100.0 * 1.2; // also a little past |x| = 1 (f16 scale rounding)
                let y = forward(x, mu);
                assert!((inverse(y, mu) - x).abs() < 1e-12, "µ={mu} x={x}");
                assert!(y.abs() <= 1.0 + 1e-12 || x.abs() > 1.0);
            }
            assert_eq!(forward(1.0, mu), 1.0);
            assert_eq!(forward(0.0, mu), 0.0);
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for mu in [10.0, 80.0, 250.0] {
            for y in [-0.9, -0.3, 0.05, 0.6, 1.1] {
                let h = 1e-6;
                let fd = (inverse(y + h, mu) - inverse(y - h, mu)) / (2.0 * h);
                assert!((fd - inv_dy(y, mu)).abs() < 1e-6 * fd.abs().max(1.0), "dy µ={mu} y={y}");
                let hm = 1e-4;
                let fd = (inverse(y, mu + hm) - inverse(y, mu - hm)) / (2.0 * hm);
                assert!(
                    (fd - inv_dmu(y, mu)).abs() < 1e-7 * fd.abs().max(1e-3),
                    "dµ µ={mu} y={y}: {fd} vs {}",
                    inv_dmu(y, mu)
                );
            }
        }
    }

    #[test]
    fn kurtosis_init() {
        // Two-point ±1 has κ = 1 → µ_min; a spike plus many zeros has a large κ → µ_max.
        assert_eq!(mu_from_kurtosis(&[1.0, -1.0, 1.0, -1.0]), MU_MIN);
        let mut v = vec![0.0; 1000];
        v[0] = 1.0;
        assert_eq!(mu_from_kurtosis(&v), MU_MAX);
        assert_eq!(mu_from_kurtosis(&[0.0; 8]), MU_MIN);
    }
}
