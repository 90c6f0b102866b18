//! SPEC strings and the method registry.
//!
//! A SPEC is `name` or `name:key=value,key=value`, e.g. `llvq-sg:m=12,gain=1`, `e8p12`,
//! `lloyd:bits=2`. The same strings name methods in the lab, in `llvq vq` and in the pipeline.
//! Every method has a stable numeric id, written with the SPEC into every output; a retired id is
//! never reused.

use std::fmt;

use crate::e8ball::E8Ball;
use crate::e8p12::E8p12;
use crate::error::CodeError;
use crate::llvq::{ShapeGain, SphericalShaping};
use crate::quantizer::Quantizer;
use crate::scalar::Scalar;

/// The registered methods. The discriminant is the stable numeric id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u16)]
pub enum CodeId {
    /// Signed INT2 grid {−2, −1, 0, 1}·Δ (the paper's "Uniform" row).
    Int2 = 1,
    /// Symmetric uniform (midrise) scalar grid with the MSE-optimal step.
    Uniform = 2,
    /// Lloyd-Max scalar code for N(0,1).
    Lloyd = 3,
    /// QuIP#'s E8P12: 2^16 points of E8 + 1/4 in 8 dimensions.
    E8p12 = 4,
    /// The 2^16 smallest points of E8 (spherically bounded E8, the "E8 coset" row).
    E8Ball = 5,
    /// LLVQ spherical shaping: Λ24(M) scaled, Euclidean search.
    LlvqSs = 6,
    /// LLVQ shape-gain: angular search over norm(Λ24(M)) plus a k-bit gain.
    LlvqSg = 7,
    /// GLVQ (arXiv 2510.20984): a learned lattice per weight group. A pipeline method, not a
    /// fixed block code: the lattices are fitted to each layer (`llvq_quant::glvq`).
    Glvq = 8,
}

/// How a registry row becomes a code.
#[derive(Clone, Copy)]
pub enum Build {
    /// A fixed block code, built (and its parameters checked, fitted values fitted) from a SPEC.
    Code(fn(&Spec) -> Result<Box<dyn Quantizer>, CodeError>),
    /// A method that learns its codebook per layer, so there is nothing to build here; the text
    /// says where it lives.
    PipelineOnly(&'static str),
}

/// One registry row: everything needed to name, parse, build and count a code. Adding a code is
/// its module plus one row here; bits are counted by the built [`Quantizer`] itself.
pub struct CodeRow {
    pub id: CodeId,
    pub name: &'static str,
    pub summary: &'static str,
    pub build: Build,
}

fn boxed<Q: Quantizer + 'static>(q: Result<Q, CodeError>) -> Result<Box<dyn Quantizer>, CodeError> {
    q.map(|q| Box::new(q) as Box<dyn Quantizer>)
}

/// The registry, in id order.
pub const CODES: &[CodeRow] = &[
    CodeRow {
        id: CodeId::Int2,
        name: "int2",
        summary: "INT2 grid {-2,-1,0,1}*d, optimal d (dim=1)",
        build: Build::Code(|s| boxed(Scalar::from_spec(s))),
    },
    CodeRow {
        id: CodeId::Uniform,
        name: "uniform",
        summary: "symmetric uniform scalar (bits=2, dim=1)",
        build: Build::Code(|s| boxed(Scalar::from_spec(s))),
    },
    CodeRow {
        id: CodeId::Lloyd,
        name: "lloyd",
        summary: "Lloyd-Max scalar for N(0,1) (bits=2, dim=1)",
        build: Build::Code(|s| boxed(Scalar::from_spec(s))),
    },
    CodeRow {
        id: CodeId::E8p12,
        name: "e8p12",
        summary: "QuIP# E8P12, 16 bits per 8 weights",
        build: Build::Code(|s| boxed(E8p12::from_spec(s))),
    },
    CodeRow {
        id: CodeId::E8Ball,
        name: "e8ball",
        summary: "2^16 smallest points of E8, scaled",
        build: Build::Code(|s| boxed(E8Ball::from_spec(s))),
    },
    CodeRow {
        id: CodeId::LlvqSs,
        name: "llvq-ss",
        summary: "LLVQ spherical shaping, Lambda24(m) (m=13)",
        build: Build::Code(|s| boxed(SphericalShaping::from_spec(s))),
    },
    CodeRow {
        id: CodeId::LlvqSg,
        name: "llvq-sg",
        summary: "LLVQ shape-gain, Lambda24(m) + gain bits (m=12,gain=1)",
        build: Build::Code(|s| boxed(ShapeGain::from_spec(s))),
    },
    CodeRow {
        id: CodeId::Glvq,
        name: "glvq",
        summary: "GLVQ learned per-group lattices (pipeline only; d=8,bits=2,group=128,sdba=1,mu=1)",
        build: Build::PipelineOnly(
            "glvq learns a lattice per weight group: use it through the pipeline \
             (llvq_quant::glvq), not as a fixed block code",
        ),
    },
];

