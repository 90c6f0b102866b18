//! The decoder-only transformer forward pass (Llama / Qwen2 / Qwen3), f32 on the CPU.
//!
//! The model is a stack of [`Layer`]s built one at a time from a [`Weights`] map. Unlike
//! candle-transformers' models, the forward pass returns logits for every position
//! (perplexity needs them) and calls a [`LinearHook`] with the input of every linear layer,
//! which is what calibration for quantization needs. Linear weights can be replaced in
//! place (`[out, in]` f32), which is how a quantized model is evaluated.
//!
//! Shapes: a single sequence, no batch dimension; activations are `[tokens, hidden]`.
use candle_core::{DType, Device, Tensor, D};

use crate::config::Config;
use crate::error::{ModelError, Result, TensorContext};
use crate::linear::{forward_shared, Linear, Weight};
use crate::weights::{check_tensor, expected_tensors, Weights};
use std::collections::BTreeMap;

/// [`Model::forward_tree`]: several continuations of one prefix in one forward pass.
mod tree;

/// The seven linear layers of a decoder layer, by their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearName {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LinearName {
    pub const ALL: [LinearName; 7] = [
        LinearName::Q,
        LinearName::K,
        LinearName::V,
        LinearName::O,
        LinearName::Gate,
        LinearName::Up,
        LinearName::Down,
    ];

    /// HF module path inside a layer, e.g. `self_attn.q_proj`.
    pub fn module(self) -> &'static str {
        match self {
            LinearName::Q => "self_attn.q_proj",
            LinearName::K => "self_attn.k_proj",
            LinearName::V => "self_attn.v_proj",
            LinearName::O => "self_attn.o_proj",
            LinearName::Gate => "mlp.gate_proj",
            LinearName::Up => "mlp.up_proj",
            LinearName::Down => "mlp.down_proj",
        }
    }

    /// Full HF weight name, e.g. `model.layers.3.self_attn.q_proj.weight`.
    pub fn weight_name(self, layer: usize) -> String {
        format!("model.layers.{layer}.{}.weight", self.module())
    }

    /// Which shared input this linear layer reads.
    pub fn input(self) -> LinearInput {
        match self {
            LinearName::Q | LinearName::K | LinearName::V => LinearInput::Qkv,
            LinearName::O => LinearInput::O,
            LinearName::Gate | LinearName::Up => LinearInput::GateUp,
            LinearName::Down => LinearInput::Down,
        }
    }
}

/// The four distinct linear-layer inputs of a decoder layer (q/k/v share one, gate/up one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearInput {
    /// Normed hidden state read by q, k and v.
    Qkv,
    /// Attention output read by o.
    O,
    /// Normed hidden state read by gate and up.
    GateUp,
    /// `silu(gate) * up`, read by down.
    Down,
}

impl LinearInput {
    pub fn linears(self) -> &'static [LinearName] {
        match self {
            LinearInput::Qkv => &[LinearName::Q, LinearName::K, LinearName::V],
            LinearInput::O => &[LinearName::O],
            LinearInput::GateUp => &[LinearName::Gate, LinearName::Up],
            LinearInput::Down => &[LinearName::Down],
        }
    }
}

/// Observes linear-layer inputs during a forward pass (e.g. to accumulate `XᵀX`).
pub trait LinearHook {
    /// `x` is `[tokens, in_features]`, the input of every linear in `input.linears()`.
    fn observe(&mut self, layer: usize, input: LinearInput, x: &Tensor) -> Result<()>;
}

/// A hook that does nothing.
pub struct NoHook;

impl LinearHook for NoHook {
    fn observe(&mut self, _: usize, _: LinearInput, _: &Tensor) -> Result<()> {
        Ok(())
    }
}

