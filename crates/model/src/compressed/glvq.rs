//! The read side of GLVQ linears (arXiv 2510.20984; encoder in `llvq_quant::glvq`).
//!
//! A GLVQ linear is cut into groups of `group` input columns (the last may be narrower); row r
//! of group g is read as d-vectors of consecutive columns, and vector v decodes as (§3.3-3.4)
//!
//! ```text
//!     ŵ_v = s_g · F_µg⁻¹(G_g · c_v),   c_v,i = z_v,i − (2^{b_i} − 1)/2,
//!     F_µ⁻¹(y) = sgn(y)·((1 + µ)^|y| − 1)/µ        (identity without companding)
//! ```
//!
//! with b_i the bits of coordinate i ([`coord_bits`]: B_g bits per vector, the first B_g mod d
//! coordinates one more). Stored per linear, besides its [`LinearMeta`] (`block` = d, `bits` =
//! the target bits per vector d·N, `group`, and [`GlvqMeta`]):
//! - `NAME.llvq_codes` (U8): the levels, a little-endian bit stream, row by row, group by
//!   group, vector by vector, coordinate i in b_i bits ([`pack_levels`]);
//! - `NAME.llvq_scales` (F16 `[1, groups]`): s_g;
//! - `NAME.glvq_lattice` (F16 `[groups, d, d]`): G_g row-major;
//! - `NAME.glvq_mu` (F16 `[groups]`, only with companding): µ_g;
//! - `NAME.glvq_bits` (U16 `[groups]`): B_g (SDBA's N ± 1 choice).
//!
//! The decode lives here, not in the quantizer, so the runtime needs no optimisation code; the
//! encoder uses these same functions ([`point`], [`coeff`], [`mu_law_inverse`]), so what it
//! reports is what a file decodes to.

use half::f16;
use serde::{Deserialize, Serialize};

use super::file::QuantLinear;
use super::header::{LinearMeta, SCALE_BITS};
use crate::error::{ModelError, Result};

/// Suffixes of a GLVQ linear's side tensors.
pub const LATTICE: &str = ".glvq_lattice";
pub const MU: &str = ".glvq_mu";
pub const VECTOR_BITS: &str = ".glvq_bits";
/// Bits per stored G entry, µ and B_g.
pub const SIDE_BITS: u64 = 16;

/// The typed GLVQ fields of a linear's header entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlvqMeta {
    /// Target bits per weight N (d·N bits per vector on average).
    pub target: f64,
    /// µ-law companding (a `glvq_mu` tensor is stored).
    pub compand: bool,
    /// Salience-driven bit allocation was on.
    pub sdba: bool,
    /// Block-LDLQ error feedback between groups was on (the encoder's choice; decode ignores it).
    pub ldlq: bool,
}

/// The side tensors of a GLVQ linear, as stored (f16 bit patterns).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GlvqSide {
    /// `groups × d × d`.
    pub lattice: Vec<u16>,
    /// `groups`, empty without companding.
    pub mu: Vec<u16>,
    /// B_g per group.
    pub vector_bits: Vec<u16>,
}

/// Bits of each of the d coordinates of a vector of `vector_bits` bits.
pub fn coord_bits(d: usize, vector_bits: u32) -> Vec<u32> {
    let (q, r) = (vector_bits / d as u32, vector_bits as usize % d);
    (0..d).map(|i| q + (i < r) as u32).collect()
}

/// The coefficient of level `z` of a `b`-bit coordinate: z − (2^b − 1)/2 (the coset Z + ½).
#[inline]
pub fn coeff(z: u8, b: u32) -> f64 {
    z as f64 - ((1u32 << b) - 1) as f64 / 2.0
}

/// F_µ⁻¹(y) = sgn(y)·((1 + µ)^|y| − 1)/µ.
#[inline]
pub fn mu_law_inverse(y: f64, mu: f64) -> f64 {
    y.signum() * (y.abs() * mu.ln_1p()).exp_m1() / mu
}

/// y = G·c for the levels `z` of one vector (d = z.len() ≤ 32).
pub fn point(g: &[f64], z: &[u8], bits: &[u32], y: &mut [f64]) {
    let d = z.len();
    // d ≤ 32: the coefficients live on the stack, no allocation per vector.
    let mut c = [0f64; 32];
    for ((ci, &zi), &b) in c.iter_mut().zip(z).zip(bits) {
        *ci = coeff(zi, b);
    }
    for i in 0..d {
        y[i] = g[i * d..(i + 1) * d].iter().zip(&c[..d]).map(|(a, b)| a * b).sum();
    }
}

