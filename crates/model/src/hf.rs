//! Hugging Face checkpoint directories: `config.json`, `tokenizer.json` and one or many
//! `*.safetensors` files (sharded ones listed in `model.safetensors.index.json`).
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;

/// The safetensors files of a checkpoint directory, in a deterministic order.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Format {
            path: index.clone(),
            format: "JSON",
            reason: e.to_string(),
        })?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| ModelError::MissingKey {
                path: index.clone(),
                key: "weight_map".into(),
            })?;
        let mut files: Vec<PathBuf> = map.values().filter_map(Value::as_str).map(|f| dir.join(f)).collect();
        files.sort();
        files.dedup();
        for f in &files {
            if !f.exists() {
                return Err(ModelError::io(
                    f,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "listed in the index but missing"),
                ));
            }
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::io(
            dir.join("model.safetensors"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "no *.safetensors in the directory"),
        ));
    }
    Ok(files)
}

/// Load config, tokenizer and f32 weights from an HF directory.
pub fn load_dir(dir: &Path) -> Result<(Config, Tokenizer, Weights)> {
    let cfg = Config::from_hf_json(&dir.join("config.json"))?;
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
    let files = safetensors_files(dir)?;
    let w = Weights::load_safetensors(&files, &cfg)?;
    Ok((cfg, tok, w))
}
