//! One GLVQ layer: [`quantize_layer`] and its result [`GlvqLayer`] (§3, Algorithm 1 of the paper
//! applied to one linear layer).
//!
//! Order of work: validate; cut the columns into groups ([`super::groups`]); salience of every
//! group on the input W and SDBA bit widths ([`super::sdba`]); then per group the scale s_g =
//! max|W_g| (f16) and the learned G_g, µ_g and levels ([`super::learn`]).
//!
//! Two modes (issue 12, item 6):
//! - `ldlq=0` (the paper's): every group is fitted to the input weights on its own block H_gg;
//!   groups are independent and run in parallel.
//! - `ldlq=1`: groups are fitted left to right and the error E_C = W_C − Ŵ_C of group C is fed to
//!   the columns R on its right as in the pipeline's block LDLQ (App. D.2 of the LLVQ paper):
//!   W_R ← W_R − E_C · U_CC⁻¹ U_CR with H⁻¹ = UᵀU, i.e. V_CC⁻¹ V_CR with the pipeline's
//!   [`Factor`] V (block dimension d, which divides every group). Saliences are taken on the
//!   input W before any feedback.
//!
//! The reported loss is tr(ΔW H ΔWᵀ) of [`GlvqLayer::decode`] against the input W with the full
//! H, cross terms included, in both modes.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use half::f16;
use rayon::prelude::*;

use super::babai;
use super::bits::BitCount;
use super::compand;
use super::error::GlvqError;
use super::groups::{self, Group};
use super::learn::{self, Problem};
use super::params::GlvqParams;
use super::sdba;
use crate::error::Result;
use crate::ldlq::{self, Factor, LdlqParams};

/// The stored code of one group.
#[derive(Clone, Debug)]
pub struct GroupCode {
    pub start: usize,
    pub width: usize,
    /// Bits per d-vector (d·N, or d·(N ± 1) after SDBA).
    pub vector_bits: u32,
    /// G_g, d × d, row-major.
    pub g: Vec<f16>,
    /// s_g: decode is s·F⁻¹(G c).
    pub scale: f16,
    /// µ_g, when companding.
    pub mu: Option<f16>,
    /// SDBA salience (not stored; for reports).
    pub salience: f64,
    /// The group's own loss (block H_gg) at the start and at the end of its fit.
    pub init_loss: f64,
    pub loss: f64,
    /// Alternations the fit ran.
    pub iters: usize,
}

/// A quantized layer: integer levels and side information; [`GlvqLayer::decode`] gives Ŵ.
#[derive(Clone, Debug)]
pub struct GlvqLayer {
    pub rows: usize,
    pub cols: usize,
    pub d: usize,
    pub group: usize,
    pub compand: bool,
    pub ldlq: bool,
    pub groups: Vec<GroupCode>,
    /// Level index of every weight, rows × cols, row-major (< 2^bits of its coordinate).
    pub levels: Vec<u8>,
    /// tr(ΔW H ΔWᵀ) of the decoded layer against the input, full H.
    pub loss: f64,
}

impl GlvqLayer {
    /// Ŵ (rows × cols, row-major) from the levels and the stored side information.
    pub fn decode_f64(&self) -> Vec<f64> {
        let (d, cols) = (self.d, self.cols);
        let mut out = vec![0.0; self.rows * cols];
        for gc in &self.groups {
            let g: Vec<f64> = gc.g.iter().map(|v| v.to_f64()).collect();
            let bits = babai::coord_bits(d, gc.vector_bits);
            let (s, mu) = (gc.scale.to_f64(), gc.mu.map(|m| m.to_f64()));
            out.par_chunks_mut(cols)
                .zip(self.levels.par_chunks(cols))
                .for_each(|(o, z)| {
                    let mut y = vec![0.0; d];
                    for c0 in (gc.start..gc.start + gc.width).step_by(d) {
                        babai::point(&g, &z[c0..c0 + d], &bits, &mut y);
                        for (oi, &yi) in o[c0..c0 + d].iter_mut().zip(&y) {
                            *oi = s * mu.map_or(yi, |m| compand::inverse(yi, m));
                        }
                    }
                });
        }
        out
    }

    /// Ŵ in f32, as the model runs it.
    pub fn decode(&self) -> Vec<f32> {
        self.decode_f64().into_iter().map(|v| v as f32).collect()
    }

    /// Every stored bit ([`super::bits`]).
    pub fn bits(&self) -> BitCount {
        let gs: Vec<Group> = self
            .groups
            .iter()
            .map(|g| Group {
                start: g.start,
                width: g.width,
            })
            .collect();
        let vb: Vec<u32> = self.groups.iter().map(|g| g.vector_bits).collect();
        BitCount::of(self.rows, self.d, &gs, &vb, self.compand)
    }
}

