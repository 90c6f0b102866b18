//! `llvq export`: write a model as a Hugging Face directory (f32 safetensors).
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// A .gguf file or a Hugging Face directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory; must not exist (it is written under a temporary name, then renamed).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: ExportArgs) -> Result<()> {
    // The library's errors already name the file or tensor.
    let (cfg, tok, w) = llvq_model::load_parts(&a.model)?;
    llvq_model::export::export_hf(&cfg, &tok, &w, &a.out)?;
    eprintln!("wrote {} ({} tensors)", a.out.display(), w.tensors.len());
    Ok(())
}