/// One decoder layer: attention and SwiGLU MLP, each pre-normed with a residual.
#[derive(Debug, Clone)]
pub struct Layer {
    index: usize,
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Cached keys and values of one layer, `[kv_heads, positions, head_dim]`, in buffers with
/// room to grow: a new token's key and value are written in place (`slice_set`) instead of
/// concatenating, which copied the whole past at every generated token; the capacity doubles
/// when full. A clone holds exactly the cached positions (capacity = length), so neither it
/// nor the original ever writes into a buffer the other reads.
#[derive(Debug, Default)]
pub struct LayerCache {
    kv: Option<(Tensor, Tensor)>,
    len: usize,
}

impl Clone for LayerCache {
    fn clone(&self) -> LayerCache {
        // A full buffer's view is shared (no writes happen below the length); a partly used
        // one is copied, so the clone's next append reallocates either way.
        let copy = |b: &Tensor| b.narrow(1, 0, self.len).and_then(|t| t.contiguous());
        LayerCache {
            kv: self
                .kv
                .as_ref()
                .map(|(k, v)| (copy(k).expect("cached keys"), copy(v).expect("cached values"))),
            len: self.len,
        }
    }
}

impl LayerCache {
    /// Appends `k` and `v` (`[kv_heads, t, head_dim]`) and returns every cached position.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let t = k.dim(1)?;
        let need = self.len + t;
        let cap = self.kv.as_ref().map_or(0, |(bk, _)| bk.dim(1).unwrap_or(0));
        if need > cap {
            let cap = need.max(2 * cap).max(64);
            let grow = |old: Option<&Tensor>, new: &Tensor| -> candle_core::Result<Tensor> {
                let (h, _, d) = new.dims3()?;
                let b = Tensor::zeros((h, cap, d), new.dtype(), new.device())?;
                if let Some(old) = old {
                    b.slice_set(&old.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                }
                Ok(b)
            };
            let old = self.kv.take();
            let bk = grow(old.as_ref().map(|(k, _)| k), k)?;
            let bv = grow(old.as_ref().map(|(_, v)| v), v)?;
            self.kv = Some((bk, bv));
        }
        let (bk, bv) = self.kv.as_ref().expect("allocated above");
        bk.slice_set(&k.contiguous()?, 1, self.len)?;
        bv.slice_set(&v.contiguous()?, 1, self.len)?;
        self.len = need;
        Ok((bk.narrow(1, 0, need)?, bv.narrow(1, 0, need)?))
    }
}

/// Keys and values of all layers for incremental decoding.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> KvCache {
        KvCache {
            layers: vec![LayerCache::default(); num_layers],
            len: 0,
        }
    }

    /// Number of positions already cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// RoPE cosines and sines for a run of positions, `[tokens, head_dim / 2]`.
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// The table for positions `pos..pos+len` of a model with config `cfg` (what
    /// [`Model::rope`] returns, for running layers without a whole model).
    pub fn new(cfg: &Config, pos: usize, len: usize) -> Result<Rope> {
        Rope::from_inv_freq(&cfg.inv_freq(), pos, len)
    }

    fn from_inv_freq(inv_freq: &[f64], pos: usize, len: usize) -> Result<Rope> {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in pos..pos + len {
            for &f in inv_freq {
                // f32 angle like HF, so long contexts round the same way.
                let a = (p as f32) * (f as f32);
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (len, half), &Device::Cpu).ctx("rope")?;
        let sin = Tensor::from_vec(sin, (len, half), &Device::Cpu).ctx("rope")?;
        Ok(Rope { cos, sin })
    }
}

/// What a layer's queries attend to: the causal mask, over the cache when there is one, with
/// the hook seeing each linear input; or an additive mask `[t, s]` (0 where a query may attend,
/// -inf elsewhere) without cache or hook, which the tree forward of `tree.rs` uses to score
/// several branches in one pass.
enum Attend<'a> {
    Causal(Option<&'a mut LayerCache>, &'a mut dyn LinearHook),
    Masked(&'a Tensor),
}

impl Layer {
    fn from_weights(
        cfg: &Config,
        w: &mut Weights,
        given: &mut BTreeMap<String, Weight>,
        index: usize,
    ) -> Result<Layer> {
        let p = format!("model.layers.{index}");
        let mut lin = |name: LinearName, bias: bool| -> Result<Linear> {
            let wname = name.weight_name(index);
            let weight = match given.remove(&wname) {
                Some(g) => g,
                None => Weight::Dense(w.take(&wname)?),
            };
            let bias = if bias {
                Some(w.take(&format!("{p}.{}.bias", name.module()))?)
            } else {
                None
            };
            Ok(Linear::new(weight, bias))
        };
        let q = lin(LinearName::Q, cfg.qkv_bias)?;
        let k = lin(LinearName::K, cfg.qkv_bias)?;
        let v = lin(LinearName::V, cfg.qkv_bias)?;
        let o = lin(LinearName::O, false)?;
        let gate = lin(LinearName::Gate, false)?;
        let up = lin(LinearName::Up, false)?;
        let down = lin(LinearName::Down, false)?;
        let (q_norm, k_norm) = if cfg.qk_norm {
            (
                Some(w.take(&format!("{p}.self_attn.q_norm.weight"))?),
                Some(w.take(&format!("{p}.self_attn.k_norm.weight"))?),
            )
        } else {
            (None, None)
        };
        Ok(Layer {
            index,
            input_norm: w.take(&format!("{p}.input_layernorm.weight"))?,
            q,
            k,
            v,
            o,
            q_norm,
            k_norm,
            post_norm: w.take(&format!("{p}.post_attention_layernorm.weight"))?,
            gate,
            up,
            down,
        })
    }

