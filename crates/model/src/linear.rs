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
//!
//! A tuned file adds input scales s (§5.4): y = W·(s ⊙ x), applied to the input in the
//! original coordinates, before the input rotation. Linears holding the same `Arc` of scales
//! (tied ones) still share one scaled, rotated copy of the input.

use std::sync::Arc;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};

use crate::error::{Result, TensorContext};
use crate::qmatmul::rotate::OnlineRotation;
use crate::qmatmul::{F16Matrix, I8Weight, MatVec, PackedWeight};

/// A matrix in an execution layout ([`MatVec`]: `y = W·x`, `Y = X·Wᵀ`), plus what the model
/// needs besides products.
pub trait Exec: MatVec + Send {
    /// The matrix as f32, `rows × cols` (for tests and `--dense` comparisons).
    fn to_f32(&self) -> Vec<f32>;
    /// Rows `ids` as f32 (`ids.len() × cols`), where the layout can serve them cheaply (a tied
    /// embedding table looked up in the LM head); `None` otherwise.
    fn rows_f32(&self, _ids: &[u32]) -> Option<Vec<f32>> {
        None
    }
}

impl Exec for PackedWeight {
    fn to_f32(&self) -> Vec<f32> {
        self.to_dense()
    }
}

impl Exec for I8Weight {
    fn to_f32(&self) -> Vec<f32> {
        self.to_dense()
    }
}

impl Exec for F16Matrix {
    fn to_f32(&self) -> Vec<f32> {
        self.to_dense()
    }
    fn rows_f32(&self, ids: &[u32]) -> Option<Vec<f32>> {
        let c = MatVec::cols(self);
        let mut out = vec![0f32; ids.len() * c];
        for (o, &i) in out.chunks_exact_mut(c).zip(ids) {
            if i as usize >= MatVec::rows(self) {
                return None;
            }
            self.row_f32(i as usize, o);
        }
        Some(out)
    }
}

/// Plain row-major f32: the layout of codes with no grid view, and a reference.
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

impl MatVec for F32Rows {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn matvec(&self, x: &[f32], y: &mut [f32]) {
        self.matmul(x, y)
    }
    /// The prefill tiles of the compressed kernels (`qmatmul::matmul_tiles`: gemm on tiles of
    /// rows, on the thread team) with the rows copied as they are. A plain per-row dot product
    /// ran at scalar speed: a GLVQ file's 589-window perplexity took hours.
    fn matmul(&self, x: &[f32], y: &mut [f32]) {
        let k = self.cols;
        crate::qmatmul::matmul_tiles(self.rows, k, k, x, y, |r0, buf| {
            buf.copy_from_slice(&self.w[r0 * k..r0 * k + buf.len()]);
        });
    }
    fn resident_bytes(&self) -> usize {
        self.w.len() * 4
    }
}

impl Exec for F32Rows {
    fn to_f32(&self) -> Vec<f32> {
        self.w.clone()
    }
}

/// A compressed layer: Ŵ' in an execution layout plus the rotations of its two sides.
#[derive(Clone)]
pub struct Compressed {
    /// Output and input width of the layer (the real ones; `exec.cols()` may be padded).
    pub rows: usize,
    pub cols: usize,
    pub exec: Arc<dyn Exec>,
    pub rot_in: Option<Arc<OnlineRotation>>,
    pub rot_out: Option<Arc<OnlineRotation>>,
}

impl std::fmt::Debug for Compressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressed")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("resident_bytes", &self.exec.resident_bytes())
            .field("rot_in", &self.rot_in.as_ref().map(|r| r.seed()))
            .field("rot_out", &self.rot_out.as_ref().map(|r| r.seed()))
            .finish()
    }
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
    /// Tuned input scales (one per column), or `None`.
    pub(crate) input_scale: Option<Arc<[f32]>>,
}

impl Linear {
    pub fn new(weight: Weight, bias: Option<Tensor>) -> Linear {
        Linear {
            weight,
            bias,
            input_scale: None,
        }
    }

    /// This linear with input scales `s` (one per column): y = W·(s ⊙ x) + b.
    pub fn with_input_scale(mut self, s: Arc<[f32]>) -> Linear {
        self.input_scale = Some(s);
        self
    }