fn check_finite(what: &'static str, v: &[f64]) -> std::result::Result<(), GlvqError> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(GlvqError::NonFinite {
            what,
            index,
            value: v[index],
        }),
        None => Ok(()),
    }
}

/// Fits one group (module doc); `x` is its rows × width target.
#[allow(clippy::too_many_arguments)] // a kernel: every argument is an input it needs
fn fit_group(
    x: &[f64],
    rows: usize,
    grp: Group,
    h: &[f64],
    cols: usize,
    vb: u32,
    p: &GlvqParams,
    sal: f64,
) -> (GroupCode, Vec<u8>) {
    let d = p.d;
    let hb = groups::block(h, cols, grp);
    let max = x.iter().fold(0f64, |m, v| m.max(v.abs()));
    let scale = f16::from_f64(max);
    let bits = babai::coord_bits(d, vb);
    if scale.to_f64() == 0.0 {
        // An all-zero (or sub-f16) group: G = 0 decodes to exact zeros.
        let code = GroupCode {
            start: grp.start,
            width: grp.width,
            vector_bits: vb,
            g: vec![f16::ZERO; d * d],
            scale,
            mu: p.compand.then_some(f16::from_f64(compand::MU_MIN)),
            salience: sal,
            init_loss: 0.0,
            loss: 0.0,
            iters: 0,
        };
        return (code, vec![0; x.len()]);
    }
    let prob = Problem {
        x,
        rows,
        width: grp.width,
        d,
        h: &hb,
        bits,
        scale: scale.to_f64(),
    };
    let f = learn::fit(&prob, p.compand, p.iters, p.eps, p.reg);
    let code = GroupCode {
        start: grp.start,
        width: grp.width,
        vector_bits: vb,
        g: f.g.iter().map(|&v| f16::from_f64(v)).collect(),
        scale,
        mu: f.mu.map(f16::from_f64),
        salience: sal,
        init_loss: f.init_loss,
        loss: f.loss,
        iters: f.iters,
    };
    (code, f.z)
}

/// Quantizes the `rows × cols` row-major layer `w` with the `cols × cols` Hessian `h` (f64,
/// symmetric PSD; the identity gives plain MSE) as GLVQ with `params` (module doc).
pub fn quantize_layer(w: &[f64], rows: usize, cols: usize, h: &[f64], params: &GlvqParams) -> Result<GlvqLayer> {
    params.validate()?;
    if rows == 0 || cols == 0 || w.len() != rows * cols {
        return Err(GlvqError::Shape {
            what: "weight",
            got: w.len(),
            expected: rows * cols,
        }
        .into());
    }
    if h.len() != cols * cols {
        return Err(GlvqError::Shape {
            what: "Hessian",
            got: h.len(),
            expected: cols * cols,
        }
        .into());
    }
    check_finite("weight", w)?;
    check_finite("Hessian", h)?;
    let d = params.d;
    let layout = groups::layout(cols, params.group, d)?;
    let target = params.vector_bits()?;
    let full_width = layout[0].width;
    let sal: Vec<f64> = layout
        .iter()
        .map(|&g| sdba::salience(&groups::gather(w, rows, cols, g), &groups::block(h, cols, g), g.width))
        .collect();
    let full: Vec<bool> = layout.iter().map(|g| g.width == full_width).collect();
    let alloc = sdba::allocate(&sal, &full, d, target, params.sdba);

    let mut levels = vec![0u8; rows * cols];
    let mut codes = Vec::with_capacity(layout.len());
    let put = |levels: &mut [u8], grp: Group, z: &[u8]| {
        for r in 0..rows {
            levels[r * cols + grp.start..r * cols + grp.start + grp.width]
                .copy_from_slice(&z[r * grp.width..(r + 1) * grp.width]);
        }
    };
    if params.ldlq {
        let factor = Factor::new(h, cols, d, &LdlqParams::default(), "glvq layer")?;
        let mut work = w.to_vec();
        for (k, &grp) in layout.iter().enumerate() {
            let x = groups::gather(&work, rows, cols, grp);
            let (code, _) = fit_group(&x, rows, grp, h, cols, alloc[k], params, sal[k]);
            round_with_feedback(&mut work, &mut levels, (rows, cols), grp, &code, &factor);
            codes.push(code);
        }
    } else {
        let fits: Vec<_> = layout
            .par_iter()
            .enumerate()
            .map(|(k, &grp)| {
                fit_group(
                    &groups::gather(w, rows, cols, grp),
                    rows,
                    grp,
                    h,
                    cols,
                    alloc[k],
                    params,
                    sal[k],
                )
            })
            .collect();
        for (&grp, (code, z)) in layout.iter().zip(fits) {
            put(&mut levels, grp, &z);
            codes.push(code);
        }
    }
    let mut layer = GlvqLayer {
        rows,
        cols,
        d,
        group: params.group,
        compand: params.compand,
        ldlq: params.ldlq,
        groups: codes,
        levels,
        loss: 0.0,
    };
    let delta: Vec<f64> = w.iter().zip(layer.decode_f64()).map(|(a, b)| a - b).collect();
    layer.loss = ldlq::proxy_loss(&delta, rows, cols, h);
    Ok(layer)
}

