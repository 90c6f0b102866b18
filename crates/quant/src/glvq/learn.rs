//! Learning one group's lattice G and companding µ: alternating Babai rounding and gradient
//! descent (§3.3-3.4, the paper's Eq. for the group objective with Frobenius regularisation).
//!
//! For a group with target weights X (rows × width, read as d-vectors v), fixed levels z and
//! coefficients c_v (see [`super::babai`]):
//!
//! ```text
//!     y_v = G c_v,   ŵ_v = s · F_µ⁻¹(y_v),   Δ = X − Ŵ
//!     L(G, µ) = Σ_r Δ_r H_gg Δ_rᵀ                   (H_gg: the group's block of H)
//!     J(G, µ) = L + ρ‖G‖²_F,   ρ = reg · L(G₀, µ₀) / ‖G₀‖²_F
//!     ∂L/∂ŵ = −2 Δ H_gg,  ∂L/∂y_v = ∂L/∂ŵ_v ⊙ s F⁻¹'(y_v),  ∂L/∂G = Σ_v ∂L/∂y_v c_vᵀ,
//!     ∂L/∂µ = Σ_v ∂L/∂ŵ_v · s ∂F⁻¹(y_v)/∂µ
//! ```
//!
//! Cross terms. Only H_gg is used: the group's own block, not the terms coupling it to other
//! groups. Without LDLQ each group is fitted as the paper does, independently; with `ldlq=1` the
//! cross terms act through the error fed to the columns on the right ([`super::layer`]).
//!
//! Regulariser. The summary names a Frobenius regulariser on G without its weight; ρ is made
//! relative to the starting loss and ‖G₀‖ so `reg` is dimensionless (default 1e-3).
//!
//! Schedule. G₀ = L·diag(Δ_{bᵢ}), L the Cholesky factor of the covariance of the companded
//! d-vectors and Δ_b the MSE-optimal uniform step for N(0,1) at b bits (so on white data G₀ is
//! plain per-group RTN). Then:
//! - without companding, L is quadratic in G for fixed z, so each alternation takes the exact
//!   minimiser of J over G ([`super::solve`]) and then Babai levels for it, each kept only if J
//!   falls (block coordinate descent; J never rises). Before it, G₀ is scaled by the best of
//!   [`INIT_SCALES`] (the clipping trade-off at 2 bits). The summary's "gradient descent" on G is
//!   this step solved to the end: cheaper per alternation than a dozen line-search evaluations,
//!   and it was what made the learned lattice beat RTN (the step-limited descent did not);
//! - with companding, µ is picked from a grid (with the kurtosis start µ₀) by the true loss
//!   after the scale search, the exact alternation runs on the companded targets for it, and
//!   [`REFINE`] descent alternations (hand-written gradients, backtracking, [`STEPS`] steps on G
//!   and µ each) move G and µ jointly on the true loss.
//!
//! Stop when an alternation improves J by less than ε relatively. Finally G and µ are rounded to
//! f16, as stored, and z recomputed with the stored G if that helps.

use std::sync::OnceLock;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use half::f16;
use llvq_codes::design::{gaussian_mse, golden_min};
use rayon::prelude::*;

use super::babai;
use super::compand;
use super::solve;

/// Descent steps on G and µ per alternation.
pub const STEPS: usize = 4;
/// Descent alternations after the µ grid (companding only).
pub const REFINE: usize = 2;
/// Rows per parallel chunk of the loss (fixed, so sums are reduced in a fixed order).
const ROW_CHUNK: usize = 64;

/// One group's data.
pub struct Problem<'a> {
    /// Target weights, rows × width, row-major.
    pub x: &'a [f64],
    pub rows: usize,
    pub width: usize,
    pub d: usize,
    /// H_gg, width × width, row-major, symmetric.
    pub h: &'a [f64],
    /// Bits of each of the d coordinates.
    pub bits: Vec<u32>,
    /// The group's scale s (already at its stored precision).
    pub scale: f64,
}

impl<'a> Problem<'a> {
    /// The same group with other target weights (µ-law surrogates of the originals).
    fn with_x<'b>(&self, x: &'b [f64]) -> Problem<'b>
    where
        'a: 'b,
    {
        Problem {
            x,
            bits: self.bits.clone(),
            ..*self
        }
    }
}

