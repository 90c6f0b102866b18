//! The post-training pipeline (§5, Algorithm 1, App. D), one decoder layer at a time:
//!
//! 1. **calibration** — run the layer on the calibration windows, accumulating the four input
//!    Hessians ([`crate::calib`]);
//! 2. **rotation** — W' = R_out W R_inᵀ and H' = R_in H R_inᵀ with seeded randomized Hadamard
//!    transforms ([`crate::hadamard`]; sides chosen by [`Rotate`]);
//! 3. **scales** — one f16 scale per row (or per group of columns): the RMS of W' there, so the
//!    code sees unit-variance blocks, which is what every code of the lab is designed for;
//! 4. **block LDLQ** — Hessian-corrected quantization of column blocks ([`crate::ldlq`]), or plain
//!    rounding for `ldlq=0`;
//! 5. **pack and write** — the layer's codes go to a part file, atomically; at the end the parts
//!    and the untouched tensors are assembled into one file ([`crate::format`]).
//!
//! Calibration modes ([`CalibMode`]): `sequential` (default) feeds each layer the outputs of the
//! already-quantized layers before it, as GPTQ does, so later layers correct for earlier
//! errors; `full` takes every Hessian from the full-precision model (one forward pass, no
//! recomputation). The README's table measures both.
//!
//! Resuming: finished layers live in `OUT.parts/layer-NNNN.safetensors` next to a manifest of
//! the run's parameters. `resume` checks the manifest, reloads finished layers (and, in
//! sequential mode, runs the calibration windows through their quantized weights) and goes on;
//! every step is deterministic, so the final file has the same bytes as an uninterrupted run.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use half::f16;
use llvq_model::candle_core::{Device, Tensor};
use llvq_model::compressed::LoadOptions;
use llvq_model::{Config, LinearInput, LinearName, Model, NoHook, Tokenizer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::calib::{windows, CalibParams, LayerHessians};
use crate::error::{CandleContext, QuantError, Result};
use crate::format::{self, Bits, CodeCache, FileContents, Header, LinearMeta, LinearStats, Plain, QuantLinear, Rotate};
use llvq_model::hadamard::Rotation;
use crate::ldlq::{self, Factor, LdlqParams};
use crate::method::Method;

/// Where each layer's Hessians come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibMode {
    /// Inputs from the already-quantized layers before (GPTQ-style).
    Sequential,
    /// Inputs from the full-precision model.
    Full,
}

impl CalibMode {
    pub fn name(self) -> &'static str {
        match self {
            CalibMode::Sequential => "sequential",
            CalibMode::Full => "full",
        }
    }
}

impl std::str::FromStr for CalibMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<CalibMode, String> {
        match s {
            "sequential" => Ok(CalibMode::Sequential),
            "full" => Ok(CalibMode::Full),
            _ => Err(format!("calibration mode {s:?} must be sequential or full")),
        }
    }
}

/// Everything that determines the output file.
#[derive(Clone, Debug)]
pub struct QuantizeParams {
    /// Pipeline method SPEC ([`Method`]).
    pub method: String,
    pub rotate: Rotate,
    /// Seed of the rotations (per-matrix seeds are derived from it).
    pub seed: u64,
    pub calib_text: PathBuf,
    pub calib: CalibParams,
    pub mode: CalibMode,
    pub ldlq: LdlqParams,
    /// Store embeddings (and an untied LM head) as f16 instead of f32.
    pub embed_f16: bool,
}

/// Progress of a run, for a progress bar. The callback returns [`ControlFlow::Break`] to stop the
/// run after a finished layer ([`QuantError::Interrupted`]; `resume` continues it).
pub enum Event<'a> {
    /// A phase outside the layer loop started.
    Phase(&'a str),
    /// Layer `layer` of `layers` is at `step`.
    Layer { layer: usize, layers: usize, step: &'a str },
    /// Layer finished (`resumed`: taken from a part file).
    LayerDone { layer: usize, layers: usize, resumed: bool },
}

/// Wall time by phase, in seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub load: f64,
    pub tokenize: f64,
    /// Layer forward passes with Hessian accumulation.
    pub calibration: f64,
    /// Rotation, factorisation, LDLQ, decode and statistics.
    pub quantization: f64,
    /// Recomputing layer outputs from quantized weights (sequential mode) or reloading parts.
    pub propagation: f64,
    pub write: f64,
    pub total: f64,
}

