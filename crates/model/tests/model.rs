//! One integration-test binary for llvq-model.
//!
//! Most tests run on tiny synthetic models written to GGUF and safetensors in a temp dir,
//! checked against a naive f64 reference forward written here. Tests that need the default
//! model (`data/SmolLM2-135M-Instruct.Q4_1.gguf`, from `llvq fetch-defaults`) print a note
//! and pass when it is absent.
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use llvq_model::config::{Arch, Config};
use llvq_model::eval::{perplexity, tokenize_text, PplParams};
use llvq_model::gguf::permute_qk;
use llvq_model::testing::{random_weights, tiny_config, tiny_vocab, tmpdir};
use llvq_model::weights::expected_tensors;
use llvq_model::*;
use std::path::{Path, PathBuf};

/// Write `w` (HF layout) as a llama.cpp-style GGUF: permuted Q/K rows, GGUF names.
fn write_gguf(path: &Path, cfg: &Config, w: &Weights) {
    let (tokens, merges, types) = tiny_vocab();
    let a = cfg.arch.model_type();
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (format!("{a}.block_count"), Value::U32(cfg.num_layers as u32)),
        (format!("{a}.context_length"), Value::U32(cfg.max_position as u32)),
        (format!("{a}.embedding_length"), Value::U32(cfg.hidden_size as u32)),
        (
            format!("{a}.feed_forward_length"),
            Value::U32(cfg.intermediate_size as u32),
        ),
        (format!("{a}.attention.head_count"), Value::U32(cfg.num_heads as u32)),
        (
            format!("{a}.attention.head_count_kv"),
            Value::U32(cfg.num_kv_heads as u32),
        ),
        (format!("{a}.attention.key_length"), Value::U32(cfg.head_dim as u32)),
        (format!("{a}.rope.freq_base"), Value::F32(cfg.rope_theta as f32)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_eps as f32),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
    ];
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    let mut qts = Vec::new();
    for (name, t) in &w.tensors {
        let mut t = t.clone();
        if cfg.arch == Arch::Llama && name.contains("q_proj.weight") {
            t = permute_qk(&t, cfg.num_heads).unwrap();
        } else if cfg.arch == Arch::Llama && name.contains("k_proj.weight") {
            t = permute_qk(&t, cfg.num_kv_heads).unwrap();
        }
        let g = llvq_model::gguf::gguf_name(name).unwrap();
        qts.push((g, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let mut f = std::fs::File::create(path).unwrap();
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qts.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &meta_refs, &t_refs).unwrap();
}

fn vec2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|x| x as f64).collect())
        .collect()
}

fn get(w: &Weights, name: &str) -> Vec<Vec<f64>> {
    let t = w.get(name).unwrap();
    if t.rank() == 1 {
        vec![t.to_vec1::<f32>().unwrap().into_iter().map(|x| x as f64).collect()]
    } else {
        vec2(t)
    }
}

