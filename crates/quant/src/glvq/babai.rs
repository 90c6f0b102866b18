//! Babai rounding onto a learned lattice, inside a b-bit range per coordinate (§3.3).
//!
//! The coefficients of a d-vector are c = clamp(round(G⁻¹u)) so that ŷ = G·c is a point of the
//! lattice G·Zᵈ near u (Babai's rounding: exact for an orthogonal G, within a factor depending
//! on G's conditioning otherwise). A vector costs exactly Σᵢ bᵢ bits: coordinate i takes one of
//! 2^bᵢ coefficient values.
//!
//! Choice left open by the summary: the 2^b values are the midrise set
//! {−(2^b−1)/2, …, (2^b−1)/2} (step 1), i.e. c lives on the coset Zᵈ + ½ of the lattice, not on
//! the two's-complement range {−2^(b−1), …, 2^(b−1)−1}. The coset range is symmetric around 0,
//! as the weights are (the plain range is lopsided and at 1 bit degenerates to {−1, 0}), and it
//! lets b = 0 mean "coefficient 0" for SDBA's N − 1 groups at N = 1. Stored is the level
//! index z = c + (2^b−1)/2 ∈ [0, 2^b).
//!
//! Fractional rates: a vector of B bits gives its first B mod d coordinates ⌈B/d⌉ bits and the
//! others ⌊B/d⌋, so any whole number of bits per vector is exact.

// The decoder's half (coordinate bits, coefficient of a level, G·c) is the runtime's: what the
// encoder measures is what a file decodes to.
pub use llvq_model::compressed::glvq::{coeff, coord_bits, point};

/// Babai rounding of `u` (length d) with `ginv` = G⁻¹ (d × d, row-major): the level index of
/// each coordinate, clamped to its bit range.
pub fn round(ginv: &[f64], u: &[f64], bits: &[u32], z: &mut [u8]) {
    let d = u.len();
    for i in 0..d {
        let t: f64 = ginv[i * d..(i + 1) * d].iter().zip(u).map(|(a, b)| a * b).sum();
        let top = (1u32 << bits[i]) - 1;
        let half = top as f64 / 2.0;
        // Nearest coefficient t' on Zᵈ + ½·top, then its index, clamped.
        z[i] = (t + half).round().clamp(0.0, top as f64) as u8;
    }
}

