//! The exact G step: with the levels z fixed and no companding the group loss is quadratic in G,
//! so the descent step of §3.3 can be replaced by its minimiser (one small linear solve).
//!
//! With coefficients c_{rv} (row r, vector v; see [`super::babai`]), ŵ_{rv} = s·G c_{rv} and
//! H_{vv'} the d × d blocks of H_gg:
//!
//! ```text
//!     L(G) = T − 2s⟨G, B⟩ + s² Σ_{v,v'} tr(H_{vv'} G S_{v'v} Gᵀ)
//!     T = Σ_r x_r H x_rᵀ,   B = Σ_{r,v} (x_r H)_v c_{rv}ᵀ,   S_{v'v} = Σ_r c_{rv'} c_{rv}ᵀ  (S = CᵀC)
//! ```
//!
//! so ∂J/∂G = 0 for J = L + ρ‖G‖²_F is the d² × d² system
//! A·vec(G) = s·vec(B), A[(i,j),(k,l)] = s² Σ_{v,v'} H_{vv'}[i,k] S_{v'v}[l,j] + ρ δ. Per
//! alternation this costs one rows × width × width product (S) instead of a dozen loss
//! evaluations, and it is the best G for these z rather than a step towards it: the
//! alternation becomes block coordinate descent (Lloyd's algorithm for a linear decoder).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// The z-independent part of one group: T and P = X·H_gg.
pub struct Target {
    pub t: f64,
    /// rows × width, row-major.
    pub p: Vec<f64>,
}

impl Target {
    pub fn new(x: &[f64], h: &[f64], rows: usize, width: usize) -> Target {
        let mut p = vec![0.0; x.len()];
        matmul(
            MatMut::from_row_major_slice_mut(&mut p, rows, width),
            Accum::Replace,
            MatRef::from_row_major_slice(x, rows, width),
            MatRef::from_row_major_slice(h, width, width),
            1.0,
            Par::Seq,
        );
        let t = p
            .chunks_exact(width)
            .zip(x.chunks_exact(width))
            .map(|(a, b)| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>())
            .sum();
        Target { t, p }
    }
}

/// The quadratic J(G) = T − 2s⟨G, B⟩ + vec(G)ᵀ A vec(G) for fixed levels.
pub struct Quadratic {
    pub d: usize,
    /// d² × d², row-major, symmetric.
    pub a: Vec<f64>,
    /// s·B, d × d row-major.
    pub b: Vec<f64>,
    pub t: f64,
}

impl Quadratic {
    /// Builds J for coefficients `c` (rows × width, the values of the levels), scale `s`,
    /// group Hessian `h` (width × width) and regulariser ρ.
    #[allow(clippy::too_many_arguments)] // a kernel: every argument is an input it needs
    pub fn new(tg: &Target, c: &[f64], h: &[f64], rows: usize, width: usize, d: usize, s: f64, rho: f64) -> Quadratic {
        let nv = width / d;
        // S = CᵀC (width × width).
        let mut sm = vec![0.0; width * width];
        matmul(
            MatMut::from_row_major_slice_mut(&mut sm, width, width),
            Accum::Replace,
            MatRef::from_row_major_slice(c, rows, width).transpose(),
            MatRef::from_row_major_slice(c, rows, width),
            1.0,
            Par::Seq,
        );
        let dd = d * d;
        let mut a = vec![0.0; dd * dd];
        let mut blk = vec![0.0; d * d];
        for v in 0..nv {
            for w in 0..nv {
                // H_{vw}[i,k] · S_{wv}[l,j] = H[vd+i, wd+k] · S[wd+l, vd+j]; blk[j][l] = S_{wv}[l,j].
                for j in 0..d {
                    for l in 0..d {
                        blk[j * d + l] = sm[(w * d + l) * width + v * d + j];
                    }
                }
                for i in 0..d {
                    for k in 0..d {
                        let hik = h[(v * d + i) * width + w * d + k];
                        if hik == 0.0 {
                            continue;
                        }
                        for j in 0..d {
                            let row = &mut a[(i * d + j) * dd + k * d..(i * d + j) * dd + k * d + d];
                            for (r, &sv) in row.iter_mut().zip(&blk[j * d..(j + 1) * d]) {
                                *r += hik * sv;
                            }
                        }
                    }
                }
            }
        }
        let s2 = s * s;
        a.iter_mut().for_each(|v| *v *= s2);
        for e in 0..dd {
            a[e * dd + e] += rho;
        }
        let mut b = vec![0.0; dd];
        for (pr, cr) in tg.p.chunks_exact(width).zip(c.chunks_exact(width)) {
            for (pv, cv) in pr.chunks_exact(d).zip(cr.chunks_exact(d)) {
                for i in 0..d {
                    for j in 0..d {
                        b[i * d + j] += pv[i] * cv[j];
                    }
                }
            }
        }
        b.iter_mut().for_each(|v| *v *= s);
        Quadratic { d, a, b, t: tg.t }
    }

