//! Hessian-corrected quantization of column blocks: GPTQ/LDLQ generalised to vectors (App. D.2).
//!
//! A row w of a linear layer's weight is quantized to minimise the proxy loss
//! ΔwᵀHΔw (Eq. 24-25, H = E[xxᵀ] of the layer's input). Columns are taken in blocks C of the
//! code's dimension b (24 for Leech, 8 for E8P12, 1 for scalar codes), left to right. After
//! block C is quantized with error e_C = w_C − ŵ_C, the columns R to its right absorb the optimal
//! correction (Gaussian conditioning of R on C):
//!
//! ```text
//!     w_R ← w_R − e_C · G_CC⁻¹ G_CR ,    G = (H_F)⁻¹ over the columns F = C ∪ R not yet fixed,
//! ```
//!
//! which is the paper's Δw_R = −L_RR⁻¹ L_RC Δw_C written with the inverse. With H⁻¹ = UᵀU
//! (U upper triangular), the inverse over every trailing set F is the corresponding trailing
//! block of U (U_FFᵀU_FF), so G_CC⁻¹G_CR = U_CC⁻¹U_CR: one factorisation serves every block.
//! [`Factor`] stores V = diag_b(U_CC)⁻¹·U, block-unit upper triangular, so the correction is
//! `w_R −= e_C · V_CR`. For b = 1 this is exactly GPTQ; for b > 1 it is QuIP#'s block LDLQ.
//!
//! U is computed without forming H⁻¹: with J the reversal permutation, J H J = L'L'ᵀ gives
//! H⁻¹ = (J L'⁻¹ J)ᵀ (J L'⁻¹ J), so U = J L'⁻¹ J (one Cholesky, one triangular inverse, f64).
//!
//! Numerics. H is damped by λ·mean(diag H) on its diagonal (λ = [`LdlqParams::damp`], default
//! 0.01); a column whose diagonal is zero (an input that never fires) gets mean(diag H) instead.
//! If the Cholesky still meets a non-positive pivot, λ is multiplied by 10 and the factorisation
//! retried, up to [`LdlqParams::max_retries`] times; the λ used is reported. Everything is f64.
//!
//! Order and buffering. Blocks are quantized in natural column order. Corrections inside a lazy
//! batch of about [`LdlqParams::batch`] columns are applied row by row right after each block; the
//! columns past the batch get the batch's accumulated errors in one matrix product
//! (`W[:, after] −= E_batch · V[batch, after]`), as in GPTQ's lazy batch updates. Rows are
//! independent and quantized in parallel.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::prelude::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use llvq_codes::Quantizer;
use rayon::prelude::*;

use crate::error::{QuantError, Result};

/// Parameters of the factorisation and the sweep.
#[derive(Clone, Copy, Debug)]
pub struct LdlqParams {
    /// Diagonal damping relative to mean(diag H).
    pub damp: f64,
    /// Times the damping is multiplied by 10 when the Cholesky fails.
    pub max_retries: u32,
    /// Columns per lazy batch (rounded to a multiple of the block dimension).
    pub batch: usize,
}

impl Default for LdlqParams {
    fn default() -> Self {
        LdlqParams {
            damp: 0.01,
            max_retries: 4,
            batch: 128,
        }
    }
}

/// V = diag_b(U_CC)⁻¹·U for H⁻¹ = UᵀU (module doc), `n × n` row-major, for blocks of `b` columns.
pub struct Factor {
    n: usize,
    b: usize,
    v: Vec<f64>,
    /// The relative damping finally used.
    pub damp: f64,
}

impl Factor {
    /// Factors the `n × n` symmetric matrix `h` (row-major) for blocks of `b` columns (`b | n`).
    /// `name` labels errors.
    pub fn new(h: &[f64], n: usize, b: usize, params: &LdlqParams, name: &str) -> Result<Factor> {
        Factor::in_place(h.to_vec(), n, b, params, name, &mut || h.to_vec())
    }

