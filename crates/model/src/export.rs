//! Write a model as a Hugging Face directory that `transformers` can load.
//!
//! The directory is assembled under a temporary sibling and renamed into place, so a crash
//! or a full disk never leaves a half-written checkpoint at the destination.
use std::path::Path;

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// Write `config.json`, `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`
/// and `model.safetensors` (f32) to `out`, which must not exist yet.
pub fn export_hf(cfg: &Config, tok: &Tokenizer, w: &Weights, out: &Path) -> Result<()> {
    if out.exists() {
        return Err(ModelError::io(
            out,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "output directory already exists"),
        ));
    }
    w.validate(cfg)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| ModelError::io(&parent, e))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    let result = (|| -> Result<()> {
        let write = |file: &str, text: String| -> Result<()> {
            let p = tmp.join(file);
            std::fs::write(&p, text).map_err(|e| ModelError::io(&p, e))
        };
        write("config.json", pretty(&cfg.to_hf_json()))?;
        write("tokenizer.json", tok.json().to_string())?;
        let token = |id: Option<u32>| id.and_then(|i| tok.inner().id_to_token(i));
        write(
            "tokenizer_config.json",
            pretty(&serde_json::json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": token(cfg.bos_token_id),
                "eos_token": token(cfg.eos_token_id),
                "add_bos_token": false,
                "clean_up_tokenization_spaces": false,
                "model_max_length": cfg.max_position,
            })),
        )?;
        write(
            "generation_config.json",
            pretty(&serde_json::json!({
                "bos_token_id": cfg.bos_token_id,
                "eos_token_id": cfg.eos_token_id,
            })),
        )?;
        w.save_safetensors(&tmp.join("model.safetensors"))?;
        std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values always serialize") + "\n"
}
