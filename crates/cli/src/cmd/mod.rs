//! One module per top-level subcommand.
pub mod bench;
pub mod codec;
pub mod lattice;
