//! GLVQ: grouped lattice vector quantization with learned lattices (arXiv 2510.20984).
//!
//! A layer's weight W [rows, cols] (already rotated, as the pipeline hands it over) is cut into
//! groups of `group` input columns across all rows (§3.1); each group's rows are read as
//! d-vectors of consecutive columns (d ∈ {8, 16, 24, 32}). Per group g (§3.2-3.4):
//!
//! ```text
//!     u = F_µ(w / s)                      µ-law companding (§3.4), s = max|W_g| (f16)
//!     c = clamp(round(G⁻¹ u))             Babai rounding onto the coset G(Zᵈ + ½) (§3.3)
//!     ŵ = s · F_µ⁻¹(G c)                  decode
//! ```
//!
//! G (d × d) starts from the Cholesky factor of the group's covariance (§3.3) and is learned
//! together with µ by gradient descent on the proxy loss tr(ΔW_g H_gg ΔW_gᵀ) plus a Frobenius
//! regulariser, alternating with the rounding, until the relative improvement falls below ε
//! ([`learn`]). Salience-driven bit allocation moves equal numbers of groups to N ± 1 bits
//! ([`sdba`]); every stored bit is counted by [`bits`]. [`layer::quantize_layer`] is the entry
//! point; its SPEC is `glvq:d=8,bits=2,group=128,sdba=1,mu=1,ldlq=0` ([`params`]).
//!
//! One file per idea: [`groups`] (layout and tail policy), [`babai`] (rounding and coefficient
//! ranges), [`compand`] (µ-law), [`learn`] (the alternating optimisation and its gradients),
//! [`sdba`], [`bits`], [`layer`]. The summary of the paper leaves several choices open; each
//! module says which one it makes.

pub mod babai;
pub mod bits;
pub mod compand;
pub mod error;
pub mod groups;
pub mod layer;
pub mod learn;
pub mod params;
pub mod sdba;
pub mod solve;
pub mod store;

pub use bits::BitCount;
pub use error::GlvqError;
pub use layer::{quantize_layer, GlvqLayer, GroupCode};
pub use params::GlvqParams;