/// A name the pipeline accepts for a code with a fixed rounding choice: the scalar baselines.
pub struct Alias {
    pub name: &'static str,
    /// The code it stands for, with the parameters it may take (`{bits}` is filled in).
    pub code: &'static str,
    /// Parameters the alias accepts (beyond the pipeline's own `group` and `ldlq`).
    pub accepted: &'static str,
    pub default_bits: u32,
    /// Block LDLQ (GPTQ) or plain rounding (RTN) unless `ldlq=` says otherwise.
    pub ldlq: bool,
}

/// `rtn` is the uniform grid with plain rounding, `gptq` the same grid with LDLQ on one-column
/// blocks (GPTQ is block LDLQ with blocks of one column).
pub const ALIASES: &[Alias] = &[
    Alias {
        name: "rtn",
        code: "uniform",
        accepted: "bits",
        default_bits: 2,
        ldlq: false,
    },
    Alias {
        name: "gptq",
        code: "uniform",
        accepted: "bits",
        default_bits: 2,
        ldlq: true,
    },
];

/// The registry row of `id`.
pub fn row(id: CodeId) -> &'static CodeRow {
    CODES
        .iter()
        .find(|r| r.id == id)
        .expect("every CodeId has a registry row")
}

/// Builds the code named by `spec` (see the module doc for the syntax). Codes with fitted
/// parameters (scales, gain levels) fit them on a design sample unless the SPEC gives them;
/// [`Quantizer::spec`] returns the SPEC with every fitted value, which rebuilds the same code.
pub fn from_spec(spec: &str) -> Result<Box<dyn Quantizer>, CodeError> {
    let s = Spec::parse(spec)?;
    match row(s.method).build {
        Build::Code(build) => build(&s),
        Build::PipelineOnly(reason) => Err(CodeError::BadSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        }),
    }
}

/// A SPEC's `key=value` parameters, in the order given.
pub type SpecParams = Vec<(String, String)>;

/// Splits `name[:key=value,...]` into the name and its parameters in order (keys and values
/// trimmed; duplicate keys and pairs without `=` are errors, as the reason string). The one SPEC
/// syntax of the workspace: codes and pipeline methods both parse with it.
pub fn split_spec(spec: &str) -> Result<(&str, SpecParams), String> {
    let spec = spec.trim();
    let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let mut params: Vec<(String, String)> = Vec::new();
    for kv in rest.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("parameter {kv:?} is not key=value"))?;
        let k = k.trim();
        if params.iter().any(|(p, _)| p == k) {
            return Err(format!("parameter {k:?} given twice"));
        }
        params.push((k.to_string(), v.trim().to_string()));
    }
    Ok((name.trim(), params))
}

impl CodeId {
    /// Stable numeric id.
    pub fn id(self) -> u16 {
        self as u16
    }
    /// SPEC name.
    pub fn name(self) -> &'static str {
        CODES.iter().find(|i| i.id == self).map(|i| i.name).unwrap_or("?")
    }
    /// Looks a method up by its stable id.
    pub fn from_id(id: u16) -> Option<CodeId> {
        CODES.iter().find(|i| i.id.id() == id).map(|i| i.id)
    }
    /// Looks a method up by its SPEC name.
    pub fn from_name(name: &str) -> Option<CodeId> {
        CODES.iter().find(|i| i.name == name).map(|i| i.id)
    }
}