/// The inverse of the d × d row-major `g` (Gauss-Jordan, partial pivoting); `None` when `g`
/// is singular to working precision.
pub fn invert(g: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut a = g.to_vec();
    let mut inv = vec![0.0; d * d];
    for i in 0..d {
        inv[i * d + i] = 1.0;
    }
    let scale = g.iter().fold(0f64, |m, v| m.max(v.abs()));
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    for col in 0..d {
        let p = (col..d).max_by(|&x, &y| a[x * d + col].abs().total_cmp(&a[y * d + col].abs()))?;
        if a[p * d + col].abs() <= 1e-13 * scale {
            return None;
        }
        if p != col {
            for k in 0..d {
                a.swap(p * d + k, col * d + k);
                inv.swap(p * d + k, col * d + k);
            }
        }
        let piv = a[col * d + col];
        for k in 0..d {
            a[col * d + k] /= piv;
            inv[col * d + k] /= piv;
        }
        for r in 0..d {
            if r != col {
                let f = a[r * d + col];
                if f != 0.0 {
                    for k in 0..d {
                        a[r * d + k] -= f * a[col * d + k];
                        inv[r * d + k] -= f * inv[col * d + k];
                    }
                }
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    fn gauss(rng: &mut impl Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.sample(StandardNormal)).collect()
    }

    /// A random orthogonal d × d matrix times `a` (Gram-Schmidt on a Gaussian matrix).
    fn orthogonal(rng: &mut impl Rng, d: usize, a: f64) -> Vec<f64> {
        let mut q = gauss(rng, d * d);
        for i in 0..d {
            for j in 0..i {
                let dot: f64 = (0..d).map(|k| q[i * d + k] * q[j * d + k]).sum();
                for k in 0..d {
                    q[i * d + k] -= dot * q[j * d + k];
                }
            }
            let n = (0..d).map(|k| q[i * d + k].powi(2)).sum::<f64>().sqrt();
            (0..d).for_each(|k| q[i * d + k] /= n);
        }
        q.iter().map(|v| v * a).collect()
    }

    fn dist2(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
    }

    #[test]
    fn inverse_is_an_inverse() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for d in [8, 24, 32] {
            let g = gauss(&mut rng, d * d);
            let gi = invert(&g, d).unwrap();
            for i in 0..d {
                for j in 0..d {
                    let v: f64 = (0..d).map(|k| g[i * d + k] * gi[k * d + j]).sum();
                    assert!((v - (i == j) as u8 as f64).abs() < 1e-9, "d={d} ({i},{j}) {v}");
                }
            }
        }
        assert!(invert(&[1.0, 2.0, 2.0, 4.0], 2).is_none());
        assert!(invert(&[0.0; 4], 2).is_none());
    }

    #[test]
    fn babai_returns_the_point_it_claims() {
        // The returned levels decode to a point of G(Zᵈ + ½) within range, and that point is
        // what rounding the coefficients G⁻¹u gives when nothing is clamped.
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let d = 8;
        let bits = coord_bits(d, 8 * 6);
        let g = gauss(&mut rng, d * d);
        let gi = invert(&g, d).unwrap();
        for _ in 0..200 {
            let u = gauss(&mut rng, d);
            let mut z = vec![0u8; d];
            round(&gi, &u, &bits, &mut z);
            let mut y = vec![0.0; d];
            point(&g, &z, &bits, &mut y);
            // Coefficients recovered from the point are the stored ones, on the coset.
            let c: Vec<f64> = (0..d)
                .map(|i| gi[i * d..(i + 1) * d].iter().zip(&y).map(|(a, b)| a * b).sum())
                .collect();
            for i in 0..d {
                assert!((c[i] - coeff(z[i], bits[i])).abs() < 1e-9);
                assert!(((c[i] - 0.5) - (c[i] - 0.5).round()).abs() < 1e-9, "not on Z + 1/2");
                let t: f64 = gi[i * d..(i + 1) * d].iter().zip(&u).map(|(a, b)| a * b).sum();
                if t.abs() < 31.0 {
                    assert!((c[i] - t).abs() <= 0.5 + 1e-12, "coefficient {i}: {} vs {t}", c[i]);
                }
            }
        }
    }

    #[test]
    fn babai_is_exact_for_orthogonal_g() {
        // For G = a·Q the nearest point of the (clamped) coset box is found coordinate by
        // coordinate; check against every one of the 4^8 candidates at 2 bits.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let d = 8;
        let bits = coord_bits(d, 16);
        let g = orthogonal(&mut rng, d, 0.7);
        let gi = invert(&g, d).unwrap();
        let mut y = vec![0.0; d];
        for trial in 0..12 {
            let u: Vec<f64> = gauss(&mut rng, d)
                .iter()
                .map(|v| v * if trial < 6 { 0.8 } else { 3.0 })
                .collect();
            let mut z = vec![0u8; d];
            round(&gi, &u, &bits, &mut z);
            point(&g, &z, &bits, &mut y);
            let got = dist2(&y, &u);
            let mut best = f64::INFINITY;
            let mut cand = vec![0u8; d];
            for k in 0..4usize.pow(d as u32) {
                for (i, c) in cand.iter_mut().enumerate() {
                    *c = ((k >> (2 * i)) & 3) as u8;
                }
                point(&g, &cand, &bits, &mut y);
                best = best.min(dist2(&y, &u));
            }
            assert!(got <= best + 1e-12, "trial {trial}: babai {got} > nearest {best}");
        }
    }

    #[test]
    fn fractional_bits_split_across_coordinates() {
        assert_eq!(coord_bits(8, 12), vec![2, 2, 2, 2, 1, 1, 1, 1]);
        assert_eq!(coord_bits(8, 4), vec![1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(coord_bits(24, 48).iter().sum::<u32>(), 48);
        // b = 0 is the single coefficient 0; b = 2 is {−1.5, −0.5, 0.5, 1.5}.
        assert_eq!(coeff(0, 0), 0.0);
        assert_eq!(
            (0..4).map(|z| coeff(z, 2)).collect::<Vec<_>>(),
            vec![-1.5, -0.5, 0.5, 1.5]
        );
    }
}
