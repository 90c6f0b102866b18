//! Loading a model for the pipeline or an evaluation: every linear decoded to f32.

use std::path::Path;

use llvq_model::compressed::LoadOptions;
use llvq_model::{Model, Tokenizer};

use crate::error::Result;
use crate::format::Header;

/// Loads an llvq file with every linear decoded to f32 (the reference path; the runtime's
/// compressed loader is `llvq_model::compressed::load`).
pub fn load_llvq(path: &Path) -> Result<(Model, Tokenizer, Header)> {
    Ok(llvq_model::compressed::load(
        path,
        &LoadOptions {
            dense: true,
            ..LoadOptions::default()
        },
    )?)
}

/// Loads any model (an llvq file decoded to f32, a `.gguf` file or a Hugging Face directory).
pub fn load_any(path: &Path) -> Result<(Model, Tokenizer)> {
    Ok(llvq_model::compressed::load_any(
        path,
        &LoadOptions {
            dense: true,
            ..LoadOptions::default()
        },
    )?)
}
