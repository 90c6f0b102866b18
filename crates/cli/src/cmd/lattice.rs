//! `llvq lattice` subcommands.
use clap::Subcommand;

#[derive(Subcommand)]
pub enum LatticeCmd {}

pub fn run(cmd: LatticeCmd) -> anyhow::Result<()> {
    match cmd {}
}
