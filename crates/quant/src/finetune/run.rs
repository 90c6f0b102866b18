//! The tuning loop: windows of calibration text, one Adam step per window, a held-out
//! evaluation every few steps (the best scales are kept, and the run stops early when the
//! held-out loss has not improved for `patience` evaluations), checkpoints for `--resume`, and
//! the output file (temporary name, then rename).
//!
//! Resuming: the checkpoint `OUT.finetune` holds the scales, Adam's moments, the best scales
//! and the step; every step is deterministic, so a resumed run ends with the same scales as an
//! uninterrupted one.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use llvq_model::candle_core::{DType, Device, Tensor, Var};
use llvq_model::compressed::{load_contents, LoadOptions, Tuned};
use llvq_model::{Config, LinearName, Model};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::adam::{lr_at, Adam};
use super::forward::{ScaleMap, Scales, Student};
use super::objective::{self, Objective, Target};
use crate::error::{CandleContext, QuantError, Result};
use crate::format::{self, Bits, FileContents};

/// Everything that determines the tuned scales.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneParams {
    /// The full-precision model (teacher of the `kl` objective; its shapes must match the file).
    pub teacher: PathBuf,
    pub calib_text: PathBuf,
    /// Training tokens (steps = ⌈tokens / ctx⌉, one window per step).
    pub tokens: usize,
    /// Tokens per window.
    pub ctx: usize,
    /// Windows held out (the last ones of the text) for early stopping.
    pub held_out: usize,
    pub objective: Objective,
    /// Adam peak learning rate ([`lr_at`]: warmup then cosine to a tenth).
    pub lr: f64,
    /// One scale vector per shared input (q/k/v, gate/up) instead of one per linear; the file
    /// then stores it once per input.
    pub tied: bool,
    /// Store the scales in f16 (16 instead of 32 bits per column). The held-out loss that picks
    /// the kept scales, and the one reported, are computed on the f16-rounded scales, so the
    /// file reproduces the reported loss.
    #[serde(default)]
    pub f16: bool,
    /// Steps between held-out evaluations (0: about 8 evaluations per run).
    pub eval_every: usize,
    /// Evaluations without improvement before stopping.
    pub patience: usize,
}

impl Default for FinetuneParams {
    fn default() -> Self {
        FinetuneParams {
            teacher: PathBuf::new(),
            calib_text: PathBuf::new(),
            tokens: 16_384,
            ctx: 256,
            held_out: 2,
            objective: Objective::Kl,
            lr: 5e-3,
            tied: false,
            f16: true,
            eval_every: 0,
            patience: 3,
        }
    }
}

/// Progress of a run; the callback returns [`ControlFlow::Break`] to stop after the current
/// step (the best scales so far are written, and a checkpoint for `resume`).
pub enum FtEvent<'a> {
    Phase(&'a str),
    /// Step `step` (1-based) of `steps` finished with training loss `loss`.
    Step {
        step: u64,
        steps: u64,
        loss: f64,
        tokens_per_s: f64,
    },
    /// Held-out loss after `step` steps, and the best so far.
    Eval {
        step: u64,
        held_out: f64,
        best: f64,
    },
}

/// What a run reports.
#[derive(Clone, Debug, Serialize)]
pub struct FinetuneReport {
    pub out: PathBuf,
    pub objective: Objective,
    pub steps: u64,
    pub steps_planned: u64,
    pub best_step: u64,
    pub tokens: u64,
    pub held_out_before: f64,
    pub held_out_after: f64,
    /// Training throughput (tokens per second of the steps, teacher included).
    pub tokens_per_s: f64,
    pub seconds: f64,
    /// Bits of the quantized linears including the stored input scales.
    pub linears: Bits,
    pub resumed_at: Option<u64>,
    pub interrupted: bool,
    pub early_stopped: bool,
    /// (step, held-out loss) of every evaluation.
    pub evals: Vec<(u64, f64)>,
}