/// The learned group code.
#[derive(Clone, Debug)]
pub struct Fit {
    /// d × d, row-major, every entry exactly an f16.
    pub g: Vec<f64>,
    /// µ (exactly an f16) or `None` without companding.
    pub mu: Option<f64>,
    /// Level index per weight, rows × width.
    pub z: Vec<u8>,
    /// L at the stored G, µ, z.
    pub loss: f64,
    /// L at the start (Cholesky G₀, kurtosis µ₀, Babai z₀).
    pub init_loss: f64,
    /// Alternations run.
    pub iters: usize,
}

/// (step, MSE) of the MSE-optimal midrise uniform quantizer of N(0,1) with 2^b levels;
/// b = 0 is the single level 0 (MSE 1).
pub fn uniform_gaussian(b: u32) -> (f64, f64) {
    static TABLE: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        (0..=super::params::MAX_COORD_BITS)
            .map(|b| {
                if b == 0 {
                    return (1.0, 1.0);
                }
                let n = 1usize << b;
                let levels = |step: f64| {
                    (0..n)
                        .map(|i| (i as f64 - (n - 1) as f64 / 2.0) * step)
                        .collect::<Vec<_>>()
                };
                let step = golden_min(|s| gaussian_mse(&levels(s)), 1e-3, 3.0);
                (step, gaussian_mse(&levels(step)))
            })
            .collect()
    });
    t[b as usize]
}

/// s·F_µ⁻¹(y), or s·y without companding.
#[inline]
fn dec(y: f64, s: f64, mu: Option<f64>) -> f64 {
    match mu {
        Some(m) => s * compand::inverse(y, m),
        None => s * y,
    }
}

/// The companded, scaled targets u = F_µ(x/s).
pub fn targets(p: &Problem, mu: Option<f64>) -> Vec<f64> {
    p.x.iter()
        .map(|&v| {
            let x = v / p.scale;
            mu.map_or(x, |m| compand::forward(x, m))
        })
        .collect()
}

/// Babai levels of every vector for G (`None` when G is singular).
pub fn round_all(p: &Problem, g: &[f64], mu: Option<f64>) -> Option<Vec<u8>> {
    let gi = babai::invert(g, p.d)?;
    let u = targets(p, mu);
    let mut z = vec![0u8; u.len()];
    z.par_chunks_mut(p.d * 256)
        .zip(u.par_chunks(p.d * 256))
        .for_each(|(zc, uc)| {
            for (zv, uv) in zc.chunks_exact_mut(p.d).zip(uc.chunks_exact(p.d)) {
                babai::round(&gi, uv, &p.bits, zv);
            }
        });
    Some(z)
}

/// The reconstruction Ŵ (rows × width) of levels `z`.
pub fn reconstruct(p: &Problem, g: &[f64], mu: Option<f64>, z: &[u8]) -> Vec<f64> {
    let d = p.d;
    let mut out = vec![0.0; z.len()];
    out.par_chunks_mut(d * 256)
        .zip(z.par_chunks(d * 256))
        .for_each(|(oc, zc)| {
            let mut y = vec![0.0; d];
            for (ov, zv) in oc.chunks_exact_mut(d).zip(zc.chunks_exact(d)) {
                babai::point(g, zv, &p.bits, &mut y);
                for (o, &yi) in ov.iter_mut().zip(&y) {
                    *o = dec(yi, p.scale, mu);
                }
            }
        });
    out
}

/// Gradients of L: ∂L/∂G (d × d, row-major) and ∂L/∂µ (0 without companding).
pub struct Grad {
    pub g: Vec<f64>,
    pub mu: f64,
}