/// The levels of group `grp` of the working weights `work` for its fitted lattice, scale and µ
/// (`code`), d columns at a time: each block is Babai-rounded, and its error is fed to every
/// column on its right, inside the group too, as the pipeline's block LDLQ does with a fixed
/// code. (Feeding back only between groups left a layer of one group, d = 24 at group 576, with
/// no feedback at all: its perplexity was 14,185.)
fn round_with_feedback(
    work: &mut [f64],
    levels: &mut [u8],
    (rows, cols): (usize, usize),
    grp: Group,
    code: &GroupCode,
    factor: &Factor,
) {
    let d = code.g.len().isqrt();
    let g: Vec<f64> = code.g.iter().map(|v| v.to_f64()).collect();
    let gi = babai::invert(&g, d);
    let bits = babai::coord_bits(d, code.vector_bits);
    let (s, mu) = (code.scale.to_f64(), code.mu.map(|m| m.to_f64()));
    let mut err = vec![0.0; rows * d];
    for c0 in (grp.start..grp.start + grp.width).step_by(d) {
        levels
            .par_chunks_mut(cols)
            .zip(work.par_chunks(cols))
            .zip(err.par_chunks_mut(d))
            .for_each(|((lv, wr), e)| {
                let z = &mut lv[c0..c0 + d];
                let mut y = [0.0; 32]; // the largest d (`params::DIMS`)
                let y = &mut y[..d];
                match &gi {
                    Some(gi) => {
                        let u: Vec<f64> = wr[c0..c0 + d]
                            .iter()
                            .map(|&v| mu.map_or(v / s, |m| compand::forward(v / s, m)))
                            .collect();
                        babai::round(gi, &u, &bits, z);
                        babai::point(&g, z, &bits, y);
                    }
                    // An all-zero group (G = 0): every level decodes to 0 (y stays 0).
                    None => z.fill(0),
                }
                for (ei, (&wi, &yi)) in e.iter_mut().zip(wr[c0..c0 + d].iter().zip(y.iter())) {
                    *ei = wi - s * mu.map_or(yi, |m| compand::inverse(yi, m));
                }
            });
        let end = c0 + d;
        if end < cols {
            let m = feedback(factor, Group { start: c0, width: d }, cols);
            matmul(
                MatMut::from_row_major_slice_mut(work, rows, cols).submatrix_mut(0, end, rows, cols - end),
                Accum::Add,
                MatRef::from_row_major_slice(&err, rows, d),
                MatRef::from_row_major_slice(&m, d, cols - end),
                -1.0,
                Par::rayon(0),
            );
        }
    }
}

