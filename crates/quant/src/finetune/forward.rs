//! A differentiable twin of [`llvq_model::Model::forward`] for tuning input scales (§5.4).
//!
//! The quantized weights Ŵ (dense-decoded, `[out, in]`) are constants; only the input scales
//! are [`Var`]s, and every linear computes y = Ŵ·(s ⊙ x) + b. The model's fused kernels
//! (candle-nn's `rms_norm`, `softmax_last_dim`, `rope`) have no backward pass, so this twin
//! writes them with basic tensor ops; the `forward_matches_model` test pins it to `Model`.
//! The dtype is a parameter so tests can check gradients in f64.

use llvq_model::candle_core::{DType, Device, Tensor, Var, D};
use llvq_model::{Config, LinearInput, LinearName, Weights};

use crate::error::{CandleContext, Result};

/// One decoder layer's constants.
struct Block {
    input_norm: Tensor,
    post_norm: Tensor,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    /// Ŵ and bias of each linear, in [`LinearName::ALL`] order.
    w: Vec<Tensor>,
    bias: Vec<Option<Tensor>>,
}

/// The frozen quantized model as constants in `dtype`.
pub struct Student {
    cfg: Config,
    dtype: DType,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    head: Tensor,
}

/// Which scale vector every linear of every layer reads: `index[layer][LinearName as usize]`.
/// Tied: linears that share an input (q/k/v, gate/up) share one vector.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleMap {
    pub index: Vec<[usize; 7]>,
    /// Length of each vector.
    pub lens: Vec<usize>,
}

impl ScaleMap {
    pub fn new(cfg: &Config, tied: bool) -> ScaleMap {
        let mut index = Vec::new();
        let mut lens = Vec::new();
        for _ in 0..cfg.num_layers {
            let mut row = [0usize; 7];
            let mut first: Vec<(LinearInput, usize)> = Vec::new();
            for (k, name) in LinearName::ALL.into_iter().enumerate() {
                let shared = first.iter().find(|(i, _)| *i == name.input()).map(|(_, v)| *v);
                row[k] = match shared {
                    Some(v) if tied => v,
                    _ => {
                        let cols = match name {
                            LinearName::Down => cfg.intermediate_size,
                            LinearName::O => cfg.num_heads * cfg.head_dim,
                            _ => cfg.hidden_size,
                        };
                        lens.push(cols);
                        first.push((name.input(), lens.len() - 1));
                        lens.len() - 1
                    }
                };
            }
            index.push(row);
        }
        ScaleMap { index, lens }
    }

    /// Number of scale vectors.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
}

/// The scales as leaves of the graph (or plain constants for a forward without gradients).
pub enum Scales<'a> {
    Vars(&'a [Var]),
    Fixed(&'a [Tensor]),
}

impl Scales<'_> {
    fn get(&self, i: usize) -> &Tensor {
        match self {
            Scales::Vars(v) => v[i].as_tensor(),
            Scales::Fixed(t) => &t[i],
        }
    }
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> llvq_model::candle_core::Result<Tensor> {
    let r = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    x.broadcast_div(&r)?.broadcast_mul(w)
}

/// Softmax over the last axis; the max is detached (softmax does not depend on it).
fn softmax(x: &Tensor) -> llvq_model::candle_core::Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// log softmax over the last axis (max detached, as in [`softmax`]).
pub fn log_softmax(x: &Tensor) -> llvq_model::candle_core::Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let z = x.broadcast_sub(&m)?;
    z.broadcast_sub(&z.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// Non-interleaved RoPE (candle-nn's `rope`): x·cos + rotate_half(x)·sin, `x` `[h, t, d]`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> llvq_model::candle_core::Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let (x1, x2) = (x.narrow(D::Minus1, 0, d / 2)?, x.narrow(D::Minus1, d / 2, d / 2)?);
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)?.add(&rot.broadcast_mul(sin)?)
}

