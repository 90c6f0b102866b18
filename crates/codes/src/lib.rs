//! Quantizers behind one interface, and the rate-distortion lab (issue 3; paper §4, App. B-F).
//!
//! - [`Quantizer`]: block dimension, exact bits per block, encode/decode (with per-block scales
//!   for the pipeline); [`from_spec`] builds any registered code from a SPEC string such as
//!   `llvq-sg:m=12,gain=1`, `llvq-ss:m=13`, `e8p12`, `e8ball`, `int2`, `uniform:bits=2`,
//!   `lloyd:bits=2` ([`spec`] holds the registry and its stable ids);
//! - the codes, one module each: [`scalar`] (INT2, uniform, Lloyd-Max), [`e8p12`] (QuIP#'s E8P12),
//!   [`e8ball`] (spherically bounded E8), [`llvq`] (spherical shaping and shape-gain on Λ24(M));
//! - [`design`]: Lloyd design by numerical integration; [`source`]: the seeded N(0,1) source and
//!   the scale fit; [`lab`]: Table 4, Table 7, Figure 1 and App. E; [`shellscan`]: the exact
//!   single-shell angular scan App. E needs (both feature `lab`); `plot` (feature `plot`): the
//!   figures. Both are default features; the workspace's other crates turn them off.

pub mod design;
mod e8;
pub mod e8ball;
pub mod e8p12;
pub mod error;
#[cfg(feature = "lab")]
pub mod lab;
pub mod llvq;
#[cfg(feature = "plot")]
pub mod plot;
pub mod quantizer;
pub mod scalar;
#[cfg(feature = "lab")]
pub mod shellscan;
pub mod source;
pub mod spec;

pub use error::CodeError;
pub use quantizer::{LevelGrid, Quantizer};
pub use spec::{from_spec, split_spec, Alias, Build, CodeId, CodeRow, Spec, ALIASES, CODES};
