//! The layer-by-layer driver: load, calibrate, quantize, propagate, write.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use llvq_model::candle_core::Tensor;
use llvq_model::{Config, LinearName, Model, NoHook, Tokenizer};

use super::layer::{quantize_layer, set_weight, tensor_f32};
use super::memory::peak_rss;
use super::params::{CalibMode, Event, QuantizeParams, Report, Timings};
use super::resume::{check_output, has_layers, manifest, open_parts, part_path, parts_dir};
use crate::calib::{windows, LayerHessians};
use crate::error::{QuantError, Result};
use crate::format::{self, CodeCache, FileContents, Header, LinearStats, Plain, QuantLinear};
use crate::method::Method;

/// The tensors stored as they are: everything but the decoder's linear weights, plus the
/// tokenizer. Embeddings (and an untied LM head) in f16 when `embed_f16`, the rest in f32.
pub(super) fn plain_tensors(
    cfg: &Config,
    tok: &Tokenizer,
    w: &llvq_model::Weights,
    embed_f16: bool,
) -> Result<Vec<Plain>> {
    let linear_names: std::collections::BTreeSet<String> = (0..cfg.num_layers)
        .flat_map(|l| LinearName::ALL.map(|n| n.weight_name(l)))
        .collect();
    let mut plain = Vec::new();
    for (name, t) in w.tensors.iter().filter(|(n, _)| !linear_names.contains(*n)) {
        plain.push(plain_tensor(name, t, embed_f16)?);
    }
    plain.push(tokenizer_tensor(tok));
    Ok(plain)
}

/// One tensor stored as it is: f16 for the embeddings and an untied LM head when `embed_f16`.
pub(super) fn plain_tensor(name: &str, t: &Tensor, embed_f16: bool) -> Result<Plain> {
    let big = name == "model.embed_tokens.weight" || name == "lm_head.weight";
    Ok(Plain::from_f32(name, t.dims(), &tensor_f32(t, name)?, big && embed_f16))
}

/// The tokenizer's JSON as a byte tensor.
pub(super) fn tokenizer_tensor(tok: &Tokenizer) -> Plain {
    let json = tok.json().as_bytes().to_vec();
    Plain {
        name: format::TOKENIZER_TENSOR.into(),
        dtype: safetensors::Dtype::U8,
        shape: vec![json.len()],
        data: json,
    }
}

/// Runs the whole pipeline on `model_path` and writes `out`.
pub fn quantize_model(
    model_path: &Path,
    out: &Path,
    p: &QuantizeParams,
    resume: bool,
    progress: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<Report> {
    // Only a finished layer may stop the run: its part file is on disk, so `resume` goes on
    // from the next one.
    let mut progress = |e: Event<'_>| -> Result<()> {
        let done = match e {
            Event::LayerDone { layer, .. } => Some(layer),
            _ => None,
        };
        match (progress(e), done) {
            (ControlFlow::Break(()), Some(layer)) => Err(QuantError::Interrupted { layer }),
            _ => Ok(()),
        }
    };
    let t_start = Instant::now();
    let method = Method::parse(&p.method)?;
    check_output(out, model_path, &p.calib_text)?;
    // The calibration text is read (and checked) before any heavy work.
    let text = std::fs::read(&p.calib_text).map_err(|e| QuantError::io(&p.calib_text, e))?;
    let text = String::from_utf8(text)
        .map_err(|e| QuantError::Calibration(format!("{}: not UTF-8 text: {e}", p.calib_text.display())))?;
    if text.trim().is_empty() {
        return Err(QuantError::Calibration(format!(
            "the calibration text {} is empty",
            p.calib_text.display()
        )));
    }
    let parts = parts_dir(out);
    open_parts(&parts, &manifest(model_path, text.as_bytes(), p, &method)?, resume)?;
    let r = run(model_path, out, p, &method, text, &parts, &mut progress, t_start);
    // A run that fails before its first finished layer leaves nothing behind.
    if r.is_err() && !has_layers(&parts) {
        let _ = std::fs::remove_dir_all(&parts);
    }
    r
}

