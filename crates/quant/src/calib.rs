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
        return Err(QuantError::Calibration(format!(
            "need at least one sequence of 2+ tokens (got {} × {})",
            p.seqs, p.ctx
        )));
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

/// Fixed-point unit of the exact sums: 2⁻⁶⁴ (see [`Hessian::exact`]).
const FIXED_ONE: f64 = 18_446_744_073_709_551_616.0;
/// Largest |entry| of one window's XᵀX the exact sum takes: 2⁵⁰·2⁶⁴ leaves 2¹³ windows of
/// headroom below i128's 2¹²⁷ (and a checked add catches the rest).
const FIXED_MAX: f64 = 1_125_899_906_842_624.0;
/// Inputs wider than this take one window's XᵀX [`XTX_ROWS`] rows at a time.
pub const XTX_BLOCKED_ABOVE: usize = 8192;
pub const XTX_ROWS: usize = 1024;

#[derive(Clone, Debug)]
enum Sum {
    /// f64 sums in window order (sequential mode: today's numbers).
    Float(Vec<f64>),
    /// i128 fixed-point sums in units of 2⁻⁶⁴: integer addition is associative, so the sum
    /// does not depend on how windows are grouped into shards.
    Fixed(Vec<i128>),
}

/// Running sum of xxᵀ over the tokens seen.
#[derive(Clone, Debug)]
pub struct Hessian {
    pub n: usize,
    sum: Sum,
    tokens: usize,
}

impl Hessian {
    /// An f64 accumulator (the sequential pipeline's).
    pub fn new(n: usize) -> Hessian {
        Hessian {
            n,
            sum: Sum::Float(vec![0.0; n * n]),
            tokens: 0,
        }
    }

    /// A grouping-free accumulator, for Hessians of the full-precision model that may be
    /// computed in shards (`llvq calibrate --shard i/n`) and merged: each window's f32 XᵀX
    /// entry is rounded once to a multiple of 2⁻⁶⁴ and summed as an integer, so any split of
    /// the windows gives the same bits (a float sum would depend on the grouping). The
    /// rounding drops only what lies below 2⁻⁶⁴ absolute, far below f64 precision of any
    /// non-negligible entry.
    pub fn exact(n: usize) -> Hessian {
        Hessian {
            n,
            sum: Sum::Fixed(vec![0; n * n]),
            tokens: 0,
        }
    }

    /// A Hessian of stored sums, `len` of them, checked to be `n × n`.
    fn stored(n: usize, len: usize, sum: Sum, tokens: usize) -> Result<Hessian> {
        if len != n * n {
            return Err(QuantError::Calibration(format!(
                "a {n}×{n} Hessian needs {} entries, got {len}",
                n * n
            )));
        }
        Ok(Hessian { n, sum, tokens })
    }

    /// A fixed-point sum read back from a Hessian file.
    pub fn from_fixed(n: usize, sum: Vec<i128>, tokens: usize) -> Result<Hessian> {
        Hessian::stored(n, sum.len(), Sum::Fixed(sum), tokens)
    }

    /// An f64 accumulator holding fixed-point sums already rounded to f64 (`v as f64 · 2⁻⁶⁴`,
    /// exactly what [`Hessian::mean`] of the fixed-point form computes first): same mean
    /// bits, half the memory. For quantizing from stored sums, which are never added to.
    pub fn from_rounded(n: usize, sum: Vec<f64>, tokens: usize) -> Result<Hessian> {
        Hessian::stored(n, sum.len(), Sum::Float(sum), tokens)
    }

    /// A stored fixed-point entry rounded to f64, as [`Hessian::from_rounded`] expects.
    pub fn round_fixed(v: i128) -> f64 {
        v as f64 / FIXED_ONE
    }

    /// The fixed-point sums (`None` for an f64 accumulator).
    pub fn fixed(&self) -> Option<&[i128]> {
        match &self.sum {
            Sum::Fixed(v) => Some(v),
            Sum::Float(_) => None,
        }
    }

    /// Adds the rows of `x` (`[tokens, n]`).
    pub fn add(&mut self, x: &Tensor, name: &str) -> Result<()> {
        let (t, n) = x.dims2().ctx(name)?;
        if n != self.n {
            return Err(QuantError::tensor(
                name,
                format!("input width {n}, Hessian is {}", self.n),
            ));
        }
        // Wide inputs take XᵀX a block of rows at a time: the whole n × n f32 product (twice,
        // with candle's copy) would be 6.6 GB at Llama-2-70B's FFN width. Narrower ones keep
        // the one product, so their sums (and files) are unchanged.
        self.add_in_blocks(x, name, if n > XTX_BLOCKED_ABOVE { XTX_ROWS } else { n })?;
        self.tokens += t;
        Ok(())
    }

