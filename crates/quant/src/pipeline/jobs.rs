//! Models that do not fit (issue 14): offline Hessians sharded by data, layer ranges quantized
//! as independent jobs, and the merge of their parts into one file.
//!
//! `--mode full` quantizes every layer from the full-precision model's Hessians, so a layer's
//! output depends only on its own weights and Hessians: once the Hessians are on disk
//! ([`crate::hessians`]), any range of layers is a job of its own. Each job reads its layers
//! lazily (one decoder layer in f32 at a time, [`llvq_model::lazy`]) and writes a part file;
//! `merge_parts` assembles them into the file a single `--mode full` run writes, byte for byte
//! (the sums are exact, and parts carry the same header fields the driver writes).

use std::ops::{ControlFlow, Range};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use llvq_model::Rope;

use super::driver::{
    assembled_header, embed_windows, load_layer, plain_tensor, run_header, tokenizer_tensor, write_layer_part,
};
use super::hidden::Placement;
use super::layer::quantize_layer;
use super::memory::{available, block_of, calibrate_memory, check_memory, hidden_bytes, peak_rss, quantize_memory};
use super::params::{CalibMode, Event, QuantizeParams};
use super::resume::{check_output, content_hash, part_path};
use crate::calib::{windows, CalibParams, LayerHessians};
use crate::error::{QuantError, Result};
use crate::format::{self, Header, PartFile};
use crate::hessians::{self, HessianManifest, HESSIANS_FORMAT, HESSIANS_VERSION};
use crate::method::Method;

/// One slice of the calibration windows: shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// The windows of this shard: a contiguous slice of `0..seqs`, sizes differing by at most one.
    pub fn windows(self, seqs: usize) -> Range<usize> {
        self.index * seqs / self.count..(self.index + 1) * seqs / self.count
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// `i/n` with `0 ≤ i < n` (Slurm array task ids count from 0).
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("shard {s:?} must be i/n"))?;
        let i: usize = i.trim().parse().map_err(|e| format!("shard {s:?}: {e}"))?;
        let n: usize = n.trim().parse().map_err(|e| format!("shard {s:?}: {e}"))?;
        if n == 0 || i >= n {
            return Err(format!("shard {s:?}: need 0 ≤ i < n"));
        }
        Ok(Shard { index: i, count: n })
    }
}

/// A range of decoder layers `A..B` (B exclusive), or one layer `A`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRange(pub Range<usize>);

impl std::str::FromStr for LayerRange {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<LayerRange, String> {
        let num = |x: &str| x.trim().parse::<usize>().map_err(|e| format!("layers {s:?}: {e}"));
        let r = match s.split_once("..") {
            Some((a, b)) => num(a)?..num(b)?,
            None => num(s)?..num(s)? + 1,
        };
        if r.is_empty() {
            return Err(format!("layers {s:?}: the range is empty (A..B excludes B)"));
        }
        Ok(LayerRange(r))
    }
}

/// What `calibrate` takes.
#[derive(Clone, Debug)]
pub struct CalibrateParams {
    pub calib_text: PathBuf,
    pub calib: CalibParams,
    pub shard: Shard,
    /// Refuse to start when the estimate exceeds this many bytes.
    pub max_memory: Option<u64>,
    /// Where the shard's hidden states live (on disk: in the output's temporary directory).
    pub activations: Placement,
}

/// What a job reports.
#[derive(Clone, Debug, Serialize)]
pub struct JobReport {
    pub out: PathBuf,
    /// Layers done.
    pub layers: Range<usize>,
    /// Calibration windows summed (calibrate only).
    pub windows: Option<Range<usize>>,
    /// The memory estimate printed before starting, and the measured peak (VmHWM).
    pub needs_bytes: u64,
    pub peak_rss: Option<u64>,
    pub bytes_written: u64,
    pub seconds: f64,
    /// Seconds per layer (calibration or quantization of that layer alone).
    pub layer_seconds: Vec<f64>,
}

/// Reads and checks the calibration text (before any heavy work).
fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| QuantError::io(path, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| QuantError::Calibration(format!("{}: not UTF-8 text: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Err(QuantError::Calibration(format!(
            "the calibration text {} is empty",
            path.display()
        )));
    }
    Ok(text)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
}