impl fmt::Display for CodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed SPEC: a method and its `key=value` parameters in the order given.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub method: CodeId,
    pub params: Vec<(String, String)>,
}

impl Spec {
    /// Parses `name[:key=value,...]` ([`split_spec`]) for a registered code name.
    pub fn parse(spec: &str) -> Result<Spec, CodeError> {
        let spec = spec.trim();
        let (name, params) = split_spec(spec).map_err(|reason| CodeError::BadSpec {
            spec: spec.to_string(),
            reason,
        })?;
        let method = CodeId::from_name(name).ok_or_else(|| CodeError::UnknownMethod {
            name: name.to_string(),
            spec: spec.to_string(),
            known: CODES.iter().map(|i| i.name).collect::<Vec<_>>().join(", "),
        })?;
        Ok(Spec { method, params })
    }

    /// Rejects parameters outside `accepted` (a comma-separated list, also used in the message).
    pub fn only(&self, accepted: &'static str) -> Result<(), CodeError> {
        for (k, _) in &self.params {
            if !accepted.split(',').any(|a| a == k) {
                return Err(CodeError::UnknownParam {
                    method: self.method.name(),
                    key: k.clone(),
                    accepted,
                });
            }
        }
        Ok(())
    }

    /// The raw value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Parses `key` as a `T`, or returns `default` when absent.
    pub fn value<T: std::str::FromStr>(&self, key: &'static str, default: T) -> Result<T, CodeError>
    where
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| self.bad(key, v, e.to_string())),
        }
    }

    /// Parses an optional `/`-separated list of floats (e.g. fitted gain levels).
    pub fn floats(&self, key: &'static str) -> Result<Option<Vec<f64>>, CodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .split('/')
                .map(|x| x.parse::<f64>().map_err(|e| self.bad(key, v, e.to_string())))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }

    /// An optional stored scale: finite and positive *as the f32 the code keeps*, with a finite
    /// reciprocal (decoding divides by it). Checking the f64 alone let `scale=1e-45` (an f32
    /// subnormal, 1/s = inf) and `scale=1e39` (inf as f32) through to NaN output.
    pub fn scale(&self, key: &'static str) -> Result<Option<f32>, CodeError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let s: f64 = self.value(key, 1.0)?;
        let (lo, hi) = (f32::MIN_POSITIVE, 1.0 / f32::MIN_POSITIVE);
        if !(s.is_finite() && s >= lo as f64 && s <= hi as f64) {
            return Err(self.bad(
                key,
                v,
                format!("must be finite and in [{lo:e}, {hi:e}] (an f32 with a finite reciprocal)"),
            ));
        }
        Ok(Some(s as f32))
    }

    /// An optional `/`-separated list of `n` values, strictly ascending and finite *as f32*
    /// (e.g. gain levels; `1e300/1e301` are both +inf as f32).
    pub fn ascending_f32(&self, key: &'static str, n: usize) -> Result<Option<Vec<f32>>, CodeError> {
        let Some(l) = self.floats(key)? else { return Ok(None) };
        let l32: Vec<f32> = l.iter().map(|&x| x as f32).collect();
        let ok = l32.len() == n && l32.iter().all(|v| v.is_finite()) && l32.windows(2).all(|w| w[0] < w[1]);
        if !ok {
            return Err(self.bad(
                key,
                self.get(key).unwrap_or(""),
                format!("need {n} ascending values, finite as f32"),
            ));
        }
        Ok(Some(l32))
    }

    /// A [`CodeError::BadParam`] for `key`.
    pub fn bad(&self, key: &'static str, value: &str, reason: impl Into<String>) -> CodeError {
        CodeError::BadParam {
            method: self.method.name(),
            key,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Formats floats for a canonical SPEC: shortest text that parses back to the same `f64`.
pub(crate) fn join_floats(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join("/")
}