    /// J at G.
    pub fn value(&self, g: &[f64]) -> f64 {
        let dd = self.d * self.d;
        let mut q = 0.0;
        for e in 0..dd {
            q += g[e]
                * self.a[e * dd..(e + 1) * dd]
                    .iter()
                    .zip(g)
                    .map(|(x, y)| x * y)
                    .sum::<f64>();
        }
        self.t - 2.0 * g.iter().zip(&self.b).map(|(x, y)| x * y).sum::<f64>() + q
    }

    /// The minimiser A⁻¹·s·vec(B) (`None` when A is not positive definite: levels that do not
    /// determine G, e.g. all coefficients of a coordinate at one value with ρ = 0).
    pub fn minimiser(&self) -> Option<Vec<f64>> {
        let n = self.d * self.d;
        let mut l = self.a.clone();
        for j in 0..n {
            let mut s = l[j * n + j] - (0..j).map(|k| l[j * n + k] * l[j * n + k]).sum::<f64>();
            if !(s > 1e-300 && s.is_finite()) {
                return None;
            }
            s = s.sqrt();
            l[j * n + j] = s;
            for i in j + 1..n {
                let v = l[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
                l[i * n + j] = v / s;
            }
        }
        let mut y = self.b.clone();
        for i in 0..n {
            let v = y[i] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>();
            y[i] = v / l[i * n + i];
        }
        for i in (0..n).rev() {
            let v = y[i] - (i + 1..n).map(|k| l[k * n + i] * y[k]).sum::<f64>();
            y[i] = v / l[i * n + i];
        }
        y.iter().all(|v| v.is_finite()).then_some(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// J from the quadratic agrees with the loss computed directly, and the minimiser has a
    /// zero gradient (checked by finite differences of the direct loss).
    #[test]
    fn quadratic_matches_direct_loss_and_minimiser_is_stationary() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (rows, width, d, s, rho) = (7, 16, 8, 0.3, 0.01);
        let gauss = |rng: &mut rand::rngs::StdRng, n: usize| {
            (0..n)
                .map(|_| rng.sample::<f64, _>(StandardNormal))
                .collect::<Vec<f64>>()
        };
        let x = gauss(&mut rng, rows * width);
        let c: Vec<f64> = (0..rows * width).map(|_| rng.random_range(0..4) as f64 - 1.5).collect();
        let m = gauss(&mut rng, width * width);
        let mut h = vec![0.0; width * width];
        for i in 0..width {
            for j in 0..width {
                h[i * width + j] = (0..width).map(|k| m[i * width + k] * m[j * width + k]).sum::<f64>() / width as f64;
            }
        }
        let direct = |g: &[f64]| {
            let mut delta = vec![0.0; rows * width];
            for r in 0..rows {
                for v in 0..width / d {
                    for i in 0..d {
                        let y: f64 = (0..d).map(|j| g[i * d + j] * c[r * width + v * d + j]).sum();
                        delta[r * width + v * d + i] = x[r * width + v * d + i] - s * y;
                    }
                }
            }
            let mut l = 0.0;
            for r in 0..rows {
                for i in 0..width {
                    for k in 0..width {
                        l += delta[r * width + i] * h[i * width + k] * delta[r * width + k];
                    }
                }
            }
            l + rho * g.iter().map(|v| v * v).sum::<f64>()
        };
        let q = Quadratic::new(&Target::new(&x, &h, rows, width), &c, &h, rows, width, d, s, rho);
        let g = gauss(&mut rng, d * d);
        assert!(
            (q.value(&g) - direct(&g)).abs() < 1e-9 * direct(&g),
            "{} vs {}",
            q.value(&g),
            direct(&g)
        );
        let gs = q.minimiser().unwrap();
        for e in 0..d * d {
            let (mut gp, mut gm) = (gs.clone(), gs.clone());
            gp[e] += 1e-5;
            gm[e] -= 1e-5;
            let fd = (direct(&gp) - direct(&gm)) / 2e-5;
            assert!(
                fd.abs() < 1e-6 * (1.0 + direct(&gs)),
                "∂J/∂G[{e}] = {fd} at the minimiser"
            );
        }
        assert!(q.value(&gs) <= q.value(&g));
    }
}