fn matvec(m: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    m.iter().map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

fn rmsnorm(x: &[f64], g: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(g).map(|(v, g)| v * s * g).collect()
}

/// Naive f64 forward pass written from the HF modeling code, for one sequence.
fn reference_logits(cfg: &Config, w: &Weights, ids: &[u32]) -> Vec<Vec<f64>> {
    let (nh, nkv, d) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    let emb = get(w, "model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = ids.iter().map(|&i| emb[i as usize].clone()).collect();
    let rope = |v: &mut [f64], pos: usize| {
        let half = d / 2;
        let orig = v.to_vec();
        for i in 0..half {
            let f = 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / d as f64);
            let (s, c) = (pos as f64 * f).sin_cos();
            v[i] = orig[i] * c - orig[i + half] * s;
            v[i + half] = orig[i + half] * c + orig[i] * s;
        }
    };
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        let g = |s: &str| get(w, &format!("{p}.{s}"));
        let bias = |s: &str| if cfg.qkv_bias { g(s)[0].clone() } else { vec![0.0; 4096] };
        let (wq, wk, wv, wo) = (
            g("self_attn.q_proj.weight"),
            g("self_attn.k_proj.weight"),
            g("self_attn.v_proj.weight"),
            g("self_attn.o_proj.weight"),
        );
        let (bq, bk, bv) = (
            bias("self_attn.q_proj.bias"),
            bias("self_attn.k_proj.bias"),
            bias("self_attn.v_proj.bias"),
        );
        let mut qs = vec![];
        let mut ks = vec![];
        let mut vs = vec![];
        for (pos, x) in xs.iter().enumerate() {
            let h = rmsnorm(x, &g("input_layernorm.weight")[0], cfg.rms_eps);
            let add = |a: Vec<f64>, b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f64>>();
            let mut q = add(matvec(&wq, &h), &bq);
            let mut k = add(matvec(&wk, &h), &bk);
            let v = add(matvec(&wv, &h), &bv);
            for hh in 0..nh {
                let s = &mut q[hh * d..(hh + 1) * d];
                if cfg.qk_norm {
                    let n = rmsnorm(s, &g("self_attn.q_norm.weight")[0], cfg.rms_eps);
                    s.copy_from_slice(&n);
                }
                rope(s, pos);
            }
            for hh in 0..nkv {
                let s = &mut k[hh * d..(hh + 1) * d];
                if cfg.qk_norm {
                    let n = rmsnorm(s, &g("self_attn.k_norm.weight")[0], cfg.rms_eps);
                    s.copy_from_slice(&n);
                }
                rope(s, pos);
            }
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        for i in 0..xs.len() {
            let mut out = vec![0.0; nh * d];
            for hh in 0..nh {
                let kh = hh / (nh / nkv);
                let q = &qs[i][hh * d..(hh + 1) * d];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        q.iter()
                            .zip(&ks[j][kh * d..(kh + 1) * d])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    for t in 0..d {
                        out[hh * d + t] += ej / z * vs[j][kh * d + t];
                    }
                }
            }
            let o = matvec(&wo, &out);
            for (x, o) in xs[i].iter_mut().zip(o) {
                *x += o;
            }
            let h = rmsnorm(&xs[i], &g("post_attention_layernorm.weight")[0], cfg.rms_eps);
            let gt = matvec(&g("mlp.gate_proj.weight"), &h);
            let up = matvec(&g("mlp.up_proj.weight"), &h);
            let a: Vec<f64> = gt.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let dn = matvec(&g("mlp.down_proj.weight"), &a);
            for (x, o) in xs[i].iter_mut().zip(dn) {
                *x += o;
            }
        }
    }
    let head = if cfg.tie_embeddings {
        emb.clone()
    } else {
        get(w, "lm_head.weight")
    };
    let norm = get(w, "model.norm.weight")[0].clone();
    xs.iter()
        .map(|x| matvec(&head, &rmsnorm(x, &norm, cfg.rms_eps)))
        .collect()
}

fn max_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(r, s)| r.iter().zip(s).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f64::max)
}

const IDS: [u32; 11] = [5, 70, 261, 3, 99, 258, 200, 17, 17, 44, 1];

#[test]
fn forward_matches_naive_reference_for_each_arch() {
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let cfg = tiny_config(arch);
        let w = random_weights(&cfg, 7);
        let reference = reference_logits(&cfg, &w, &IDS);
        let model = Model::from_weights(cfg.clone(), w).unwrap();
        let got = vec2(&model.logits(&IDS).unwrap());
        let diff = max_abs_diff(&got, &reference);
        assert!(diff < 1e-4, "{arch:?}: max |logit diff| {diff}");
    }
}

#[test]
fn kv_cache_decoding_matches_full_forward() {
    let cfg = tiny_config(Arch::Qwen3);
    let model = Model::from_weights(cfg.clone(), random_weights(&cfg, 3)).unwrap();
    let full = vec2(&model.logits(&IDS).unwrap());
    let mut cache = KvCache::new(cfg.num_layers);
    let mut rows = vec2(&model.forward(&IDS[..4], Some(&mut cache), &mut NoHook).unwrap());
    for &id in &IDS[4..] {
        rows.extend(vec2(&model.forward(&[id], Some(&mut cache), &mut NoHook).unwrap()));
    }
    assert_eq!(cache.len(), IDS.len());
    assert!(max_abs_diff(&full, &rows) < 1e-4);
}