/// What a run reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub out: PathBuf,
    pub method: String,
    pub code: String,
    pub rotate: Rotate,
    pub mode: CalibMode,
    /// All-in bits of the quantized linears.
    pub linears: Bits,
    /// File size and the parameters of the whole model.
    pub file_bytes: u64,
    pub params: u64,
    pub layers_resumed: usize,
    pub calib_tokens: usize,
    pub timings: Timings,
    /// Peak resident memory of the process (VmHWM), bytes, where the OS reports it.
    pub peak_rss: Option<u64>,
    pub stats: Vec<LinearStats>,
}

impl Report {
    /// All-in bits per weight of the quantized linears.
    pub fn bpw(&self) -> f64 {
        self.linears.bpw()
    }
    /// File bits per parameter of the whole model (embeddings, norms, everything).
    pub fn file_bpw(&self) -> f64 {
        self.file_bytes as f64 * 8.0 / self.params.max(1) as f64
    }
}

/// A per-matrix seed from the run seed and a label (SplitMix64 finaliser over FNV-1a).
fn derive_seed(seed: u64, label: &str) -> u64 {
    let mut h = label.bytes().fold(0xcbf2_9ce4_8422_2325u64 ^ seed, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Peak resident set size of this process, from /proc (Linux).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Per-(row, group) scales: the RMS of `w` (`rows × cols`) over each group's real columns,
/// rounded to f16 (the decoder sees exactly what the encoder used). All-zero groups get 1.
fn row_scales(w: &[f64], rows: usize, cols: usize, group: usize) -> Vec<u16> {
    let groups = cols.div_ceil(group).max(1);
    let mut out = Vec::with_capacity(rows * groups);
    for r in 0..rows {
        for g in 0..groups {
            let seg = &w[r * cols + g * group..r * cols + ((g + 1) * group).min(cols)];
            let rms = (seg.iter().map(|v| v * v).sum::<f64>() / seg.len().max(1) as f64).sqrt();
            let s = if rms.is_finite() && rms > 0.0 { rms } else { 1.0 };
            out.push(f16::from_f64(s).max(f16::MIN_POSITIVE).to_bits());
        }
    }
    out
}

/// Quantizes one linear: rotate, scale, (block-LDLQ with `factor`), pack. `w` is `rows × cols`
/// in the original domain; `factor` is for the rotated, padded Hessian. Returns the stored form.
pub fn quantize_linear(
    name: &str,
    w: &[f32],
    meta: LinearMeta,
    factor: Option<&Factor>,
    code: &dyn llvq_codes::Quantizer,
    params: &LdlqParams,
) -> Result<QuantLinear> {
    let (rows, cols, pc) = (meta.rows, meta.cols, meta.padded_cols());
    let mut wr: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    format::rotate(&mut wr, &meta);
    // Scales over the real columns of each group (the padded row has the same groups: `group` is
    // a multiple of the block, and the padding is less than a block).
    let scales = row_scales(&wr, rows, cols, meta.group);
    let mut padded = vec![0f64; rows * pc];
    for (p, r) in padded.chunks_exact_mut(pc).zip(wr.chunks_exact(cols)) {
        p[..cols].copy_from_slice(r);
    }
    let s32: Vec<f32> = scales.iter().map(|&s| f16::from_bits(s).to_f32()).collect();
    let q = ldlq::quantize(&mut padded, rows, pc, factor, code, &s32, meta.group, params, name)?;
    let codes = llvq_lattice::pack::pack(&q.codes, meta.bits)?;
    Ok(QuantLinear { name: name.to_string(), meta, codes, scales })
}

/// Statistics of a restored weight against the original.
fn linear_stats(name: &str, w: &[f32], restored: &[f64], rows: usize, cols: usize, h: &[f64], damp: f64) -> LinearStats {
    let orig: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let d: Vec<f64> = restored.iter().zip(&orig).map(|(a, b)| a - b).collect();
    let num = ldlq::proxy_loss(&d, rows, cols, h);
    let den = ldlq::proxy_loss(&orig, rows, cols, h);
    let e2: f64 = d.iter().map(|v| v * v).sum();
    let w2: f64 = orig.iter().map(|v| v * v).sum();
    LinearStats {
        name: name.to_string(),
        rows,
        cols,
        proxy_rel: num / den.max(f64::MIN_POSITIVE),
        mse_rel: e2 / w2.max(f64::MIN_POSITIVE),
        damp,
    }
}

/// Pads the `n × n` Hessian to `np × np` (identity·mean(diag) on the padding: the zero-padded
/// tail columns are independent of the real ones and cost nothing).
fn pad_hessian(h: &[f64], n: usize, np: usize) -> Vec<f64> {
    if np == n {
        return h.to_vec();
    }
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let mut out = vec![0.0; np * np];
    for i in 0..n {
        out[i * np..i * np + n].copy_from_slice(&h[i * n..(i + 1) * n]);
    }
    for i in n..np {
        out[i * np + i] = if mean > 0.0 { mean } else { 1.0 };
    }
    out
}

fn tensor_f32(t: &Tensor, name: &str) -> Result<Vec<f32>> {
    t.flatten_all().ctx(name)?.to_vec1::<f32>().ctx(name)
}

/// FNV-1a 64 of the contents of `files`, in order, as hex (streamed: a model can be GBs).
fn content_hash(files: &[PathBuf]) -> Result<String> {
    use std::io::Read;
    let mut h = llvq_model::eval::FNV_OFFSET;
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = std::fs::File::open(path).map_err(|e| QuantError::io(path, e))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| QuantError::io(path, e))?;
            if n == 0 {
                break;
            }
            h = llvq_model::eval::fnv1a(h, &buf[..n]);
        }
    }
    Ok(format!("{h:016x}"))
}

