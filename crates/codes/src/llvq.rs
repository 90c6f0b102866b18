//! The LLVQ codes over Λ24(M) (§3, App. B, C, F).
//!
//! - [`SphericalShaping`] (`llvq-ss:m=M`): the code Λ24(M)/s. A block w is searched as s·w in
//!   L_int units (Euclidean metric, App. C Fig. 2) and decoded as x/s. s is fitted by Lloyd
//!   steps on a design sample ([`fit_scale`]); at M = 13 the index takes 48 bits = 2 bits/dim.
//! - [`ShapeGain`] (`llvq-sg:m=M,gain=k`): the direction ŝ = x/|x| by angular search over
//!   norm(Λ24(M)) (App. B), then a gain g from a 2^k-level scalar code, x̂ = g·ŝ. Two variants:
//!   `variant=opt` (default, App. C Fig. 4 and App. D.1) quantizes the optimal scale
//!   γ* = ⟨w, ŝ⟩ chosen after the shape; `variant=chi` (App. C Fig. 3, App. F) quantizes |w|
//!   with a χ24-matched code, independently of the shape. Code = gain index << shape bits | shape
//!   index; Λ24(12) (47 bits) + 1 gain bit is 48 bits = 2 bits/dim.
//!
//! Gain design. For w ~ N(0, I24), r = |w| ~ χ24 is independent of the direction u = w/r, and the
//! angular search depends on u alone, so γ* = r·c with c = ⟨u, ŝ⟩ independent of r. The gain code
//! is the Lloyd code of that law: the density of γ* is the χ24 density mixed over an empirical
//! sample of c (design stream, [`crate::source::design`]), integrated on a fine grid. Since
//! |w − g ŝ|² = (|w|² − γ*²) + (g − γ*)², the Lloyd code of γ* minimises the MSE exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use llvq_lattice::{dequant, Ball, Metric, Parity, Point, Searcher, DIM};
use rayon::prelude::*;

use crate::design::{chi_density, Grid};
use crate::error::CodeError;
use crate::quantizer::{check_block, check_code, scaled_block, LevelGrid, Quantizer};
use crate::source::{design, fit_scale};
use crate::spec::{join_floats, CodeId, Spec};

/// Design sample size (24-dim vectors) for fitted scales and gain codebooks.
pub const DESIGN_VECTORS: usize = 4096;

/// One shared searcher per M: building the tables of Λ24(M) is done once per process.
pub fn searcher(m: u32) -> Result<Arc<Searcher>, CodeError> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Arc<Searcher>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(s) = cache.lock().unwrap().get(&m) {
        return Ok(s.clone());
    }
    let s = Arc::new(Searcher::new(m)?);
    cache.lock().unwrap().insert(m, s.clone());
    Ok(s)
}

fn ball_m(spec: &Spec, default: u32) -> Result<u32, CodeError> {
    let m: u32 = spec.value("m", default)?;
    if !(2..=llvq_lattice::MAX_SHELL_LIMIT).contains(&m) {
        return Err(spec.bad(
            "m",
            &m.to_string(),
            format!("must be 2..={}", llvq_lattice::MAX_SHELL_LIMIT),
        ));
    }
    Ok(m)
}

/// Grid bias of Λ24(M) in L_int units. The coordinates of a point share one parity p (Eq. 6-7),
/// so x = 2n − bias + p with an integer level n = (x + bias − p)/2. Bias 16 gives 4-bit levels
/// when every class's largest |x| (its leader's first entry) keeps n in 0..=15, which the class
/// tables decide (M ≤ 15 in practice, tested); otherwise bias 128 and 8-bit levels
/// (|x| ≤ 4√M ≤ 23 for M ≤ 33).
pub fn lattice_grid_bias(ball: &Ball) -> i32 {
    let fits4 = ball.classes().iter().all(|c| {
        let (a, p) = (c.leader[0] as i32, (c.parity == Parity::Odd) as i32);
        a + 16 - p <= 30 && 16 - a - p >= 0
    });
    if fits4 {
        16
    } else {
        128
    }
}