/// `llvq calibrate`: the full-precision model's exact Hessian sums over one shard of the
/// calibration windows, every layer, into the directory `out` (written whole or not at all).
/// Layers are read one at a time; the shard's hidden states are the only per-window state.
pub fn calibrate(
    model: &Path,
    out: &Path,
    p: &CalibrateParams,
    progress: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<JobReport> {
    let t0 = Instant::now();
    let text = read_text(&p.calib_text)?;
    let (cfg, tok, mut lazy) = llvq_model::lazy::open(model)?;
    let range = p.shard.windows(p.calib.seqs);
    if range.is_empty() {
        return Err(QuantError::Calibration(format!(
            "shard {}/{} of {} windows is empty: use fewer shards",
            p.shard.index, p.shard.count, p.calib.seqs
        )));
    }
    let (layer_f32, _) = lazy.f32_bytes();
    let embed_f32 = (cfg.vocab_size * cfg.hidden_size * 4) as u64;
    let est = |spill| {
        calibrate_memory(
            &cfg,
            layer_f32,
            embed_f32,
            text.len() as u64,
            range.len(),
            p.calib.ctx,
            spill,
            16,
        )
    };
    let spill = p.activations.spill(est(false), p.max_memory, available());
    let needs = est(spill);
    check_memory(
        needs,
        p.max_memory,
        "calibrate",
        "use more shards (--shard i/n), a smaller --calib-ctx, a shorter --calib text, or --activations disk",
    )?;
    let _ = progress(Event::Memory {
        needs,
        on_disk: spill.then(|| hidden_bytes(&cfg, range.len(), p.calib.ctx)),
    });
    let wins = windows(&tok, &text, &p.calib)?;
    let mut man = HessianManifest {
        format: HESSIANS_FORMAT.into(),
        version: HESSIANS_VERSION,
        model: model.display().to_string(),
        model_fnv1a: content_hash(&llvq_model::model_files(model)?)?,
        calib_text_fnv1a: format!(
            "{:016x}",
            llvq_model::eval::fnv1a(llvq_model::eval::FNV_OFFSET, text.as_bytes())
        ),
        calib: p.calib,
        num_layers: cfg.num_layers,
        windows: range.clone().collect(),
        tokens: 0,
    };
    drop(text);
    let tmp = hessians::begin_dir(out)?;
    let r = (|| -> Result<Vec<f64>> {
        // The hidden states of the shard's windows.
        let mut xs = embed_windows(&mut lazy, &wins[range.clone()], spill.then_some(tmp.as_path()))?;
        drop(wins);
        let rope = Rope::new(&cfg, 0, p.calib.ctx)?;
        let mut secs = Vec::new();
        for l in 0..cfg.num_layers {
            let t = Instant::now();
            if progress(Event::Layer {
                layer: l,
                layers: cfg.num_layers,
                step: "calibration",
            })
            .is_break()
            {
                return Err(QuantError::Interrupted { layer: l });
            }
            let layer = lazy.layer(l)?;
            let mut hook = LayerHessians::exact(l);
            xs = xs.map(|x| Ok(layer.forward(&cfg, x, &rope, None, &mut hook)?))?;
            drop(layer);
            hessians::write_layer(&hessians::layer_path(&tmp, l), &hook)?;
            man.tokens = hook.get(hessians::INPUTS[0]).map_or(0, |h| h.tokens());
            secs.push(t.elapsed().as_secs_f64());
            let _ = progress(Event::LayerDone {
                layer: l,
                layers: cfg.num_layers,
                resumed: false,
            });
        }
        Ok(secs)
    })();
    let secs = match r.and_then(|s| hessians::finish_dir(&tmp, out, &man).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    Ok(JobReport {
        out: out.to_path_buf(),
        layers: 0..cfg.num_layers,
        windows: Some(range),
        needs_bytes: needs,
        peak_rss: peak_rss(),
        bytes_written: dir_bytes(out),
        seconds: t0.elapsed().as_secs_f64(),
        layer_seconds: secs,
    })
}

/// The safetensors metadata key of a part's job description.
pub const PART_KEY: &str = "llvq-part";

/// What a part file says about the job that made it (beside the run fields of its header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// The layers it holds, `first..end`.
    pub first: usize,
    pub end: usize,
    pub num_layers: usize,
    pub model_fnv1a: String,
    /// [`HessianManifest::id`] of the Hessians it was quantized from.
    pub hessians: String,
    pub embed_f16: bool,
}

/// `llvq quantize --hessians HDIR --layers A..B`: quantizes layers `A..B` from offline Hessians
/// (full mode only) into the part file `out`, one layer in memory at a time. The part holding
/// layer 0 also carries the embeddings, final norm, LM head and tokenizer.
pub fn quantize_layers(
    model: &Path,
    hdir: &Path,
    layers: Range<usize>,
    out: &Path,
    p: &QuantizeParams,
    max_memory: Option<u64>,
    progress: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<JobReport> {
    let t0 = Instant::now();
    if p.mode != CalibMode::Full {
        return Err(QuantError::Calibration(
            "--hessians quantizes from the full-precision model's Hessians: it needs --mode full (sequential mode needs every earlier layer quantized first)".into(),
        ));
    }
    let method = Method::parse(&p.method)?;
    check_output(out, model, &p.calib_text)?;
    let man = hessians::read_manifest(hdir)?;
    if !man.complete() {
        return Err(QuantError::Calibration(format!(
            "{} sums {} of the {} calibration windows: merge every shard first (`llvq calibrate merge`)",
            hdir.display(),
            man.windows.len(),
            man.calib.seqs
        )));
    }
    if man.calib != p.calib {
        return Err(QuantError::Calibration(format!(
            "{} was calibrated on {} × {} tokens, the run asks for {} × {} (pass the same --calib-seqs/--calib-ctx)",
            hdir.display(),
            man.calib.seqs,
            man.calib.ctx,
            p.calib.seqs,
            p.calib.ctx
        )));
    }
    let (cfg, tok, mut lazy) = llvq_model::lazy::open(model)?;
    if layers.end > cfg.num_layers || man.num_layers != cfg.num_layers {
        return Err(QuantError::Calibration(format!(
            "layers {}..{}: the model has {} layers (the Hessians {})",
            layers.start, layers.end, cfg.num_layers, man.num_layers
        )));
    }
    let model_fnv1a = content_hash(&llvq_model::model_files(model)?)?;
    if model_fnv1a != man.model_fnv1a {
        return Err(QuantError::Calibration(format!(
            "{} holds the Hessians of another model ({}, content {}), not of {} (content {model_fnv1a})",
            hdir.display(),
            man.model,
            man.model_fnv1a,
            model.display()
        )));
    }
    let (layer_f32, outer_f32) = lazy.f32_bytes();
    let needs = quantize_memory(&cfg, layer_f32, outer_f32, layers.start == 0, 8, block_of(&p.method));
    check_memory(
        needs,
        max_memory,
        "quantize",
        "one layer and its Hessians must fit: use a machine with more memory",
    )?;
    let _ = progress(Event::Memory { needs, on_disk: None });

    let mut progress = |e: Event<'_>| -> Result<()> {
        match progress(e) {
            ControlFlow::Break(()) => Err(QuantError::Calibration("stopped by the caller".into())),
            ControlFlow::Continue(()) => Ok(()),
        }
    };
    // Each layer's codes go to a scratch file as soon as they exist, and the part is assembled
    // from those files one tensor at a time: a job's memory does not grow with its layer count.
    let scratch = format::with_suffix(out, ".layers");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(|e| QuantError::io(&scratch, e))?;
    }
    std::fs::create_dir_all(&scratch).map_err(|e| QuantError::io(&scratch, e))?;
    let mut plain = Vec::new();
    let mut secs = Vec::new();
    let run_layers = || -> Result<()> {
        for l in layers.clone() {
            let t = Instant::now();
            progress(Event::Layer {
                layer: l,
                layers: cfg.num_layers,
                step: "loading",
            })?;
            let hook = hessians::read_layer(&hessians::layer_path(hdir, l), l, man.tokens, true)?;
            let mut layer_plain = std::collections::BTreeMap::new();
            let mut layer = load_layer(&mut lazy, l, p.embed_f16, &mut layer_plain)?;
            plain.extend(layer_plain.into_values());
            let (linears, stats) = quantize_layer(&mut layer, cfg.num_layers, hook, &method, p, &mut progress)?;
            write_layer_part(&part_path(&scratch, l), l, linears, stats)?;
            secs.push(t.elapsed().as_secs_f64());
            progress(Event::LayerDone {
                layer: l,
                layers: cfg.num_layers,
                resumed: false,
            })?;
        }
        if layers.start == 0 {
            for (name, t) in &lazy.outer_weights()?.tensors {
                plain.push(plain_tensor(name, t, p.embed_f16)?);
            }
            plain.push(tokenizer_tensor(&tok));
        }
        progress(Event::Phase("writing"))?;
        let info = PartInfo {
            first: layers.start,
            end: layers.end,
            num_layers: cfg.num_layers,
            model_fnv1a,
            hessians: man.id(),
            embed_f16: p.embed_f16,
        };
        let part_files: Vec<PartFile> = layers
            .clone()
            .map(|l| PartFile::open(&part_path(&scratch, l)))
            .collect::<Result<_>>()?;
        // The part keeps the run's header and its layers' statistics (its bits are counted by
        // `llvq merge`, over the whole model).
        let (_, stats) = assembled_header(Header::default(), &part_files)?;
        let header = Header {
            stats: Some(stats),
            ..run_header(&cfg, &method, p)
        };
        let extra = [(PART_KEY, serde_json::to_string(&info).expect("plain struct"))];
        format::write_assembled_with(out, header, &part_files, &plain, &extra)
    };
    let done = run_layers();
    let _ = std::fs::remove_dir_all(&scratch);
    done?;
    Ok(JobReport {
        out: out.to_path_buf(),
        layers,
        windows: None,
        needs_bytes: needs,
        peak_rss: peak_rss(),
        bytes_written: std::fs::metadata(out).map_err(|e| QuantError::io(out, e))?.len(),
        seconds: t0.elapsed().as_secs_f64(),
        layer_seconds: secs,
    })
}