/// (start, width) of every group of `cols` columns in groups of `group`.
pub fn group_spans(cols: usize, group: usize) -> Vec<(usize, usize)> {
    (0..cols)
        .step_by(group.max(1))
        .map(|s| (s, group.min(cols - s)))
        .collect()
}

/// Bits of the level stream.
pub fn level_bits(rows: usize, cols: usize, d: usize, group: usize, vector_bits: &[u16]) -> u64 {
    group_spans(cols, group)
        .iter()
        .zip(vector_bits)
        .map(|(&(_, w), &b)| rows as u64 * (w / d) as u64 * b as u64)
        .sum()
}

/// Packs per-weight levels (`rows × cols`, row-major) into the bit stream of the module doc.
pub fn pack_levels(levels: &[u8], rows: usize, cols: usize, d: usize, group: usize, vector_bits: &[u16]) -> Vec<u8> {
    let spans = group_spans(cols, group);
    let cb: Vec<Vec<u32>> = vector_bits.iter().map(|&b| coord_bits(d, b as u32)).collect();
    let mut out = vec![0u8; level_bits(rows, cols, d, group, vector_bits).div_ceil(8) as usize];
    let mut pos = 0usize;
    for r in 0..rows {
        for (&(start, width), bits) in spans.iter().zip(&cb) {
            for c in start..start + width {
                let b = bits[(c - start) % d];
                let z = levels[r * cols + c] as u32;
                for k in 0..b {
                    if (z >> k) & 1 == 1 {
                        out[pos >> 3] |= 1 << (pos & 7);
                    }
                    pos += 1;
                }
            }
        }
    }
    out
}

/// Inverse of [`pack_levels`] (the stream length is checked by [`validate`]).
pub fn unpack_levels(bytes: &[u8], rows: usize, cols: usize, d: usize, group: usize, vector_bits: &[u16]) -> Vec<u8> {
    let spans = group_spans(cols, group);
    let cb: Vec<Vec<u32>> = vector_bits.iter().map(|&b| coord_bits(d, b as u32)).collect();
    let mut out = vec![0u8; rows * cols];
    let mut pos = 0usize;
    for r in 0..rows {
        for (&(start, width), bits) in spans.iter().zip(&cb) {
            for c in start..start + width {
                let b = bits[(c - start) % d];
                let mut z = 0u8;
                for k in 0..b {
                    z |= ((bytes[pos >> 3] >> (pos & 7)) & 1) << k;
                    pos += 1;
                }
                out[r * cols + c] = z;
            }
        }
    }
    out
}

/// All-in bits of a GLVQ linear besides its codes and scales: G_g, µ_g and B_g per group.
pub fn side_bits(m: &LinearMeta, compand: bool) -> u64 {
    m.groups() as u64 * SIDE_BITS * ((m.block * m.block) as u64 + compand as u64 + 1)
}

/// Scale bits of a GLVQ linear: one s_g per group.
pub fn scale_bits(m: &LinearMeta) -> u64 {
    m.groups() as u64 * SCALE_BITS
}

/// Checks a GLVQ linear's tensors against its metadata: shapes, a level stream of exactly the
/// counted length, bits that average exactly to the target, finite side information.
pub fn validate(ql: &QuantLinear) -> Result<()> {
    let m = &ql.meta;
    let bad = |r: String| Err(ModelError::bad_tensor(&ql.name, r));
    let (Some(gm), Some(side)) = (&m.glvq, &ql.glvq) else {
        return bad("not a GLVQ linear (no glvq header entry or side tensors)".into());
    };
    let d = m.block;
    if ![8, 16, 24, 32].contains(&d) || m.group == 0 || m.group % d != 0 || m.cols % d != 0 || m.rows == 0 {
        return bad(format!(
            "GLVQ shape {}×{}, d={d}, group {} is not decodable",
            m.rows, m.cols, m.group
        ));
    }
    let groups = m.groups();
    if ql.scales.len() != groups || side.vector_bits.len() != groups || side.lattice.len() != groups * d * d {
        return bad(format!(
            "{groups} groups, but {} scales, {} bit widths and {} lattice entries (expected {})",
            ql.scales.len(),
            side.vector_bits.len(),
            side.lattice.len(),
            groups * d * d
        ));
    }
    if side.mu.len() != if gm.compand { groups } else { 0 } {
        return bad(format!(
            "{} µ values for {groups} groups with compand={}",
            side.mu.len(),
            gm.compand
        ));
    }
    if let Some(i) = side.vector_bits.iter().position(|&b| b as usize > 8 * d) {
        return bad(format!(
            "group {i} has {} bits per {d}-vector (at most {})",
            side.vector_bits[i],
            8 * d
        ));
    }
    let lb = level_bits(m.rows, m.cols, d, m.group, &side.vector_bits);
    if lb != m.blocks() as u64 * m.bits as u64 {
        return bad(format!(
            "the groups' bit widths give {lb} code bits, the header's rate {}",
            m.blocks() as u64 * m.bits as u64
        ));
    }
    if ql.codes.len() as u64 != lb.div_ceil(8) {
        return bad(format!("{} code bytes, expected {}", ql.codes.len(), lb.div_ceil(8)));
    }
    let finite = |v: &[u16]| v.iter().position(|&x| !f16::from_bits(x).is_finite());
    if let Some(i) = finite(&side.lattice).or(finite(&ql.scales)) {
        return bad(format!("lattice entry or scale {i} is not finite"));
    }
    if let Some(i) = side
        .mu
        .iter()
        .position(|&x| !(f16::from_bits(x).to_f64() > 0.0 && f16::from_bits(x).is_finite()))
    {
        return bad(format!("µ of group {i} is {}", f16::from_bits(side.mu[i])));
    }
    Ok(())
}

