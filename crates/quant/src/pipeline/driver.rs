//! The layer-by-layer driver: read a layer, calibrate, quantize, propagate, drop it; write.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use llvq_model::candle_core::{DType, Device, Tensor};
use llvq_model::lazy::LazyWeights;
use llvq_model::{Config, Layer, LinearName, Model, NoHook, Rope, Tokenizer};

use super::hidden::{Hidden, Placement};
use super::layer::{quantize_layer, set_layer_weight, set_weight, tensor_f32};
use super::memory::{available, check_memory, hidden_bytes, peak_rss, run_memory};
use super::params::{CalibMode, Event, QuantizeParams, Report, Timings};
use super::resume::{check_output, has_layers, manifest, open_parts, part_path, parts_dir};
use crate::calib::{windows, LayerHessians};
use crate::error::{QuantError, Result};
use crate::format::{self, Bits, CodeCache, FileContents, Header, LinearStats, PartFile, Plain, QuantLinear};
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

/// Runs the whole pipeline on `model_path` and writes `out`, one decoder layer in f32 at a
/// time ([`quantize_model_with`] without a memory limit, activations placed automatically).
pub fn quantize_model(
    model_path: &Path,
    out: &Path,
    p: &QuantizeParams,
    resume: bool,
    progress: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<Report> {
    quantize_model_with(model_path, out, p, resume, Budget::default(), progress)
}

/// How much memory a run may use and where its calibration activations live. Neither changes
/// the output file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Budget {
    /// Refuse to start when the estimate exceeds this many bytes.
    pub max_memory: Option<u64>,
    pub activations: Placement,
}