/// The `llvq` header and the part description of a part file, read from its safetensors
/// header alone (a part can be GBs; its checks come before any tensor is read).
pub fn read_part_header(path: &Path) -> Result<(Header, PartInfo)> {
    let bad = |r: String| QuantError::format(path, r);
    let part = PartFile::open(path)?;
    let info = part
        .metadata
        .get(PART_KEY)
        .and_then(|x| x.as_str())
        .ok_or_else(|| bad("not a layer-range part (made by `llvq quantize --hessians --layers`)".into()))?;
    let info: PartInfo = serde_json::from_str(info).map_err(|e| bad(e.to_string()))?;
    Ok((part.header, info))
}

/// `llvq merge`: assembles layer-range parts into one model file. Every layer must be in
/// exactly one part, and every part made with the same parameters, model and Hessians;
/// otherwise the error names the part and nothing is written.
pub fn merge_parts(parts: &[PathBuf], out: &Path) -> Result<u64> {
    let heads: Vec<(Header, PartInfo)> = parts.iter().map(|p| read_part_header(p)).collect::<Result<_>>()?;
    let (first_path, (h0, i0)) = match parts.first() {
        Some(p) => (p, &heads[0]),
        None => {
            return Err(QuantError::Output {
                path: out.to_path_buf(),
                reason: "no parts to merge".into(),
            })
        }
    };
    // The run's fields of a header (what must agree), without its layers' statistics.
    let run = |h: &Header| Header {
        stats: None,
        linears: Default::default(),
        ..h.clone()
    };
    let bad = |p: &Path, why: String| {
        Err(QuantError::Format {
            path: p.to_path_buf(),
            reason: why,
        })
    };
    for (path, (h, i)) in parts.iter().zip(&heads) {
        if i.model_fnv1a != i0.model_fnv1a || i.num_layers != i0.num_layers {
            return bad(
                path,
                format!(
                    "made from another model (content {}, {} layers) than {} (content {}, {} layers)",
                    i.model_fnv1a,
                    i.num_layers,
                    first_path.display(),
                    i0.model_fnv1a,
                    i0.num_layers
                ),
            );
        }
        if i.hessians != i0.hessians {
            return bad(
                path,
                format!(
                    "quantized from other Hessians (id {}) than {} (id {})",
                    i.hessians,
                    first_path.display(),
                    i0.hessians
                ),
            );
        }
        if run(h) != run(h0) || i.embed_f16 != i0.embed_f16 {
            let a = serde_json::to_value(run(h)).expect("plain struct");
            let b = serde_json::to_value(run(h0)).expect("plain struct");
            let keys: Vec<String> = a
                .as_object()
                .expect("object")
                .iter()
                .filter(|(k, v)| b.get(k.as_str()) != Some(v))
                .map(|(k, v)| {
                    format!(
                        "{k} = {v}, not {}",
                        b.get(k.as_str()).unwrap_or(&serde_json::Value::Null)
                    )
                })
                .chain((i.embed_f16 != i0.embed_f16).then(|| format!("embed_f16 = {}", i.embed_f16)))
                .collect();
            return bad(
                path,
                format!(
                    "made with other parameters than {}: {}",
                    first_path.display(),
                    keys.join("; ")
                ),
            );
        }
    }
    // Every layer exactly once.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&k| (heads[k].1.first, heads[k].1.end));
    let mut next = 0;
    for &k in &order {
        let i = &heads[k].1;
        if i.first < next {
            let other = order
                .iter()
                .find(|&&j| j != k && heads[j].1.first < i.end && i.first < heads[j].1.end)
                .expect("an overlapping part");
            return bad(
                &parts[k],
                format!(
                    "layers {}..{} overlap {} (layers {}..{})",
                    i.first,
                    i.end,
                    parts[*other].display(),
                    heads[*other].1.first,
                    heads[*other].1.end
                ),
            );
        }
        if i.first > next {
            return Err(QuantError::Output {
                path: out.to_path_buf(),
                reason: format!("no part holds layers {next}..{} (of {})", i.first, i0.num_layers),
            });
        }
        next = i.end;
    }
    if next != i0.num_layers {
        return Err(QuantError::Output {
            path: out.to_path_buf(),
            reason: format!("no part holds layers {next}..{} (of {})", i0.num_layers, i0.num_layers),
        });
    }
    for p in parts {
        if p.exists() && out.exists() && std::fs::canonicalize(p).ok() == std::fs::canonicalize(out).ok() {
            return Err(QuantError::Output {
                path: out.to_path_buf(),
                reason: format!("is the part {}; refusing to overwrite it", p.display()),
            });
        }
    }
    // Tensors are copied one at a time, in layer order: the merged model is never in memory.
    let files: Vec<PartFile> = order
        .iter()
        .map(|&k| PartFile::open(&parts[k]))
        .collect::<Result<_>>()?;
    let (header, _) = assembled_header(run(h0), &files)?;
    format::write_assembled(out, header, &files, &[])?;
    std::fs::metadata(out)
        .map(|m| m.len())
        .map_err(|e| QuantError::io(out, e))
}