/// Ŵ' (rotated domain, `rows × cols`, f64) of a validated GLVQ linear (module doc).
pub fn decode_rotated(ql: &QuantLinear) -> Result<Vec<f64>> {
    validate(ql)?;
    let m = &ql.meta;
    let side = ql.glvq.as_ref().expect("validated");
    let (rows, cols, d) = (m.rows, m.cols, m.block);
    let levels = unpack_levels(&ql.codes, rows, cols, d, m.group, &side.vector_bits);
    let mut out = vec![0.0; rows * cols];
    let mut y = vec![0.0; d];
    for (k, &(start, width)) in group_spans(cols, m.group).iter().enumerate() {
        let g: Vec<f64> = side.lattice[k * d * d..(k + 1) * d * d]
            .iter()
            .map(|&b| f16::from_bits(b).to_f64())
            .collect();
        let bits = coord_bits(d, side.vector_bits[k] as u32);
        let s = f16::from_bits(ql.scales[k]).to_f64();
        let mu = side.mu.get(k).map(|&b| f16::from_bits(b).to_f64());
        for r in 0..rows {
            for c0 in (start..start + width).step_by(d) {
                point(&g, &levels[r * cols + c0..r * cols + c0 + d], &bits, &mut y);
                for (o, &yi) in out[r * cols + c0..r * cols + c0 + d].iter_mut().zip(&y) {
                    *o = s * mu.map_or(yi, |mu| mu_law_inverse(yi, mu));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_with_mixed_widths() {
        // 3 rows, 40 columns in groups of 16 (16, 16, 8), d = 8, widths 24, 8 and 16 bits.
        let (rows, cols, d, group) = (3, 40, 8, 16);
        let vb = [24u16, 8, 16];
        let spans = group_spans(cols, group);
        let mut levels = vec![0u8; rows * cols];
        for r in 0..rows {
            for (k, &(s, w)) in spans.iter().enumerate() {
                let cb = coord_bits(d, vb[k] as u32);
                for c in s..s + w {
                    let top = (1u32 << cb[(c - s) % d]) - 1;
                    levels[r * cols + c] = ((r * 7 + c * 3) as u32 % (top + 1)) as u8;
                }
            }
        }
        let packed = pack_levels(&levels, rows, cols, d, group, &vb);
        assert_eq!(packed.len() as u64, level_bits(rows, cols, d, group, &vb).div_ceil(8));
        assert_eq!(level_bits(rows, cols, d, group, &vb), 3 * (2 * 24 + 2 * 8 + 16));
        assert_eq!(unpack_levels(&packed, rows, cols, d, group, &vb), levels);
    }

    #[test]
    fn coefficients_and_companding() {
        assert_eq!(coord_bits(8, 12), vec![2, 2, 2, 2, 1, 1, 1, 1]);
        assert_eq!(
            (0..4).map(|z| coeff(z, 2)).collect::<Vec<_>>(),
            vec![-1.5, -0.5, 0.5, 1.5]
        );
        assert_eq!(coeff(0, 0), 0.0);
        // F⁻¹(F(x)) = x with F(x) = sgn(x)·ln(1 + µ|x|)/ln(1 + µ), written out independently.
        for mu in [10.0, 87.0, 255.0] {
            for x in [-1.0, -0.3, 0.0, 0.01, 0.5, 1.0] {
                let f: f64 = if x < 0.0 { -1.0 } else { 1.0 } * (1.0 + mu * f64::abs(x)).ln() / (1.0 + mu).ln();
                assert!((mu_law_inverse(f, mu) - x).abs() < 1e-12, "µ={mu} x={x}");
            }
        }
    }
}