/// The absolute, symlink-free form of an existing path (for comparing runs and files).
fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| QuantError::io(path, e))
}

/// The manifest of a run: everything the output depends on. Inputs are named by canonical
/// path *and* content hash, so a calibration text edited in place (same path, same size) or
/// a model replaced by another is refused on `--resume` instead of mixing old and new layers.
fn manifest(model: &Path, calib_text: &[u8], p: &QuantizeParams, method: &Method) -> Result<Value> {
    let model_files = llvq_model::model_files(model)?;
    Ok(json!({
        "format_version": format::FORMAT_VERSION,
        "model": canonical(model)?.display().to_string(),
        "model_fnv1a": content_hash(&model_files)?,
        "method": method.name,
        "code": method.code.spec(),
        "ldlq": method.ldlq,
        "group": method.group,
        "rotate": p.rotate,
        "seed": p.seed,
        "calib_text": canonical(&p.calib_text)?.display().to_string(),
        "calib_text_fnv1a": format!("{:016x}", llvq_model::eval::fnv1a(llvq_model::eval::FNV_OFFSET, calib_text)),
        "calib": p.calib,
        "mode": p.mode,
        "damp": p.ldlq.damp,
        "embed_f16": p.embed_f16,
    }))
}

/// Refuses an output that would destroy an input or fail only after all the work: an
/// existing directory, a missing parent directory, or the same file as the model (any of an
/// HF directory's files) or the calibration text, after resolving links.
fn check_output(out: &Path, model: &Path, calib: &Path) -> Result<()> {
    let bad = |reason: String| Err(QuantError::Output { path: out.to_path_buf(), reason });
    if out.is_dir() {
        return bad("is an existing directory; give a file name".into());
    }
    let parent = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return bad(format!("the directory {} does not exist", parent.display()));
    }
    if !out.exists() {
        return Ok(());
    }
    let target = canonical(out)?;
    let inputs = llvq_model::model_files(model).unwrap_or_else(|_| vec![model.to_path_buf()]);
    for (what, input) in inputs.iter().map(|f| ("the input model", f)).chain([("the calibration text", &calib.to_path_buf())]) {
        if std::fs::canonicalize(input).is_ok_and(|c| c == target) || same_inode(input, out) {
            return bad(format!("is {what} ({}); refusing to overwrite it", input.display()));
        }
    }
    Ok(())
}

