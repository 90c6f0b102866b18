//! GLVQ parameters and their SPEC `glvq:d=8,bits=2,group=128,sdba=1,mu=1,ldlq=0`.
//!
//! Parsed with the registry's [`Spec::parse`] (one `key=value` parser for every method). Keys:
//! - `d`: lattice dimension, 8, 16, 24 or 32 (default 8; the paper's 8-D and 32-D rows, §4);
//! - `bits`: target N bits per weight for the codes, integer or fractional with d·N an integer
//!   (default 2); side information is extra and counted by [`crate::glvq::bits`];
//! - `group`: input columns per group (default 128, the paper's, rounded up to a multiple of d,
//!   so 144 for d = 24); see [`crate::glvq::groups`] for the tail policy;
//! - `sdba`: salience-driven bit allocation on/off (default 1, §3.2);
//! - `mu`: µ-law companding on/off (default 1, §3.4);
//! - `ldlq`: the pipeline's block-LDLQ error feedback between groups (default 0 = the paper's
//!   own optimisation);
//! - `iters`, `eps`, `reg`: at most `iters` rounding/descent alternations (default 20), stopping
//!   when the relative improvement is below `eps` (default 1e-3); Frobenius regulariser weight
//!   `reg` (default 1e-3, relative: see [`crate::glvq::learn`]).

use llvq_codes::{CodeId, Spec};

use super::error::GlvqError;

/// Largest bits per coordinate (levels are stored one `u8` per weight).
pub const MAX_COORD_BITS: u32 = 8;
/// The lattice dimensions the paper uses (8, 32) and the ones between (16, 24 = Leech's).
pub const DIMS: [usize; 4] = [8, 16, 24, 32];

/// How [`crate::glvq::quantize_layer`] works on a layer.
#[derive(Clone, Debug, PartialEq)]
pub struct GlvqParams {
    pub d: usize,
    pub bits: f64,
    pub group: usize,
    pub sdba: bool,
    pub compand: bool,
    pub ldlq: bool,
    pub iters: usize,
    pub eps: f64,
    pub reg: f64,
}

impl Default for GlvqParams {
    fn default() -> Self {
        GlvqParams {
            d: 8,
            bits: 2.0,
            group: 128,
            sdba: true,
            compand: true,
            ldlq: false,
            iters: 20,
            eps: 1e-3,
            reg: 1e-3,
        }
    }
}

const KEYS: &str = "d,bits,group,sdba,mu,ldlq,iters,eps,reg";

