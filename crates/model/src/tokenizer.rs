//! Tokenizers: a Hugging Face `tokenizer.json`, or one rebuilt from GGUF metadata.
//!
//! GGUF files carry the BPE vocabulary and merges but name the pre-tokenizer only by a
//! tag (`tokenizer.ggml.pre`). We turn that tag into the equivalent `tokenizer.json`
//! pipeline, so the same JSON both drives our tokenizer and is what `export` writes.
use serde_json::{json, Map, Value};
use std::path::Path;

use crate::error::{ModelError, Result};

/// A tokenizer plus the `tokenizer.json` text it was built from (kept for export).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    json: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer(vocab={})", self.vocab_size())
    }
}

impl Tokenizer {
    pub fn from_json_str(json: String) -> Result<Tokenizer> {
        let inner =
            tokenizers::Tokenizer::from_bytes(json.as_bytes()).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(Tokenizer { inner, json })
    }

    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let json = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json_str(json).map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            format: "tokenizer.json",
            reason: e.to_string(),
        })
    }

    /// Token ids of `text`, without BOS/EOS or other special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The `tokenizer.json` text.
    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// What a GGUF file says about its tokenizer.
pub struct GgufVocab<'a> {
    pub model: &'a str,
    pub pre: &'a str,
    pub tokens: Vec<String>,
    pub merges: Vec<String>,
    /// llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Vec<i32>,
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split_isolated(pattern: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

/// The `pre_tokenizer` section equivalent to llama.cpp's pre-tokenizer tag.
fn pre_tokenizer_for(tag: &str) -> Result<Value> {
    // Regexes as llama.cpp (llama-vocab.cpp) and the models' own tokenizer.json use them.
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Ok(match tag {
        // StarCoder family (SmolLM, SmolLM2): every digit is its own pre-token, then GPT-2.
        "smollm" | "starcoder" | "refact" | "codeshell" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]
        }),
        "gpt-2" | "gpt2" | "default" => byte_level(true),
        "llama-bpe" | "llama3" | "smaug-bpe" => json!({
            "type": "Sequence", "pretokenizers": [split_isolated(LLAMA3), byte_level(false)]
        }),
        "qwen2" | "deepseek-r1-qwen" => json!({
            "type": "Sequence", "pretokenizers": [split_isolated(QWEN2), byte_level(false)]
        }),
        other => {
            return Err(ModelError::Tokenizer(format!(
                "GGUF pre-tokenizer `{other}` is not supported (supported: smollm, starcoder, gpt-2, llama-bpe, qwen2)"
            )))
        }
    })
}

/// Build the `tokenizer.json` for a GGUF byte-level BPE vocabulary.
pub fn tokenizer_json_from_gguf(v: &GgufVocab<'_>) -> Result<String> {
    if v.model != "gpt2" {
        return Err(ModelError::Tokenizer(format!(
            "GGUF tokenizer model `{}` is not supported (only byte-level BPE, `gpt2`)",
            v.model
        )));
    }
    let pre = pre_tokenizer_for(v.pre)?;
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, tok) in v.tokens.iter().enumerate() {
        vocab.insert(tok.clone(), json!(id));
        let ty = v.token_types.get(id).copied().unwrap_or(1);
        if ty == 3 || ty == 4 {
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == 3,
            }));
        }
    }
    if vocab.len() != v.tokens.len() {
        return Err(ModelError::Tokenizer(format!(
            "GGUF vocabulary has duplicate tokens ({} tokens, {} distinct)",
            v.tokens.len(),
            vocab.len()
        )));
    }
    let tj = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": v.merges,
        }
    });
    Ok(serde_json::to_string(&tj).expect("JSON values always serialize"))
}

/// GPT-2's byte → printable character map.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// A tiny byte-level vocabulary: `<|endoftext|>`, the 256 byte symbols, then 5 merges. Not a
/// language model's: for tests and synthetic checkpoints (`llvq synth`) that need a real, small
/// tokenizer.
pub fn tiny_vocab() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut tokens = vec!["<|endoftext|>".to_string()];
    let mut types = vec![3];
    for b in 0..=255u8 {
        tokens.push(byte_char(b).to_string());
        types.push(1);
    }
    let sp = byte_char(b' ');
    let merges: Vec<(String, String)> = vec![
        ("t".into(), "h".into()),
        ("th".into(), "e".into()),
        (sp.to_string(), "the".into()),
        ("i".into(), "n".into()),
        (sp.to_string(), "in".into()),
    ];
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    let merges = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
    (tokens, merges, types)
}

/// The byte-level BPE tokenizer of [`tiny_vocab`] (`smollm` pre-tokenizer).
pub fn tiny_tokenizer() -> Tokenizer {
    let (tokens, merges, token_types) = tiny_vocab();
    let json = tokenizer_json_from_gguf(&GgufVocab {
        model: "gpt2",
        pre: "smollm",
        tokens,
        merges,
        token_types,
    })
    .expect("the tiny vocabulary is valid");
    Tokenizer::from_json_str(json).expect("the tiny tokenizer builds")
}
