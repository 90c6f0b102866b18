//! SPEC strings and the method registry.
//!
//! A SPEC is `name` or `name:key=value,key=value`, e.g. `llvq-sg:m=12,gain=1`, `e8p12`,
//! `lloyd:bits=2`. The same strings name methods in the lab, in `llvq vq` and in the pipeline.
//! Every method has a stable numeric id, written with the SPEC into every output; a retired id is
//! never reused.

use std::fmt;

use crate::error::CodeError;

/// The registered methods. The discriminant is the stable numeric id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u16)]
pub enum Method {
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

/// One registry row.
pub struct MethodInfo {
    pub method: Method,
    pub name: &'static str,
    pub summary: &'static str,
}

/// The registry, in id order.
pub const METHODS: &[MethodInfo] = &[
    MethodInfo { method: Method::Int2, name: "int2", summary: "INT2 grid {-2,-1,0,1}*d, optimal d (dim=1)" },
    MethodInfo { method: Method::Uniform, name: "uniform", summary: "symmetric uniform scalar (bits=2, dim=1)" },
    MethodInfo { method: Method::Lloyd, name: "lloyd", summary: "Lloyd-Max scalar for N(0,1) (bits=2, dim=1)" },
    MethodInfo { method: Method::E8p12, name: "e8p12", summary: "QuIP# E8P12, 16 bits per 8 weights" },
    MethodInfo { method: Method::E8Ball, name: "e8ball", summary: "2^16 smallest points of E8, scaled" },
    MethodInfo { method: Method::LlvqSs, name: "llvq-ss", summary: "LLVQ spherical shaping, Lambda24(m) (m=13)" },
    MethodInfo {
        method: Method::LlvqSg,
        name: "llvq-sg",
        summary: "LLVQ shape-gain, Lambda24(m) + gain bits (m=12,gain=1)",
    },
    MethodInfo {
        method: Method::Glvq,
        name: "glvq",
        summary: "GLVQ learned per-group lattices (pipeline only; d=8,bits=2,group=128,sdba=1,mu=1)",
    },
];

impl Method {
    /// Stable numeric id.
    pub fn id(self) -> u16 {
        self as u16
    }
    /// SPEC name.
    pub fn name(self) -> &'static str {
        METHODS.iter().find(|i| i.method == self).map(|i| i.name).unwrap_or("?")
    }
    /// Looks a method up by its stable id.
    pub fn from_id(id: u16) -> Option<Method> {
        METHODS.iter().find(|i| i.method.id() == id).map(|i| i.method)
    }
    /// Looks a method up by its SPEC name.
    pub fn from_name(name: &str) -> Option<Method> {
        METHODS.iter().find(|i| i.name == name).map(|i| i.method)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed SPEC: a method and its `key=value` parameters in the order given.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub method: Method,
    pub params: Vec<(String, String)>,
}

impl Spec {
    /// Parses `name[:key=value,...]`. Duplicate keys are an error.
    pub fn parse(spec: &str) -> Result<Spec, CodeError> {
        let spec = spec.trim();
        let (name, rest) = match spec.split_once(':') {
            Some((n, r)) => (n, Some(r)),
            None => (spec, None),
        };
        let method = Method::from_name(name).ok_or_else(|| CodeError::UnknownMethod {
            name: name.to_string(),
            spec: spec.to_string(),
            known: METHODS.iter().map(|i| i.name).collect::<Vec<_>>().join(", "),
        })?;
        let mut params: Vec<(String, String)> = Vec::new();
        for kv in rest.into_iter().flat_map(|r| r.split(',')).filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| CodeError::BadSpec {
                spec: spec.to_string(),
                reason: format!("parameter {kv:?} is not key=value"),
            })?;
            if params.iter().any(|(p, _)| p == k) {
                return Err(CodeError::BadSpec {
                    spec: spec.to_string(),
                    reason: format!("parameter {k:?} given twice"),
                });
            }
            params.push((k.trim().to_string(), v.trim().to_string()));
        }
        Ok(Spec { method, params })
    }

    /// Rejects parameters outside `accepted` (a comma-separated list, also used in the message).
    pub fn only(&self, accepted: &'static str) -> Result<(), CodeError> {
        for (k, _) in &self.params {
            if !accepted.split(',').any(|a| a == k) {
                return Err(CodeError::UnknownParam { method: self.method.name(), key: k.clone(), accepted });
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
            return Err(self.bad(key, v, format!("must be finite and in [{lo:e}, {hi:e}] (an f32 with a finite reciprocal)")));
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
            return Err(self.bad(key, self.get(key).unwrap_or(""), format!("need {n} ascending values, finite as f32")));
        }
        Ok(Some(l32))
    }

    /// A [`CodeError::BadParam`] for `key`.
    pub fn bad(&self, key: &'static str, value: &str, reason: impl Into<String>) -> CodeError {
        CodeError::BadParam { method: self.method.name(), key, value: value.to_string(), reason: reason.into() }
    }
}

/// Formats floats for a canonical SPEC: shortest text that parses back to the same `f64`.
pub(crate) fn join_floats(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join("/")
}