/// Hard links to one file have different canonical paths but one inode.
#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

fn write_json_atomic(path: &Path, v: &Value) -> Result<()> {
    let tmp = format::with_suffix(path, ".tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(v).expect("json")).map_err(|e| QuantError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| QuantError::io(path, e))
}

/// The part-file directory of an output file.
pub fn parts_dir(out: &Path) -> PathBuf {
    format::with_suffix(out, ".parts")
}

/// Creates the parts directory with its manifest, or checks the manifest of an interrupted run
/// (before any heavy work, so a mismatch fails fast).
fn open_parts(parts: &Path, man: &Value, resume: bool) -> Result<()> {
    let man_path = parts.join("manifest.json");
    // A directory without finished layers holds no work to lose (a run that failed before
    // its first layer): it is started afresh rather than blocking the corrected rerun.
    if !parts.exists() || !has_layers(parts) {
        std::fs::create_dir_all(parts).map_err(|e| QuantError::io(parts, e))?;
        return write_json_atomic(&man_path, man);
    }
    if !resume {
        return Err(QuantError::Resume(format!(
            "{} exists (an interrupted run): pass --resume to continue it, or remove it",
            parts.display()
        )));
    }
    let text = std::fs::read_to_string(&man_path).map_err(|e| QuantError::io(&man_path, e))?;
    let old: Value = serde_json::from_str(&text).map_err(|e| QuantError::format(&man_path, e.to_string()))?;
    if &old != man {
        let keys: Vec<String> = man
            .as_object()
            .expect("the manifest is an object")
            .iter()
            .filter(|(k, v)| old.get(k.as_str()) != Some(v))
            .map(|(k, v)| format!("{k}: was {}, now {v}", old.get(k.as_str()).unwrap_or(&Value::Null)))
            .collect();
        return Err(QuantError::Resume(format!("{} was made with other parameters ({})", man_path.display(), keys.join("; "))));
    }
    Ok(())
}

/// Whether a parts directory holds at least one finished layer.
fn has_layers(parts: &Path) -> bool {
    std::fs::read_dir(parts).is_ok_and(|d| {
        d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("layer-"))
    })
}

/// The tensors stored as they are: everything but the decoder's linear weights, plus the
/// tokenizer. Embeddings (and an untied LM head) in f16 when `embed_f16`, the rest in f32.
fn plain_tensors(cfg: &Config, tok: &Tokenizer, w: &llvq_model::Weights, embed_f16: bool) -> Result<Vec<Plain>> {
    let linear_names: std::collections::BTreeSet<String> =
        (0..cfg.num_layers).flat_map(|l| LinearName::ALL.map(|n| n.weight_name(l))).collect();
    let mut plain = Vec::new();
    for (name, t) in w.tensors.iter().filter(|(n, _)| !linear_names.contains(*n)) {
        let big = name == "model.embed_tokens.weight" || name == "lm_head.weight";
        plain.push(Plain::from_f32(name, t.dims(), &tensor_f32(t, name)?, big && embed_f16));
    }
    let json = tok.json().as_bytes().to_vec();
    plain.push(Plain { name: format::TOKENIZER_TENSOR.into(), dtype: safetensors::Dtype::U8, shape: vec![json.len()], data: json });
    Ok(plain)
}

