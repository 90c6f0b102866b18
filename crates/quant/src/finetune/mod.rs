//! Tuning the input scales of a quantized model (paper §5.4, "Finetuned" rows of Tables 3/5).
//!
//! Every quantized linear gets one multiplicative scale per input column, y = Ŵ·(s ⊙ x)
//! (equivalently Ŵ·diag(s)), initialised to 1; the codes and their scales stay frozen. The
//! scales are trained with Adam to make the quantized model match the full-precision one on
//! calibration text ([`objective`]), with a held-out split of the same text for early
//! stopping. Gradients come from candle's autograd on a differentiable twin of the forward
//! pass ([`forward`]) in which only the scales are variables.
//!
//! Files: [`forward`] (the student model), [`objective`] (KL or cross-entropy), [`adam`]
//! (optimizer and schedule), [`run`] (the loop, checkpoints, the output file).

pub mod adam;
pub mod forward;
pub mod objective;
pub mod run;

pub use objective::Objective;
pub use run::{finetune, FinetuneParams, FinetuneReport, FtEvent};
