//! One forward pass over a forest of token sequences ("tree attention").
//!
//! Zero-shot scoring (see `crate::tasks`) needs the log-likelihood of several continuations
//! of one shared context. Running them one after another costs one forward (one pass over
//! all weights) per choice; here the shared prefix and every continuation are laid out in a
//! single `[tokens, hidden]` batch where token `i` continues the sequence ending at
//! `parents[i]`. Attention is masked so a token sees only itself and its ancestors, and its
//! RoPE position is its number of ancestors, so each row equals the corresponding row of a
//! plain causal forward over that token's own path (tested against [`Model::forward`]).
//! Independent documents are simply separate roots of the forest.
use candle_core::{Device, Tensor};

use super::{Layer, Model, Rope};
use crate::config::Config;
use crate::error::{ModelError, Result, TensorContext};

impl Model {
    /// Logits `[rows.len(), vocab]` at the positions `rows` of a forest of sequences.
    ///
    /// `parents[i]` is the token that `ids[i]` follows (`None`: `ids[i]` starts a sequence);
    /// a parent must come before its child. Row `r` of the result is what [`Model::forward`]
    /// gives for the last token of the path from `ids[rows[r]]`'s root to it. Only the asked
    /// rows go through the LM head (a fifth of the weights of a small model).
    pub fn forward_tree(&self, ids: &[u32], parents: &[Option<usize>], rows: &[usize]) -> Result<Tensor> {
        let t = ids.len();
        if parents.len() != t {
            return Err(ModelError::Input(format!("{t} tokens but {} parents", parents.len())));
        }
        if let Some((i, p)) = parents
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.filter(|&p| p >= i).map(|p| (i, p)))
        {
            return Err(ModelError::Input(format!(
                "token {i} has parent {p}, not an earlier token"
            )));
        }
        if let Some(&r) = rows.iter().find(|&&r| r >= t) {
            return Err(ModelError::Input(format!("row {r} asked of {t} tokens")));
        }
        // Ancestor sets row by row: a token sees what its parent sees, and itself.
        let mut visible = vec![false; t * t];
        let mut pos = vec![0usize; t];
        for i in 0..t {
            if let Some(p) = parents[i] {
                let (done, row) = visible.split_at_mut(i * t);
                row[..t].copy_from_slice(&done[p * t..(p + 1) * t]);
                pos[i] = pos[p] + 1;
            }
            visible[i * t + i] = true;
        }
        let mask: Vec<f32> = visible
            .iter()
            .map(|&v| if v { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &Device::Cpu).ctx("tree mask")?;
        let rope = self.rope_at(&pos)?;
        let mut x = self.embed(ids)?;
        for layer in &self.layers {
            x = layer.forward_masked(&self.cfg, &x, &rope, &mask)?;
        }
        let idx = Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            rows.len(),
            &Device::Cpu,
        )
        .ctx("rows")?;
        self.head(&x.index_select(&idx, 0).ctx("rows")?)
    }

    /// RoPE table for the given positions (as [`Model::rope`], which covers a contiguous run).
    fn rope_at(&self, positions: &[usize]) -> Result<Rope> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                let a = (p as f32) * (f as f32);
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let n = positions.len();
        let cos = Tensor::from_vec(cos, (n, half), &Device::Cpu).ctx("rope")?;
        let sin = Tensor::from_vec(sin, (n, half), &Device::Cpu).ctx("rope")?;
        Ok(Rope { cos, sin })
    }
}

impl Layer {
    /// [`Layer::forward`] without a cache or hook, with an additive attention mask `[t, t]`
    /// (0 where a query may attend, -inf elsewhere) instead of the causal one.
    fn forward_masked(&self, cfg: &Config, x: &Tensor, rope: &Rope, mask: &Tensor) -> Result<Tensor> {
        self.forward_with(cfg, x, rope, super::Attend::Masked(mask))
    }
}