/// L(G, µ) at fixed levels `z` (module doc), with its gradients when `grad`.
pub fn loss(p: &Problem, g: &[f64], mu: Option<f64>, z: &[u8], grad: bool) -> (f64, Option<Grad>) {
    let (d, w) = (p.d, p.width);
    let recon = reconstruct(p, g, mu, z);
    let delta: Vec<f64> = p.x.iter().zip(&recon).map(|(a, b)| a - b).collect();
    // Δ·H_gg, row-major; H = I (the lab's plain MSE) skips the product.
    let dh = if is_identity(p.h, w) {
        delta.clone()
    } else {
        let mut dh = vec![0.0; delta.len()];
        matmul(
            MatMut::from_row_major_slice_mut(&mut dh, p.rows, w),
            Accum::Replace,
            MatRef::from_row_major_slice(&delta, p.rows, w),
            MatRef::from_row_major_slice(p.h, w, w),
            1.0,
            Par::rayon(0),
        );
        dh
    };
    let chunks: Vec<(f64, Vec<f64>, f64)> = (0..p.rows.div_ceil(ROW_CHUNK))
        .into_par_iter()
        .map(|k| {
            let (mut l, mut gg, mut gm) = (0.0, vec![0.0; if grad { d * d } else { 0 }], 0.0);
            let mut y = vec![0.0; d];
            let mut c = vec![0.0; d];
            for r in k * ROW_CHUNK..((k + 1) * ROW_CHUNK).min(p.rows) {
                for j in 0..w {
                    l += dh[r * w + j] * delta[r * w + j];
                }
                if !grad {
                    continue;
                }
                for v in 0..w / d {
                    let base = r * w + v * d;
                    let zv = &z[base..base + d];
                    babai::point(g, zv, &p.bits, &mut y);
                    for (ci, (&zi, &b)) in c.iter_mut().zip(zv.iter().zip(&p.bits)) {
                        *ci = babai::coeff(zi, b);
                    }
                    for i in 0..d {
                        let dw = -2.0 * dh[r * w + v * d + i]; // ∂L/∂ŵ
                        let dy = match mu {
                            Some(m) => {
                                gm += dw * p.scale * compand::inv_dmu(y[i], m);
                                dw * p.scale * compand::inv_dy(y[i], m)
                            }
                            None => dw * p.scale,
                        };
                        for (gk, &ck) in gg[i * d..(i + 1) * d].iter_mut().zip(&c) {
                            *gk += dy * ck;
                        }
                    }
                }
            }
            (l, gg, gm)
        })
        .collect();
    let mut total = 0.0;
    let mut gg = vec![0.0; if grad { d * d } else { 0 }];
    let mut gm = 0.0;
    for (l, g_, m) in chunks {
        total += l;
        gg.iter_mut().zip(&g_).for_each(|(a, b)| *a += b);
        gm += m;
    }
    (total, grad.then_some(Grad { g: gg, mu: gm }))
}

/// Lower Cholesky factor of the d × d SPD `a` (ridge added until it factors).
fn cholesky(a: &[f64], d: usize) -> Vec<f64> {
    let tr = (0..d).map(|i| a[i * d + i]).sum::<f64>() / d as f64;
    let mut ridge = if tr > 0.0 && tr.is_finite() { 1e-10 * tr } else { 1.0 };
    loop {
        let mut l = vec![0.0; d * d];
        let mut ok = true;
        'outer: for i in 0..d {
            for j in 0..=i {
                let mut s = a[i * d + j] + if i == j { ridge } else { 0.0 };
                for k in 0..j {
                    s -= l[i * d + k] * l[j * d + k];
                }
                if i == j {
                    if !(s > 0.0 && s.is_finite()) {
                        ok = false;
                        break 'outer;
                    }
                    l[i * d + i] = s.sqrt();
                } else {
                    l[i * d + j] = s / l[j * d + j];
                }
            }
        }
        if ok {
            return l;
        }
        ridge = if tr > 0.0 && tr.is_finite() {
            ridge * 100.0
        } else {
            ridge * 10.0 + 1.0
        };
    }
}

/// G₀ = chol(cov(u))·diag(Δ_{bᵢ}) (module doc).
pub fn init_g(p: &Problem, mu: Option<f64>) -> Vec<f64> {
    let d = p.d;
    let u = targets(p, mu);
    let n = (u.len() / d).max(1) as f64;
    let mut cov = vec![0.0; d * d];
    for v in u.chunks_exact(d) {
        for i in 0..d {
            for j in 0..=i {
                cov[i * d + j] += v[i] * v[j];
            }
        }
    }
    for i in 0..d {
        for j in 0..=i {
            cov[i * d + j] /= n;
            cov[j * d + i] = cov[i * d + j];
        }
    }
    let mut g = cholesky(&cov, d);
    for i in 0..d {
        for (j, &b) in p.bits.iter().enumerate() {
            g[i * d + j] *= uniform_gaussian(b).0;
        }
    }
    g
}

fn is_identity(h: &[f64], n: usize) -> bool {
    h.iter()
        .enumerate()
        .all(|(i, &v)| v == if i % (n + 1) == 0 { 1.0 } else { 0.0 })
}

fn frob2(g: &[f64]) -> f64 {
    g.iter().map(|v| v * v).sum()
}

fn to_f16(v: f64) -> f64 {
    f16::from_f64(v).to_f64()
}

