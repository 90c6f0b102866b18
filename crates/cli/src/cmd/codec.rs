//! `llvq codec` subcommands.
use clap::Subcommand;

#[derive(Subcommand)]
pub enum CodecCmd {}

pub fn run(cmd: CodecCmd) -> anyhow::Result<()> {
    match cmd {}
}
