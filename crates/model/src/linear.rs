//! One linear layer of the forward pass, whatever its weights are stored as (issue 9).
//!
//! As candle's `QMatMul`, [`Linear`] is an enum over kinds of weights, so the model code calls
//! `forward` and does not care which one it runs:
//! - [`Weight::Dense`]: an `[out, in]` f32 tensor applied by candle's matmul (the
//!   full-precision model, or a compressed file decoded with `--dense`);
//! - [`Weight::Compressed`]: a layer of a compressed file run without expanding it. The file
//!   stores Ŵ' = R_out·W·R_inᵀ (§5.3), so y = W·x = R_outᵀ·(Ŵ'·(R_in·x)): the seeded randomized
//!   Hadamard transforms are applied to the activations (fast transforms, never an n×n
//!   matrix), and Ŵ' runs through an [`Exec`] kernel on its execution layout.
//!
//! Linears that read the same input with the same input rotation (q/k/v, gate/up share
//! R_in in files written by the pipeline) rotate it once: [`forward_shared`].

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::error::{Result, TensorContext};
use crate::hadamard::Rotation;

/// A matrix in an execution layout: `y[t] = M · x[t]` for `t` input rows.
///
/// `cols()` is the layout's input width (the real width padded up, e.g. to whole code blocks);
/// callers zero-pad inputs to it.
pub trait Exec: Send + Sync + std::fmt::Debug {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// `y` (`t × rows`) = `x` (`t × cols`) · Mᵀ.
    fn matmul(&self, x: &[f32], t: usize, y: &mut [f32]);
    /// Bytes of weights resident in memory.
    fn resident_bytes(&self) -> usize;
    /// The matrix as f32, `rows × cols` (for tests and `--dense` comparisons).
    fn to_f32(&self) -> Vec<f32>;
    /// Rows `ids` as f32 (`ids.len() × cols`), where the layout can serve them cheaply (a tied
    /// embedding table looked up in the LM head); `None` otherwise.
    fn rows_f32(&self, _ids: &[u32]) -> Option<Vec<f32>> {
        None
    }
}

/// Plain row-major f32: the reference [`Exec`] (and the layout of codes with no compact one).
#[derive(Debug, Clone)]
pub struct F32Rows {
    rows: usize,
    cols: usize,
    w: Vec<f32>,
}

impl F32Rows {
    pub fn new(rows: usize, cols: usize, w: Vec<f32>) -> F32Rows {
        assert_eq!(w.len(), rows * cols, "F32Rows: {} values for {rows}×{cols}", w.len());
        F32Rows { rows, cols, w }
    }
}

impl Exec for F32Rows {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn matmul(&self, x: &[f32], t: usize, y: &mut [f32]) {
        use rayon::prelude::*;
        let (n, k) = (self.rows, self.cols);
        y.par_chunks_mut(n).zip(x.par_chunks(k)).take(t).for_each(|(yr, xr)| {
            for (o, wr) in yr.iter_mut().zip(self.w.chunks_exact(k)) {
                *o = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
            }
        });
    }
    fn resident_bytes(&self) -> usize {
        self.w.len() * 4
    }
    fn to_f32(&self) -> Vec<f32> {
        self.w.clone()
    }
}

/// A compressed layer: Ŵ' in an execution layout plus the rotations of its two sides.
#[derive(Debug, Clone)]
pub struct Compressed {
    /// Output and input width of the layer (the real ones; `exec.cols()` may be padded).
    pub rows: usize,
    pub cols: usize,
    pub exec: Arc<dyn Exec>,
    pub rot_in: Option<Arc<Rotation>>,
    pub rot_out: Option<Arc<Rotation>>,
}

/// The weights of a linear layer.
#[derive(Debug, Clone)]
pub enum Weight {
    Dense(Tensor),
    Compressed(Compressed),
}