/// The identity grid matching a bias from [`lattice_grid_bias`].
fn lattice_grid(bias: i32) -> LevelGrid {
    LevelGrid::identity(if bias == 16 { 4 } else { 8 })
}

/// Writes the levels n_i = (x_i + bias − p)/2 of an L_int point; returns p − bias, the
/// coordinate that level 0 stands for (x_i = 2 n_i + (p − bias)).
fn lattice_levels(x: &Point, bias: i32, levels: &mut [u8], method: &'static str) -> Result<i32, CodeError> {
    if levels.len() != DIM {
        return Err(CodeError::GridLength {
            method,
            dim: DIM,
            got: levels.len(),
        });
    }
    let p = x[0] & 1;
    for (l, &v) in levels.iter_mut().zip(x) {
        *l = ((v + bias - p) >> 1) as u8;
    }
    Ok(p - bias)
}

/// Spherical shaping: Λ24(M) scaled by 1/s (App. C Fig. 2).
pub struct SphericalShaping {
    m: u32,
    scale: f32,
    search: Arc<Searcher>,
    bias: i32,
}

impl SphericalShaping {
    /// Builds from `llvq-ss:m=M[,scale=s]`; without `scale`, s is fitted on a design sample.
    pub fn from_spec(spec: &Spec) -> Result<SphericalShaping, CodeError> {
        spec.only("m,scale")?;
        let m = ball_m(spec, 13)?;
        let search = searcher(m)?;
        let bias = lattice_grid_bias(search.ball());
        let mut q = SphericalShaping {
            m,
            scale: 1.0,
            search,
            bias,
        };
        q.scale = match spec.scale("scale")? {
            Some(s) => s,
            None => {
                // Start with the ball radius 4√M a little beyond the typical |w| = √24.
                let s0 = 0.85 * 4.0 * (m as f64).sqrt() / 24f64.sqrt();
                let sample = design(DIM * DESIGN_VECTORS, 0x55_0000 + m as u64);
                let s = &q.search;
                fit_scale(&sample, DIM, s0, 20, |y, c| {
                    let y: &[f32; DIM] = y.try_into().unwrap();
                    let p = s.search(y, Metric::Euclidean).expect("finite design sample").point;
                    for (ci, &pi) in c.iter_mut().zip(&p) {
                        *ci = pi as f32;
                    }
                }) as f32
            }
        };
        Ok(q)
    }

    /// The fitted scale s (L_int units per input unit).
    pub fn scale(&self) -> f32 {
        self.scale
    }

    pub fn ball(&self) -> &Ball {
        self.search.ball()
    }
}

impl Quantizer for SphericalShaping {
    fn method(&self) -> CodeId {
        CodeId::LlvqSs
    }
    fn spec(&self) -> String {
        format!("llvq-ss:m={},scale={:?}", self.m, self.scale)
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn bits(&self) -> u32 {
        self.ball().bits()
    }
    fn encode_block(&self, x: &[f32]) -> Result<u64, CodeError> {
        let y = scaled_block::<DIM>(x, self.scale)?;
        Ok(self.search.search(&y, Metric::Euclidean)?.index)
    }
    fn decode_block(&self, code: u64, out: &mut [f32]) -> Result<(), CodeError> {
        if out.len() != DIM {
            return Err(CodeError::BadLength {
                got: out.len(),
                dim: DIM,
            });
        }
        let p = self.ball().decode(code)?;
        for (o, &v) in out.iter_mut().zip(&p) {
            *o = v as f32 / self.scale;
        }
        Ok(())
    }
    /// Batched through the parallel dequantizer of §3.3.
    fn decode(&self, codes: &[u64], out: &mut [f32]) -> Result<(), CodeError> {
        Ok(dequant::decode_batch(self.ball(), codes, 1.0 / self.scale, out)?)
    }
    fn grid(&self) -> Option<LevelGrid> {
        Some(lattice_grid(self.bias))
    }
    /// x/s = (2/s)·n + (p − bias)/s.
    fn decode_block_grid(&self, code: u64, levels: &mut [u8]) -> Result<(f32, f32), CodeError> {
        let x = self.ball().decode(code)?;
        let base = lattice_levels(&x, self.bias, levels, "llvq-ss")?;
        Ok((2.0 / self.scale, base as f32 / self.scale))
    }
}

/// Which gain the shape-gain code quantizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GainVariant {
    /// γ* = ⟨w, ŝ⟩, chosen after the shape (App. C Fig. 4).
    Optimal,
    /// |w| with a χ24-matched code, independent of the shape (App. C Fig. 3, App. F).
    Chi,
}

