//! Typed errors of the lattice crate; each carries the failing value.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum LatticeError {
    #[error("max shell {max_shell} is out of range: supported balls are Λ24(M) for 2 ≤ M ≤ {limit}")]
    UnsupportedShell { max_shell: u32, limit: u32 },
    #[error("index {index} is out of range for Λ24({max_shell}), which has {len} points")]
    IndexOutOfRange { index: u64, len: u64, max_shell: u32 },
    #[error("{point:?} is not a point of the Leech lattice (integer coordinates, Eq. 6-8)")]
    NotALatticePoint { point: [i32; 24] },
    #[error("point lies on shell {shell}, outside the ball Λ24({max_shell})")]
    OutsideBall { shell: u32, max_shell: u32 },
    #[error("input coordinate {coordinate} is not finite ({value})")]
    NonFinite { coordinate: usize, value: f32 },
    #[error("input has {got} values; expected a multiple of {expected}")]
    BadLength { got: usize, expected: usize },
    #[error("{bits} bits per index is out of range 1..=64")]
    BadBitWidth { bits: u32 },
    #[error("packed buffer of {got} bytes is too short: {count} indices of {bits} bits need {need}")]
    ShortBuffer {
        got: usize,
        need: usize,
        count: usize,
        bits: u32,
    },
    #[error("index {index} needs more than {bits} bits")]
    IndexTooWide { index: u64, bits: u32 },
}