/// The state a checkpoint holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct State {
    params: FinetuneParams,
    /// Hash of the input's code streams (unchanged by tuning), so a checkpoint is not applied
    /// to another file; an interrupted output tuned in place still matches.
    input_codes: u64,
    step: u64,
    best_step: u64,
    best_loss: f64,
    before: f64,
    bad_evals: usize,
    evals: Vec<(u64, f64)>,
    seconds: f64,
    /// Tokens and seconds of earlier runs that tuned the input (before this run started).
    prior_tokens: u64,
    prior_seconds: f64,
    #[serde(skip)]
    scales: Vec<Vec<f32>>,
    #[serde(skip)]
    best: Vec<Vec<f32>>,
    #[serde(skip)]
    adam: Option<Adam>,
}

const CKPT_KEY: &str = "llvq_finetune";

/// Path of the checkpoint of a run writing `out`.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    format::with_suffix(out, ".finetune")
}

/// Tunes the input scales of the llvq file `input` and writes the tuned file to `out` (which
/// may be `input`). A file already tuned is tuned further, starting from its scales (its
/// `tuned.tokens` and `seconds` accumulate).
pub fn finetune(
    input: &Path,
    out: &Path,
    p: &FinetuneParams,
    resume: bool,
    progress: &mut dyn FnMut(FtEvent<'_>) -> ControlFlow<()>,
) -> Result<FinetuneReport> {
    let t0 = Instant::now();
    check_params(p)?;
    if !format::is_llvq_file(input) {
        return Err(QuantError::format(
            input,
            "not an llvq file (finetune tunes files written by `llvq quantize`)",
        ));
    }
    let ckpt = checkpoint_path(out);
    if ckpt.exists() && !resume {
        return Err(QuantError::Resume(format!(
            "{} exists (an interrupted run): pass --resume to continue it, or remove it",
            ckpt.display()
        )));
    }
    let _ = progress(FtEvent::Phase("loading"));
    let mut c = format::read(input)?;
    let input_codes = {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        for l in &c.linears {
            (&l.name, &l.codes, &l.scales).hash(&mut h);
        }
        h.finish()
    };
    let stored = c.input_scales(input)?;
    let prior = c.header.tuned.clone();
    let mut base = c.clone();
    base.set_input_scales(&BTreeMap::new(), false, false);
    let (model, tok, _) = load_contents(
        input,
        base,
        &LoadOptions {
            dense: true,
            ..LoadOptions::default()
        },
    )?;
    let cfg = model.config().clone();
    let student = Student::new(&cfg, &model.to_weights()?, DType::F32)?;
    drop(model);
    let teacher = match p.objective {
        Objective::Kl => {
            let (t, _) = crate::load_any(&p.teacher)?;
            check_same_shapes(&cfg, t.config(), &p.teacher)?;
            Some(t)
        }
        Objective::Ce => None,
    };
    let text = std::fs::read_to_string(&p.calib_text).map_err(|e| QuantError::io(&p.calib_text, e))?;
    let (train, held) = split_windows(&tok, &text, p)?;

    let map = ScaleMap::new(&cfg, p.tied);
    let steps = p.tokens.div_ceil(p.ctx).max(1) as u64;
    let eval_every = if p.eval_every > 0 {
        p.eval_every as u64
    } else {
        (steps / 8).max(1)
    };
    let _ = progress(FtEvent::Phase("teacher on held-out windows"));
    let held_targets: Vec<Target> = held
        .iter()
        .map(|ids| objective::target(p.objective, teacher.as_ref(), ids, student.dtype()))
        .collect::<Result<_>>()?;
    let held_out_loss = |s: &[Vec<f32>]| -> Result<f64> {
        let fixed = fixed_scales(&stored_precision(s, p.f16), student.dtype())?;
        let mut sum = 0.0;
        for (ids, t) in held.iter().zip(&held_targets) {
            sum += objective::value(&objective::loss(
                &student.forward(ids, &map, &Scales::Fixed(&fixed))?,
                t,
            )?)?;
        }
        Ok(sum / held.len() as f64)
    };

    let mut st = if resume && ckpt.exists() {
        let st = read_checkpoint(&ckpt, &map)?;
        if st.params != *p || st.input_codes != input_codes {
            return Err(QuantError::Resume(format!(
                "{} was written for other parameters or another input file; remove it to start over",
                ckpt.display()
            )));
        }
        st
    } else {
        let scales = initial_scales(&map, &stored);
        let _ = progress(FtEvent::Phase("held-out loss before tuning"));
        let before = held_out_loss(&scales)?;
        State {
            params: p.clone(),
            input_codes,
            step: 0,
            best_step: 0,
            best_loss: before,
            before,
            bad_evals: 0,
            evals: vec![(0, before)],
            seconds: 0.0,
            prior_tokens: prior.as_ref().map_or(0, |t| t.tokens),
            prior_seconds: prior.as_ref().map_or(0.0, |t| t.seconds),
            best: scales.clone(),
            scales,
            adam: Some(Adam::new(&map.lens)),
        }
    };
    let resumed_at = (st.step > 0).then_some(st.step);
    let seconds_before = st.seconds;
    let mut adam = st.adam.take().unwrap_or_else(|| Adam::new(&map.lens));
    let mut interrupted = false;
    let mut early_stopped = false;
    let t_steps = Instant::now();
    let mut trained = 0usize;
    let _ = progress(FtEvent::Eval {
        step: st.step,
        held_out: st.best_loss,
        best: st.best_loss,
    });
    while st.step < steps {
        if st.bad_evals >= p.patience {
            early_stopped = true;
            break;
        }
        let ids = &train[window_of(st.step, steps, train.len())];
        let target = objective::target(p.objective, teacher.as_ref(), ids, student.dtype())?;
        let vars: Vec<Var> = fixed_scales(&st.scales, student.dtype())?
            .into_iter()
            .map(|t| Var::from_tensor(&t).ctx("input scales"))
            .collect::<Result<_>>()?;
        let loss = objective::loss(&student.forward(ids, &map, &Scales::Vars(&vars))?, &target)?;
        let lv = objective::value(&loss)?;
        if !lv.is_finite() {
            return Err(QuantError::Calibration(format!(
                "the training loss is {lv} at step {}",
                st.step + 1
            )));
        }
        let grads = loss.backward().ctx("finetune backward")?;
        let g: Vec<Vec<f64>> = vars
            .iter()
            .map(|v| match grads.get(v.as_tensor()) {
                Some(g) => g.to_dtype(DType::F64).ctx("gradient")?.to_vec1::<f64>().ctx("gradient"),
                None => Ok(vec![0.0; v.as_tensor().elem_count()]),
            })
            .collect::<Result<_>>()?;
        adam.step(&mut st.scales, &g, lr_at(st.step, steps, p.lr));
        st.step += 1;
        trained += ids.len();
        let tps = trained as f64 / t_steps.elapsed().as_secs_f64().max(1e-9);
        let mut flow = progress(FtEvent::Step {
            step: st.step,
            steps,
            loss: lv,
            tokens_per_s: tps,
        });
        if st.step % eval_every == 0 || st.step == steps {
            let h = held_out_loss(&st.scales)?;
            st.evals.push((st.step, h));
            if h < st.best_loss {
                st.best_loss = h;
                st.best_step = st.step;
                st.best = stored_precision(&st.scales, p.f16);
                st.bad_evals = 0;
            } else {
                st.bad_evals += 1;
            }
            if progress(FtEvent::Eval {
                step: st.step,
                held_out: h,
                best: st.best_loss,
            })
            .is_break()
            {
                flow = ControlFlow::Break(());
            }
        }
        if flow.is_break() && st.step < steps {
            interrupted = true;
            break;
        }
    }
    let tokens_per_s = trained as f64 / t_steps.elapsed().as_secs_f64().max(1e-9);
    st.seconds = seconds_before + t0.elapsed().as_secs_f64();
    if interrupted {
        st.adam = Some(adam);
        write_checkpoint(&ckpt, &st)?;
    }

    // The output: the best scales, one vector per linear (tied linears get copies).
    let _ = progress(FtEvent::Phase("writing"));
    let mut per_linear = BTreeMap::new();
    for (l, row) in map.index.iter().enumerate() {
        for (k, name) in LinearName::ALL.into_iter().enumerate() {
            per_linear.insert(name.weight_name(l), st.best[row[k]].clone());
        }
    }
    c.set_input_scales(&per_linear, p.f16, p.tied);
    c.header.tuned = Some(Tuned {
        tokens: st.prior_tokens + st.step * p.ctx as u64,
        objective: p.objective.name().into(),
        lr: p.lr,
        schedule: "warmup 5%, cosine to 0.1".into(),
        steps: st.step,
        best_step: st.best_step,
        ctx: p.ctx,
        tied: p.tied,
        held_out_before: st.before,
        held_out_loss: st.best_loss,
        seconds: st.prior_seconds + st.seconds,
        interrupted,
    });
    let bits = c.bits();
    c.header.bits = Some(bits);
    c.header.bpw = Some(bits.bpw());
    format::write(out, &c)?;
    if !interrupted && ckpt.exists() {
        std::fs::remove_file(&ckpt).map_err(|e| QuantError::io(&ckpt, e))?;
    }
    Ok(FinetuneReport {
        out: out.to_path_buf(),
        objective: p.objective,
        steps: st.step,
        steps_planned: steps,
        best_step: st.best_step,
        tokens: st.step * p.ctx as u64,
        held_out_before: st.before,
        held_out_after: st.best_loss,
        tokens_per_s,
        seconds: st.seconds,
        linears: bits,
        resumed_at,
        interrupted,
        early_stopped,
        evals: st.evals,
    })
}

fn check_params(p: &FinetuneParams) -> Result<()> {
    let bad = |r: &str| Err(QuantError::Calibration(r.into()));
    if p.ctx < 2 {
        return bad("finetune windows need at least 2 tokens");
    }
    if p.held_out == 0 {
        return bad("finetune needs at least one held-out window");
    }
    if !(p.lr.is_finite() && p.lr >= 0.0) {
        return bad("the learning rate must be a finite non-negative number");
    }
    Ok(())
}

/// The teacher must be the model the file was quantized from: same shapes.
fn check_same_shapes(a: &Config, b: &Config, teacher: &Path) -> Result<()> {
    let key = |c: &Config| {
        (
            c.vocab_size,
            c.hidden_size,
            c.intermediate_size,
            c.num_layers,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim,
        )
    };
    if key(a) != key(b) {
        return Err(QuantError::Calibration(format!(
            "teacher {} has (vocab, hidden, mlp, layers, heads, kv heads, head dim) = {:?}, the file {:?}",
            teacher.display(),
            key(b),
            key(a)
        )));
    }
    Ok(())
}

/// Token windows.
type Windows = Vec<Vec<u32>>;

/// Non-overlapping windows of `p.ctx` tokens: (training, held out); the last `p.held_out`
/// windows of the text are held out.
fn split_windows(tok: &llvq_model::Tokenizer, text: &str, p: &FinetuneParams) -> Result<(Windows, Windows)> {
    if text.trim().is_empty() {
        return Err(QuantError::Calibration(format!(
            "the calibration text {} is empty",
            p.calib_text.display()
        )));
    }
    let ids = llvq_model::eval::tokenize_text(tok, text)?;
    let n = ids.len() / p.ctx;
    if n < p.held_out + 1 {
        return Err(QuantError::Calibration(format!(
            "the calibration text {} has {} tokens: {n} windows of {}, need {} (held out) + 1",
            p.calib_text.display(),
            ids.len(),
            p.ctx,
            p.held_out
        )));
    }
    let mut w: Vec<Vec<u32>> = ids.chunks_exact(p.ctx).map(<[u32]>::to_vec).collect();
    let held = w.split_off(n - p.held_out);
    Ok((w, held))
}

/// Training window of `step`: evenly spaced over the training windows, cycling when the run
/// has more steps than windows.
fn window_of(step: u64, steps: u64, n: usize) -> usize {
    let n = n as u64;
    if steps <= n {
        (step * n / steps) as usize
    } else {
        (step % n) as usize
    }
}

/// Scales to start from: the file's (each vector from the first linear that reads it) or 1.
fn initial_scales(map: &ScaleMap, stored: &BTreeMap<String, Vec<f32>>) -> Vec<Vec<f32>> {
    let mut s: Vec<Option<Vec<f32>>> = vec![None; map.len()];
    for (l, row) in map.index.iter().enumerate() {
        for (k, name) in LinearName::ALL.into_iter().enumerate() {
            if s[row[k]].is_none() {
                s[row[k]] = stored
                    .get(&name.weight_name(l))
                    .filter(|v| v.len() == map.lens[row[k]])
                    .cloned();
            }
        }
    }
    s.into_iter()
        .zip(&map.lens)
        .map(|(v, &n)| v.unwrap_or_else(|| vec![1.0; n]))
        .collect()
}

/// The scales as the file will hold them: rounded through f16 when `f16`.
fn stored_precision(s: &[Vec<f32>], f16: bool) -> Vec<Vec<f32>> {
    if !f16 {
        return s.to_vec();
    }
    s.iter()
        .map(|v| v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect())
        .collect()
}

fn fixed_scales(s: &[Vec<f32>], dtype: DType) -> Result<Vec<Tensor>> {
    s.iter()
        .map(|v| {
            Tensor::from_slice(v, v.len(), &Device::Cpu)
                .ctx("input scales")?
                .to_dtype(dtype)
                .ctx("input scales")
        })
        .collect()
}

fn write_checkpoint(path: &Path, st: &State) -> Result<()> {
    let meta = serde_json::to_string(st).expect("plain struct");
    let adam = st.adam.as_ref().expect("checkpoint with Adam state");
    let mut bufs: Vec<(String, Dtype, Vec<u8>, usize)> = Vec::new();
    for (i, ((s, b), (m, v))) in st
        .scales
        .iter()
        .zip(&st.best)
        .zip(adam.m.iter().zip(&adam.v))
        .enumerate()
    {
        let f32b = |x: &[f32]| x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let f64b = |x: &[f64]| x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        bufs.push((format!("scale.{i}"), Dtype::F32, f32b(s), s.len()));
        bufs.push((format!("best.{i}"), Dtype::F32, f32b(b), b.len()));
        bufs.push((format!("m.{i}"), Dtype::F64, f64b(m), m.len()));
        bufs.push((format!("v.{i}"), Dtype::F64, f64b(v), v.len()));
    }
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, d, b, len)| {
            Ok((
                n.clone(),
                TensorView::new(*d, vec![*len], b).map_err(|e| QuantError::tensor(n, e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    let info =
        std::collections::HashMap::from([(CKPT_KEY.to_string(), meta), ("adam_t".to_string(), adam.t.to_string())]);
    let tmp = format::with_suffix(path, ".tmp");
    safetensors::serialize_to_file(views, Some(info), &tmp).map_err(|e| QuantError::format(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| QuantError::io(path, e))
}

fn read_checkpoint(path: &Path, map: &ScaleMap) -> Result<State> {
    let bad = |r: String| QuantError::Resume(format!("{}: {r}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| QuantError::io(path, e))?;
    let (_, head) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta = head.metadata().as_ref().ok_or_else(|| bad("no metadata".into()))?;
    let mut s: State = serde_json::from_str(meta.get(CKPT_KEY).ok_or_else(|| bad("no state".into()))?)
        .map_err(|e| bad(e.to_string()))?;
    let t: u64 = meta
        .get("adam_t")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("no Adam step".into()))?;
    let get = |n: String, len: usize, d: Dtype| -> Result<Vec<u8>> {
        let v = st.tensor(&n).map_err(|e| bad(format!("{n}: {e}")))?;
        if v.dtype() != d || v.shape() != [len] {
            return Err(bad(format!(
                "{n} is {:?} {:?}, expected {d:?} [{len}]",
                v.dtype(),
                v.shape()
            )));
        }
        Ok(v.data().to_vec())
    };
    let f32v = |b: Vec<u8>| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<f32>>()
    };
    let f64v = |b: Vec<u8>| {
        b.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect::<Vec<f64>>()
    };
    let mut adam = Adam::new(&map.lens);
    adam.t = t;
    for (i, &n) in map.lens.iter().enumerate() {
        s.scales.push(f32v(get(format!("scale.{i}"), n, Dtype::F32)?));
        s.best.push(f32v(get(format!("best.{i}"), n, Dtype::F32)?));
        adam.m[i] = f64v(get(format!("m.{i}"), n, Dtype::F64)?);
        adam.v[i] = f64v(get(format!("v.{i}"), n, Dtype::F64)?);
    }
    s.adam = Some(adam);
    Ok(s)
}

/// The dense model of a tuned or untuned file with the given scales applied, for tests.
pub fn model_with_scales(input: &Path, scales: &BTreeMap<String, Vec<f32>>, dense: bool) -> Result<Model> {
    let mut c: FileContents = format::read(input)?;
    c.set_input_scales(scales, false, false);
    Ok(load_contents(
        input,
        c,
        &LoadOptions {
            dense,
            ..LoadOptions::default()
        },
    )?
    .0)
}