    /// Builds layer `index` alone, moving its tensors out of `w` (shapes checked): the
    /// streaming pipeline holds one decoder layer in memory at a time.
    pub fn load(cfg: &Config, w: &mut Weights, index: usize) -> Result<Layer> {
        let p = format!("model.layers.{index}.");
        for (name, shape) in expected_tensors(cfg).into_iter().filter(|(n, _)| n.starts_with(&p)) {
            check_tensor(&name, w.get(&name)?, &shape)?;
        }
        Layer::from_weights(cfg, w, &mut BTreeMap::new(), index)
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn linear(&self, name: LinearName) -> &Linear {
        match name {
            LinearName::Q => &self.q,
            LinearName::K => &self.k,
            LinearName::V => &self.v,
            LinearName::O => &self.o,
            LinearName::Gate => &self.gate,
            LinearName::Up => &self.up,
            LinearName::Down => &self.down,
        }
    }

    fn linear_mut(&mut self, name: LinearName) -> &mut Linear {
        match name {
            LinearName::Q => &mut self.q,
            LinearName::K => &mut self.k,
            LinearName::V => &mut self.v,
            LinearName::O => &mut self.o,
            LinearName::Gate => &mut self.gate,
            LinearName::Up => &mut self.up,
            LinearName::Down => &mut self.down,
        }
    }

    /// Replace a linear layer's weight (`[out, in]` f32, same shape, finite values).
    pub fn set_weight(&mut self, name: LinearName, weight: Tensor) -> Result<()> {
        let tname = name.weight_name(self.index);
        let lin = self.linear_mut(name);
        let (rows, cols) = lin.dims()?;
        let weight = weight.to_dtype(DType::F32).ctx(&tname)?.contiguous().ctx(&tname)?;
        check_tensor(&tname, &weight, &[rows, cols])?;
        lin.weight = Weight::Dense(weight);
        Ok(())
    }

    /// Replace a linear layer by another of the same shape (e.g. a compressed one).
    pub fn set_linear(&mut self, name: LinearName, new: Linear) -> Result<()> {
        let tname = name.weight_name(self.index);
        let lin = self.linear_mut(name);
        let (old, got) = (lin.dims()?, new.dims()?);
        if old != got {
            return Err(ModelError::Shape {
                name: tname,
                got: vec![got.0, got.1],
                expected: vec![old.0, old.1],
            });
        }
        *lin = new;
        Ok(())
    }

    /// Run the layer on `x` (`[tokens, hidden]`) at positions `pos..pos+tokens`.
    ///
    /// With a cache the new keys/values are appended and attention covers all cached
    /// positions; the hook sees each linear layer's input before it is applied.
    pub fn forward(
        &self,
        cfg: &Config,
        x: &Tensor,
        rope: &Rope,
        cache: Option<&mut LayerCache>,
        hook: &mut dyn LinearHook,
    ) -> Result<Tensor> {
        self.forward_with(cfg, x, rope, Attend::Causal(cache, hook))
    }

    /// [`Layer::forward`] under either attention of [`Attend`].
    fn forward_with(&self, cfg: &Config, x: &Tensor, rope: &Rope, attend: Attend<'_>) -> Result<Tensor> {
        let mut no_hook = NoHook;
        let (cache, hook, mask): (_, &mut dyn LinearHook, _) = match attend {
            Attend::Causal(cache, hook) => (cache, hook, None),
            Attend::Masked(mask) => (None, &mut no_hook, Some(mask)),
        };
        let name = format!("model.layers.{}", self.index);
        let eps = cfg.rms_eps as f32;
        let (t, _) = x.dims2().ctx(&name)?;
        let (nh, nkv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let rep = nh / nkv;

        let h = candle_nn::ops::rms_norm(x, &self.input_norm, eps).ctx(&name)?;
        hook.observe(self.index, LinearInput::Qkv, &h)?;
        let attn = (|| -> candle_core::Result<Tensor> {
            let heads = |y: Tensor, n: usize| y.reshape((t, n, d))?.transpose(0, 1)?.contiguous();
            let mut qkv = forward_shared(&[&self.q, &self.k, &self.v], &h)?.into_iter();
            let (q, k, v) = (qkv.next().expect("q"), qkv.next().expect("k"), qkv.next().expect("v"));
            let mut q = heads(q, nh)?;
            let mut k = heads(k, nkv)?;
            let v = heads(v, nkv)?;
            if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
                q = candle_nn::ops::rms_norm(&q, qn, eps)?;
                k = candle_nn::ops::rms_norm(&k, kn, eps)?;
            }
            let q = candle_nn::rotary_emb::rope(&q.unsqueeze(0)?, &rope.cos, &rope.sin)?.squeeze(0)?;
            let k = candle_nn::rotary_emb::rope(&k.unsqueeze(0)?, &rope.cos, &rope.sin)?.squeeze(0)?;
            let (k, v) = match cache {
                Some(slot) => slot.append(&k, &v)?,
                None => (k, v),
            };
            let s = k.dim(1)?;
            // Grouped-query attention without copying K/V: the `rep` query heads that share
            // a KV head are stacked along the token axis.
            let q = q.reshape((nkv, rep * t, d))?;
            let scale = 1.0 / (d as f64).sqrt();
            let att = (q.matmul(&k.t()?)? * scale)?;
            let att = if let Some(mask) = mask {
                att.reshape((nkv, rep, t, s))?
                    .broadcast_add(mask)?
                    .reshape((nkv, rep * t, s))?
            } else if t > 1 {
                let past = s - t;
                let mask: Vec<f32> = (0..t)
                    .flat_map(|i| (0..s).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
                    .collect();
                let mask = Tensor::from_vec(mask, (t, s), att.device())?;
                att.reshape((nkv, rep, t, s))?
                    .broadcast_add(&mask)?
                    .reshape((nkv, rep * t, s))?
            } else {
                att
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let out = att.matmul(&v)?; // [nkv, rep*t, d]; a cache view is strided per head
            out.reshape((nh, t, d))?.transpose(0, 1)?.reshape((t, nh * d))
        })()
        .ctx(&format!("{name}.self_attn"))?;
        hook.observe(self.index, LinearInput::O, &attn)?;
        let x = (x + self.o.forward(&attn).ctx(&name)?).ctx(&name)?;

        let h = candle_nn::ops::rms_norm(&x, &self.post_norm, eps).ctx(&name)?;
        hook.observe(self.index, LinearInput::GateUp, &h)?;
        let a = (|| -> candle_core::Result<Tensor> {
            let mut gu = forward_shared(&[&self.gate, &self.up], &h)?.into_iter();
            let (g, u) = (gu.next().expect("gate"), gu.next().expect("up"));
            candle_nn::ops::silu(&g)? * u
        })()
        .ctx(&format!("{name}.mlp"))?;
        hook.observe(self.index, LinearInput::Down, &a)?;
        let y = self.down.forward(&a).ctx(&name)?;
        (x + y).ctx(&name)
    }

    fn push_weights(&self, cfg: &Config, w: &mut Weights) -> Result<()> {
        let p = format!("model.layers.{}", self.index);
        w.insert(format!("{p}.input_layernorm.weight"), self.input_norm.clone());
        w.insert(format!("{p}.post_attention_layernorm.weight"), self.post_norm.clone());
        for name in LinearName::ALL {
            let lin = self.linear(name);
            w.insert(name.weight_name(self.index), lin.weight()?);
            if let Some(b) = &lin.bias {
                w.insert(format!("{p}.{}.bias", name.module()), b.clone());
            }
        }
        if cfg.qk_norm {
            if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
                w.insert(format!("{p}.self_attn.q_norm.weight"), qn.clone());
                w.insert(format!("{p}.self_attn.k_norm.weight"), kn.clone());
            }
        }
        Ok(())
    }
}

/// A loaded model: embeddings, decoder layers, final norm and LM head.
///
/// The embedding table may be f16 (a compressed file run compressed keeps it as stored); rows
/// are converted to f32 as they are looked up. The LM head is a [`Linear`] like the others; with
/// tied embeddings a compressed model keeps one table and looks embeddings up in the head's rows.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    /// `None`: the rows of the LM head (tied, one copy).
    embed: Option<Tensor>,
    /// The dense head is the embedding tensor itself (counted once).
    head_shares_embed: bool,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    inv_freq: Vec<f64>,
}

impl Model {
    /// Build the model one decoder layer at a time, moving tensors out of `w`.
    ///
    /// `w` is validated first (names, shapes, finite values) so errors name the tensor.
    pub fn from_weights(cfg: Config, w: Weights) -> Result<Model> {
        Model::assemble(cfg, w, BTreeMap::new(), None)
    }

