//! [`F16Matrix`]: a dense f16 matrix with the packed weights' interface, for the tied
//! 49,152 × 576 embedding / LM head (issue 9 item 6): half the bytes of f32, converted with F16C.

use half::f16;
use rayon::prelude::*;

use super::kernels::{self, Isa};
use super::{check_io, rows_per_task, team, tile, MatVec, PackError};

#[derive(Clone, Debug)]
pub struct F16Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f16>,
}

impl F16Matrix {
    /// Rounds a dense `rows × cols` f32 matrix to f16 (values beyond f16's range are an error).
    pub fn from_f32(rows: usize, cols: usize, w: &[f32]) -> Result<F16Matrix, PackError> {
        if w.len() != rows * cols {
            return Err(PackError::Shape {
                what: "weights",
                got: w.len(),
                expected: rows * cols,
            });
        }
        let data: Vec<f16> = w.par_iter().map(|&v| f16::from_f32(v)).collect();
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(PackError::BadValue {
                what: "weight (as f16)",
                index: i,
                value: w[i],
                positive: false,
            });
        }
        Ok(F16Matrix { rows, cols, data })
    }

    /// Takes f16 values as stored (e.g. a file's embedding table); non-finite values are an error.
    pub fn from_f16(rows: usize, cols: usize, data: Vec<f16>) -> Result<F16Matrix, PackError> {
        if data.len() != rows * cols {
            return Err(PackError::Shape {
                what: "weights",
                got: data.len(),
                expected: rows * cols,
            });
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(PackError::BadValue {
                what: "weight",
                index: i,
                value: data[i].to_f32(),
                positive: false,
            });
        }
        Ok(F16Matrix { rows, cols, data })
    }

    /// Row `r` as f16 (e.g. an embedding lookup).
    pub fn row(&self, r: usize) -> &[f16] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Row `r` converted to f32 into `out`.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        for (o, v) in out.iter_mut().zip(self.row(r)) {
            *o = v.to_f32();
        }
    }

    /// The dense matrix as f32.
    pub fn to_dense(&self) -> Vec<f32> {
        self.data.iter().map(|v| v.to_f32()).collect()
    }

    /// Plain scalar `y = W·x` (f64 accumulation).
    pub fn matvec_ref(&self, x: &[f32], y: &mut [f32]) {
        check_io(self.rows, self.cols, x.len(), y.len(), 1);
        for (r, yr) in y.iter_mut().enumerate() {
            *yr = self
                .row(r)
                .iter()
                .zip(x)
                .map(|(w, &v)| w.to_f64() * v as f64)
                .sum::<f64>() as f32;
        }
    }

    /// `y = W·x` on a chosen kernel family.
    pub fn matvec_on(&self, x: &[f32], y: &mut [f32], isa: Isa) {
        check_io(self.rows, self.cols, x.len(), y.len(), 1);
        let per = rows_per_task(self.rows, 2 * self.cols);
        let c = self.cols;
        team::chunks_mut(y, per, |t, ys| {
            let r0 = t * per;
            kernels::f16_rows_dot(isa, &self.data[r0 * c..(r0 + ys.len()) * c], c, x, ys);
        });
    }
}

impl MatVec for F16Matrix {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn matvec(&self, x: &[f32], y: &mut [f32]) {
        self.matvec_on(x, y, kernels::best())
    }
    fn matmul(&self, x: &[f32], y: &mut [f32]) {
        let c = self.cols;
        tile::matmul(self, c, x, y, |r0, buf| {
            let src = &self.data[r0 * c..r0 * c + buf.len()];
            half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, buf);
        });
    }
    fn resident_bytes(&self) -> usize {
        2 * self.data.len()
    }
}