/// The body of [`quantize_model`] once the inputs are checked and the parts directory is open.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    model_path: &Path,
    out: &Path,
    p: &QuantizeParams,
    method: &Method,
    text: String,
    parts: &Path,
    progress: &mut dyn FnMut(Event<'_>) -> Result<()>,
    t_start: Instant,
) -> Result<Report> {
    let mut tm = Timings::default();
    let parts = parts.to_path_buf();

    progress(Event::Phase("loading model"))?;
    let t = Instant::now();
    let (cfg, tok, weights) = llvq_model::load_parts(model_path)?;
    let params_total: u64 = weights.tensors.values().map(|t| t.elem_count() as u64).sum();
    let plain = plain_tensors(&cfg, &tok, &weights, p.embed_f16)?;
    let mut model = Model::from_weights(cfg.clone(), weights)?;
    tm.load = t.elapsed().as_secs_f64();

    progress(Event::Phase("tokenizing calibration text"))?;
    let t = Instant::now();
    let wins = windows(&tok, &text, &p.calib)?;
    drop(text);
    let rope = model.rope(0, p.calib.ctx)?;
    // The calibration windows' hidden states at the input of the current layer.
    let mut xs: Vec<Tensor> = wins
        .iter()
        .map(|w| model.embed(w))
        .collect::<std::result::Result<_, _>>()?;
    tm.tokenize = t.elapsed().as_secs_f64();

    let layers = cfg.num_layers;
    let mut resumed = 0;
    let mut codes = CodeCache::default();
    for l in 0..layers {
        let part = part_path(&parts, l);
        let run_layer = |model: &Model, xs: &[Tensor], hook: &mut dyn llvq_model::LinearHook| -> Result<Vec<Tensor>> {
            xs.iter()
                .map(|x| Ok(model.layers()[l].forward(&cfg, x, &rope, None, hook)?))
                .collect()
        };
        if part.exists() {
            // A finished layer: its stored weights replace the full-precision ones.
            progress(Event::Layer {
                layer: l,
                layers,
                step: "resuming",
            })?;
            let t = Instant::now();
            if p.mode == CalibMode::Full {
                xs = run_layer(&model, &xs, &mut NoHook)?;
            }
            for ql in &format::read(&part)?.linears {
                let w = ql.restore(&mut codes)?;
                set_weight(&mut model, l, &ql.name, &w, &ql.meta)?;
            }
            if p.mode == CalibMode::Sequential {
                xs = run_layer(&model, &xs, &mut NoHook)?;
            }
            tm.propagation += t.elapsed().as_secs_f64();
            resumed += 1;
            progress(Event::LayerDone {
                layer: l,
                layers,
                resumed: true,
            })?;
            continue;
        }

        progress(Event::Layer {
            layer: l,
            layers,
            step: "calibration",
        })?;
        let t = Instant::now();
        // Full mode sums exactly, so offline Hessians merged from shards give the same bits.
        let mut hook = match p.mode {
            CalibMode::Full => LayerHessians::exact(l),
            CalibMode::Sequential => LayerHessians::new(l),
        };
        let next = run_layer(&model, &xs, &mut hook)?;
        tm.calibration += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let (linears, stats) = quantize_layer(&mut model.layers_mut()[l], layers, &hook, method, p, progress)?;
        let header = Header {
            layer: Some(l),
            stats: Some(stats),
            ..Header::default()
        };
        format::write(
            &part,
            &FileContents {
                header,
                linears,
                plain: vec![],
            },
        )?;
        tm.quantization += t.elapsed().as_secs_f64();

        let t = Instant::now();
        xs = match p.mode {
            CalibMode::Full => next,
            CalibMode::Sequential => {
                progress(Event::Layer {
                    layer: l,
                    layers,
                    step: "propagating",
                })?;
                drop(next);
                run_layer(&model, &xs, &mut NoHook)?
            }
        };
        tm.propagation += t.elapsed().as_secs_f64();
        progress(Event::LayerDone {
            layer: l,
            layers,
            resumed: false,
        })?;
    }
    drop(xs);
    drop(model);

    // Assemble the file from the parts on disk, so a resumed run writes the same bytes.
    progress(Event::Phase("writing"))?;
    let t = Instant::now();
    let mut linears = Vec::new();
    let mut stats = Vec::new();
    for l in 0..layers {
        let part = part_path(&parts, l);
        let c = format::read(&part)?;
        let mut s = c.header.stats.ok_or_else(|| QuantError::format(&part, "no `stats`"))?;
        stats.append(&mut s);
        linears.extend(c.linears);
    }
    let header = finish_header(run_header(&cfg, method, p), &linears, stats.clone());
    let bits = header.bits.expect("set by finish_header");
    format::write(out, &FileContents { header, linears, plain })?;
    std::fs::remove_dir_all(&parts).map_err(|e| QuantError::io(&parts, e))?;
    tm.write = t.elapsed().as_secs_f64();
    tm.total = t_start.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(out).map_err(|e| QuantError::io(out, e))?.len();
    Ok(Report {
        out: out.to_path_buf(),
        method: method.name.clone(),
        code: method.code_spec(),
        rotate: p.rotate,
        mode: p.mode,
        linears: bits,
        file_bytes,
        params: params_total,
        layers_resumed: resumed,
        calib_tokens: p.calib.seqs * p.calib.ctx,
        timings: tm,
        peak_rss: peak_rss(),
        stats,
    })
}

/// The run's fields of a model file's header: everything but the bits and the statistics.
/// Layer-range parts carry the same fields, so `llvq merge` writes the same header.
pub(super) fn run_header(cfg: &Config, method: &Method, p: &QuantizeParams) -> Header {
    Header {
        config: Some(cfg.to_hf_json()),
        method: Some(method.name.clone()),
        code: Some(method.code_spec()),
        ldlq: Some(method.ldlq()),
        rotate: Some(p.rotate),
        seed: Some(p.seed),
        mode: Some(p.mode.name().into()),
        calib: Some(serde_json::to_value(p.calib).expect("plain struct")),
        damp: Some(p.ldlq.damp),
        ..Header::default()
    }
}

/// Completes a run header with the all-in bits of `linears` and the statistics of every layer.
pub(super) fn finish_header(h: Header, linears: &[QuantLinear], stats: Vec<LinearStats>) -> Header {
    let bits = format::linear_bits(linears);
    Header {
        bits: Some(bits),
        bpw: Some(bits.bpw()),
        stats: Some(stats),
        ..h
    }
}