    /// [`Model::from_weights`] with some weights given already built: `linears` (HF weight
    /// name → weight, e.g. compressed layers) replace those tensors of `w`, and `head` the LM
    /// head. With tied embeddings and no `model.embed_tokens.weight` in `w`, embeddings are
    /// looked up in the head's rows ([`Linear::rows_f32`]). Shapes are checked against the
    /// config before anything is built; a given weight the model has no place for is an error.
    pub fn assemble(
        cfg: Config,
        mut w: Weights,
        mut linears: BTreeMap<String, Weight>,
        head: Option<Linear>,
    ) -> Result<Model> {
        cfg.validate()?;
        let embed_name = "model.embed_tokens.weight";
        let head_rows = cfg.tie_embeddings && head.is_some() && !w.tensors.contains_key(embed_name);
        for (name, shape) in expected_tensors(&cfg) {
            if let Some(g) = linears.get(&name) {
                let got = Linear::new(g.clone(), None).dims()?;
                if [got.0, got.1] != shape[..] {
                    return Err(ModelError::Shape {
                        name,
                        got: vec![got.0, got.1],
                        expected: shape,
                    });
                }
            } else if !(head_rows && name == embed_name || name == "lm_head.weight" && head.is_some()) {
                check_tensor(&name, w.get(&name)?, &shape)?;
            }
        }
        let embed = if head_rows { None } else { Some(w.take(embed_name)?) };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            layers.push(Layer::from_weights(&cfg, &mut w, &mut linears, l)?);
        }
        if let Some(name) = linears.keys().next() {
            return Err(ModelError::bad_tensor(name.clone(), "not a linear of this model"));
        }
        let norm = w.take("model.norm.weight")?;
        let (lm_head, head_shares_embed) = match (head, &embed) {
            (Some(h), _) => (h, false),
            (None, Some(e)) if cfg.tie_embeddings => (Linear::new(Weight::Dense(e.clone()), None), true),
            (None, _) => (Linear::new(Weight::Dense(w.take("lm_head.weight")?), None), false),
        };
        let (want, got) = ((cfg.vocab_size, cfg.hidden_size), lm_head.dims()?);
        if got != want {
            return Err(ModelError::Shape {
                name: "lm_head.weight".into(),
                got: vec![got.0, got.1],
                expected: vec![want.0, want.1],
            });
        }
        if embed.is_none() && lm_head.rows_f32(&[0]).is_none() {
            return Err(ModelError::Input(
                "the LM head cannot serve as the embedding table".into(),
            ));
        }
        let inv_freq = cfg.inv_freq();
        Ok(Model {
            cfg,
            embed,
            head_shares_embed,
            layers,
            norm,
            lm_head,
            inv_freq,
        })
    }