/// `y = x Wᵀ + b` with `W` `[out, in]` as in HF checkpoints.
#[derive(Debug, Clone)]
pub struct Linear {
    pub(crate) weight: Weight,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Weight, bias: Option<Tensor>) -> Linear {
        Linear { weight, bias }
    }

    pub fn kind(&self) -> &Weight {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// `[out, in]`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match &self.weight {
            Weight::Dense(w) => w.dims2().ctx("linear weight"),
            Weight::Compressed(c) => Ok((c.rows, c.cols)),
        }
    }

    /// The weight as a dense `[out, in]` f32 tensor (a compressed layer is expanded:
    /// W = R_outᵀ Ŵ' R_in).
    pub fn weight(&self) -> Result<Tensor> {
        match &self.weight {
            Weight::Dense(w) => Ok(w.clone()),
            Weight::Compressed(c) => {
                let k = c.exec.cols();
                let wp = c.exec.to_f32();
                let mut w: Vec<f64> =
                    wp.chunks_exact(k).flat_map(|r| r[..c.cols].iter().map(|&v| v as f64)).collect();
                if let Some(r) = &c.rot_out {
                    r.rotate_cols_t(&mut w, c.cols);
                }
                if let Some(r) = &c.rot_in {
                    r.rotate_rows_t(&mut w, c.rows);
                }
                let v: Vec<f32> = w.into_iter().map(|x| x as f32).collect();
                Tensor::from_vec(v, (c.rows, c.cols), &Device::Cpu).ctx("linear weight")
            }
        }
    }

    /// Bytes of weights resident in memory (biases not counted).
    pub fn resident_bytes(&self) -> usize {
        match &self.weight {
            Weight::Dense(w) => w.elem_count() * w.dtype().size_in_bytes(),
            Weight::Compressed(c) => c.exec.resident_bytes(),
        }
    }

    /// Rows of an unrotated compressed weight served by its layout (see [`Exec::rows_f32`]).
    pub fn rows_f32(&self, ids: &[u32]) -> Option<Vec<f32>> {
        match &self.weight {
            Weight::Compressed(c) if c.rot_in.is_none() && c.rot_out.is_none() && c.exec.cols() == c.cols => {
                c.exec.rows_f32(ids)
            }
            _ => None,
        }
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(forward_shared(&[self], x)?.pop().expect("one output"))
    }
}

/// The input rows padded to `k` columns after the optional input rotation.
fn prepare(x: &[f32], t: usize, cols: usize, k: usize, rot: Option<&Rotation>) -> Vec<f32> {
    let mut out = vec![0f32; t * k];
    match rot {
        None => {
            for (o, r) in out.chunks_exact_mut(k).zip(x.chunks_exact(cols)) {
                o[..cols].copy_from_slice(r);
            }
        }
        Some(rot) => {
            let mut xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            if t == 1 {
                rot.apply(&mut xd);
            } else {
                rot.rotate_rows(&mut xd, t);
            }
            for (o, r) in out.chunks_exact_mut(k).zip(xd.chunks_exact(cols)) {
                o[..cols].iter_mut().zip(r).for_each(|(a, &b)| *a = b as f32);
            }
        }
    }
    out
}

/// Runs several linears on the same input `x` (`[tokens, in]`). Compressed ones with the same
/// input rotation and padded width share one rotated copy of `x`.
pub fn forward_shared(lins: &[&Linear], x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
    let (t, cols) = x.dims2()?;
    let mut host: Option<Vec<f32>> = None;
    // (rotation seed, padded width) → rotated, padded input.
    let mut prepared: Vec<((Option<u64>, usize), Vec<f32>)> = Vec::new();
    let mut outs = Vec::with_capacity(lins.len());
    for lin in lins {
        let y = match &lin.weight {
            Weight::Dense(w) => x.matmul(&w.t()?)?,
            Weight::Compressed(c) => {
                if c.cols != cols {
                    candle_core::bail!("linear expects {} inputs, got {cols}", c.cols);
                }
                let xs = match &mut host {
                    Some(v) => v,
                    None => host.insert(x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
                };
                let k = c.exec.cols();
                let key = (c.rot_in.as_ref().map(|r| r.seed()), k);
                let i = match prepared.iter().position(|(kk, _)| *kk == key) {
                    Some(i) => i,
                    None => {
                        prepared.push((key, prepare(xs, t, cols, k, c.rot_in.as_deref())));
                        prepared.len() - 1
                    }
                };
                let n = c.exec.rows();
                let mut y = vec![0f32; t * n];
                c.exec.matmul(&prepared[i].1, t, &mut y);
                let y = match &c.rot_out {
                    None => y,
                    Some(r) => {
                        let mut yd: Vec<f64> = y.iter().map(|&v| v as f64).collect();
                        if t == 1 {
                            r.apply_t(&mut yd);
                        } else {
                            r.rotate_rows_t(&mut yd, t);
                        }
                        yd.into_iter().map(|v| v as f32).collect()
                    }
                };
                Tensor::from_vec(y, (t, n), &Device::Cpu)?
            }
        };
        outs.push(match &lin.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        });
    }
    Ok(outs)
}