/// M = V_CC⁻¹ V_CR (width × (cols − end)) for group C: V_CC is unit upper triangular, so M is
/// found by back substitution.
fn feedback(f: &Factor, grp: Group, cols: usize) -> Vec<f64> {
    let (c0, w, end) = (grp.start, grp.width, grp.start + grp.width);
    let nr = cols - end;
    let mut m = vec![0.0; w * nr];
    for i in (0..w).rev() {
        let mut row: Vec<f64> = (0..nr).map(|j| f.v(c0 + i, end + j)).collect();
        for k in i + 1..w {
            let v = f.v(c0 + i, c0 + k);
            if v != 0.0 {
                for (r, &mk) in row.iter_mut().zip(&m[k * nr..(k + 1) * nr]) {
                    *r -= v * mk;
                }
            }
        }
        m[i * nr..(i + 1) * nr].copy_from_slice(&row);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuantError;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// A random SPD H with strong correlations between inputs and uneven input energies.
    fn spd(n: usize, rng: &mut impl Rng) -> Vec<f64> {
        let t = 2 * n;
        let scale: Vec<f64> = (0..n).map(|_| (rng.sample::<f64, _>(StandardNormal)).exp()).collect();
        let a: Vec<f64> = (0..t * n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        let mut h = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let mut s = 0.0;
                for k in 0..t {
                    s += (a[k * n + i] + 0.5 * a[k * n + (i + 1) % n]) * (a[k * n + j] + 0.5 * a[k * n + (j + 1) % n]);
                }
                h[i * n + j] = s / t as f64 * scale[i] * scale[j];
                h[j * n + i] = h[i * n + j];
            }
            h[i * n + i] += 1e-3;
        }
        h
    }

    /// Heavy-tailed weights with per-column spread, like a layer's.
    fn weights(rows: usize, cols: usize, rng: &mut impl Rng) -> Vec<f64> {
        let col: Vec<f64> = (0..cols)
            .map(|_| 0.02 * (0.5 * rng.sample::<f64, _>(StandardNormal)).exp())
            .collect();
        (0..rows * cols)
            .map(|i| {
                let a: f64 = rng.sample(StandardNormal);
                let b: f64 = rng.sample::<f64, _>(StandardNormal).abs() + 0.7;
                col[i % cols] * a / b
            })
            .collect()
    }

    /// Plain RTN at 2 bits: per (row-independent) group of `group` columns the MSE-optimal
    /// midrise 4-level grid for the group's RMS.
    fn rtn(w: &[f64], rows: usize, cols: usize, group: usize) -> Vec<f64> {
        let (step, _) = learn::uniform_gaussian(2);
        let mut out = vec![0.0; w.len()];
        for g0 in (0..cols).step_by(group) {
            let g1 = (g0 + group).min(cols);
            let ms = (0..rows)
                .flat_map(|r| w[r * cols + g0..r * cols + g1].iter())
                .map(|v| v * v)
                .sum::<f64>()
                / (rows * (g1 - g0)) as f64;
            let s = step * ms.sqrt();
            for r in 0..rows {
                for c in g0..g1 {
                    out[r * cols + c] = s * ((w[r * cols + c] / s - 0.5).round().clamp(-2.0, 1.0) + 0.5);
                }
            }
        }
        out
    }

    fn loss_of(w: &[f64], q: &[f64], rows: usize, cols: usize, h: &[f64]) -> f64 {
        let d: Vec<f64> = w.iter().zip(q).map(|(a, b)| a - b).collect();
        ldlq::proxy_loss(&d, rows, cols, h)
    }

    #[test]
    fn beats_rtn_and_decodes_what_it_reports() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (rows, cols) = (48, 96);
        let w = weights(rows, cols, &mut rng);
        let h = spd(cols, &mut rng);
        let base = loss_of(&w, &rtn(&w, rows, cols, 32), rows, cols, &h);
        for spec in [
            "glvq:group=32,iters=8",
            "glvq:group=32,mu=0,iters=8",
            "glvq:group=32,sdba=0,iters=8",
            "glvq:group=32,ldlq=1,iters=8",
            "glvq:d=24,group=48,iters=8",
        ] {
            let p = GlvqParams::from_spec(spec).unwrap();
            let l = quantize_layer(&w, rows, cols, &h, &p).unwrap();
            // The reported loss is that of decode(), recomputed independently.
            let again = loss_of(&w, &l.decode_f64(), rows, cols, &h);
            assert!((again - l.loss).abs() <= 1e-9 * again, "{spec}");
            // The learned lattice alone beats RTN; every fit beats its own start.
            if !p.compand {
                assert!(l.loss < base, "{spec}: glvq {} !< rtn {base}", l.loss);
            }
            assert!(l.groups.iter().all(|g| g.loss < g.init_loss), "{spec}");
            // Exact rate: codes are bits·weights; levels stay inside each coordinate's range.
            let b = l.bits();
            assert_eq!(b.codes, 2 * (rows * cols) as u64, "{spec}");
            for gc in &l.groups {
                let cb = babai::coord_bits(p.d, gc.vector_bits);
                for r in 0..rows {
                    for c in gc.start..gc.start + gc.width {
                        assert!((l.levels[r * cols + c] as u32) < 1 << cb[(c - gc.start) % p.d]);
                    }
                }
            }
            eprintln!(
                "{spec}: loss {:.4e} (rtn {base:.4e}), {:.4} bits/weight",
                l.loss,
                b.per_weight()
            );
        }
    }

    #[test]
    fn sdba_and_fractional_rates_are_exact() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let (rows, cols) = (16, 80); // groups of 16: five full ones
        let mut w = weights(rows, cols, &mut rng);
        // Make the first group far more salient so SDBA moves bits.
        for r in 0..rows {
            for c in 0..16 {
                w[r * cols + c] *= 30.0;
            }
        }
        let h = spd(cols, &mut rng);
        for (spec, target) in [
            ("glvq:group=16,bits=2,iters=2", 16),
            ("glvq:group=16,bits=1.5,iters=2", 12),
        ] {
            let l = quantize_layer(&w, rows, cols, &h, &GlvqParams::from_spec(spec).unwrap()).unwrap();
            let vb: Vec<u32> = l.groups.iter().map(|g| g.vector_bits).collect();
            assert!(vb[0] > target, "{spec}: {vb:?}");
            assert_eq!(vb.iter().sum::<u32>(), target * vb.len() as u32, "{spec}: {vb:?}");
            assert_eq!(l.bits().codes, (target as usize * rows * cols / 8) as u64);
        }
    }

    #[test]
    fn zero_groups_decode_to_zero() {
        let (rows, cols) = (4, 16);
        let mut w = vec![0.0; rows * cols];
        w[3] = 0.5;
        let h: Vec<f64> = (0..cols * cols).map(|i| (i % (cols + 1) == 0) as u8 as f64).collect();
        let l = quantize_layer(&w, rows, cols, &h, &GlvqParams::from_spec("glvq:group=8").unwrap()).unwrap();
        let out = l.decode();
        assert!(out
            .iter()
            .enumerate()
            .filter(|(i, _)| i % cols >= 8)
            .all(|(_, &v)| v == 0.0));
    }

    #[test]
    fn bad_input_is_named() {
        let p = GlvqParams::default();
        let h = vec![0.0; 16 * 16];
        let err = |r: Result<GlvqLayer>| match r {
            Err(QuantError::Glvq(e)) => *e,
            other => panic!("expected a GLVQ error, got {other:?}"),
        };
        assert_eq!(
            err(quantize_layer(&[0.0; 10], 2, 16, &h, &p)),
            GlvqError::Shape {
                what: "weight",
                got: 10,
                expected: 32
            }
        );
        assert_eq!(
            err(quantize_layer(&[0.0; 32], 2, 16, &h[1..], &p)),
            GlvqError::Shape {
                what: "Hessian",
                got: 255,
                expected: 256
            }
        );
        let mut w = vec![0.0; 32];
        w[5] = f64::NAN;
        assert!(matches!(
            err(quantize_layer(&w, 2, 16, &h, &p)),
            GlvqError::NonFinite {
                what: "weight",
                index: 5,
                ..
            }
        ));
        let p12 = GlvqParams {
            group: 8,
            ..GlvqParams::default()
        };
        let h12 = vec![0.0; 12 * 12];
        assert_eq!(
            err(quantize_layer(&[0.0; 24], 2, 12, &h12, &p12)),
            GlvqError::Tail {
                cols: 12,
                group: 8,
                tail: 4,
                d: 8
            }
        );
        let pd = GlvqParams {
            d: 24,
            group: 128,
            ..GlvqParams::default()
        };
        assert_eq!(
            err(quantize_layer(&[0.0; 32], 2, 16, &h, &pd)),
            GlvqError::GroupNotMultiple { group: 128, d: 24 }
        );
        let pb = GlvqParams {
            bits: 7.5,
            ..GlvqParams::default()
        };
        assert!(matches!(
            err(quantize_layer(&[0.0; 32], 2, 16, &h, &pb)),
            GlvqError::Bits { .. }
        ));
    }

    /// Timing on the default model's two MLP shapes (`cargo test -p llvq-quant --release
    /// glvq_timing -- --ignored --nocapture`; `GLVQ_TIMING=spec;spec` picks the SPECs).
    #[test]
    #[ignore]
    fn glvq_timing() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        for (rows, cols) in [(576, 1536), (1536, 576)] {
            let w = weights(rows, cols, &mut rng);
            let h = spd(cols, &mut rng);
            let specs = std::env::var("GLVQ_TIMING")
                .unwrap_or("glvq:d=8;glvq:d=8,mu=0;glvq:d=8,ldlq=1;glvq:d=24,group=576,mu=0".into());
            for spec in specs.split(';') {
                let t = std::time::Instant::now();
                let l = quantize_layer(&w, rows, cols, &h, &GlvqParams::from_spec(spec).unwrap()).unwrap();
                let s = t.elapsed().as_secs_f64();
                let base = loss_of(&w, &rtn(&w, rows, cols, 128), rows, cols, &h);
                let it: usize = l.groups.iter().map(|g| g.iters).sum();
                eprintln!(
                    "{rows}x{cols} {spec}: {s:.2} s, loss/rtn {:.3}, {:.4} bits/weight, {} groups, {it} alternations",
                    l.loss / base,
                    l.bits().per_weight(),
                    l.groups.len()
                );
            }
        }
    }
}
