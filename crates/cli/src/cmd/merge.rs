//! `llvq merge`: layer-range parts (`llvq quantize --hessians --layers`) into one model file.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct MergeArgs {
    /// Part files; every layer must be in exactly one, all made with the same parameters,
    /// model and Hessians.
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// Output model file.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: MergeArgs) -> Result<()> {
    let bytes = llvq_quant::pipeline::merge_parts(&a.parts, &a.out)?;
    outln!(
        "wrote        {} ({:.1} MB) from {} parts",
        a.out.display(),
        bytes as f64 / 1e6,
        a.parts.len()
    )?;
    Ok(())
}
