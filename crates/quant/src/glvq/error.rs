//! Typed errors of GLVQ; each carries the value at fault.

use llvq_codes::CodeError;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GlvqError {
    #[error("glvq SPEC {spec:?}: {reason}")]
    Spec { spec: String, reason: String },
    #[error(transparent)]
    Code(#[from] CodeError),
    #[error("glvq: lattice dimension d={d} is not one of 8, 16, 24, 32")]
    Dim { d: usize },
    #[error("glvq: group={group} is not a positive multiple of d={d}")]
    GroupNotMultiple { group: usize, d: usize },
    #[error(
        "glvq: {cols} columns in groups of {group} leave a last group of {tail} columns, \
         which d={d} does not divide (the tail group must hold whole d-vectors)"
    )]
    Tail {
        cols: usize,
        group: usize,
        tail: usize,
        d: usize,
    },
    #[error("glvq: bit target {bits} is impossible with d={d}: {reason}")]
    Bits { bits: f64, d: usize, reason: String },
    #[error("glvq: {what} has {got} values, expected {expected}")]
    Shape {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("glvq: {what} value {value} at index {index} is not finite")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f64,
    },
}