    /// [`Hessian::add`] with XᵀX made `rows` rows at a time.
    fn add_in_blocks(&mut self, x: &Tensor, name: &str, rows: usize) -> Result<()> {
        let n = self.n;
        let x = x.to_dtype(llvq_model::candle_core::DType::F32).ctx(name)?;
        for r0 in (0..n).step_by(rows.max(1)) {
            let len = rows.min(n - r0);
            let xr = if len == n {
                x.clone()
            } else {
                x.narrow(1, r0, len).ctx(name)?
            };
            let xtx = xr
                .t()
                .ctx(name)?
                .matmul(&x)
                .ctx(name)?
                .flatten_all()
                .ctx(name)?
                .to_vec1::<f32>()
                .ctx(name)?;
            self.add_rows(r0, &xtx, name)?;
        }
        Ok(())
    }

    /// Adds rows `r0..` of one window's XᵀX (`xtx`, whole rows of n) to the sums.
    fn add_rows(&mut self, r0: usize, xtx: &[f32], name: &str) -> Result<()> {
        let n = self.n;
        let base = r0 * n;
        if let Some(i) = xtx.iter().position(|v| !v.is_finite()) {
            return Err(QuantError::Calibration(format!(
                "{name}: non-finite activation product at ({}, {})",
                r0 + i / n,
                i % n
            )));
        }
        match &mut self.sum {
            Sum::Float(sum) => sum[base..base + xtx.len()]
                .par_chunks_mut(n)
                .zip(xtx.par_chunks(n))
                .for_each(|(s, v)| {
                    for (a, &b) in s.iter_mut().zip(v) {
                        *a += b as f64;
                    }
                }),
            Sum::Fixed(sum) => {
                if let Some(i) = xtx.iter().position(|v| (*v as f64).abs() >= FIXED_MAX) {
                    return Err(QuantError::Calibration(format!(
                        "{name}: activation product {} at ({}, {}) is beyond the exact accumulator's range (2^50)",
                        xtx[i],
                        r0 + i / n,
                        i % n
                    )));
                }
                let overflow = sum[base..base + xtx.len()]
                    .par_chunks_mut(n)
                    .zip(xtx.par_chunks(n))
                    .any(|(s, v)| {
                        let mut bad = false;
                        for (a, &b) in s.iter_mut().zip(v) {
                            match a.checked_add((b as f64 * FIXED_ONE).round() as i128) {
                                Some(c) => *a = c,
                                None => bad = true,
                            }
                        }
                        bad
                    });
                if overflow {
                    return Err(QuantError::Calibration(format!(
                        "{name}: the exact Hessian sum overflowed"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds another partial sum of the same kind and width (merging shards).
    pub fn merge(&mut self, other: &Hessian, name: &str) -> Result<()> {
        if other.n != self.n {
            return Err(QuantError::tensor(
                name,
                format!("merging a {0}×{0} Hessian into a {1}×{1} one", other.n, self.n),
            ));
        }
        match (&mut self.sum, &other.sum) {
            (Sum::Fixed(a), Sum::Fixed(b)) => {
                for (x, &y) in a.iter_mut().zip(b) {
                    *x = x
                        .checked_add(y)
                        .ok_or_else(|| QuantError::Calibration(format!("{name}: the exact Hessian sum overflowed")))?;
                }
            }
            _ => return Err(QuantError::tensor(name, "only exact (fixed-point) Hessians merge")),
        }
        self.tokens += other.tokens;
        Ok(())
    }

    /// Tokens accumulated.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// E[xxᵀ] = XᵀX / tokens, `n × n` row-major. An exact sum is rounded to f64 once, here.
    pub fn mean(&self) -> Vec<f64> {
        let d = self.tokens.max(1) as f64;
        match &self.sum {
            Sum::Float(sum) => sum.iter().map(|v| v / d).collect(),
            Sum::Fixed(sum) => sum.iter().map(|&v| Hessian::round_fixed(v) / d).collect(),
        }
    }

    /// [`Hessian::mean`] (the same bits) without a second n × n buffer: f64 sums are divided in
    /// place; fixed-point sums are freed as soon as their mean exists.
    pub fn into_mean(self) -> Vec<f64> {
        let d = self.tokens.max(1) as f64;
        match self.sum {
            Sum::Float(mut sum) => {
                sum.iter_mut().for_each(|v| *v /= d);
                sum
            }
            fixed @ Sum::Fixed(_) => Hessian { sum: fixed, ..self }.mean(),
        }
    }
}

/// A hook that accumulates the four input Hessians of one decoder layer.
pub struct LayerHessians {
    pub layer: usize,
    pub hessians: Vec<(LinearInput, Hessian)>,
    /// New Hessians are [`Hessian::exact`].
    exact: bool,
}

impl LayerHessians {
    /// f64 accumulation (sequential mode).
    pub fn new(layer: usize) -> LayerHessians {
        LayerHessians {
            layer,
            hessians: Vec::new(),
            exact: false,
        }
    }

    /// Grouping-free accumulation (full mode, offline Hessians).
    pub fn exact(layer: usize) -> LayerHessians {
        LayerHessians {
            layer,
            hessians: Vec::new(),
            exact: true,
        }
    }

    /// The mean Hessian of `input`, if it was observed.
    pub fn get(&self, input: LinearInput) -> Option<&Hessian> {
        self.hessians.iter().find(|(i, _)| *i == input).map(|(_, h)| h)
    }

    /// Removes and returns the Hessian of `input` (quantizing frees each input's sums in turn).
    pub fn take(&mut self, input: LinearInput) -> Option<Hessian> {
        let i = self.hessians.iter().position(|(i, _)| *i == input)?;
        Some(self.hessians.remove(i).1)
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
                self.hessians
                    .push((input, if self.exact { Hessian::exact(n) } else { Hessian::new(n) }));
                self.hessians.len() - 1
            }
        };
        let name = format!("model.layers.{layer} input {input:?}");
        self.hessians[idx]
            .1
            .add(x, &name)
            .map_err(|e| llvq_model::ModelError::Input(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llvq_model::candle_core::Device;

    /// (1/t)·Σ_r x_r x_rᵀ of `t` rows of `n` in f64, by plain loops.
    fn outer_mean(data: &[f32], t: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0; n * n];
        for row in data.chunks_exact(n) {
            for i in 0..n {
                for j in 0..n {
                    out[i * n + j] += row[i] as f64 * row[j] as f64 / t as f64;
                }
            }
        }
        out
    }

    /// XᵀX made a block of rows at a time (as wide inputs are) is the mean outer product too,
    /// in both accumulators, with every block boundary (rows 5 of 12, and a ragged last block).
    #[test]
    fn blocked_products_sum_the_same_outer_products() {
        let (t, n) = (7, 12);
        let data: Vec<f32> = (0..t * n).map(|i| (i as f32 * 0.61).cos() * 3.0).collect();
        let x = Tensor::from_vec(data.clone(), (t, n), &Device::Cpu).unwrap();
        for exact in [false, true] {
            let mut h = if exact { Hessian::exact(n) } else { Hessian::new(n) };
            h.add_in_blocks(&x, "x", 5).unwrap();
            h.tokens += t;
            let m = h.mean();
            let want = outer_mean(&data, t, n);
            for (k, (a, b)) in m.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "({}, {})", k / n, k % n);
            }
        }
    }

    #[test]
    fn hessian_is_the_mean_outer_product() {
        let (t, n) = (5, 3);
        let data: Vec<f32> = (0..t * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::from_vec(data.clone(), (t, n), &Device::Cpu).unwrap();
        let mut h = Hessian::new(n);
        h.add(&x, "x").unwrap();
        h.add(&x, "x").unwrap();
        let m = h.mean();
        for (a, b) in m.iter().zip(outer_mean(&data, t, n)) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(h.tokens(), 2 * t);
        // The exact accumulator agrees to f64 precision, and any grouping gives the same bits.
        let mut e = Hessian::exact(n);
        e.add(&x, "x").unwrap();
        e.add(&x, "x").unwrap();
        for (a, b) in e.mean().iter().zip(&m) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-3), "{a} {b}");
        }
        let bad = Tensor::from_vec(vec![0f32; 4], (2, 2), &Device::Cpu).unwrap();
        assert!(h
            .add(&bad, "model.layers.3 input Qkv")
            .unwrap_err()
            .to_string()
            .contains("layers.3"));
    }

    /// Windows of very different magnitudes summed in one pass, or in shards merged in other
    /// orders, give identical bits; an f64 sum of the same windows does not in general.
    #[test]
    fn exact_sums_do_not_depend_on_the_grouping() {
        let (t, n) = (7, 5);
        let wins: Vec<Tensor> = (0..9)
            .map(|w| {
                let scale = 10f32.powi(w as i32 % 5 - 2);
                let d: Vec<f32> = (0..t * n)
                    .map(|i| ((i * 31 + w * 17) as f32 * 0.713).sin() * scale)
                    .collect();
                Tensor::from_vec(d, (t, n), &Device::Cpu).unwrap()
            })
            .collect();
        let one = |ws: &[Tensor]| {
            let mut h = Hessian::exact(n);
            for x in ws {
                h.add(x, "x").unwrap();
            }
            h
        };
        let whole = one(&wins);
        for split in [vec![0, 9], vec![0, 4, 9], vec![0, 2, 3, 9], vec![0, 1, 5, 8, 9]] {
            let mut parts: Vec<Hessian> = split.windows(2).map(|r| one(&wins[r[0]..r[1]])).collect();
            parts.reverse();
            let mut m = parts.pop().unwrap();
            for p in &parts {
                m.merge(p, "x").unwrap();
            }
            assert_eq!(m.tokens(), whole.tokens());
            let bits = |h: &Hessian| h.mean().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&m), bits(&whole), "split {split:?}");
        }
        assert!(Hessian::new(n).merge(&whole, "x").is_err());
    }
}