/// Shape-gain: angular search over norm(Λ24(M)) plus a 2^k-level gain (App. B, C).
pub struct ShapeGain {
    m: u32,
    gain_bits: u32,
    variant: GainVariant,
    /// Gain levels, ascending.
    levels: Vec<f32>,
    thresholds: Vec<f32>,
    search: Arc<Searcher>,
    bias: i32,
}

impl ShapeGain {
    /// Builds from `llvq-sg:m=M,gain=k[,variant=opt|chi][,levels=g0/g1/...]`; without `levels`
    /// the gain code is designed (see the module doc).
    pub fn from_spec(spec: &Spec) -> Result<ShapeGain, CodeError> {
        spec.only("m,gain,variant,levels")?;
        let m = ball_m(spec, 12)?;
        let gain_bits: u32 = spec.value("gain", 1)?;
        let variant = match spec.get("variant").unwrap_or("opt") {
            "opt" => GainVariant::Optimal,
            "chi" => GainVariant::Chi,
            v => return Err(spec.bad("variant", v, "must be opt or chi")),
        };
        let search = searcher(m)?;
        let total = search.ball().bits() + gain_bits;
        if gain_bits > 16 || total > 64 {
            return Err(CodeError::TooManyBits {
                method: "llvq-sg",
                bits: total,
            });
        }
        let n = 1usize << gain_bits;
        let levels = match spec.ascending_f32("levels", n)? {
            // Kept exactly as the f32 the decoder multiplies by.
            Some(l) => l.into_iter().map(f64::from).collect(),
            None => match variant {
                GainVariant::Chi => chi_gain_grid().lloyd(n),
                GainVariant::Optimal => optimal_gain_grid(&search, DESIGN_VECTORS, 0x56_0000 + m as u64).lloyd(n),
            },
        };
        let thresholds = crate::design::thresholds(&levels)
            .into_iter()
            .map(|t| t as f32)
            .collect();
        Ok(ShapeGain {
            m,
            gain_bits,
            variant,
            levels: levels.into_iter().map(|v| v as f32).collect(),
            thresholds,
            bias: lattice_grid_bias(search.ball()),
            search,
        })
    }

    pub fn ball(&self) -> &Ball {
        self.search.ball()
    }

    /// Gain levels, ascending.
    pub fn levels(&self) -> &[f32] {
        &self.levels
    }

    pub fn variant(&self) -> GainVariant {
        self.variant
    }

    fn shape_bits(&self) -> u32 {
        self.ball().bits()
    }
}

/// Unit direction of an L_int point.
#[inline]
fn unit(p: &[i32; DIM]) -> [f32; DIM] {
    let n = (p.iter().map(|&v| (v as f64).powi(2)).sum::<f64>()).sqrt() as f32;
    p.map(|v| v as f32 / n)
}

/// The χ24 density on a fine grid (App. B, F).
pub fn chi_gain_grid() -> Grid {
    Grid::from_density(|r| chi_density(DIM as u32, r), 0.0, 14.0, 100_000)
}

/// Cosines c = ⟨u, ŝ⟩ between `count` design directions and their angular codewords.
pub fn design_cosines(search: &Searcher, count: usize, tag: u64) -> Vec<f64> {
    let sample = design(DIM * count, tag);
    sample
        .par_chunks(DIM)
        .map(|w| {
            let y: &[f32; DIM] = w.try_into().unwrap();
            let s = unit(&search.search(y, Metric::Angular).expect("finite design sample").point);
            let n = w.iter().map(|v| v * v).sum::<f32>().sqrt();
            (w.iter().zip(&s).map(|(a, b)| a * b).sum::<f32>() / n) as f64
        })
        .collect()
}

