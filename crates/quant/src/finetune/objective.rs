//! What the input scales are tuned to minimise, per calibration window.
//!
//! - `kl` (default): KL(teacher ‖ student) of the next-token distributions at every position,
//!   Σ_v p_t(v)·(log p_t(v) − log q(v)), averaged over positions — the student matches the
//!   full-precision model's whole distribution, not just the observed token (§5.4 aligns the
//!   quantized model with the original).
//! - `ce`: the cross-entropy of the observed next tokens (no teacher needed at all).

use llvq_model::candle_core::{DType, Tensor, D};
use llvq_model::Model;
use serde::{Deserialize, Serialize};

use super::forward::log_softmax;
use crate::error::{CandleContext, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    Kl,
    Ce,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Kl => "kl",
            Objective::Ce => "ce",
        }
    }
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Objective, String> {
        match s {
            "kl" => Ok(Objective::Kl),
            "ce" => Ok(Objective::Ce),
            _ => Err(format!("objective {s:?} must be kl or ce")),
        }
    }
}

/// The constants the loss of one window compares the student's logits with.
pub enum Target {
    /// Teacher probabilities `[t, vocab]` and the mean Σ_v p log p (the loss's constant part).
    Kl { p: Tensor, neg_entropy: f64 },
    /// Next token of positions `0..t-1`, `[t-1, 1]` u32.
    Ce { next: Tensor },
}

/// The target of window `ids` (`teacher` is only run for `kl`).
pub fn target(obj: Objective, teacher: Option<&Model>, ids: &[u32], dtype: DType) -> Result<Target> {
    let name = "finetune target";
    match (obj, teacher) {
        (Objective::Kl, Some(m)) => {
            let logp = log_softmax(&m.logits(ids)?).ctx(name)?.to_dtype(dtype).ctx(name)?;
            let p = logp.exp().ctx(name)?;
            let ne = (&p * &logp).ctx(name)?.sum(D::Minus1).ctx(name)?.mean_all().ctx(name)?;
            let neg_entropy = ne.to_dtype(DType::F64).ctx(name)?.to_scalar::<f64>().ctx(name)?;
            Ok(Target::Kl { p, neg_entropy })
        }
        (Objective::Kl, None) => Err(crate::QuantError::Calibration(
            "the kl objective needs a teacher model".into(),
        )),
        (Objective::Ce, _) => {
            let next = Tensor::new(&ids[1..], &llvq_model::candle_core::Device::Cpu)
                .ctx(name)?
                .unsqueeze(1)
                .ctx(name)?;
            Ok(Target::Ce { next })
        }
    }
}

/// The scalar loss of `logits` (`[t, vocab]`) against `target` (differentiable).
pub fn loss(logits: &Tensor, target: &Target) -> Result<Tensor> {
    let name = "finetune loss";
    let logq = log_softmax(logits).ctx(name)?;
    match target {
        Target::Kl { p, neg_entropy } => {
            let cross = (p * &logq).ctx(name)?.sum(D::Minus1).ctx(name)?.mean_all().ctx(name)?;
            (cross.neg().ctx(name)? + *neg_entropy).ctx(name)
        }
        Target::Ce { next } => {
            let t = logq.dim(0).ctx(name)?;
            let picked = logq.narrow(0, 0, t - 1).ctx(name)?.gather(next, 1).ctx(name)?;
            picked.mean_all().ctx(name)?.neg().ctx(name)
        }
    }
}

/// A scalar tensor's value.
pub fn value(x: &Tensor) -> Result<f64> {
    x.to_dtype(DType::F64).ctx("loss")?.to_scalar::<f64>().ctx("loss")
}
