//! Calibration: token windows from a text, and the Hessians H = E[xxᵀ] of every linear input
//! (App. D.2, Eq. 25), accumulated in f64 while a decoder layer runs.
//!
//! q/k/v share one input and so one Hessian, as do gate/up; a layer has four
//! ([`LinearInput`]). XᵀX of each sequence is one f32 matrix product (t ≤ a few thousand tokens,
//! so f32 sums are accurate to ~1e-6 relative); sequences are summed in f64.

use llvq_model::candle_core::Tensor;
use llvq_model::{LinearHook, LinearInput, Tokenizer};
use rayon::prelude::*;

use crate::error::{CandleContext, QuantError, Result};

/// Calibration windows: `seqs` sequences of `ctx` tokens.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CalibParams {
    pub seqs: usize,
    pub ctx: usize,
}

impl Default for CalibParams {
    /// 64 × 512 tokens: sized for the 135M default model on two cores.
    fn default() -> Self {
        CalibParams { seqs: 64, ctx: 512 }
    }
}

/// `p.seqs` windows of `p.ctx` tokens, evenly spaced over the non-overlapping windows of the
/// tokenized text (deterministic: no sampling, so a run needs no seed to be repeatable).
pub fn windows(tok: &Tokenizer, text: &str, p: &CalibParams) -> Result<Vec<Vec<u32>>> {
    if p.seqs == 0 || p.ctx < 2 {
        return Err(QuantError::Calibration(format!("need at least one sequence of 2+ tokens (got {} × {})", p.seqs, p.ctx)));
    }
    if text.trim().is_empty() {
        // Said here: the tokenizer's own message speaks of an evaluation text.
        return Err(QuantError::Calibration("the calibration text is empty".into()));
    }
    let ids = llvq_model::eval::tokenize_text(tok, text)?;
    let avail = ids.len() / p.ctx;
    if avail < p.seqs {
        return Err(QuantError::Calibration(format!(
            "the calibration text has {} tokens: {avail} windows of {}, fewer than the {} asked for",
            ids.len(),
            p.ctx,
            p.seqs
        )));
    }
    Ok((0..p.seqs)
        .map(|k| {
            let w = k * avail / p.seqs;
            ids[w * p.ctx..(w + 1) * p.ctx].to_vec()
        })
        .collect())
}

/// Running sum of xxᵀ over the tokens seen.
#[derive(Clone, Debug)]
pub struct Hessian {
    pub n: usize,
    sum: Vec<f64>,
    tokens: usize,
}

impl Hessian {
    pub fn new(n: usize) -> Hessian {
        Hessian { n, sum: vec![0.0; n * n], tokens: 0 }
    }

    /// Adds the rows of `x` (`[tokens, n]`).
    pub fn add(&mut self, x: &Tensor, name: &str) -> Result<()> {
        let (t, n) = x.dims2().ctx(name)?;
        if n != self.n {
            return Err(QuantError::tensor(name, format!("input width {n}, Hessian is {}", self.n)));
        }
        let x = x.to_dtype(llvq_model::candle_core::DType::F32).ctx(name)?;
        let xtx = x.t().ctx(name)?.matmul(&x).ctx(name)?.flatten_all().ctx(name)?.to_vec1::<f32>().ctx(name)?;
        if let Some(i) = xtx.iter().position(|v| !v.is_finite()) {
            return Err(QuantError::Calibration(format!("{name}: non-finite activation product at ({}, {})", i / n, i % n)));
        }
        self.sum.par_chunks_mut(n).zip(xtx.par_chunks(n)).for_each(|(s, v)| {
            for (a, &b) in s.iter_mut().zip(v) {
                *a += b as f64;
            }
        });
        self.tokens += t;
        Ok(())
    }

    /// Tokens accumulated.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// E[xxᵀ] = XᵀX / tokens, `n × n` row-major.
    pub fn mean(&self) -> Vec<f64> {
        let d = self.tokens.max(1) as f64;
        self.sum.iter().map(|v| v / d).collect()
    }
}

/// A hook that accumulates the four input Hessians of one decoder layer.
pub struct LayerHessians {
    pub layer: usize,
    pub hessians: Vec<(LinearInput, Hessian)>,
}

impl LayerHessians {
    pub fn new(layer: usize) -> LayerHessians {
        LayerHessians { layer, hessians: Vec::new() }
    }

    /// The mean Hessian of `input`, if it was observed.
    pub fn get(&self, input: LinearInput) -> Option<&Hessian> {
        self.hessians.iter().find(|(i, _)| *i == input).map(|(_, h)| h)
    }
}

impl LinearHook for LayerHessians {
    fn observe(&mut self, layer: usize, input: LinearInput, x: &Tensor) -> llvq_model::Result<()> {
        if layer != self.layer {
            return Ok(());
        }
        let n = x.dims().last().copied().unwrap_or(0);
        let idx = match self.hessians.iter().position(|(i, _)| *i == input) {
            Some(i) => i,
            None => {
                self.hessians.push((input, Hessian::new(n)));
                self.hessians.len() - 1
            }
        };
        let name = format!("model.layers.{layer} input {input:?}");
        self.hessians[idx].1.add(x, &name).map_err(|e| llvq_model::ModelError::Input(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llvq_model::candle_core::Device;

    #[test]
    fn hessian_is_the_mean_outer_product() {
        let (t, n) = (5, 3);
        let data: Vec<f32> = (0..t * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::from_vec(data.clone(), (t, n), &Device::Cpu).unwrap();
        let mut h = Hessian::new(n);
        h.add(&x, "x").unwrap();
        h.add(&x, "x").unwrap();
        let m = h.mean();
        for i in 0..n {
            for j in 0..n {
                let want: f64 = (0..t).map(|r| data[r * n + i] as f64 * data[r * n + j] as f64).sum::<f64>() / t as f64;
                assert!((m[i * n + j] - want).abs() < 1e-6);
            }
        }
        assert_eq!(h.tokens(), 2 * t);
        let bad = Tensor::from_vec(vec![0f32; 4], (2, 2), &Device::Cpu).unwrap();
        assert!(h.add(&bad, "model.layers.3 input Qkv").unwrap_err().to_string().contains("layers.3"));
    }
}
