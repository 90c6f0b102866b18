//! One module per top-level subcommand.
pub mod bench;
pub mod calibrate;
pub mod codec;
pub mod common;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod finetune;
pub mod generate;
pub mod inspect;
pub mod lattice;
pub mod merge;
pub mod quantize;
pub mod rd;
pub mod synth;
pub mod tasks;
pub mod vq;
