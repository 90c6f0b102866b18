//! Pipeline methods: a block code of the lab (any [`Quantizer`] SPEC) plus how the pipeline uses it.
//!
//! A method is named by the SPEC strings of `llvq vq` (`llvq-sg:m=12,gain=1`, `llvq-ss:m=13`,
//! `e8p12`, `lloyd:bits=2`, ...), with two keys the pipeline reads itself and strips before the
//! code sees the SPEC:
//! - `ldlq=1|0`: Hessian-corrected quantization of column blocks (App. D.2; default 1) or plain
//!   rounding of every block (RTN);
//! - `group=G`: one scale per G columns of a row (a multiple of the code's block dimension);
//!   default: one scale per row.
//!
//! Two scalar baselines have names of their own (`llvq_codes::ALIASES`): `rtn[:bits=b,group=G]` is the symmetric uniform
//! grid `uniform:bits=b` (optimal step for unit variance) with `ldlq=0`, and `gptq[:bits=b,group=G]`
//! the same grid with `ldlq=1` (GPTQ is block LDLQ with blocks of one column).

use llvq_codes::{from_spec, split_spec, Quantizer, Spec, ALIASES};

use crate::error::{QuantError, Result};

/// A parsed pipeline method: what the user named and which kind of quantizer runs.
#[derive(Debug)]
pub struct Method {
    /// The method as the user named it, normalised (`rtn`, `gptq:bits=3`, `llvq-sg:m=12,gain=1`).
    pub name: String,
    pub kind: Kind,
}

/// The two kinds of method the pipeline runs, each with only the fields it uses.
#[derive(Debug)]
pub enum Kind {
    /// A fixed block code of the lab, applied with or without block LDLQ.
    Block(BlockMethod),
    /// GLVQ (`glvq:...`, [`crate::glvq`]): lattices learned per weight group; its SPEC holds its
    /// own group size and `ldlq` key.
    Glvq(crate::glvq::GlvqParams),
}

/// A block code and how the pipeline uses it.
pub struct BlockMethod {
    /// The block code. Its [`Quantizer::spec`] (with fitted values) is what files record.
    pub code: Box<dyn Quantizer>,
    /// Hessian-corrected (block LDLQ) or plain rounding.
    pub ldlq: bool,
    /// Columns per scale group; `None` is one scale per row.
    pub group: Option<usize>,
}

impl std::fmt::Debug for BlockMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockMethod")
            .field("code", &self.code.spec())
            .field("ldlq", &self.ldlq)
            .field("group", &self.group)
            .finish()
    }
}

impl Method {
    /// The canonical SPEC that files and manifests record.
    pub fn code_spec(&self) -> String {
        match &self.kind {
            Kind::Block(b) => b.code.spec(),
            Kind::Glvq(g) => g.to_spec(),
        }
    }

    /// Whether quantization feeds each block's error forward through the Hessian (block LDLQ).
    pub fn ldlq(&self) -> bool {
        match &self.kind {
            Kind::Block(b) => b.ldlq,
            Kind::Glvq(g) => g.ldlq,
        }
    }

    /// Columns per scale group of a block method (`None`: one scale per row, or GLVQ).
    pub fn group(&self) -> Option<usize> {
        match &self.kind {
            Kind::Block(b) => b.group,
            Kind::Glvq(_) => None,
        }
    }

    /// Parses a pipeline SPEC (see the module doc).
    pub fn parse(spec: &str) -> Result<Method> {
        let spec = spec.trim();
        if spec == "glvq" || spec.starts_with("glvq:") {
            return Ok(Method {
                name: spec.to_string(),
                kind: Kind::Glvq(crate::glvq::GlvqParams::from_spec(spec)?),
            });
        }
        let bad = |reason: String| QuantError::Method {
            spec: spec.to_string(),
            reason,
        };
        let (name, mut params) = split_spec(spec).map_err(bad)?;
        let mut take = |key: &str| params.iter().position(|(k, _)| k == key).map(|i| params.remove(i).1);
        let group = match take("group") {
            None => None,
            Some(v) => Some(
                v.parse::<usize>()
                    .ok()
                    .filter(|&g| g > 0)
                    .ok_or_else(|| bad(format!("group={v:?} is not a positive integer")))?,
            ),
        };
        let ldlq_key = match take("ldlq") {
            None => None,
            Some(v) => Some(match v.as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return Err(bad(format!("ldlq={v:?} must be 0 or 1"))),
            }),
        };
        let (code_spec, ldlq) = match ALIASES.iter().find(|a| a.name == name) {
            Some(alias) => {
                let bits = take("bits").unwrap_or_else(|| alias.default_bits.to_string());
                if let Some((k, _)) = params.first() {
                    return Err(bad(format!(
                        "unknown parameter {k:?} (accepted: {}, group, ldlq)",
                        alias.accepted
                    )));
                }
                (format!("{}:bits={bits}", alias.code), ldlq_key.unwrap_or(alias.ldlq))
            }
            None => {
                let joined: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let code = if joined.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}:{}", joined.join(","))
                };
                (code, ldlq_key.unwrap_or(true))
            }
        };
        Spec::parse(&code_spec)?; // a clear "unknown method" error before any fitting
        let code = from_spec(&code_spec)?;
        if let Some(g) = group {
            if g % code.dim() != 0 {
                return Err(bad(format!(
                    "group={g} is not a multiple of the block dimension {}",
                    code.dim()
                )));
            }
        }
        Ok(Method {
            name: spec.to_string(),
            kind: Kind::Block(BlockMethod { code, ldlq, group }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(spec: &str) -> BlockMethod {
        match Method::parse(spec).unwrap().kind {
            Kind::Block(b) => b,
            Kind::Glvq(_) => panic!("{spec} parsed as GLVQ"),
        }
    }

    #[test]
    fn aliases_and_pipeline_keys() {
        let m = block("rtn");
        assert_eq!((m.code.dim(), m.code.bits(), m.ldlq, m.group), (1, 2, false, None));
        let m = block("gptq:bits=3,group=64");
        assert_eq!((m.code.bits(), m.ldlq, m.group), (3, true, Some(64)));
        let m = block("e8p12:ldlq=0");
        assert_eq!((m.code.dim(), m.code.bits(), m.ldlq), (8, 16, false));
        let m = block("lloyd:bits=2,group=128");
        assert_eq!((m.code.spec().as_str(), m.group), ("lloyd:bits=2", Some(128)));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Method::parse("e8p12:group=12").unwrap_err().to_string();
        assert!(e.contains("multiple of the block dimension 8"), "{e}");
        let e = Method::parse("nope").unwrap_err().to_string();
        assert!(e.contains("unknown method"), "{e}");
        let e = Method::parse("rtn:m=3").unwrap_err().to_string();
        assert!(e.contains("unknown parameter"), "{e}");
        let e = Method::parse("gptq:ldlq=2").unwrap_err().to_string();
        assert!(e.contains("must be 0 or 1"), "{e}");
        let e = Method::parse("glvq:d=12").unwrap_err().to_string();
        assert!(e.contains("d=12"), "{e}");
        let m = Method::parse("glvq:d=24,group=576,ldlq=1").unwrap();
        let Kind::Glvq(g) = &m.kind else {
            panic!("glvq parsed as a block code")
        };
        assert_eq!(m.code_spec(), g.to_spec());
        assert!(m.ldlq() && m.group().is_none());
    }
}