#[test]
fn gguf_and_exported_safetensors_agree_with_hf_layout() {
    let dir = tmpdir("gguf-export");
    let cfg = tiny_config(Arch::Llama);
    let w = random_weights(&cfg, 11);
    let direct = vec2(
        &Model::from_weights(cfg.clone(), w.clone())
            .unwrap()
            .logits(&IDS)
            .unwrap(),
    );
    let gguf = dir.join("tiny.gguf");
    write_gguf(&gguf, &cfg, &w);

    let (cfg2, tok, w2) = load_parts(&gguf).unwrap();
    assert_eq!(cfg2.num_kv_heads, 2);
    assert!(cfg2.tie_embeddings);
    // Q/K rows come back in HF order.
    for l in 0..cfg.num_layers {
        for n in [LinearName::Q, LinearName::K] {
            let name = n.weight_name(l);
            assert_eq!(get(&w, &name), get(&w2, &name), "{name}");
        }
    }
    let (m_gguf, _) = load(&gguf).unwrap();
    let from_gguf = vec2(&m_gguf.logits(&IDS).unwrap());
    assert!(max_abs_diff(&direct, &from_gguf) < 1e-5);

    let out = dir.join("hf");
    export::export_hf(&cfg2, &tok, &w2, &out).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "tokenizer_config.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let (m_hf, tok_hf) = load(&out).unwrap();
    assert_eq!(m_hf.config(), &cfg2);
    let from_hf = vec2(&m_hf.logits(&IDS).unwrap());
    assert!(max_abs_diff(&from_gguf, &from_hf) == 0.0);
    assert_eq!(
        tok_hf.encode("the thin inn").unwrap(),
        tok.encode("the thin inn").unwrap()
    );
    // Exporting over an existing directory is refused.
    assert!(export::export_hf(&cfg2, &tok, &w2, &out).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_tokenizer_applies_merges_digits_and_specials() {
    let dir = tmpdir("tok");
    let cfg = tiny_config(Arch::Llama);
    let gguf = dir.join("tiny.gguf");
    write_gguf(&gguf, &cfg, &random_weights(&cfg, 1));
    let (_, tok, _) = load_parts(&gguf).unwrap();
    let byte = |b: u8| b as u32 + 1;
    // "the" + " the" merge; digits are split one by one.
    assert_eq!(tok.encode("the the").unwrap(), vec![258, 259]);
    assert_eq!(
        tok.encode(" in 42").unwrap(),
        vec![261, byte(b' '), byte(b'4'), byte(b'2')]
    );
    assert_eq!(tok.encode("x<|endoftext|>").unwrap(), vec![byte(b'x'), 0]);
    assert_eq!(tok.decode(&tok.encode("é thin\n").unwrap()).unwrap(), "é thin\n");
    // CRLF and LF texts give the same evaluation tokens.
    assert_eq!(
        tokenize_text(&tok, "a\r\nb\r\n").unwrap(),
        tokenize_text(&tok, "a\nb\n").unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[derive(Default)]
struct Record(Vec<(usize, LinearInput, Vec<usize>)>, Option<Tensor>);

impl LinearHook for Record {
    fn observe(&mut self, layer: usize, input: LinearInput, x: &Tensor) -> Result<()> {
        if layer == 1 && input == LinearInput::Down {
            self.1 = Some(x.clone());
        }
        self.0.push((layer, input, x.dims().to_vec()));
        Ok(())
    }
}

#[test]
fn hook_sees_every_linear_input_and_weights_can_be_replaced() {
    let cfg = tiny_config(Arch::Llama);
    let mut model = Model::from_weights(cfg.clone(), random_weights(&cfg, 5)).unwrap();
    let mut rec = Record::default();
    let before = vec2(&model.forward(&IDS, None, &mut rec).unwrap());
    let t = IDS.len();
    let expected: Vec<(usize, LinearInput, Vec<usize>)> = (0..2)
        .flat_map(|l| {
            [
                (l, LinearInput::Qkv, vec![t, 32]),
                (l, LinearInput::O, vec![t, 32]),
                (l, LinearInput::GateUp, vec![t, 32]),
                (l, LinearInput::Down, vec![t, 48]),
            ]
        })
        .collect();
    assert_eq!(rec.0, expected);

    // Zeroing the last down projection removes its contribution: check against running the
    // layers by hand and subtracting what the hook saw.
    let down = model.layers()[1].linear(LinearName::Down).weight().unwrap();
    let contrib = rec.1.unwrap().matmul(&down.t().unwrap()).unwrap();
    model.layers_mut()[1]
        .set_weight(LinearName::Down, down.zeros_like().unwrap())
        .unwrap();
    let mut x = model.embed(&IDS).unwrap();
    let rope = model.rope(0, t).unwrap();
    for layer in model.layers() {
        x = layer.forward(&cfg, &x, &rope, None, &mut NoHook).unwrap();
    }
    let restored = vec2(&model.head(&(x + contrib).unwrap()).unwrap());
    assert!(max_abs_diff(&before, &restored) < 1e-4);

    // Shape and finiteness are checked, and the error names the tensor.
    let bad = model.layers_mut()[0].set_weight(
        LinearName::Q,
        Tensor::zeros((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("model.layers.0.self_attn.q_proj.weight"));
    let nan = Tensor::full(f32::NAN, (32, 32), &Device::Cpu).unwrap();
    let bad = model.layers_mut()[0].set_weight(LinearName::Q, nan);
    assert!(matches!(bad, Err(ModelError::NonFinite { .. })));
    // to_weights round-trips the modified model.
    let w = model.to_weights().unwrap();
    assert_eq!(w.tensors.len(), expected_tensors(&cfg).len());
}

#[test]
fn perplexity_windows_fingerprint_and_nll() {
    let cfg = tiny_config(Arch::Llama);
    let w = random_weights(&cfg, 9);
    let model = Model::from_weights(cfg.clone(), w.clone()).unwrap();
    let ids: Vec<u32> = (0..50).map(|i| (i * 37 % 262) as u32).collect();
    let p = PplParams {
        ctx: 8,
        max_windows: None,
    };
    let r = perplexity(&model, &ids, &p, &mut |_, _| {}).unwrap();
    assert_eq!((r.windows, r.tokens_scored), (6, 42));
    // Mean NLL from the naive reference.
    let mut sum = 0.0;
    for win in ids.chunks_exact(8).take(6) {
        let lg = reference_logits(&cfg, &w, win);
        for i in 0..7 {
            let m = lg[i].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + lg[i].iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            sum += lse - lg[i][win[i + 1] as usize];
        }
    }
    assert!((r.mean_nll - sum / 42.0).abs() < 1e-5);
    assert!((r.ppl - r.mean_nll.exp()).abs() < 1e-9);
    let r2 = perplexity(
        &model,
        &ids,
        &PplParams {
            ctx: 8,
            max_windows: Some(2),
        },
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!((r2.windows, r2.tokens_scored), (2, 14));
    assert_ne!(r.fingerprint, r2.fingerprint);
    let err = perplexity(&model, &ids[..5], &p, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("fewer than one window"));
}

/// Issue 16: a header's layer count is bounded by the tensors present before anything is
/// allocated per layer (4·10⁹ layers used to allocate until killed), and a count below the
/// tensors present is an error rather than a silently truncated model.
#[test]
fn layer_counts_are_bounded_by_the_tensors_present() {
    let dir = tmpdir("layer-counts");
    let cfg = tiny_config(Arch::Llama);
    let w = random_weights(&cfg, 4);
    for (layers, says) in [(4_000_000_000usize, "layers need at least"), (1, "does not use")] {
        let g = dir.join(format!("layers{layers}.gguf"));
        write_gguf(
            &g,
            &Config {
                num_layers: layers,
                ..cfg.clone()
            },
            &w,
        );
        let t = std::time::Instant::now();
        let e = load(&g).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains(&format!("layers{layers}.gguf")), "{e}");
        assert!(
            t.elapsed().as_secs_f64() < 5.0,
            "{layers} layers took {:?}",
            t.elapsed()
        );
    }
    // The true count loads.
    let g = dir.join("layers2.gguf");
    write_gguf(&g, &cfg, &w);
    assert!(load(&g).is_ok());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_inputs_give_errors_that_name_the_file_or_tensor() {
    let dir = tmpdir("bad");
    let cfg = tiny_config(Arch::Llama);
    let w = random_weights(&cfg, 2);
    let gguf = dir.join("tiny.gguf");
    write_gguf(&gguf, &cfg, &w);

    // Missing file.
    let e = load(&dir.join("nope.gguf")).unwrap_err().to_string();
    assert!(e.contains("nope.gguf"), "{e}");
    // Truncated GGUF: header cut, and data cut.
    let bytes = std::fs::read(&gguf).unwrap();
    for cut in [100, bytes.len() - 1000] {
        let p = dir.join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains(&format!("cut{cut}.gguf")), "{e}");
    }
    // Empty text.
    let (model, tok) = load(&gguf).unwrap();
    assert!(tokenize_text(&tok, " \r\n").unwrap_err().to_string().contains("empty"));
    assert!(model.logits(&[]).is_err());
    assert!(model.logits(&[9999]).unwrap_err().to_string().contains("9999"));

    // HF directory: wrong shape, NaN, missing tensor, unknown architecture, truncated file.
    let (_, tok, _) = load_parts(&gguf).unwrap();
    let write_dir = |name: &str, w: &Weights| {
        let out = dir.join(name);
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("config.json"), cfg.to_hf_json().to_string()).unwrap();
        std::fs::write(out.join("tokenizer.json"), tok.json()).unwrap();
        w.save_safetensors(&out.join("model.safetensors")).unwrap();
        out
    };
    let name = "model.layers.1.mlp.up_proj.weight";
    let mut ws = w.clone();
    ws.insert(
        name,
        Tensor::zeros((5, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let e = load(&write_dir("shape", &ws)).unwrap_err().to_string();
    assert!(e.contains(name) && e.contains("[5, 32]"), "{e}");

    let mut wn = w.clone();
    let mut v = wn.get(name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[17] = f32::NAN;
    wn.insert(name, Tensor::from_vec(v, (48, 32), &Device::Cpu).unwrap());
    let e = load(&write_dir("nan", &wn)).unwrap_err();
    assert!(
        matches!(&e, ModelError::NonFinite { name: n, index: 17 } if n == name),
        "{e}"
    );

    let mut wm = w.clone();
    wm.tensors.remove("model.norm.weight");
    let e = load(&write_dir("missing", &wm)).unwrap_err().to_string();
    assert!(e.contains("model.norm.weight"), "{e}");

    let d = write_dir("arch", &w);
    let mut c = cfg.to_hf_json();
    c["model_type"] = "gpt_neox".into();
    std::fs::write(d.join("config.json"), c.to_string()).unwrap();
    let e = load(&d).unwrap_err().to_string();
    assert!(e.contains("gpt_neox"), "{e}");

    let d = write_dir("trunc", &w);
    let st = d.join("model.safetensors");
    let b = std::fs::read(&st).unwrap();
    std::fs::write(&st, &b[..b.len() / 2]).unwrap();
    let e = load(&d).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");

    let d = write_dir("notok", &w);
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    let e = load(&d).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn summaries_split_is_deterministic_and_disjoint() {
    let json = br#"{"B": {"title": "B", "extract": "bee"}, "A": {"title": "A", "extract": "ay"},
                    "C": {"title": "C", "extract": ""}, "D": {"title": "D", "extract": "dee"}}"#;
    let p = Path::new("x.json");
    let (c1, e1, nc, ne) = data::split_summaries(json, p).unwrap();
    let (c2, e2, ..) = data::split_summaries(json, p).unwrap();
    assert_eq!((&c1, &e1), (&c2, &e2));
    assert_eq!(nc + ne, 3);
    assert_eq!(c1.matches("\n\n").count() + e1.matches("\n\n").count(), 3);
}

// ---- Tests on the default model; they pass with a note when data/ lacks it. ----

fn default_model() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(data::MODEL_FILE);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("note: {} absent (run `llvq fetch-defaults`); skipping", p.display());
        None
    }
}

/// Token ids from an independent byte-level BPE (scripts/reference_ppl.py `tokenize`,
/// pure Python over the GGUF vocabulary and merges), pinned here.
const REF_TEXT: &str = " = Robert Boulter = \n Robert Boulter is an English film , television and theatre actor . He had a guest @-@ starring role on the television series The Bill in 2000 .";

#[test]
fn default_model_tokenizer_matches_reference() {
    let Some(p) = default_model() else { return };
    let g = llvq_model::gguf::GgufFile::open(&p).unwrap();
    let cfg = g.config().unwrap();
    assert_eq!(
        (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads),
        (30, 576, 9, 3)
    );
    assert_eq!(cfg.rope_theta, 100_000.0);
    assert!(cfg.tie_embeddings);
    let tok = g.tokenizer().unwrap();
    assert_eq!(tok.vocab_size(), 49_152);
    let ids = tok.encode(REF_TEXT).unwrap();
    assert_eq!(ids, REF_IDS.to_vec());
    assert_eq!(tok.decode(&ids).unwrap(), REF_TEXT);
}

const REF_IDS: &[u32] = &[
    446, 6356, 389, 9226, 352, 446, 3717, 6356, 389, 9226, 352, 314, 354, 2321, 4771, 3297, 8552, 284, 16984, 17523,
    1673, 909, 761, 253, 16204, 3394, 29, 48, 45608, 1791, 335, 260, 8552, 3086, 378, 8593, 281, 216, 34, 32, 32, 32,
    1673,
];

#[test]
fn default_model_gguf_and_export_agree_and_predict_text() {
    let Some(p) = default_model() else { return };
    let (cfg, tok, w) = load_parts(&p).unwrap();
    let ids = tok
        .encode("The capital of France is Paris. The capital of Germany is")
        .unwrap();
    let model = Model::from_weights(cfg.clone(), w.clone()).unwrap();
    let a = model.logits(&ids).unwrap();
    let dir = tmpdir("export-default");
    let out = dir.join("hf");
    export::export_hf(&cfg, &tok, &w, &out).unwrap();
    drop(w);
    let (m2, _) = load(&out).unwrap();
    let b = m2.logits(&ids).unwrap();
    let diff = (a.clone() - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
    // The model knows the answer: greedy next token is " Berlin".
    let last = a
        .get(ids.len() - 1)
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap();
    assert_eq!(tok.decode(&[last]).unwrap(), " Berlin");
    std::fs::remove_dir_all(&dir).unwrap();
}