    /// Weights of the decoder's linear layers and the bytes they hold in memory.
    pub fn linear_footprint(&self) -> (usize, usize) {
        let mut weights = 0;
        let mut bytes = 0;
        for l in &self.layers {
            for name in LinearName::ALL {
                let lin = l.linear(name);
                let (r, c) = lin.dims().unwrap_or((0, 0));
                weights += r * c;
                bytes += lin.resident_bytes();
            }
        }
        (weights, bytes)
    }

    /// The LM head.
    pub fn lm_head(&self) -> &Linear {
        &self.lm_head
    }

    /// Bytes of weights resident in memory: every linear and the LM head as they are held,
    /// the embedding table (unless the head shares it), norms and biases.
    pub fn resident_weight_bytes(&self) -> usize {
        let t = |x: &Tensor| x.elem_count() * x.dtype().size_in_bytes();
        let mut n = self.embed.as_ref().map_or(0, t) + t(&self.norm);
        if !self.head_shares_embed {
            n += self.lm_head.resident_bytes();
        }
        for l in &self.layers {
            n += t(&l.input_norm) + t(&l.post_norm);
            n += l.q_norm.as_ref().map_or(0, t) + l.k_norm.as_ref().map_or(0, t);
            for name in LinearName::ALL {
                let lin = l.linear(name);
                n += lin.resident_bytes() + lin.bias().map_or(0, t);
            }
        }
        n
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Mutable access to layers, e.g. to [`Layer::set_weight`] after quantizing it.
    pub fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// The weights back as an HF-named f32 map (dense weights share storage with the model;
    /// compressed ones are expanded).
    pub fn to_weights(&self) -> Result<Weights> {
        let mut w = Weights::default();
        let f32 = |x: &Tensor, name: &str| x.to_dtype(DType::F32).ctx(name);
        let embed = match &self.embed {
            Some(e) => f32(e, "model.embed_tokens.weight")?,
            None => self.lm_head.weight()?,
        };
        w.insert("model.embed_tokens.weight", embed);
        for l in &self.layers {
            l.push_weights(&self.cfg, &mut w)?;
        }
        w.insert("model.norm.weight", self.norm.clone());
        if !self.cfg.tie_embeddings {
            w.insert("lm_head.weight", self.lm_head.weight()?);
        }
        Ok(w)
    }

    /// Token embeddings `[tokens, hidden]`; ids out of range are an error, not a panic.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.cfg.vocab_size) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary ({} tokens)",
                self.cfg.vocab_size
            )));
        }
        let name = "model.embed_tokens.weight";
        match &self.embed {
            Some(e) => {
                let idx = Tensor::new(ids, &Device::Cpu).ctx("token ids")?;
                e.embedding(&idx).ctx(name)?.to_dtype(DType::F32).ctx(name)
            }
            None => {
                let v = self
                    .lm_head
                    .rows_f32(ids)
                    .ok_or_else(|| ModelError::Input("no embedding table".into()))?;
                Tensor::from_vec(v, (ids.len(), self.cfg.hidden_size), &Device::Cpu).ctx(name)
            }
        }
    }

    /// RoPE table for positions `pos..pos+len`.
    pub fn rope(&self, pos: usize, len: usize) -> Result<Rope> {
        Rope::from_inv_freq(&self.inv_freq, pos, len)
    }

    /// Final norm and LM head: `[tokens, hidden]` → logits `[tokens, vocab]`.
    pub fn head(&self, x: &Tensor) -> Result<Tensor> {
        let h = candle_nn::ops::rms_norm(x, &self.norm, self.cfg.rms_eps as f32).ctx("model.norm.weight")?;
        self.lm_head.forward(&h).ctx("lm_head.weight")
    }

    /// Logits `[tokens, vocab]` for every position of `ids`.
    ///
    /// With a cache, `ids` continue the cached sequence; the hook sees every linear input.
    pub fn forward(&self, ids: &[u32], mut cache: Option<&mut KvCache>, hook: &mut dyn LinearHook) -> Result<Tensor> {
        let pos = cache.as_ref().map_or(0, |c| c.len);
        let mut x = self.embed(ids)?;
        let rope = self.rope(pos, ids.len())?;
        for (l, layer) in self.layers.iter().enumerate() {
            let slot = match cache.as_deref_mut() {
                Some(c) => {
                    if c.layers.len() != self.layers.len() {
                        c.layers.resize(self.layers.len(), LayerCache::default());
                    }
                    Some(&mut c.layers[l])
                }
                None => None,
            };
            x = layer.forward(&self.cfg, &x, &rope, slot, hook)?;
        }
        if let Some(c) = cache {
            c.len += ids.len();
        }
        self.head(&x)
    }

    /// Logits for every position, no cache, no hook.
    pub fn logits(&self, ids: &[u32]) -> Result<Tensor> {
        self.forward(ids, None, &mut NoHook)
    }

    /// Log-probabilities `[tokens, vocab]` (for tests and scoring).
    pub fn log_probs(&self, ids: &[u32]) -> Result<Tensor> {
        candle_nn::ops::log_softmax(&self.logits(ids)?, D::Minus1).ctx("log_softmax")
    }
}
