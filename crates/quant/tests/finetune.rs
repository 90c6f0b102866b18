//! Tuning input scales (§5.4) end to end on a tiny synthetic model: the differentiable twin
//! against the model's own forward pass, gradients against finite differences, the loaders
//! applying stored scales, and the loop (zero learning rate, improvement, resume, bad input).
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use llvq_model::candle_core::{DType, Device, Tensor, Var};
use llvq_model::config::{Arch, Config};
use llvq_model::testing::{random_weights, tiny_tokenizer};
use llvq_model::{LinearName, Model};
use llvq_quant::finetune::forward::{ScaleMap, Scales, Student};
use llvq_quant::finetune::objective::{self, Objective};
use llvq_quant::finetune::run::{checkpoint_path, model_with_scales};
use llvq_quant::finetune::{finetune, FinetuneParams, FtEvent};
use llvq_quant::format::{self, Bits, INPUT_SCALE};
use llvq_quant::{load_llvq, Rotate};
use safetensors::Dtype;

mod common;

/// A tiny model (HF directory), a calibration text and a quantized file of it.
fn setup(name: &str, method: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let (dir, model, calib) = common::setup(&format!("ft-{name}"));
    let q = dir.join("q.llvq");
    common::quantize(&model, &q, &common::params(method, &calib, Rotate::Both)).unwrap();
    (dir, model, calib, q)
}

fn params(model: &Path, calib: &Path) -> FinetuneParams {
    FinetuneParams {
        teacher: model.to_path_buf(),
        calib_text: calib.to_path_buf(),
        tokens: 32 * 12,
        ctx: 32,
        held_out: 2,
        lr: 0.02,
        eval_every: 2,
        patience: 100,
        ..FinetuneParams::default()
    }
}

fn go(_: FtEvent<'_>) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn ids() -> Vec<u32> {
    tiny_tokenizer()
        .encode("the leech lattice in the golay code, the shell theta")
        .unwrap()
}

fn logits(m: &Model) -> Vec<f32> {
    m.logits(&ids()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Random scales near 1 for every linear of the file.
fn random_scales(q: &Path, seed: u64) -> BTreeMap<String, Vec<f32>> {
    let c = format::read(q).unwrap();
    let mut x = seed;
    c.linears
        .iter()
        .map(|l| {
            let v = (0..l.meta.cols)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    0.8 + 0.4 * ((x >> 40) as f32 / (1u64 << 24) as f32)
                })
                .collect();
            (l.name.clone(), v)
        })
        .collect()
}

/// The student of a file (no scales) in `dtype`.
fn student(q: &Path, dtype: DType) -> (Student, Config) {
    let m = model_with_scales(q, &BTreeMap::new(), true).unwrap();
    let cfg = m.config().clone();
    (Student::new(&cfg, &m.to_weights().unwrap(), dtype).unwrap(), cfg)
}