    pub fn input_scale(&self) -> Option<&[f32]> {
        self.input_scale.as_deref()
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
    /// W = R_outᵀ Ŵ' R_in), input scales folded in: W·diag(s).
    pub fn weight(&self) -> Result<Tensor> {
        match (&self.weight, &self.input_scale) {
            (Weight::Dense(w), None) => Ok(w.clone()),
            (Weight::Dense(w), Some(s)) => {
                let s = Tensor::from_slice(s, (1, s.len()), &Device::Cpu).ctx("input scale")?;
                w.broadcast_mul(&s).ctx("linear weight")
            }
            (Weight::Compressed(c), _) => {
                let mut w: Vec<f64> = c.exec.to_f32().into_iter().map(|v| v as f64).collect();
                if let Some(r) = &c.rot_out {
                    r.rotation().rotate_cols_t(&mut w, c.cols);
                }
                if let Some(r) = &c.rot_in {
                    r.rotation().rotate_rows_t(&mut w, c.rows);
                }
                if let Some(s) = &self.input_scale {
                    scale_columns(&mut w, s);
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
            Weight::Compressed(c) if c.rot_in.is_none() && c.rot_out.is_none() => c.exec.rows_f32(ids),
            _ => None,
        }
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(forward_shared(&[self], x)?.pop().expect("one output"))
    }
}

/// W·diag(s) in place (`w` row-major with `s.len()` columns).
pub fn scale_columns(w: &mut [f64], s: &[f32]) {
    for row in w.chunks_exact_mut(s.len()) {
        for (v, &k) in row.iter_mut().zip(s) {
            *v *= k as f64;
        }
    }
}

/// Runs several linears on the same input `x` (`[tokens, in]`). Compressed ones with the same
/// input rotation and padded width share one rotated copy of `x`.
pub fn forward_shared(lins: &[&Linear], x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
    let (t, cols) = x.dims2()?;
    // The input as f32 values: borrowed from a contiguous f32 tensor, else copied once.
    let x32 = x.to_dtype(DType::F32)?;
    let (storage, layout) = x32.storage_and_layout();
    let mut copied: Option<Vec<f32>> = None;
    let borrowed: Option<&[f32]> = match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Some(&v[a..b]),
        _ => None,
    };
    // (input rotation seed, address of the input scales) → scaled, rotated input, in buffers
    // reused across calls (a prefill's inputs are megabytes; fresh ones fault their pages in).
    type Key = (Option<u64>, usize);
    let mut prepared: Vec<(Key, Vec<f32>)> = Vec::new();
    let mut outs = Vec::with_capacity(lins.len());
    for lin in lins {
        let scale = lin.input_scale.as_ref();
        let y = match &lin.weight {
            Weight::Dense(w) => match scale {
                None => x.matmul(&w.t()?)?,
                Some(s) => x
                    .broadcast_mul(&Tensor::from_slice(s, (1, s.len()), &Device::Cpu)?)?
                    .matmul(&w.t()?)?,
            },
            Weight::Compressed(c) => {
                if c.cols != cols {
                    candle_core::bail!("linear expects {} inputs, got {cols}", c.cols);
                }
                let xs: &[f32] = match borrowed {
                    Some(v) => v,
                    None => match &mut copied {
                        Some(v) => v,
                        None => copied.insert(x32.flatten_all()?.to_vec1::<f32>()?),
                    },
                };
                let input: &[f32] = match (&c.rot_in, scale) {
                    (None, None) => xs,
                    (rot, scale) => {
                        let key = (rot.as_ref().map(|r| r.seed()), scale.map_or(0, |s| s.as_ptr() as usize));
                        let i = match prepared.iter().position(|(k, _)| *k == key) {
                            Some(i) => i,
                            None => {
                                let mut v = INPUTS.with(|p| p.borrow_mut().pop()).unwrap_or_default();
                                v.clear();
                                match scale {
                                    None => v.extend_from_slice(xs),
                                    Some(s) => v.extend(
                                        xs.chunks_exact(cols)
                                            .flat_map(|r| r.iter().zip(s.iter()).map(|(a, b)| a * b)),
                                    ),
                                }
                                if let Some(r) = rot {
                                    r.rows(&mut v, t, false);
                                }
                                prepared.push((key, v));
                                prepared.len() - 1
                            }
                        };
                        &prepared[i].1
                    }
                };
                let n = c.rows;
                let mut y = vec![0f32; t * n];
                c.exec.matmul(input, &mut y);
                if let Some(r) = &c.rot_out {
                    r.rows(&mut y, t, true);
                }
                Tensor::from_vec(y, (t, n), &Device::Cpu)?
            }
        };
        outs.push(match &lin.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        });
    }
    INPUTS.with(|p| p.borrow_mut().extend(prepared.into_iter().map(|(_, v)| v)));
    Ok(outs)
}

thread_local! {
    /// Buffers of [`forward_shared`]'s prepared inputs, kept between calls.
    static INPUTS: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}
