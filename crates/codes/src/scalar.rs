//! Scalar codes applied to every weight of a block (Table 4 rows "Uniform" and "Lloyd-Max").
//!
//! - `int2`: the signed INT2 grid {−2, −1, 0, 1}·Δ, Δ minimising the exact N(0,1) MSE (the paper's
//!   "Uniform" row; 0.1494 at the best Δ);
//! - `uniform:bits=b`: the symmetric midrise grid (k − (2^b − 1)/2)·Δ, Δ optimal;
//! - `lloyd:bits=b`: the Lloyd-Max code for N(0,1) (closed-form Lloyd iteration, [`crate::design`]).
//!
//! All designs are exact numerical integrations of N(0,1) (no sample), so the SPEC fixes the
//! code. A block of `dim` weights stores `dim` indices of `bits` bits, coordinate j in bits
//! [j·b, (j+1)·b) of the code.

use crate::design::{gaussian_mse, golden_min, lloyd_gaussian, thresholds};
use crate::error::CodeError;
use crate::quantizer::{check_block, check_code, check_grid_len, check_len_eq, LevelGrid, Quantizer};
use crate::spec::{CodeId, Spec};

/// A scalar code repeated over a block.
#[derive(Clone, Debug)]
pub struct Scalar {
    method: CodeId,
    bits: u32,
    dim: usize,
    levels: Vec<f32>,
    thresholds: Vec<f32>,
    /// The design MSE per weight on N(0,1) (exact).
    design_mse: f64,
}

impl Scalar {
    /// Builds `int2`, `uniform` or `lloyd` from its SPEC.
    pub fn from_spec(spec: &Spec) -> Result<Scalar, CodeError> {
        let dim: usize = spec.value("dim", 1)?;
        let bits: u32 = match spec.method {
            CodeId::Int2 => {
                spec.only("dim")?;
                2
            }
            _ => {
                spec.only("bits,dim")?;
                spec.value("bits", 2)?
            }
        };
        if !(1..=16).contains(&bits) {
            return Err(spec.bad("bits", &bits.to_string(), "must be 1..=16"));
        }
        if dim == 0 {
            return Err(spec.bad("dim", "0", "must be positive"));
        }
        if bits as usize * dim > 64 {
            return Err(CodeError::TooManyBits {
                method: spec.method.name(),
                bits: bits * dim as u32,
            });
        }
        let n = 1usize << bits;
        let levels: Vec<f64> = match spec.method {
            CodeId::Int2 => {
                let grid = |d: f64| [-2.0 * d, -d, 0.0, d];
                let d = golden_min(|d| gaussian_mse(&grid(d)), 0.05, 3.0);
                grid(d).to_vec()
            }
            CodeId::Uniform => {
                let grid = |d: f64| {
                    (0..n)
                        .map(|k| (k as f64 - (n as f64 - 1.0) / 2.0) * d)
                        .collect::<Vec<_>>()
                };
                let d = golden_min(|d| gaussian_mse(&grid(d)), 1e-4, 4.0);
                grid(d)
            }
            CodeId::Lloyd => lloyd_gaussian(n),
            m => unreachable!("{m} is not scalar"),
        };
        Ok(Scalar {
            method: spec.method,
            bits,
            dim,
            design_mse: gaussian_mse(&levels),
            thresholds: thresholds(&levels).into_iter().map(|t| t as f32).collect(),
            levels: levels.into_iter().map(|l| l as f32).collect(),
        })
    }

    /// The reconstruction levels, ascending.
    pub fn levels(&self) -> &[f32] {
        &self.levels
    }

    /// Bits per weight.
    pub fn bits_per_weight(&self) -> u32 {
        self.bits
    }

    /// Exact MSE per weight of this code on N(0,1).
    pub fn design_mse(&self) -> f64 {
        self.design_mse
    }

    /// Index of the nearest level.
    #[inline]
    pub fn index(&self, v: f32) -> u64 {
        self.thresholds.partition_point(|&t| t < v) as u64
    }
}

impl Quantizer for Scalar {
    fn method(&self) -> CodeId {
        self.method
    }
    fn spec(&self) -> String {
        let mut p = Vec::new();
        if self.method != CodeId::Int2 {
            p.push(format!("bits={}", self.bits));
        }
        if self.dim != 1 {
            p.push(format!("dim={}", self.dim));
        }
        if p.is_empty() {
            self.method.name().to_string()
        } else {
            format!("{}:{}", self.method.name(), p.join(","))
        }
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn bits(&self) -> u32 {
        self.bits * self.dim as u32
    }
    fn encode_block(&self, x: &[f32]) -> Result<u64, CodeError> {
        check_block(x, self.dim)?;
        Ok(x.iter()
            .enumerate()
            .fold(0u64, |c, (j, &v)| c | self.index(v) << (j as u32 * self.bits)))
    }
    fn decode_block(&self, code: u64, out: &mut [f32]) -> Result<(), CodeError> {
        check_code(code, self.bits(), self.method.name())?;
        check_len_eq(out.len(), self.dim)?;
        let mask = (1u64 << self.bits) - 1;
        for (j, o) in out.iter_mut().enumerate() {
            *o = self.levels[((code >> (j as u32 * self.bits)) & mask) as usize];
        }
        Ok(())
    }
    /// The code's indices are the levels. Uniform grids (INT2, uniform) are affine in the
    /// index: identity LUT with mult = Δ, offset = first level; Lloyd-Max keeps its levels as the
    /// LUT (mult 1, offset 0). More than 8 bits per weight has no grid view.
    fn grid(&self) -> Option<LevelGrid> {
        if self.bits > 8 {
            return None;
        }
        let wide = if self.bits <= 4 { 4 } else { 8 };
        Some(match self.method {
            CodeId::Lloyd => LevelGrid {
                lut: self.levels.clone(),
            },
            _ => LevelGrid::identity(wide),
        })
    }
    fn decode_block_grid(&self, code: u64, levels: &mut [u8]) -> Result<(f32, f32), CodeError> {
        check_code(code, self.bits(), self.method.name())?;
        if self.bits > 8 {
            return Err(CodeError::NoGrid {
                method: self.method.name(),
            });
        }
        check_grid_len(self.method.name(), levels.len(), self.dim)?;
        let mask = (1u64 << self.bits) - 1;
        for (j, l) in levels.iter_mut().enumerate() {
            *l = ((code >> (j as u32 * self.bits)) & mask) as u8;
        }
        Ok(match self.method {
            CodeId::Lloyd => (1.0, 0.0),
            _ => {
                let n = self.levels.len();
                ((self.levels[n - 1] - self.levels[0]) / (n - 1) as f32, self.levels[0])
            }
        })
    }
}