/// Quantizes the seven linears of layer `l` with the Hessians in `hook` (steps 2-4 of the
/// module doc) and puts their restored weights into `model`.
fn quantize_layer(
    model: &mut Model,
    l: usize,
    hook: &LayerHessians,
    method: &Method,
    p: &QuantizeParams,
    progress: &mut dyn FnMut(Event<'_>) -> Result<()>,
) -> Result<(Vec<QuantLinear>, Vec<LinearStats>)> {
    let (code, layers) = (method.code.as_ref(), model.config().num_layers);
    let mut qls = Vec::new();
    let mut stats = Vec::new();
    for input in [LinearInput::Qkv, LinearInput::O, LinearInput::GateUp, LinearInput::Down] {
        let h = hook
            .get(input)
            .ok_or_else(|| QuantError::Calibration(format!("layer {l}: input {input:?} was never observed")))?
            .mean();
        let n = (h.len() as f64).sqrt() as usize;
        // One input rotation and one factorisation serve every linear reading this input.
        let rot_in = p.rotate.input().then(|| derive_seed(p.seed, &format!("{l}.in.{input:?}")));
        let mut hr = h.clone();
        if let Some(s) = rot_in {
            Rotation::new(n, s).conjugate(&mut hr);
        }
        let b = code.dim();
        let np = n.div_ceil(b) * b;
        let factor = if method.ldlq {
            progress(Event::Layer { layer: l, layers, step: "factorising" })?;
            Some(Factor::new(&pad_hessian(&hr, n, np), np, b, &p.ldlq, &format!("model.layers.{l} input {input:?}"))?)
        } else {
            None
        };
        for &lin in input.linears() {
            let name = lin.weight_name(l);
            progress(Event::Layer { layer: l, layers, step: lin.module() })?;
            let wt = model.layers()[l].linear(lin).weight()?;
            let (rows, cols) = wt.dims2().ctx(&name)?;
            let w = tensor_f32(&wt, &name)?;
            let meta = LinearMeta {
                rows,
                cols,
                code: code.spec(),
                method_id: code.method().id(),
                block: b,
                bits: code.bits(),
                group: method.group.unwrap_or(np).min(np),
                rot_in,
                rot_out: p.rotate.output().then(|| derive_seed(p.seed, &format!("{l}.out.{}", lin.module()))),
            };
            let ql = quantize_linear(&name, &w, meta, factor.as_ref(), code, &p.ldlq)?;
            let restored = ql.decode(code)?;
            stats.push(linear_stats(&name, &w, &restored, rows, cols, &h, factor.as_ref().map_or(0.0, |f| f.damp)));
            set_weight(model, l, &name, &restored, &ql.meta)?;
            qls.push(ql);
        }
    }
    Ok((qls, stats))
}

fn part_path(parts: &Path, l: usize) -> PathBuf {
    parts.join(format!("layer-{l:04}.safetensors"))
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
        return Err(QuantError::Calibration(format!("the calibration text {} is empty", p.calib_text.display())));
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
fn run(
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
    let mut xs: Vec<Tensor> = wins.iter().map(|w| model.embed(w)).collect::<std::result::Result<_, _>>()?;
    tm.tokenize = t.elapsed().as_secs_f64();

    let layers = cfg.num_layers;
    let mut resumed = 0;
    let mut codes = CodeCache::default();
    for l in 0..layers {
        let part = part_path(&parts, l);
        let run_layer = |model: &Model, xs: &[Tensor], hook: &mut dyn llvq_model::LinearHook| -> Result<Vec<Tensor>> {
            xs.iter().map(|x| Ok(model.layers()[l].forward(&cfg, x, &rope, None, hook)?)).collect()
        };
        if part.exists() {
            // A finished layer: its stored weights replace the full-precision ones.
            progress(Event::Layer { layer: l, layers, step: "resuming" })?;
            let t = Instant::now();
            if p.mode == CalibMode::Full {
                xs = run_layer(&model, &xs, &mut NoHook)?;
            }
            for ql in &format::read(&part)?.linears {
                let w = ql.decode(codes.get(&ql.meta.code)?)?;
                set_weight(&mut model, l, &ql.name, &w, &ql.meta)?;
            }
            if p.mode == CalibMode::Sequential {
                xs = run_layer(&model, &xs, &mut NoHook)?;
            }
            tm.propagation += t.elapsed().as_secs_f64();
            resumed += 1;
            progress(Event::LayerDone { layer: l, layers, resumed: true })?;
            continue;
        }

        progress(Event::Layer { layer: l, layers, step: "calibration" })?;
        let t = Instant::now();
        let mut hook = LayerHessians::new(l);
        let next = run_layer(&model, &xs, &mut hook)?;
        tm.calibration += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let (linears, stats) = quantize_layer(&mut model, l, &hook, method, p, progress)?;
        let header = Header { layer: Some(l), stats: Some(stats), ..Header::default() };
        format::write(&part, &FileContents { header, linears, plain: vec![] })?;
        tm.quantization += t.elapsed().as_secs_f64();

        let t = Instant::now();
        xs = match p.mode {
            CalibMode::Full => next,
            CalibMode::Sequential => {
                progress(Event::Layer { layer: l, layers, step: "propagating" })?;
                drop(next);
                run_layer(&model, &xs, &mut NoHook)?
            }
        };
        tm.propagation += t.elapsed().as_secs_f64();
        progress(Event::LayerDone { layer: l, layers, resumed: false })?;
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
    let mut bits = Bits::default();
    for ql in &linears {
        bits.add(&ql.meta.bits_stored());
    }
    let code = method.code.as_ref();
    let header = Header {
        config: Some(cfg.to_hf_json()),
        method: Some(method.name.clone()),
        code: Some(code.spec()),
        ldlq: Some(method.ldlq),
        rotate: Some(p.rotate),
        seed: Some(p.seed),
        mode: Some(p.mode.name().into()),
        calib: Some(serde_json::to_value(p.calib).expect("plain struct")),
        damp: Some(p.ldlq.damp),
        bits: Some(bits),
        bpw: Some(bits.bpw()),
        stats: Some(stats.clone()),
        ..Header::default()
    };
    format::write(out, &FileContents { header, linears, plain })?;
    std::fs::remove_dir_all(&parts).map_err(|e| QuantError::io(&parts, e))?;
    tm.write = t.elapsed().as_secs_f64();
    tm.total = t_start.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(out).map_err(|e| QuantError::io(out, e))?.len();
    Ok(Report {
        out: out.to_path_buf(),
        method: method.name.clone(),
        code: code.spec(),
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

/// Puts a restored `rows × cols` f64 weight into the model.
fn set_weight(model: &mut Model, layer: usize, name: &str, w: &[f64], meta: &LinearMeta) -> Result<()> {
    let lin = LinearName::ALL
        .into_iter()
        .find(|n| n.weight_name(layer) == name)
        .ok_or_else(|| QuantError::tensor(name, format!("not a linear of layer {layer}")))?;
    let v: Vec<f32> = w.iter().map(|&x| x as f32).collect();
    let t = Tensor::from_vec(v, (meta.rows, meta.cols), &Device::Cpu).ctx(name)?;
    Ok(model.layers_mut()[layer].set_weight(lin, t)?)
}

/// Loads an llvq file with every linear decoded to f32 (the reference path; the runtime's
/// compressed loader is `llvq_model::compressed::load`).
pub fn load_llvq(path: &Path) -> Result<(Model, Tokenizer, Header)> {
    Ok(llvq_model::compressed::load(path, &LoadOptions { dense: true, ..LoadOptions::default() })?)
}

/// Loads any model (an llvq file decoded to f32, a `.gguf` file or a Hugging Face directory).
pub fn load_any(path: &Path) -> Result<(Model, Tokenizer)> {
    Ok(llvq_model::compressed::load_any(path, &LoadOptions { dense: true, ..LoadOptions::default() })?)
}