    /// [`Factor::new`] in the buffer of `h`, which becomes V: the factorisation holds a quarter
    /// buffer more (the triangular inverse's workspace), not three more n × n buffers (issue 14:
    /// at Llama-2-70B's FFN width one is 6.6 GB). A failed Cholesky destroys the buffer; `again`
    /// makes the same matrix anew for the retry with more damping.
    pub fn in_place(
        mut h: Vec<f64>,
        n: usize,
        b: usize,
        params: &LdlqParams,
        name: &str,
        again: &mut dyn FnMut() -> Vec<f64>,
    ) -> Result<Factor> {
        assert_eq!(h.len(), n * n, "Hessian of {name} must be n×n");
        assert!(b > 0 && n % b == 0, "block dimension {b} must divide {n}");
        let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
        let mean = if mean.is_finite() && mean > 0.0 { mean } else { 1.0 };
        if let Some(i) = h.iter().position(|v| !v.is_finite()) {
            return Err(QuantError::tensor(
                name,
                format!("Hessian entry ({}, {}) is {}", i / n, i % n, h[i]),
            ));
        }
        let mut damp = params.damp;
        let mut last_pivot = 0;
        for attempt in 0..=params.max_retries {
            if attempt > 0 {
                h = again();
                assert_eq!(h.len(), n * n, "Hessian of {name} must be n×n");
            }
            // J H J column-major: the reversed row-major buffer, transposed. Then the damped
            // diagonal (a column that never fired gets the mean).
            h.reverse();
            transpose(&mut h, n);
            for i in 0..n {
                let d = &mut h[i * n + i];
                if *d <= 0.0 {
                    *d = mean;
                }
                *d += damp * mean;
            }
            let par = faer::get_global_parallelism();
            let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(n, par, Default::default()));
            let a = MatMut::from_column_major_slice_mut(&mut h, n, n);
            match cholesky_in_place(a, Default::default(), par, MemStack::new(&mut mem), Default::default()) {
                Ok(_) => {
                    let mut tmp = Vec::new();
                    invert_lower(
                        MatMut::from_column_major_slice_mut(&mut h, n, n),
                        &mut tmp,
                        Par::rayon(0),
                    );
                    drop(tmp);
                    // U = J L'⁻¹ J row-major: reversed and transposed back, zero below the
                    // diagonal (the Cholesky's workspace).
                    h.reverse();
                    transpose(&mut h, n);
                    h.par_chunks_mut(n).enumerate().for_each(|(i, row)| row[..i].fill(0.0));
                    let mut v = h;
                    // Then each block row C scaled by U_CC⁻¹.
                    v.par_chunks_mut(b * n).enumerate().for_each(|(k, rows)| {
                        let c0 = k * b;
                        // Back substitution on the b×b upper-triangular U_CC (copied first: the
                        // block row is overwritten in place), one column at a time.
                        let ucc: Vec<f64> = (0..b * b).map(|t| rows[(t / b) * n + c0 + t % b]).collect();
                        for col in c0..n {
                            for i in (0..b).rev() {
                                let mut s = rows[i * n + col];
                                for j in i + 1..b {
                                    s -= ucc[i * b + j] * rows[j * n + col];
                                }
                                rows[i * n + col] = s / ucc[i * b + i];
                            }
                        }
                    });
                    return Ok(Factor { n, b, v, damp });
                }
                Err(faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index }) => {
                    last_pivot = n - 1 - index;
                    damp *= 10.0;
                }
            }
        }
        Err(QuantError::NotPositiveDefinite {
            name: name.to_string(),
            damp: damp / 10.0,
            pivot: last_pivot,
        })
    }

    pub fn dim(&self) -> usize {
        self.n
    }

    /// Entry (i, j) of V (zero below the block diagonal, identity on it).
    pub fn v(&self, i: usize, j: usize) -> f64 {
        self.v[i * self.n + j]
    }
}

/// Transposes the `n × n` buffer in place, in tiles (cache-friendly at n in the tens of
/// thousands).
fn transpose(a: &mut [f64], n: usize) {
    const T: usize = 64;
    for i0 in (0..n).step_by(T) {
        for j0 in (i0..n).step_by(T) {
            for i in i0..(i0 + T).min(n) {
                for j in j0.max(i + 1)..(j0 + T).min(n) {
                    a.swap(i * n + j, j * n + i);
                }
            }
        }
    }
}

