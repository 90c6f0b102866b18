//! What the pipeline, finetune and jobs tests share: the tiny model they quantize, written as a
//! Hugging Face directory next to a calibration text, and the parameters they start from.
#![allow(dead_code)] // each test binary uses its own part

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use llvq_model::config::{Arch, Config};
use llvq_model::testing::{random_weights, tiny_tokenizer, tmpdir, word_text};
use llvq_model::weights::Weights;
use llvq_quant::calib::CalibParams;
use llvq_quant::ldlq::LdlqParams;
use llvq_quant::pipeline::Event;
use llvq_quant::{CalibMode, QuantizeParams, Report, Rotate};

/// A model 48 wide with an MLP of 40 (not a multiple of 24: exercises the tail).
pub fn config(arch: Arch) -> Config {
    Config {
        hidden_size: 48,
        intermediate_size: 40,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 12,
        ..llvq_model::testing::tiny_config(arch)
    }
}

/// Writes `w` as the HF directory `dir/model`; returns its path.
pub fn write_model(dir: &Path, cfg: &Config, w: &Weights) -> PathBuf {
    let model = dir.join("model");
    llvq_model::export::export_hf(cfg, &tiny_tokenizer(), w, &model).unwrap();
    model
}

/// Writes `w` as the HF directory `dir/model` with its tensors stored in bf16 (the loaders
/// convert; tests that bf16 checkpoints go through); returns its path.
pub fn write_bf16_model(dir: &Path, cfg: &Config, w: &Weights) -> PathBuf {
    let model = write_model(dir, cfg, w);
    let t: std::collections::HashMap<String, llvq_model::candle_core::Tensor> = w
        .tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.to_dtype(llvq_model::candle_core::DType::BF16).unwrap()))
        .collect();
    llvq_model::candle_core::safetensors::save(&t, model.join("model.safetensors")).unwrap();
    model
}

/// Writes `words` seeded words as the calibration text `dir/calib.txt`; returns its path.
pub fn write_calib(dir: &Path, seed: u64, words: usize) -> PathBuf {
    let calib = dir.join("calib.txt");
    std::fs::write(&calib, word_text(seed, words)).unwrap();
    calib
}

/// A fresh directory with the Llama-style [`config`] model (weights of seed 3) and a
/// calibration text; returns (directory, model, text).
pub fn setup(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = tmpdir(name);
    let cfg = config(Arch::Llama);
    let model = write_model(&dir, &cfg, &random_weights(&cfg, 3));
    let calib = write_calib(&dir, 12345, 600);
    (dir, model, calib)
}

/// Sequential calibration on 4 windows of 64 tokens, seed 5, f16 embeddings.
pub fn params(method: &str, calib: &Path, rotate: Rotate) -> QuantizeParams {
    QuantizeParams {
        method: method.into(),
        rotate,
        seed: 5,
        calib_text: calib.to_path_buf(),
        calib: CalibParams { seqs: 4, ctx: 64 },
        mode: CalibMode::Sequential,
        ldlq: LdlqParams::default(),
        embed_f16: true,
    }
}

/// A progress callback that never interrupts.
pub fn go(_: Event<'_>) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

/// `model` quantized to `out` from scratch (no resume), reporting nothing.
pub fn quantize(model: &Path, out: &Path, p: &QuantizeParams) -> llvq_quant::Result<Report> {
    llvq_quant::quantize_model(model, out, p, false, &mut go)
}

/// The message of a run that must fail.
pub fn error_text<T>(r: llvq_quant::Result<T>) -> String {
    match r {
        Ok(_) => panic!("the run succeeded"),
        Err(e) => e.to_string(),
    }
}

/// Interrupts a run after its first layer (the resume tests' cut).
pub fn stop_after_layer_0(e: Event<'_>) -> ControlFlow<()> {
    match e {
        Event::LayerDone { layer: 0, .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    }
}
