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
//!   single-shell angular scan App. E needs; `plot` (feature `plot`, default): the figures.

pub mod design;
pub mod e8ball;
pub mod e8p12;
pub mod error;
pub mod lab;
pub mod llvq;
#[cfg(feature = "plot")]
pub mod plot;
pub mod quantizer;
pub mod scalar;
pub mod shellscan;
pub mod source;
pub mod spec;

pub use error::CodeError;
pub use quantizer::{LevelGrid, Quantizer};
pub use spec::{Method, Spec, METHODS};

/// Builds the code named by `spec` (see [`spec`] for the syntax). Codes with fitted parameters
/// (scales, gain levels) fit them on a design sample unless the SPEC gives them;
/// [`Quantizer::spec`] returns the SPEC with every fitted value, which rebuilds the same code.
pub fn from_spec(spec: &str) -> Result<Box<dyn Quantizer>, CodeError> {
    let s = Spec::parse(spec)?;
    Ok(match s.method {
        Method::Int2 | Method::Uniform | Method::Lloyd => Box::new(scalar::Scalar::from_spec(&s)?),
        Method::E8p12 => Box::new(e8p12::E8p12::from_spec(&s)?),
        Method::E8Ball => Box::new(e8ball::E8Ball::from_spec(&s)?),
        Method::LlvqSs => Box::new(llvq::SphericalShaping::from_spec(&s)?),
        Method::LlvqSg => Box::new(llvq::ShapeGain::from_spec(&s)?),
        // Its lattices are learned per group of a layer, so there is no fixed code to build.
        Method::Glvq => {
            return Err(CodeError::BadSpec {
                spec: spec.to_string(),
                reason: "glvq learns a lattice per weight group: use it through the pipeline \
                         (llvq_quant::glvq), not as a fixed block code"
                    .into(),
            })
        }
    })
}