impl Student {
    /// The model of `w` (HF names, f32; linears are the quantized Ŵ without input scales).
    pub fn new(cfg: &Config, w: &Weights, dtype: DType) -> Result<Student> {
        let get = |n: &str| -> Result<Tensor> { w.get(n)?.to_dtype(dtype).ctx(n)?.contiguous().ctx(n) };
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}");
            let mut ws = Vec::new();
            let mut bias = Vec::new();
            for name in LinearName::ALL {
                ws.push(get(&name.weight_name(l))?);
                let b = format!("{p}.{}.bias", name.module());
                bias.push(if w.tensors.contains_key(&b) {
                    Some(get(&b)?)
                } else {
                    None
                });
            }
            let opt = |n: String| -> Result<Option<Tensor>> {
                if cfg.qk_norm {
                    Ok(Some(get(&n)?))
                } else {
                    Ok(None)
                }
            };
            blocks.push(Block {
                input_norm: get(&format!("{p}.input_layernorm.weight"))?,
                post_norm: get(&format!("{p}.post_attention_layernorm.weight"))?,
                q_norm: opt(format!("{p}.self_attn.q_norm.weight"))?,
                k_norm: opt(format!("{p}.self_attn.k_norm.weight"))?,
                w: ws,
                bias,
            });
        }
        let embed = get("model.embed_tokens.weight")?;
        let head = if cfg.tie_embeddings {
            embed.clone()
        } else {
            get("lm_head.weight")?
        };
        Ok(Student {
            cfg: cfg.clone(),
            dtype,
            embed,
            blocks,
            norm: get("model.norm.weight")?,
            head,
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Logits `[tokens, vocab]` for every position of `ids` (positions from 0, no cache).
    pub fn forward(&self, ids: &[u32], map: &ScaleMap, scales: &Scales<'_>) -> Result<Tensor> {
        self.forward_inner(ids, map, scales).ctx("finetune forward")
    }

    fn forward_inner(
        &self,
        ids: &[u32],
        map: &ScaleMap,
        scales: &Scales<'_>,
    ) -> llvq_model::candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let dev = Device::Cpu;
        let t = ids.len();
        let (nh, nkv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let rep = nh / nkv;
        let eps = cfg.rms_eps;
        // RoPE as the model computes it (f32 angles), widened to the full head.
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in 0..t {
            for &f in &cfg.inv_freq() {
                let a = (p as f32) * (f as f32);
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let half = d / 2;
        let widen = |v: Vec<f32>| -> llvq_model::candle_core::Result<Tensor> {
            let h = Tensor::from_vec(v, (t, half), &dev)?;
            Tensor::cat(&[&h, &h], 1)?.to_dtype(self.dtype)
        };
        let (cos, sin) = (widen(cos)?, widen(sin)?);
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &dev)?.to_dtype(self.dtype)?;

        let idx = Tensor::new(ids, &dev)?;
        let mut x = self.embed.embedding(&idx)?;
        for (l, b) in self.blocks.iter().enumerate() {
            let lin = |k: usize, h: &Tensor| -> llvq_model::candle_core::Result<Tensor> {
                let s = scales.get(map.index[l][k]).unsqueeze(0)?;
                let y = h.broadcast_mul(&s)?.matmul(&b.w[k].t()?)?;
                match &b.bias[k] {
                    Some(bb) => y.broadcast_add(bb),
                    None => Ok(y),
                }
            };
            let h = rms_norm(&x, &b.input_norm, eps)?;
            let heads = |y: Tensor, n: usize| y.reshape((t, n, d))?.transpose(0, 1)?.contiguous();
            let mut q = heads(lin(0, &h)?, nh)?;
            let mut k = heads(lin(1, &h)?, nkv)?;
            let v = heads(lin(2, &h)?, nkv)?;
            if let (Some(qn), Some(kn)) = (&b.q_norm, &b.k_norm) {
                q = rms_norm(&q, qn, eps)?;
                k = rms_norm(&k, kn, eps)?;
            }
            let q = rope(&q, &cos, &sin)?;
            let k = rope(&k, &cos, &sin)?;
            let q = q.reshape((nkv, rep * t, d))?;
            let att = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
            let att = att
                .reshape((nkv, rep, t, t))?
                .broadcast_add(&mask)?
                .reshape((nkv, rep * t, t))?;
            let out = softmax(&att)?.matmul(&v)?;
            let attn = out.reshape((nh, t, d))?.transpose(0, 1)?.reshape((t, nh * d))?;
            x = (x + lin(3, &attn)?)?;
            let h = rms_norm(&x, &b.post_norm, eps)?;
            let a = (lin(4, &h)?.silu()? * lin(5, &h)?)?;
            x = (x + lin(6, &a)?)?;
        }
        let h = rms_norm(&x, &self.norm, eps)?;
        h.matmul(&self.head.t()?)
    }
}