/// The in-process equivalent of the sharded workflow (what a Slurm run does, and what the tests
/// compare with a single `--mode full` run): calibrate in `shards` shards, merge the Hessians,
/// quantize `ranges`, merge the parts into `out`. Intermediate files go to `work`.
pub fn sharded_run(
    model: &Path,
    out: &Path,
    p: &QuantizeParams,
    shards: usize,
    ranges: &[Range<usize>],
    work: &Path,
) -> Result<()> {
    let mut go = |_: Event<'_>| ControlFlow::Continue(());
    let mut hdirs = Vec::new();
    for i in 0..shards {
        let d = work.join(format!("hessians-{i}"));
        let cp = CalibrateParams {
            calib_text: p.calib_text.clone(),
            calib: p.calib,
            shard: Shard {
                index: i,
                count: shards,
            },
            max_memory: None,
            activations: Placement::Auto,
        };
        calibrate(model, &d, &cp, &mut go)?;
        hdirs.push(d);
    }
    let hdir = work.join("hessians");
    hessians::merge(&hdirs, &hdir)?;
    let mut parts = Vec::new();
    for r in ranges {
        let part = work.join(format!("part-{}-{}.llvq", r.start, r.end));
        quantize_layers(model, &hdir, r.clone(), &part, p, None, &mut go)?;
        parts.push(part);
    }
    merge_parts(&parts, out)?;
    Ok(())
}