/// L ← L⁻¹ on the lower triangle of `a`, in place. The same recursion as faer's
/// `invert_lower_triangular` (halves; the lower-left block as −L₂₂⁻¹·(L₂₁·L₁₁⁻¹) by a
/// triangular product then a solve), so the same bits, without its second n × n buffer: the
/// product needs L₂₁ after L₁₁ is inverted, so L₂₁ is copied to `tmp` first (n²/4 at the top).
fn invert_lower(a: MatMut<'_, f64>, tmp: &mut Vec<f64>, par: Par) {
    let n = a.nrows();
    let mut a = a;
    match n {
        0 => {}
        1 => a[(0, 0)] = a[(0, 0)].recip(),
        2 => {
            let d00 = a[(0, 0)].recip();
            let d11 = a[(1, 1)].recip();
            let d10 = -d11 * a[(1, 0)] * d00;
            a[(0, 0)] = d00;
            a[(1, 1)] = d11;
            a[(1, 0)] = d10;
        }
        _ => {
            let mid = n / 2;
            let (mut tl, _, mut bl, br) = a.split_at_mut(mid, mid);
            invert_lower(tl.rb_mut(), tmp, par);
            let (r, c) = (n - mid, mid);
            tmp.resize(r * c, 0.0);
            let mut t = MatMut::from_column_major_slice_mut(&mut tmp[..r * c], r, c);
            t.copy_from(bl.rb());
            triangular::matmul(
                bl.rb_mut(),
                BlockStructure::Rectangular,
                Accum::Replace,
                t.rb(),
                BlockStructure::Rectangular,
                tl.rb(),
                BlockStructure::TriangularLower,
                -1.0,
                par,
            );
            solve_lower_triangular_in_place(br.rb(), bl.rb_mut(), par);
            invert_lower(br, tmp, par);
        }
    }
}

/// What one sweep produced: the codes and the reconstruction, both row-major.
pub struct Quantized {
    /// `rows × n/b` codes.
    pub codes: Vec<u64>,
    /// `rows × n` reconstruction ŵ (scales applied).
    pub recon: Vec<f32>,
}

/// Quantizes the `rows × n` row-major matrix `w` block by block with `code` (block dimension
/// b | n). `scales` holds one positive scale per (row, group of `group` columns), row-major; a
/// block is coded as x/s and reconstructed as s·x̂. With a [`Factor`] the columns to the right of
/// each block absorb its error (module doc); without one every block is rounded independently
/// (RTN). `w` is left holding the corrected weights the blocks were quantized from.
#[allow(clippy::too_many_arguments)] // a kernel: every argument is an input it needs
pub fn quantize(
    w: &mut [f64],
    rows: usize,
    n: usize,
    factor: Option<&Factor>,
    code: &dyn Quantizer,
    scales: &[f32],
    group: usize,
    params: &LdlqParams,
    name: &str,
) -> Result<Quantized> {
    let b = code.dim();
    assert!(n % b == 0 && group % b == 0 && w.len() == rows * n, "{name}: shapes");
    let groups = n.div_ceil(group);
    assert_eq!(scales.len(), rows * groups, "{name}: scales");
    if let Some(f) = factor {
        assert!(f.n == n && f.b == b, "{name}: factor is for n={}, b={}", f.n, f.b);
    }
    let nb = n / b;
    let mut codes = vec![0u64; rows * nb];
    let mut recon = vec![0f32; rows * n];
    let batch = params.batch.max(b).div_ceil(b) * b;
    let mut err = vec![0f64; rows * batch];
    let code_err = |e: llvq_codes::CodeError| QuantError::Code {
        name: name.to_string(),
        err: Box::new(e),
    };

    for bs in (0..n).step_by(batch) {
        let be = (bs + batch).min(n);
        let width = be - bs;
        // Blocks of this batch, rows in parallel; each row quantizes a block then corrects the
        // rest of the batch in its own row.
        w.par_chunks_mut(n)
            .zip(codes.par_chunks_mut(nb))
            .zip(recon.par_chunks_mut(n))
            .zip(err.par_chunks_mut(batch))
            .zip(scales.par_chunks(groups))
            .try_for_each(|((((wr, cr), rr), er), sr)| {
                let mut x = vec![0f32; b];
                let mut xq = vec![0f32; b];
                for c0 in (bs..be).step_by(b) {
                    let s = sr[c0 / group];
                    for (xi, &wi) in x.iter_mut().zip(&wr[c0..c0 + b]) {
                        *xi = (wi / s as f64) as f32;
                    }
                    cr[c0 / b] = code.quantize_block(&x, &mut xq).map_err(code_err)?;
                    for j in 0..b {
                        let q = xq[j] * s;
                        rr[c0 + j] = q;
                        er[c0 - bs + j] = wr[c0 + j] - q as f64;
                    }
                    if let Some(f) = factor {
                        for j in 0..b {
                            let e = er[c0 - bs + j];
                            if e != 0.0 {
                                let vrow = &f.v[(c0 + j) * n..(c0 + j + 1) * n];
                                for (wc, &vc) in wr[c0 + b..be].iter_mut().zip(&vrow[c0 + b..be]) {
                                    *wc -= e * vc;
                                }
                            }
                        }
                    }
                }
                Ok::<(), QuantError>(())
            })?;
        // Columns past the batch: W[:, be..] −= E · V[bs..be, be..].
        if let (Some(f), true) = (factor, be < n) {
            let wv = MatMut::from_row_major_slice_mut(w, rows, n);
            let ev = MatRef::from_row_major_slice_with_stride(&err[..], rows, width, batch);
            let vv = MatRef::from_row_major_slice(&f.v[..], n, n);
            matmul(
                wv.submatrix_mut(0, be, rows, n - be),
                Accum::Add,
                ev,
                vv.submatrix(bs, be, width, n - be),
                -1.0,
                Par::rayon(0),
            );
        }
    }
    Ok(Quantized { codes, recon })
}