impl GlvqParams {
    /// Parses and validates a `glvq:...` SPEC.
    pub fn from_spec(spec: &str) -> Result<GlvqParams, GlvqError> {
        let s = Spec::parse(spec)?;
        if s.method != CodeId::Glvq {
            return Err(GlvqError::Spec {
                spec: spec.to_string(),
                reason: format!("method is {}, not glvq", s.method),
            });
        }
        s.only(KEYS)?;
        let flag = |key: &'static str, default: bool| -> Result<bool, GlvqError> {
            match s.get(key) {
                None => Ok(default),
                Some("1") | Some("true") => Ok(true),
                Some("0") | Some("false") => Ok(false),
                Some(v) => Err(s.bad(key, v, "must be 0 or 1").into()),
            }
        };
        let def = GlvqParams::default();
        let d: usize = s.value("d", def.d)?;
        let p = GlvqParams {
            d,
            bits: s.value("bits", def.bits)?,
            group: s.value("group", default_group(d))?,
            sdba: flag("sdba", def.sdba)?,
            compand: flag("mu", def.compand)?,
            ldlq: flag("ldlq", def.ldlq)?,
            iters: s.value("iters", def.iters)?,
            eps: s.value("eps", def.eps)?,
            reg: s.value("reg", def.reg)?,
        };
        if !(p.eps.is_finite() && p.eps >= 0.0) {
            return Err(s.bad("eps", &p.eps.to_string(), "must be finite and ≥ 0").into());
        }
        if !(p.reg.is_finite() && p.reg >= 0.0) {
            return Err(s.bad("reg", &p.reg.to_string(), "must be finite and ≥ 0").into());
        }
        p.validate()?;
        Ok(p)
    }

    /// The canonical SPEC with every key: `from_spec(p.to_spec())` gives `p` back.
    pub fn to_spec(&self) -> String {
        format!(
            "glvq:d={},bits={},group={},sdba={},mu={},ldlq={},iters={},eps={:?},reg={:?}",
            self.d,
            self.bits,
            self.group,
            self.sdba as u8,
            self.compand as u8,
            self.ldlq as u8,
            self.iters,
            self.eps,
            self.reg
        )
    }

    /// Checks d, the group size and that the bit target is reachable.
    pub fn validate(&self) -> Result<(), GlvqError> {
        if !DIMS.contains(&self.d) {
            return Err(GlvqError::Dim { d: self.d });
        }
        if self.group == 0 || self.group % self.d != 0 {
            return Err(GlvqError::GroupNotMultiple {
                group: self.group,
                d: self.d,
            });
        }
        self.vector_bits().map(|_| ())
    }

    /// d·N, the bits of one d-vector at the target N; errors when N is impossible: not finite
    /// or ≤ 0, d·N not an integer, N above [`MAX_COORD_BITS`], or (with SDBA) N − 1 < 0 or
    /// N + 1 > [`MAX_COORD_BITS`].
    pub fn vector_bits(&self) -> Result<u32, GlvqError> {
        let (n, d) = (self.bits, self.d);
        let bad = |reason: String| GlvqError::Bits { bits: n, d, reason };
        if !(n.is_finite() && n > 0.0) {
            return Err(bad("bits must be finite and > 0".into()));
        }
        let vb = n * d as f64;
        if (vb - vb.round()).abs() > 1e-9 {
            return Err(bad(format!(
                "d·bits = {vb} is not a whole number of bits per {d}-vector"
            )));
        }
        let (lo, hi) = if self.sdba { (n - 1.0, n + 1.0) } else { (n, n) };
        if lo < 0.0 {
            return Err(bad("SDBA needs N − 1 ≥ 0 bits for its low groups (use sdba=0)".into()));
        }
        if hi > MAX_COORD_BITS as f64 {
            return Err(bad(format!(
                "at most {MAX_COORD_BITS} bits per weight{}",
                if self.sdba { " for SDBA's N + 1" } else { "" }
            )));
        }
        Ok(vb.round() as u32)
    }
}

/// The paper's 128 columns, rounded up to a multiple of d (144 for d = 24).
pub fn default_group(d: usize) -> usize {
    if d == 0 {
        128
    } else {
        128usize.div_ceil(d) * d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip_and_defaults() {
        let p = GlvqParams::from_spec("glvq").unwrap();
        assert_eq!(p, GlvqParams::default());
        let p = GlvqParams::from_spec("glvq:d=24,bits=1.5,sdba=0,mu=0,ldlq=1,eps=0.01").unwrap();
        assert_eq!((p.d, p.group, p.sdba, p.compand, p.ldlq), (24, 144, false, false, true));
        assert_eq!(GlvqParams::from_spec(&p.to_spec()).unwrap(), p);
        assert_eq!(p.vector_bits().unwrap(), 36);
    }

    #[test]
    fn bad_specs_are_named() {
        let e = |s: &str| GlvqParams::from_spec(s).unwrap_err();
        assert_eq!(e("glvq:d=12"), GlvqError::Dim { d: 12 });
        assert_eq!(
            e("glvq:d=24,group=128"),
            GlvqError::GroupNotMultiple { group: 128, d: 24 }
        );
        assert!(matches!(e("glvq:bits=0.5"), GlvqError::Bits { reason, .. } if reason.contains("N − 1")));
        assert!(matches!(e("glvq:bits=0.1,sdba=0"), GlvqError::Bits { reason, .. } if reason.contains("whole number")));
        assert!(matches!(e("glvq:bits=8"), GlvqError::Bits { .. }));
        assert!(matches!(e("glvq:bits=-1"), GlvqError::Bits { .. }));
        assert!(matches!(e("glvq:mu=2"), GlvqError::Code(_)));
        assert!(matches!(e("glvq:zz=2"), GlvqError::Code(_)));
        assert!(matches!(e("e8p12"), GlvqError::Spec { .. }));
        // Fractional targets are fine when d·N is whole.
        assert_eq!(
            GlvqParams::from_spec("glvq:bits=1.5").unwrap().vector_bits().unwrap(),
            12
        );
    }
}
