//! One module per top-level subcommand.
pub mod bench;
pub mod codec;
pub mod common;
pub mod lattice;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod generate;
pub mod inspect;
pub mod quantize;
pub mod rd;
pub mod tasks;
pub mod vq;