/// The law of γ* = r·c (r ~ χ24 independent of c; c from the design sample) on a fine grid.
pub fn optimal_gain_grid(search: &Searcher, count: usize, tag: u64) -> Grid {
    let cos = design_cosines(search, count, tag);
    let (lo, hi, n) = (0.0, 14.0, 14_000usize);
    let h = (hi - lo) / n as f64;
    let w: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| {
            let g = lo + (i as f64 + 0.5) * h;
            cos.iter().map(|&c| chi_density(DIM as u32, g / c) / c).sum::<f64>()
        })
        .collect();
    Grid::from_masses(lo, hi, &w)
}

impl Quantizer for ShapeGain {
    fn method(&self) -> CodeId {
        CodeId::LlvqSg
    }
    fn spec(&self) -> String {
        let v = match self.variant {
            GainVariant::Optimal => "opt",
            GainVariant::Chi => "chi",
        };
        let l: Vec<f64> = self.levels.iter().map(|&x| x as f64).collect();
        format!(
            "llvq-sg:m={},gain={},variant={v},levels={}",
            self.m,
            self.gain_bits,
            join_floats(&l)
        )
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn bits(&self) -> u32 {
        self.shape_bits() + self.gain_bits
    }
    fn encode_block(&self, x: &[f32]) -> Result<u64, CodeError> {
        check_block(x, DIM)?;
        let y: &[f32; DIM] = x.try_into().unwrap();
        let found = self.search.search(y, Metric::Angular)?;
        let g = match self.variant {
            GainVariant::Optimal => {
                let s = unit(&found.point);
                x.iter().zip(&s).map(|(a, b)| a * b).sum::<f32>()
            }
            GainVariant::Chi => x.iter().map(|v| v * v).sum::<f32>().sqrt(),
        };
        let k = self.thresholds.partition_point(|&t| t < g) as u64;
        Ok(k << self.shape_bits() | found.index)
    }
    fn decode_block(&self, code: u64, out: &mut [f32]) -> Result<(), CodeError> {
        check_code(code, self.bits(), "llvq-sg")?;
        if out.len() != DIM {
            return Err(CodeError::BadLength {
                got: out.len(),
                dim: DIM,
            });
        }
        let sb = self.shape_bits();
        let g = self.levels[(code >> sb) as usize];
        let s = unit(&self.ball().decode(code & ((1u64 << sb) - 1))?);
        for (o, v) in out.iter_mut().zip(s) {
            *o = g * v;
        }
        Ok(())
    }
    /// Batched through the parallel dequantizer of §3.3, then each block rescaled to its gain.
    fn decode(&self, codes: &[u64], out: &mut [f32]) -> Result<(), CodeError> {
        if out.len() != codes.len() * DIM {
            return Err(CodeError::BadLength {
                got: out.len(),
                dim: DIM,
            });
        }
        let sb = self.shape_bits();
        for &c in codes {
            check_code(c, self.bits(), "llvq-sg")?;
        }
        let shapes: Vec<u64> = codes.iter().map(|&c| c & ((1u64 << sb) - 1)).collect();
        dequant::decode_batch(self.ball(), &shapes, 1.0, out)?;
        out.par_chunks_mut(DIM).zip(codes.par_iter()).for_each(|(o, &c)| {
            let g = self.levels[(c >> sb) as usize];
            let n = o.iter().map(|v| v * v).sum::<f32>().sqrt();
            o.iter_mut().for_each(|v| *v *= g / n);
        });
        Ok(())
    }
    fn grid(&self) -> Option<LevelGrid> {
        Some(lattice_grid(self.bias))
    }
    /// g·x/|x| = (2g/|x|)·n + g(p − bias)/|x|.
    fn decode_block_grid(&self, code: u64, levels: &mut [u8]) -> Result<(f32, f32), CodeError> {
        check_code(code, self.bits(), "llvq-sg")?;
        let sb = self.shape_bits();
        let g = self.levels[(code >> sb) as usize];
        let x = self.ball().decode(code & ((1u64 << sb) - 1))?;
        let base = lattice_levels(&x, self.bias, levels, "llvq-sg")?;
        let n = (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>()).sqrt() as f32;
        let r = g / n;
        Ok((2.0 * r, base as f32 * r))
    }
}