/// The map's vectors from per-linear scales.
fn vectors(map: &ScaleMap, s: &BTreeMap<String, Vec<f32>>, dtype: DType) -> Vec<Tensor> {
    let mut out: Vec<Option<Tensor>> = vec![None; map.len()];
    for (l, row) in map.index.iter().enumerate() {
        for (k, name) in LinearName::ALL.into_iter().enumerate() {
            let v = &s[&name.weight_name(l)];
            out[row[k]].get_or_insert_with(|| {
                Tensor::from_slice(v, v.len(), &Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
            });
        }
    }
    out.into_iter().map(Option::unwrap).collect()
}

#[test]
fn training_forward_matches_the_model_with_and_without_scales() {
    let (dir, _, _, q) = setup("forward", "llvq-sg:m=12,gain=1");
    let (st, cfg) = student(&q, DType::F32);
    let map = ScaleMap::new(&cfg, false);
    for scales in [None, Some(random_scales(&q, 9))] {
        let s = scales.clone().unwrap_or_default();
        let m = model_with_scales(&q, &s, true).unwrap();
        let want = logits(&m);
        let s = scales.unwrap_or_else(|| {
            random_scales(&q, 0)
                .into_iter()
                .map(|(k, v)| (k, vec![1.0; v.len()]))
                .collect()
        });
        let v = vectors(&map, &s, DType::F32);
        let got: Vec<f32> = st
            .forward(&ids(), &map, &Scales::Fixed(&v))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let mag = want.iter().map(|a| a.abs()).fold(0f32, f32::max);
        assert!(err < 1e-4 * mag.max(1.0), "max |Δ logit| = {err} (logits up to {mag})");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gradients_match_finite_differences() {
    // In f64, for both objectives and tied or not: d loss / d s_i from autograd against the
    // central difference (loss(s + h e_i) − loss(s − h e_i)) / 2h.
    let (dir, model, _, q) = setup("grad", "e8p12");
    let (teacher, _) = llvq_model::load(&model).unwrap();
    let (st, cfg) = student(&q, DType::F64);
    let ids = ids();
    for (obj, tied) in [(Objective::Kl, false), (Objective::Ce, false), (Objective::Kl, true)] {
        let map = ScaleMap::new(&cfg, tied);
        let target = objective::target(obj, Some(&teacher), &ids, DType::F64).unwrap();
        let base: Vec<Vec<f64>> = vectors(&map, &random_scales(&q, 4), DType::F64)
            .iter()
            .map(|t| t.to_vec1().unwrap())
            .collect();
        let loss_at = |s: &[Vec<f64>]| -> f64 {
            let t: Vec<Tensor> = s
                .iter()
                .map(|v| Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap())
                .collect();
            objective::value(&objective::loss(&st.forward(&ids, &map, &Scales::Fixed(&t)).unwrap(), &target).unwrap())
                .unwrap()
        };
        let vars: Vec<Var> = base
            .iter()
            .map(|v| Var::from_slice(v, v.len(), &Device::Cpu).unwrap())
            .collect();
        let loss = objective::loss(&st.forward(&ids, &map, &Scales::Vars(&vars)).unwrap(), &target).unwrap();
        assert!((objective::value(&loss).unwrap() - loss_at(&base)).abs() < 1e-12);
        let grads = loss.backward().unwrap();
        // A few coordinates of vectors in both layers (q, o, down, the last one).
        let n = map.len();
        for (vi, i) in [(0, 0), (1, 3), (n / 2, 5), (n - 1, 7), (n - 2, 1)] {
            let g: Vec<f64> = grads.get(vars[vi].as_tensor()).unwrap().to_vec1().unwrap();
            let h = 1e-5;
            let (mut up, mut dn) = (base.clone(), base.clone());
            up[vi][i] += h;
            dn[vi][i] -= h;
            let fd = (loss_at(&up) - loss_at(&dn)) / (2.0 * h);
            let tol = 1e-6 + 1e-4 * fd.abs();
            assert!(
                (g[i] - fd).abs() < tol,
                "{obj:?} tied={tied} vector {vi}[{i}]: autograd {} vs finite difference {fd}",
                g[i]
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unit_scales_reproduce_the_untuned_model_bit_for_bit() {
    for method in ["llvq-sg:m=12,gain=1", "gptq"] {
        let (dir, _, _, q) = setup("ones", method);
        let ones: BTreeMap<String, Vec<f32>> = random_scales(&q, 1)
            .into_iter()
            .map(|(k, v)| (k, vec![1.0; v.len()]))
            .collect();
        for dense in [true, false] {
            let plain = llvq_model::compressed::load(
                &q,
                &llvq_model::compressed::LoadOptions {
                    dense,
                    ..Default::default()
                },
            )
            .unwrap()
            .0;
            let with = model_with_scales(&q, &ones, dense).unwrap();
            assert_eq!(logits(&plain), logits(&with), "{method} dense={dense}");
        }
        // Non-unit scales: the compressed runtime (scale, then rotate the input) agrees with
        // the dense decode (scales folded into the columns).
        let s = random_scales(&q, 2);
        let (a, b) = (
            logits(&model_with_scales(&q, &s, true).unwrap()),
            logits(&model_with_scales(&q, &s, false).unwrap()),
        );
        let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(err < 1e-4, "{method}: dense vs compressed {err}");
        assert_ne!(a, logits(&load_llvq(&q).unwrap().0), "the scales are applied");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn zero_learning_rate_leaves_outputs_unchanged() {
    let (dir, model, calib, q) = setup("lr0", "e8p12");
    let out = dir.join("t.llvq");
    let p = FinetuneParams {
        lr: 0.0,
        tokens: 32 * 3,
        ..params(&model, &calib)
    };
    let r = finetune(&q, &out, &p, false, &mut go).unwrap();
    assert_eq!(r.steps, 3);
    for dense in [true, false] {
        let opts = llvq_model::compressed::LoadOptions {
            dense,
            ..Default::default()
        };
        let a = llvq_model::compressed::load(&q, &opts).unwrap().0;
        let b = llvq_model::compressed::load(&out, &opts).unwrap().0;
        assert_eq!(logits(&a), logits(&b), "dense={dense}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tuning_lowers_the_objective_and_the_file_reproduces_it() {
    for method in ["llvq-sg:m=12,gain=1", "llvq-ss:m=13", "e8p12", "gptq"] {
        let (dir, model, calib, q) = setup("lower", method);
        let out = dir.join("t.llvq");
        let p = params(&model, &calib);
        let r = finetune(&q, &out, &p, false, &mut go).unwrap();
        assert!(
            r.held_out_after < r.held_out_before,
            "{method}: {} → {}",
            r.held_out_before,
            r.held_out_after
        );
        // Recomputed independently: the tuned file loaded by the ordinary (compressed) loader,
        // its logits against the teacher's on the held-out windows (the last two of the text).
        let (tuned, tok) = llvq_model::compressed::load_any(&out, &Default::default()).unwrap();
        let (teacher, _) = llvq_model::load(&model).unwrap();
        let text = std::fs::read_to_string(&calib).unwrap();
        let all = llvq_model::eval::tokenize_text(&tok, &text).unwrap();
        let n = all.len() / p.ctx;
        let mut kl = 0.0;
        for w in n - 2..n {
            let ids = &all[w * p.ctx..(w + 1) * p.ctx];
            let lp = llvq_model::candle_core::Tensor::to_vec2::<f32>(&teacher.log_probs(ids).unwrap()).unwrap();
            let lq = llvq_model::candle_core::Tensor::to_vec2::<f32>(&tuned.log_probs(ids).unwrap()).unwrap();
            let per: f64 = lp
                .iter()
                .zip(&lq)
                .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x.exp() * (x - y)) as f64).sum::<f64>())
                .sum();
            kl += per / p.ctx as f64 / 2.0;
        }
        assert!(
            (kl - r.held_out_after).abs() < 1e-3 * kl.max(1e-3),
            "{method}: file {kl} vs run {}",
            r.held_out_after
        );
        // The header and the bits: one f16 (the default storage) per column of every linear.
        let c = format::read(&out).unwrap();
        let t = c.header.tuned.as_ref().unwrap();
        assert_eq!((t.steps, t.tokens, t.objective.as_str()), (12, 12 * 32, "kl"));
        let cols: u64 = c.linears.iter().map(|l| l.meta.cols as u64).sum();
        assert_eq!(c.bits().input_scale, 16 * cols);
        assert_eq!(c.header.bits, Some(c.bits()));
        let untuned: Bits = format::read(&q).unwrap().bits();
        assert_eq!(c.bits().total(), untuned.total() + 16 * cols);
        assert!(!checkpoint_path(&out).exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn interrupted_run_resumes_to_the_same_scales() {
    let (dir, model, calib, q) = setup("resume", "llvq-sg:m=12,gain=1");
    let p = params(&model, &calib);
    let whole = dir.join("whole.llvq");
    let a = finetune(&q, &whole, &p, false, &mut go).unwrap();
    let cut = dir.join("cut.llvq");
    let mut stop = |e: FtEvent<'_>| match e {
        FtEvent::Step { step: 5, .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    let r = finetune(&q, &cut, &p, false, &mut stop).unwrap();
    assert!(r.interrupted && r.steps == 5 && checkpoint_path(&cut).exists());
    // Ctrl-C keeps the best scales so far: the interrupted file is a working tuned file.
    let c = format::read(&cut).unwrap();
    assert!(c.header.tuned.as_ref().unwrap().interrupted && c.input_scales(&cut).unwrap().len() == 14);
    // Without --resume the checkpoint is refused; with other parameters too.
    let e = finetune(&q, &cut, &p, false, &mut go).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    let other = FinetuneParams { lr: 0.01, ..p.clone() };
    assert!(finetune(&q, &cut, &other, true, &mut go)
        .unwrap_err()
        .to_string()
        .contains("other parameters"));
    // Resumed in place (the interrupted output as the input, as `quantize --finetune-tokens`
    // does): its codes match the checkpoint, and its interrupted scales are not counted twice.
    let b = finetune(&cut, &cut, &p, true, &mut go).unwrap();
    assert_eq!(b.resumed_at, Some(5));
    let (ca, cb) = (format::read(&whole).unwrap(), format::read(&cut).unwrap());
    assert_eq!(ca.input_scales(&whole).unwrap(), cb.input_scales(&cut).unwrap());
    let (ta, tb) = (ca.header.tuned.unwrap(), cb.header.tuned.unwrap());
    assert_eq!(
        (ta.steps, ta.best_step, ta.held_out_loss, ta.held_out_before),
        (tb.steps, tb.best_step, tb.held_out_loss, tb.held_out_before)
    );
    assert_eq!((ta.tokens, tb.tokens), (12 * 32, 12 * 32));
    assert_eq!(a.evals, b.evals);
    assert!(!checkpoint_path(&cut).exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_inputs_are_clear_errors_without_output() {
    let (dir, model, calib, q) = setup("bad", "e8p12");
    let p = params(&model, &calib);
    let out = dir.join("out.llvq");
    // Not an llvq file.
    let fake = dir.join("fake.llvq");
    std::fs::write(&fake, "not a model").unwrap();
    let e = finetune(&fake, &out, &p, false, &mut go).unwrap_err().to_string();
    assert!(e.contains("fake.llvq") && e.contains("not an llvq file"), "{e}");
    let e = finetune(&calib, &out, &p, false, &mut go).unwrap_err().to_string();
    assert!(e.contains("calib.txt"), "{e}");
    // An empty calibration text.
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    let e = finetune(
        &q,
        &out,
        &FinetuneParams {
            calib_text: empty,
            ..p.clone()
        },
        false,
        &mut go,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("empty.txt") && e.contains("empty"), "{e}");
    // A teacher of another shape.
    let other = dir.join("other");
    let cfg = Config {
        hidden_size: 24,
        num_heads: 2,
        num_kv_heads: 1,
        ..common::config(Arch::Llama)
    };
    llvq_model::export::export_hf(&cfg, &tiny_tokenizer(), &random_weights(&cfg, 3), &other).unwrap();
    let e = finetune(
        &q,
        &out,
        &FinetuneParams {
            teacher: other,
            ..p.clone()
        },
        false,
        &mut go,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("teacher"), "{e}");
    assert!(!out.exists() && !checkpoint_path(&out).exists(), "no partial output");
    // An input scale tensor of the wrong width is an error naming the file and tensor.
    let mut c = format::read(&q).unwrap();
    let name = c.linears[0].name.clone();
    c.plain.push(format::Plain::from_f32(
        &format!("{name}{INPUT_SCALE}"),
        &[3],
        &[1.0; 3],
        false,
    ));
    let badf = dir.join("badscale.llvq");
    format::write(&badf, &c).unwrap();
    let e = load_llvq(&badf).unwrap_err().to_string();
    assert!(e.contains("badscale.llvq") && e.contains(INPUT_SCALE), "{e}");
    // An already tuned file is tuned further from its scales; the tokens add up.
    let t1 = dir.join("t1.llvq");
    let r1 = finetune(&q, &t1, &p, false, &mut go).unwrap();
    let r2 = finetune(
        &t1,
        &t1,
        &FinetuneParams {
            tokens: 32 * 2,
            ..p.clone()
        },
        false,
        &mut go,
    )
    .unwrap();
    assert!(
        (r2.held_out_before - r1.held_out_after).abs() < 1e-6,
        "{} vs {}",
        r2.held_out_before,
        r1.held_out_after
    );
    assert!(r2.held_out_after <= r2.held_out_before);
    assert_eq!(format::read(&t1).unwrap().header.tuned.unwrap().tokens, 32 * 14);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tied_scales_are_stored_once_per_input_in_the_chosen_precision() {
    // Tied scales: q/k/v and gate/up share a vector, so the file stores it for q and gate only
    // and the reader lends it to k, v and up. f16 storage halves the bits; f32 keeps them.
    let (dir, model, calib, q) = setup("tied", "e8p12");
    for f16 in [true, false] {
        let out = dir.join(format!("t-{f16}.llvq"));
        let p = FinetuneParams {
            tied: true,
            f16,
            tokens: 32 * 4,
            ..params(&model, &calib)
        };
        let r = finetune(&q, &out, &p, false, &mut go).unwrap();
        let c = format::read(&out).unwrap();
        let stored: Vec<&format::Plain> = c.plain.iter().filter(|t| t.name.ends_with(INPUT_SCALE)).collect();
        let layers = c.linears.len() / 7;
        assert_eq!(stored.len(), 4 * layers, "q, o, gate and down of each layer");
        let dtype = if f16 { Dtype::F16 } else { Dtype::F32 };
        assert!(stored.iter().all(|t| t.dtype == dtype), "f16={f16}");
        let scales = c.input_scales(&out).unwrap();
        assert_eq!(scales.len(), 7 * layers);
        let mut stored_cols = 0;
        for l in 0..layers {
            let get = |n: LinearName| &scales[&n.weight_name(l)];
            assert_eq!(get(LinearName::K), get(LinearName::Q));
            assert_eq!(get(LinearName::V), get(LinearName::Q));
            assert_eq!(get(LinearName::Up), get(LinearName::Gate));
            assert!(get(LinearName::Q).iter().any(|&x| x != 1.0), "the scales were tuned");
            for n in [LinearName::Q, LinearName::O, LinearName::Gate, LinearName::Down] {
                stored_cols += get(n).len() as u64;
            }
        }
        assert_eq!(c.bits().input_scale, if f16 { 16 } else { 32 } * stored_cols);
        // The file reproduces the kept held-out loss: tuning it again starts from that loss.
        let again = dir.join(format!("again-{f16}.llvq"));
        let r2 = finetune(
            &out,
            &again,
            &FinetuneParams {
                tokens: 32,
                ..p.clone()
            },
            false,
            &mut go,
        )
        .unwrap();
        assert!(
            (r2.held_out_before - r.held_out_after).abs() < 1e-6,
            "f16={f16}: {} vs {}",
            r2.held_out_before,
            r.held_out_after
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