/// Coefficient values of levels `z` (rows × width).
fn coeffs(p: &Problem, z: &[u8]) -> Vec<f64> {
    let d = p.d;
    z.chunks_exact(d)
        .flat_map(|zv| {
            zv.iter()
                .zip(&p.bits)
                .map(|(&zi, &b)| babai::coeff(zi, b))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Relative scales of G₀ tried before the alternation (the Cholesky start sizes the box for
/// the covariance; the loss-optimal clipping at 2 bits differs, as for scalar RTN).
const INIT_SCALES: [f64; 7] = [0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4];

/// Exact alternation without companding ([`super::solve`]): best G for the levels, then Babai
/// levels for that G, kept while J falls by more than ε relatively. `p.x` are the targets of
/// the linear decoder s·G c. Returns (G, z, J).
fn alternate(p: &Problem, g0: &[f64], iters: usize, eps: f64, rho: f64) -> (Vec<f64>, Vec<u8>, f64, usize) {
    let tg = solve::Target::new(p.x, p.h, p.rows, p.width);
    let quad = |z: &[u8]| solve::Quadratic::new(&tg, &coeffs(p, z), p.h, p.rows, p.width, p.d, p.scale, rho);
    // Start: the best scaled Cholesky lattice.
    let mut best: Option<(Vec<f64>, Vec<u8>, f64)> = None;
    for a in INIT_SCALES {
        let g: Vec<f64> = g0.iter().map(|v| v * a).collect();
        let Some(z) = round_all(p, &g, None) else { continue };
        let j = quad(&z).value(&g);
        if best.as_ref().is_none_or(|b| j < b.2) {
            best = Some((g, z, j));
        }
    }
    let Some((mut g, mut z, mut j)) = best else {
        return (g0.to_vec(), vec![0; p.x.len()], f64::INFINITY, 0);
    };
    let mut q = quad(&z);
    let mut done = 0;
    for it in 0..iters {
        done = it + 1;
        let start = j;
        let Some(gs) = q.minimiser() else { break };
        let js = q.value(&gs);
        if js < j {
            (g, j) = (gs, js);
        }
        if let Some(zn) = round_all(p, &g, None) {
            let qn = quad(&zn);
            let jn = qn.value(&g);
            if jn < j {
                (z, j, q) = (zn, jn, qn);
            }
        }
        if start <= 0.0 || (start - j) / start < eps {
            break;
        }
    }
    (g, z, j, done)
}

/// Fits G, µ and the levels of one group (module doc). `compand` turns µ-law on.
///
/// Without companding the alternation is exact ([`alternate`]). With companding the loss is
/// not quadratic in G: for each µ of a small grid (with the kurtosis start µ₀) the exact
/// alternation runs on the companded targets s·F_µ(x/s) (error measured before F⁻¹), the best
/// (G, µ, z) by the true loss is kept, and [`REFINE`] descent alternations on the true loss move
/// G and µ jointly from there.
pub fn fit(p: &Problem, compand: bool, iters: usize, eps: f64, reg: f64) -> Fit {
    let mu0 = compand.then(|| {
        let xs: Vec<f64> = p.x.iter().map(|v| v / p.scale).collect();
        compand::mu_from_kurtosis(&xs)
    });
    let g0 = init_g(p, mu0);
    let z0 = round_all(p, &g0, mu0).unwrap_or_else(|| vec![0; p.x.len()]);
    let init_loss = loss(p, &g0, mu0, &z0, false).0;
    let rho = if frob2(&g0) > 0.0 {
        reg * init_loss / frob2(&g0)
    } else {
        0.0
    };
    let obj = |g: &[f64], mu: Option<f64>, z: &[u8]| loss(p, g, mu, z, false).0 + rho * frob2(g);
    let (mut g, mut mu, mut z, mut j, mut done);
    match mu0 {
        None => {
            (g, z, j, done) = alternate(p, &g0, iters, eps, rho);
            mu = None;
            let j0 = init_loss + rho * frob2(&g0);
            if j.is_nan() || j >= j0 {
                (g, z, j) = (g0.clone(), z0.clone(), j0);
            }
        }
        Some(m0) => {
            (g, mu, z, j, done) = (g0.clone(), mu0, z0.clone(), init_loss + rho * frob2(&g0), 0);
            // Each µ of the grid is scored by the true loss after the scale search alone; the
            // exact alternation then runs for the best one only.
            let mut grid = vec![m0, 10.0, 25.0, 60.0, 150.0, 255.0];
            grid.dedup();
            let sur = |m: f64| -> Vec<f64> { targets(p, Some(m)).iter().map(|v| v * p.scale).collect() };
            let mut pick: Option<(f64, Vec<f64>, f64)> = None;
            for m in grid {
                let u = sur(m);
                let (gm, zm, _, _) = alternate(&p.with_x(&u), &init_g(p, Some(m)), 0, eps, rho);
                let jm = obj(&gm, Some(m), &zm);
                if pick.as_ref().is_none_or(|b| jm < b.2) {
                    pick = Some((m, gm, jm));
                }
            }
            if let Some((m, gm, _)) = pick {
                let u = sur(m);
                let (gm, zm, _, it) = alternate(&p.with_x(&u), &gm, iters, eps, rho);
                done = it;
                let jm = obj(&gm, Some(m), &zm);
                if jm < j {
                    (g, mu, z, j) = (gm, Some(m), zm, jm);
                }
            }
            (g, mu, z, j) = descend(p, g, mu, z, j, REFINE, eps, rho);
            done += REFINE;
        }
    }
    let _ = j;
    // Store precision: G and µ as f16; the levels are re-rounded with the stored G if that helps.
    let g: Vec<f64> = g.iter().map(|&v| to_f16(v)).collect();
    let mu = mu.map(|m| to_f16(m).clamp(compand::MU_MIN, compand::MU_MAX));
    let mut best = loss(p, &g, mu, &z, false).0;
    if let Some(zn) = round_all(p, &g, mu) {
        let l = loss(p, &g, mu, &zn, false).0;
        if l < best {
            (z, best) = (zn, l);
        }
    }
    Fit {
        g,
        mu,
        z,
        loss: best,
        init_loss,
        iters: done,
    }
}

/// Descent alternations on the true loss for µ-law groups (module doc; J never rises).
#[allow(clippy::too_many_arguments)] // the state of the alternation
fn descend(
    p: &Problem,
    mut g: Vec<f64>,
    mut mu: Option<f64>,
    mut z: Vec<u8>,
    mut j: f64,
    iters: usize,
    eps: f64,
    rho: f64,
) -> (Vec<f64>, Option<f64>, Vec<u8>, f64) {
    let obj = |g: &[f64], mu: Option<f64>, z: &[u8]| loss(p, g, mu, z, false).0 + rho * frob2(g);
    let (mut tau_g, mut tau_mu) = (0.05, 0.05);
    for _ in 0..iters {
        let start = j;
        for _ in 0..STEPS {
            let (_, gr) = loss(p, &g, mu, &z, true);
            let gr = gr.expect("gradient requested");
            let dg: Vec<f64> = gr.g.iter().zip(&g).map(|(a, b)| a + 2.0 * rho * b).collect();
            let norm = frob2(&dg).sqrt();
            let mut moved = false;
            if norm > 0.0 {
                for _ in 0..8 {
                    let eta = tau_g * frob2(&g).sqrt() / norm;
                    let cand: Vec<f64> = g.iter().zip(&dg).map(|(a, b)| a - eta * b).collect();
                    let jc = obj(&cand, mu, &z);
                    if jc < j {
                        (g, j, tau_g, moved) = (cand, jc, (tau_g * 1.5).min(0.5), true);
                        break;
                    }
                    tau_g /= 2.0;
                }
            }
            if let Some(m) = mu {
                if gr.mu != 0.0 {
                    for _ in 0..6 {
                        let cand = (m * (1.0 - tau_mu * gr.mu.signum())).clamp(compand::MU_MIN, compand::MU_MAX);
                        let jc = obj(&g, Some(cand), &z);
                        if cand != m && jc < j {
                            (mu, j, tau_mu, moved) = (Some(cand), jc, (tau_mu * 1.5).min(0.5), true);
                            break;
                        }
                        tau_mu /= 2.0;
                    }
                }
            }
            if !moved {
                break;
            }
        }
        if let Some(zn) = round_all(p, &g, mu) {
            let jn = obj(&g, mu, &zn);
            if jn < j {
                (z, j) = (zn, jn);
            }
        }
        if start <= 0.0 || (start - j) / start < eps {
            break;
        }
    }
    (g, mu, z, j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    fn spd(n: usize, rng: &mut impl Rng) -> Vec<f64> {
        let t = 3 * n;
        let a: Vec<f64> = (0..t * n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        let mut h = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = (0..t).map(|k| a[k * n + i] * a[k * n + j]).sum::<f64>() / t as f64;
            }
            h[i * n + i] += 0.1;
        }
        h
    }

    /// A group of `rows × width` weights in `d` dimensions with `budget` bits per vector, at
    /// the scale the pipeline stores (the largest |weight|, rounded to f16).
    fn problem<'a>(x: &'a [f64], (rows, width, d): (usize, usize, usize), h: &'a [f64], budget: u32) -> Problem<'a> {
        Problem {
            x,
            rows,
            width,
            d,
            h,
            bits: babai::coord_bits(d, budget),
            scale: to_f16(x.iter().fold(0f64, |m, v| m.max(v.abs()))),
        }
    }

    #[test]
    fn optimal_uniform_steps() {
        // Max (1960): 2 levels at ±0.798 (step 1.596, MSE 0.3634); 4 levels step ≈ 0.996.
        let (s1, m1) = uniform_gaussian(1);
        assert!((s1 - 2.0 * (2.0 / std::f64::consts::PI).sqrt()).abs() < 1e-4, "{s1}");
        assert!((m1 - (1.0 - 2.0 / std::f64::consts::PI)).abs() < 1e-6, "{m1}");
        let (s2, m2) = uniform_gaussian(2);
        assert!((s2 - 0.9957).abs() < 2e-3 && (m2 - 0.1188).abs() < 1e-3, "{s2} {m2}");
        for b in 1..8 {
            assert!(uniform_gaussian(b + 1).1 < uniform_gaussian(b).1);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (rows, width, d) = (6, 16, 8);
        let x: Vec<f64> = (0..rows * width)
            .map(|_| 0.05 * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let h = spd(width, &mut rng);
        for compand in [false, true] {
            let p = problem(&x, (rows, width, d), &h, 20);
            let mu = compand.then_some(40.0);
            let mut g = init_g(&p, mu);
            // A non-triangular G, so every entry matters.
            g.iter_mut()
                .for_each(|v| *v += 0.02 * rng.sample::<f64, _>(StandardNormal));
            let z = round_all(&p, &g, mu).unwrap();
            let (l0, gr) = loss(&p, &g, mu, &z, true);
            let gr = gr.unwrap();
            // An independent evaluation of L: plain loops, no matmul.
            let rec = reconstruct(&p, &g, mu, &z);
            let mut lref = 0.0;
            for r in 0..rows {
                for i in 0..width {
                    for k in 0..width {
                        lref += (x[r * width + i] - rec[r * width + i])
                            * h[i * width + k]
                            * (x[r * width + k] - rec[r * width + k]);
                    }
                }
            }
            assert!((l0 - lref).abs() < 1e-10 * lref.max(1e-12), "{l0} vs {lref}");
            for e in 0..d * d {
                let step = 1e-6;
                let mut gp = g.clone();
                gp[e] += step;
                let mut gm = g.clone();
                gm[e] -= step;
                let fd = (loss(&p, &gp, mu, &z, false).0 - loss(&p, &gm, mu, &z, false).0) / (2.0 * step);
                assert!(
                    (fd - gr.g[e]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "compand={compand} G[{e}]: fd {fd} vs {}",
                    gr.g[e]
                );
            }
            if let Some(m) = mu {
                let step = 1e-3;
                let fd = (loss(&p, &g, Some(m + step), &z, false).0 - loss(&p, &g, Some(m - step), &z, false).0)
                    / (2.0 * step);
                assert!((fd - gr.mu).abs() < 1e-5 * (1.0 + fd.abs()), "µ: fd {fd} vs {}", gr.mu);
            }
        }
    }

    #[test]
    fn fit_never_worsens_and_stores_f16() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let (rows, width, d) = (64, 32, 8);
        // Heavy-tailed, correlated weights: Student-like via Gaussian ratio, plus a shared column mix.
        let x: Vec<f64> = (0..rows * width)
            .map(|_| {
                let a: f64 = rng.sample(StandardNormal);
                let b: f64 = rng.sample::<f64, _>(StandardNormal).abs() + 0.5;
                0.02 * a / b
            })
            .collect();
        let h = spd(width, &mut rng);
        let p = problem(&x, (rows, width, d), &h, 16);
        for compand in [false, true] {
            let f = fit(&p, compand, 10, 1e-4, 1e-3);
            assert!(f.loss < f.init_loss, "compand={compand}: {} !< {}", f.loss, f.init_loss);
            assert!(f.g.iter().all(|&v| to_f16(v) == v));
            assert_eq!(f.mu.is_some(), compand);
            let check = loss(&p, &f.g, f.mu, &f.z, false).0;
            assert!((check - f.loss).abs() <= 1e-12 * check);
        }
    }
}
