//! `llvq bench` subcommands.
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCmd {}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {}
}