/// Runs the whole pipeline on `model_path` and writes `out`. The checkpoint is read lazily: the
/// calibration windows' hidden states are the only state carried from layer to layer, each
/// decoder layer is read, calibrated, quantized, propagated and dropped, and the tensors outside
/// the layers are read when needed. The hidden states go to a scratch file in `OUT.parts` when
/// [`Placement`] says so. The memory estimate ([`super::run_memory`]) is reported as
/// [`Event::Memory`] before any work; above `budget.max_memory` the run is refused.
pub fn quantize_model_with(
    model_path: &Path,
    out: &Path,
    p: &QuantizeParams,
    resume: bool,
    budget: Budget,
    progress: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<Report> {
    start(model_path, out, p, resume, Load::Stream(budget), progress)
}

/// The driver as it was before it streamed: the whole model loaded in f32 up front, no
/// resuming, no progress. Kept only so tests can check that streaming writes the same bytes.
#[doc(hidden)]
pub fn quantize_model_eager(model_path: &Path, out: &Path, p: &QuantizeParams) -> Result<Report> {
    start(model_path, out, p, false, Load::Eager, &mut |_| {
        ControlFlow::Continue(())
    })
}

/// How the driver reads the checkpoint.
enum Load {
    Stream(Budget),
    Eager,
}

/// Where the decoder layers come from.
enum Source {
    /// The whole model in f32, and its stored tensors, read up front.
    Eager { model: Model, plain: Vec<Plain> },
    /// One layer at a time: the current one, and the stored tensors of the layers read so far
    /// (norms and biases, by name).
    Lazy {
        lazy: LazyWeights,
        layer: Option<Box<Layer>>,
        plain: BTreeMap<String, Plain>,
    },
}

impl Source {
    /// Makes layer `l` the current one (lazily: reads it, after dropping the previous one).
    fn load(&mut self, l: usize, embed_f16: bool) -> Result<()> {
        if let Source::Lazy { lazy, layer, plain } = self {
            *layer = None;
            *layer = Some(Box::new(load_layer(lazy, l, embed_f16, plain)?));
        }
        Ok(())
    }

    /// Layer `l`, made current by [`Source::load`].
    fn layer(&mut self, l: usize) -> &mut Layer {
        match self {
            Source::Eager { model, .. } => &mut model.layers_mut()[l],
            Source::Lazy { layer, .. } => layer.as_deref_mut().expect("loaded before use"),
        }
    }

    /// Puts a restored weight into layer `l`, made current by [`Source::load`].
    fn set_weight(&mut self, l: usize, name: &str, w: &[f64], meta: &format::LinearMeta) -> Result<()> {
        match self {
            Source::Eager { model, .. } => set_weight(model, l, name, w, meta),
            Source::Lazy { .. } => set_layer_weight(self.layer(l), name, w, meta),
        }
    }
}

/// Decoder layer `l` read alone, its stored tensors (norms, biases) added to `plain`.
pub(super) fn load_layer(
    lazy: &mut LazyWeights,
    l: usize,
    embed_f16: bool,
    plain: &mut BTreeMap<String, Plain>,
) -> Result<Layer> {
    let linear_names = LinearName::ALL.map(|n| n.weight_name(l));
    let mut w = lazy.layer_weights(l)?;
    for (name, t) in w.tensors.iter().filter(|(n, _)| !linear_names.contains(*n)) {
        plain.insert(name.clone(), plain_tensor(name, t, embed_f16)?);
    }
    Ok(Layer::load(lazy.config(), &mut w, l)?)
}

/// The hidden states of `wins` at the input of the first layer, exactly as `Model::embed` makes
/// them, with only the embedding table read; in a scratch file in `spill` when given.
pub(super) fn embed_windows(lazy: &mut LazyWeights, wins: &[Vec<u32>], spill: Option<&Path>) -> Result<Hidden> {
    let name = "model.embed_tokens.weight";
    let vocab = lazy.config().vocab_size;
    if let Some(&bad) = wins.iter().flatten().find(|&&i| i as usize >= vocab) {
        return Err(QuantError::Calibration(format!(
            "token id {bad} is outside the vocabulary ({vocab} tokens)"
        )));
    }
    let embed = lazy.tensor(name)?;
    let xs = wins.iter().map(|w| {
        let ids =
            Tensor::new(w.as_slice(), &Device::Cpu).map_err(|e| QuantError::tensor("token ids", e.to_string()))?;
        embed
            .embedding(&ids)
            .and_then(|x| x.to_dtype(DType::F32))
            .map_err(|e| QuantError::tensor(name, e.to_string()))
    });
    Hidden::collect(xs, spill)
}

/// The checks and loading before the layer loop, then [`run`].
fn start(
    model_path: &Path,
    out: &Path,
    p: &QuantizeParams,
    resume: bool,
    load: Load,
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
    let t = Instant::now();
    let loaded = match load {
        Load::Stream(budget) => {
            let (cfg, tok, lazy) = llvq_model::lazy::open(model_path)?;
            let (layer_f32, outer_f32) = lazy.f32_bytes();
            let est = |spill| run_memory(&cfg, layer_f32, outer_f32, text.len() as u64, p, spill);
            let spill = budget.activations.spill(est(false), budget.max_memory, available());
            let needs = est(spill);
            check_memory(
                needs,
                budget.max_memory,
                "quantize",
                if spill {
                    "use fewer or shorter calibration windows (--calib-seqs, --calib-ctx), a shorter --calib text, \
                     or the sharded workflow (`llvq calibrate`, `llvq quantize --hessians`)"
                } else {
                    "put the calibration activations on disk (--activations disk), use fewer or shorter \
                     calibration windows (--calib-seqs, --calib-ctx), or the sharded workflow"
                },
            )?;
            progress(Event::Memory {
                needs,
                on_disk: spill.then(|| hidden_bytes(&cfg, p.calib.seqs, p.calib.ctx)),
            })?;
            let params = lazy.num_params();
            Loaded {
                cfg,
                tok,
                params,
                src: Source::Lazy {
                    lazy,
                    layer: None,
                    plain: BTreeMap::new(),
                },
                spill,
            }
        }
        Load::Eager => {
            let (cfg, tok, weights) = llvq_model::load_parts(model_path)?;
            let params = weights.tensors.values().map(|t| t.elem_count() as u64).sum();
            let plain = plain_tensors(&cfg, &tok, &weights, p.embed_f16)?;
            let model = Model::from_weights(cfg.clone(), weights)?;
            Loaded {
                cfg,
                tok,
                params,
                src: Source::Eager { model, plain },
                spill: false,
            }
        }
    };
    let load_secs = t.elapsed().as_secs_f64();
    let parts = parts_dir(out);
    open_parts(&parts, &manifest(model_path, text.as_bytes(), p, &method)?, resume)?;
    let r = run(loaded, out, p, &method, text, &parts, &mut progress, t_start, load_secs);
    // A run that fails before its first finished layer leaves nothing behind.
    if r.is_err() && !has_layers(&parts) {
        let _ = std::fs::remove_dir_all(&parts);
    }
    r
}

/// The checkpoint as [`run`] gets it.
struct Loaded {
    cfg: Config,
    tok: Tokenizer,
    /// Parameters of the whole model.
    params: u64,
    src: Source,
    /// The calibration activations go to a scratch file in the parts directory.
    spill: bool,
}

/// The body of [`quantize_model`] once the inputs are checked and the parts directory is open.
#[allow(clippy::too_many_arguments)]
fn run(
    loaded: Loaded,
    out: &Path,
    p: &QuantizeParams,
    method: &Method,
    text: String,
    parts: &Path,
    progress: &mut dyn FnMut(Event<'_>) -> Result<()>,
    t_start: Instant,
    load_secs: f64,
) -> Result<Report> {
    let Loaded {
        cfg,
        tok,
        params: params_total,
        mut src,
        spill,
    } = loaded;
    let mut tm = Timings {
        load: load_secs,
        ..Timings::default()
    };
    let parts = parts.to_path_buf();

    progress(Event::Phase("tokenizing calibration text"))?;
    let t = Instant::now();
    let wins = windows(&tok, &text, &p.calib)?;
    drop(text);
    let rope = Rope::new(&cfg, 0, p.calib.ctx)?;
    // The calibration windows' hidden states at the input of the current layer.
    let mut xs = match &mut src {
        Source::Eager { model, .. } => Hidden::collect(wins.iter().map(|w| Ok(model.embed(w)?)), None)?,
        Source::Lazy { lazy, .. } => embed_windows(lazy, &wins, spill.then_some(parts.as_path()))?,
    };
    drop(wins);
    tm.tokenize = t.elapsed().as_secs_f64();

    let layers = cfg.num_layers;
    let mut resumed = 0;
    let mut codes = CodeCache::default();
    let run_layer = |layer: &Layer, xs: &Hidden, hook: &mut dyn llvq_model::LinearHook| -> Result<Hidden> {
        xs.map(|x| Ok(layer.forward(&cfg, x, &rope, None, hook)?))
    };
    for l in 0..layers {
        let part = part_path(&parts, l);
        let t = Instant::now();
        src.load(l, p.embed_f16)?;
        tm.load += t.elapsed().as_secs_f64();
        if part.exists() {
            // A finished layer: its stored weights replace the full-precision ones.
            progress(Event::Layer {
                layer: l,
                layers,
                step: "resuming",
            })?;
            let t = Instant::now();
            if p.mode == CalibMode::Full {
                xs = run_layer(src.layer(l), &xs, &mut NoHook)?;
            }
            for ql in &format::read(&part)?.linears {
                let w = ql.restore(&mut codes)?;
                src.set_weight(l, &ql.name, &w, &ql.meta)?;
            }
            if p.mode == CalibMode::Sequential {
                xs = run_layer(src.layer(l), &xs, &mut NoHook)?;
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
        // Sequential mode recomputes the outputs from the quantized layer: these are not kept.
        let next = match p.mode {
            CalibMode::Full => Some(run_layer(src.layer(l), &xs, &mut hook)?),
            CalibMode::Sequential => {
                let layer = src.layer(l);
                xs.for_each(|x| {
                    layer.forward(&cfg, x, &rope, None, &mut hook)?;
                    Ok(())
                })?;
                None
            }
        };
        tm.calibration += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let (linears, stats) = quantize_layer(src.layer(l), layers, hook, method, p, progress)?;
        write_layer_part(&part, l, linears, stats)?;
        tm.quantization += t.elapsed().as_secs_f64();

        let t = Instant::now();
        xs = match next {
            Some(next) => next,
            None => {
                progress(Event::Layer {
                    layer: l,
                    layers,
                    step: "propagating",
                })?;
                run_layer(src.layer(l), &xs, &mut NoHook)?
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

    // Assemble the file from the parts on disk, so a resumed run writes the same bytes.
    progress(Event::Phase("writing"))?;
    let t = Instant::now();
    let plain = match src {
        Source::Eager { plain, .. } => plain,
        Source::Lazy {
            mut lazy, mut plain, ..
        } => {
            // The tensors outside the layers, one at a time; then every stored tensor in name
            // order and the tokenizer, as `plain_tensors` lists them.
            for name in lazy.outer_names() {
                let t = lazy.tensor(&name)?;
                plain.insert(name.clone(), plain_tensor(&name, &t, p.embed_f16)?);
            }
            let mut plain: Vec<Plain> = plain.into_values().collect();
            plain.push(tokenizer_tensor(&tok));
            plain
        }
    };
    // The parts' tensors are copied one at a time: the codes of the whole model are never in
    // memory together.
    let part_files: Vec<PartFile> = (0..layers)
        .map(|l| PartFile::open(&part_path(&parts, l)))
        .collect::<Result<_>>()?;
    let (header, stats) = assembled_header(run_header(&cfg, method, p), &part_files)?;
    let bits = header.bits.expect("set by assembled_header");
    format::write_assembled(out, header, &part_files, &plain)?;
    drop(part_files);
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

/// Writes layer `l`'s codes and statistics to its part file (`llvq quantize`'s `OUT.parts/`, a
/// layer job's scratch files), from which [`format::write_assembled`] builds the output.
pub(super) fn write_layer_part(
    path: &Path,
    l: usize,
    linears: Vec<QuantLinear>,
    stats: Vec<LinearStats>,
) -> Result<()> {
    let header = Header {
        layer: Some(l),
        stats: Some(stats),
        ..Header::default()
    };
    format::write(
        path,
        &FileContents {
            header,
            linears,
            plain: vec![],
        },
    )
}

/// Completes a run header with the all-in bits of the linears of `parts` and the statistics of
/// their layers, in order; returns the statistics too.
pub(super) fn assembled_header(h: Header, parts: &[PartFile]) -> Result<(Header, Vec<LinearStats>)> {
    let mut bits = Bits::default();
    let mut stats = Vec::new();
    for part in parts {
        part.header.linears.values().for_each(|m| bits.add(&m.bits_stored()));
        let s = part.header.stats.as_ref();
        stats.extend_from_slice(s.ok_or_else(|| QuantError::format(&part.path, "no `stats`"))?);
    }
    let header = Header {
        bits: Some(bits),
        bpw: Some(bits.bpw()),
        stats: Some(stats.clone()),
        ..h
    };
    Ok((header, stats))
}