/// tr(Δ H Δᵀ) for the `rows × n` row-major difference `d` and the `n × n` matrix `h`: the proxy
/// loss of Eq. 24-25 summed over rows.
pub fn proxy_loss(d: &[f64], rows: usize, n: usize, h: &[f64]) -> f64 {
    let dv = MatRef::from_row_major_slice(d, rows, n);
    let hv = MatRef::from_row_major_slice(h, n, n);
    let mut dh = Mat::<f64>::zeros(rows, n);
    matmul(dh.as_mut(), Accum::Replace, dv, hv, 1.0, Par::rayon(0));
    // Per-row sums in parallel, then one sequential sum: rayon's `sum` reduces in an order that
    // depends on work stealing, and the result is stored in the file (same seed → same bytes).
    let per_row: Vec<f64> = (0..rows)
        .into_par_iter()
        .map(|r| (0..n).map(|j| dh[(r, j)] * d[r * n + j]).sum::<f64>())
        .collect();
    per_row.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llvq_codes::from_spec;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// A random SPD matrix with strong correlations: X ᵀX/t for t samples of a mixed source.
    fn hessian(n: usize, rng: &mut impl Rng) -> Vec<f64> {
        let t = 4 * n;
        let mix: Vec<f64> = (0..n * n)
            .map(|_| rng.sample::<f64, _>(StandardNormal) / (n as f64).sqrt())
            .collect();
        let mut h = vec![0.0; n * n];
        for _ in 0..t {
            let z: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
            let x: Vec<f64> = (0..n)
                .map(|i| z[i] + (0..n).map(|k| 2.0 * mix[i * n + k] * z[k]).sum::<f64>())
                .collect();
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] += x[i] * x[j] / t as f64;
                }
            }
        }
        h
    }

    fn gauss(len: usize, rng: &mut impl Rng) -> Vec<f64> {
        (0..len).map(|_| rng.sample(StandardNormal)).collect()
    }

    /// Gauss-Jordan inverse (independent of the Cholesky route).
    fn inverse(a: &[f64], n: usize) -> Vec<f64> {
        let mut m = a.to_vec();
        let mut inv: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
        for c in 0..n {
            let p = (c..n)
                .max_by(|&x, &y| m[x * n + c].abs().total_cmp(&m[y * n + c].abs()))
                .unwrap();
            for k in 0..n {
                m.swap(c * n + k, p * n + k);
                inv.swap(c * n + k, p * n + k);
            }
            let d = m[c * n + c];
            for k in 0..n {
                m[c * n + k] /= d;
                inv[c * n + k] /= d;
            }
            for r in 0..n {
                if r != c {
                    let f = m[r * n + c];
                    for k in 0..n {
                        m[r * n + k] -= f * m[c * n + k];
                        inv[r * n + k] -= f * inv[c * n + k];
                    }
                }
            }
        }
        inv
    }

    /// Textbook block OBS: explicit inverse over the columns not yet fixed, conditioning
    /// update, Schur complement after every block.
    fn reference(w: &[f64], rows: usize, n: usize, h: &[f64], code: &dyn Quantizer, damp: f64) -> Vec<u64> {
        let b = code.dim();
        let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
        let mut hd = h.to_vec();
        for i in 0..n {
            hd[i * n + i] += damp * mean;
        }
        let mut g = inverse(&hd, n); // inverse over the active columns [c0, n)
        let mut w = w.to_vec();
        let mut codes = vec![0u64; rows * n / b];
        let mut xq = vec![0f32; b];
        for c0 in (0..n).step_by(b) {
            let m = n - c0; // active size; g is m×m over columns c0..n
            let gcc: Vec<f64> = (0..b * b).map(|k| g[(k / b) * m + k % b]).collect();
            let gcc_inv = inverse(&gcc, b);
            // K = G_CC⁻¹ G_CR (b × (m − b)).
            let k: Vec<f64> = (0..b * (m - b))
                .map(|idx| {
                    let (i, j) = (idx / (m - b), idx % (m - b));
                    (0..b).map(|t| gcc_inv[i * b + t] * g[t * m + b + j]).sum()
                })
                .collect();
            for r in 0..rows {
                let x: Vec<f32> = w[r * n + c0..r * n + c0 + b].iter().map(|&v| v as f32).collect();
                codes[r * n / b + c0 / b] = code.quantize_block(&x, &mut xq).unwrap();
                let e: Vec<f64> = (0..b).map(|j| w[r * n + c0 + j] - xq[j] as f64).collect();
                for j in 0..m - b {
                    w[r * n + c0 + b + j] -= (0..b).map(|i| e[i] * k[i * (m - b) + j]).sum::<f64>();
                }
            }
            // Schur complement: G_RR − G_RC G_CC⁻¹ G_CR.
            let mut g2 = vec![0.0; (m - b) * (m - b)];
            for i in 0..m - b {
                for j in 0..m - b {
                    g2[i * (m - b) + j] =
                        g[(b + i) * m + b + j] - (0..b).map(|t| g[(b + i) * m + t] * k[t * (m - b) + j]).sum::<f64>();
                }
            }
            g = g2;
        }
        codes
    }

    #[test]
    fn matches_textbook_block_obs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (spec, n, rows) in [
            ("uniform:bits=2", 40, 6),
            ("e8p12", 48, 5),
            ("llvq-sg:m=6,gain=1", 72, 4),
        ] {
            let code = from_spec(spec).unwrap();
            let h = hessian(n, &mut rng);
            let w = gauss(rows * n, &mut rng);
            let params = LdlqParams {
                batch: 16,
                ..Default::default()
            };
            let f = Factor::new(&h, n, code.dim(), &params, "test").unwrap();
            let mut wq = w.clone();
            let got = quantize(
                &mut wq,
                rows,
                n,
                Some(&f),
                code.as_ref(),
                &vec![1.0; rows],
                n,
                &params,
                "test",
            )
            .unwrap();
            let want = reference(&w, rows, n, &h, code.as_ref(), params.damp);
            assert_eq!(got.codes, want, "{spec}");
        }
    }

    #[test]
    fn identity_hessian_is_rounding() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let code = from_spec("e8p12").unwrap();
        let (rows, n) = (7, 64);
        let mut h = vec![0.0; n * n];
        for i in 0..n {
            h[i * n + i] = 2.5;
        }
        let w = gauss(rows * n, &mut rng);
        let scales: Vec<f32> = (0..rows * 2).map(|i| 0.5 + i as f32 * 0.1).collect();
        let p = LdlqParams::default();
        let f = Factor::new(&h, n, 8, &p, "t").unwrap();
        let a = quantize(&mut w.clone(), rows, n, Some(&f), code.as_ref(), &scales, 32, &p, "t").unwrap();
        let b = quantize(&mut w.clone(), rows, n, None, code.as_ref(), &scales, 32, &p, "t").unwrap();
        assert_eq!(a.codes, b.codes);
        // And RTN is the code applied to each scaled block.
        let mut out = vec![0f32; 8];
        for r in 0..rows {
            for k in 0..n / 8 {
                let s = scales[r * 2 + k * 8 / 32];
                let x: Vec<f32> = (0..8).map(|j| (w[r * n + k * 8 + j] / s as f64) as f32).collect();
                assert_eq!(b.codes[r * 8 + k], code.quantize_block(&x, &mut out).unwrap());
            }
        }
    }

    #[test]
    fn correction_lowers_proxy_loss() {
        // On correlated inputs the corrected sweep must beat independent rounding on the proxy
        // loss, for every code, over several matrices.
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for spec in ["uniform:bits=2", "e8p12", "llvq-sg:m=6,gain=1"] {
            let code = from_spec(spec).unwrap();
            let (rows, n) = (16, 48);
            let (mut l_ldlq, mut l_rtn) = (0.0, 0.0);
            for _ in 0..3 {
                let h = hessian(n, &mut rng);
                let w = gauss(rows * n, &mut rng);
                let p = LdlqParams::default();
                let f = Factor::new(&h, n, code.dim(), &p, "t").unwrap();
                for (fac, acc) in [(Some(&f), &mut l_ldlq), (None, &mut l_rtn)] {
                    let q = quantize(
                        &mut w.clone(),
                        rows,
                        n,
                        fac,
                        code.as_ref(),
                        &vec![1.0; rows],
                        n,
                        &p,
                        "t",
                    )
                    .unwrap();
                    let d: Vec<f64> = w.iter().zip(&q.recon).map(|(a, b)| *b as f64 - a).collect();
                    *acc += proxy_loss(&d, rows, n, &h);
                }
            }
            assert!(l_ldlq < 0.9 * l_rtn, "{spec}: LDLQ {l_ldlq} vs RTN {l_rtn}");
        }
    }

    #[test]
    fn damping_escalates_on_singular_hessian() {
        // Rank-one H with a negative direction: fails at λ = 0.01·mean, passes after escalation.
        let n = 8;
        let mut h = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = 1.0;
            }
        }
        h[0] = -0.5;
        let f = Factor::new(&h, n, 1, &LdlqParams::default(), "t").unwrap();
        assert!(f.damp > 0.01);
        let p = LdlqParams {
            max_retries: 0,
            ..Default::default()
        };
        let e = Factor::new(&h, n, 1, &p, "model.layers.0.mlp.down_proj.weight")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("down_proj") && e.contains("not positive definite"), "{e}");
    }

    #[test]
    fn in_place_inverse_has_faer_bits() {
        // faer's allocating inverse is the oracle: same recursion, so the same bits, at sizes
        // through the base cases, odd splits and (1200) rayon-parallel products.
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for n in (1..=40).chain([97, 256, 1200]) {
            let h = hessian(n.min(200), &mut rng);
            let m = n.min(200);
            let a = Mat::<f64>::from_fn(n, n, |i, j| {
                if i >= j {
                    h[(i % m) * m + j % m] + if i == j { 5.0 } else { 0.0 }
                } else {
                    0.0
                }
            });
            let l = a.llt(faer::Side::Lower).unwrap();
            let mut want = Mat::<f64>::zeros(n, n);
            faer::linalg::triangular_inverse::invert_lower_triangular(want.as_mut(), l.L(), Par::rayon(0));
            let mut buf = vec![f64::NAN; n * n];
            let mut got = MatMut::from_column_major_slice_mut(&mut buf, n, n);
            got.copy_from_triangular_lower(l.L());
            invert_lower(got.rb_mut(), &mut Vec::new(), Par::rayon(0));
            for j in 0..n {
                for i in j..n {
                    assert_eq!(got[(i, j)].to_bits(), want[(i, j)].to_bits(), "n {n} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn in_place_factor_has_the_bits_of_the_allocating_route() {
        // The allocating route (faer's Llt on a copy of J H J, a separate triangular inverse,
        // V gathered from it) as the oracle, at block dimensions 1, 8 and 24 and on a Hessian
        // that needs the damping escalated.
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let mut singular = vec![1.0; 48 * 48];
        singular[0] = -0.5;
        for (h, n, b) in [
            (hessian(40, &mut rng), 40, 1),
            (hessian(96, &mut rng), 96, 8),
            (hessian(600, &mut rng), 600, 24),
            (singular, 48, 8),
        ] {
            let p = LdlqParams::default();
            let f = Factor::new(&h, n, b, &p, "t").unwrap();
            let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
            let mut damp = p.damp;
            let llt = loop {
                let a = Mat::<f64>::from_fn(n, n, |i, j| {
                    let (ri, rj) = (n - 1 - i, n - 1 - j);
                    let v = h[ri * n + rj];
                    if ri == rj {
                        (if v <= 0.0 { mean } else { v }) + damp * mean
                    } else {
                        v
                    }
                });
                match a.llt(faer::Side::Lower) {
                    Ok(l) => break l,
                    Err(_) => damp *= 10.0,
                }
            };
            assert_eq!(f.damp, damp);
            let mut linv = Mat::<f64>::zeros(n, n);
            faer::linalg::triangular_inverse::invert_lower_triangular(linv.as_mut(), llt.L(), Par::rayon(0));
            for i in 0..n {
                let c0 = i / b * b;
                // Row i of U, then the block's back substitution as in `Factor`, here per row
                // from the b rows of U_C.
                let u = |r: usize, j: usize| if j >= r { linv[(n - 1 - r, n - 1 - j)] } else { 0.0 };
                for j in 0..n {
                    let mut s = vec![0.0; b];
                    for k in (0..b).rev() {
                        let mut x = u(c0 + k, j);
                        for (t, st) in s.iter().enumerate().skip(k + 1) {
                            x -= u(c0 + k, c0 + t) * st;
                        }
                        s[k] = x / u(c0 + k, c0 + k);
                    }
                    assert_eq!(f.v(i, j).to_bits(), s[i - c0].to_bits(), "n {n} b {b} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn v_is_block_unit_upper() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let n = 24;
        let h = hessian(n, &mut rng);
        let f = Factor::new(&h, n, 8, &LdlqParams::default(), "t").unwrap();
        for i in 0..n {
            for j in 0..n {
                let v = f.v(i, j);
                if j / 8 == i / 8 {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((v - want).abs() < 1e-9, "V[{i},{j}] = {v}");
                } else if j < i {
                    assert_eq!(v, 0.0);
                }
            }
        }
    }
}

#[cfg(test)]
mod memory_probe {
    /// Peak memory of [`super::Factor::new`] in n × n f64 buffers above its input (measured 1.45
    /// at n = 4104 with its copy of the input, so 0.45 for [`super::Factor::in_place`];
    /// `pipeline::quantize_memory` counts 0.5) (`LLVQ_PROBE_N`, default
    /// 4096): `cargo test -p llvq-quant --release --lib factor_memory -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn factor_memory() {
        let n: usize = std::env::var("LLVQ_PROBE_N").map_or(4096, |v| v.parse().unwrap());
        let n = n.div_ceil(24) * 24;
        let status = |k: &str| -> f64 {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            let l = s.lines().find(|l| l.starts_with(k)).unwrap();
            l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() * 1024.0
        };
        let mut h = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                h[i * n + j] = 1.0 / (1.0 + (i as f64 - j as f64).abs());
            }
            h[i * n + i] += 1.0;
        }
        let base = status("VmRSS:");
        let f = super::Factor::new(&h, n, 24, &super::LdlqParams::default(), "probe").unwrap();
        let buf = (n * n * 8) as f64;
        eprintln!(
            "n {n}: peak above the input {:.2} buffers, held after {:.2}",
            (status("VmHWM:") - base) / buf,
            (status("VmRSS:") - base) / buf
        );
        drop(f);
    }
}
