//! Zero-shot task scoring: request parsing, the harness's pairing rule, shared-context scoring
//! against scoring from scratch, acc / acc_norm arithmetic, and errors naming task and file.
use std::io::Write;
use std::path::Path;

use llvq_model::tasks::requests::parse_requests;
use llvq_model::tasks::score::{encode_pair, mean_stderr, Encoded};
use llvq_model::tasks::{load_task, score_doc, score_doc_scratch, task_file, Doc, TaskError, TaskResult};
use llvq_model::testing::{random_weights, tiny_config, tiny_tokenizer, tmpdir};
use llvq_model::{Arch, Model};

fn line(doc_id: u64, idx: usize, label: usize, ctx: &str, cont: &str) -> String {
    serde_json::json!({
        "request_type": "loglikelihood",
        "doc": {"query": ctx, "choices": [], "gold": label},
        "request": {"context": ctx, "continuation": cont},
        "idx": idx, "task_name": "t", "doc_id": doc_id, "native_id": doc_id, "label": label,
    })
    .to_string()
}

fn tiny_model(arch: Arch, seed: u64) -> Model {
    let cfg = tiny_config(arch);
    Model::from_weights(cfg.clone(), random_weights(&cfg, seed)).unwrap()
}

#[test]
fn requests_group_by_document_and_skip_unconditional() {
    let text = [
        line(1, 1, 0, "Q: b?\nA:", " no"),
        line(0, 0, 1, "Q: a?\nA:", " the cat"),
        line(1_000_000, 0, 1, "A:", " the cat"),
        line(0, 1, 1, "Q: a?\nA:", " in"),
        String::new(),
        line(1, 0, 0, "Q: b?\nA:", " yes"),
    ]
    .join("\n");
    let docs = parse_requests("t", Path::new("r.jsonl"), text.as_bytes()).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].doc_id, 0);
    assert_eq!(docs[0].label, 1);
    assert_eq!(docs[0].choices[1], ("Q: a?\nA:".to_string(), " in".to_string()));
    assert_eq!(docs[1].choices.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(), [" yes", " no"]);
}

#[test]
fn bad_request_lines_name_task_file_and_line() {
    let p = Path::new("x/requests.jsonl");
    let cases = [
        (format!("{}\n{{not json", line(0, 0, 0, "a", " b")), 2),
        (format!("{}\n{}", line(0, 0, 0, "a", " b"), line(0, 0, 0, "a", " c")), 2),
        (format!("{}\n{}", line(0, 0, 0, "a", " b"), line(0, 1, 1, "a", " c")), 2),
        (format!("{}\n{}", line(0, 0, 2, "a", " b"), line(0, 1, 2, "a", " c")), 1),
        (format!("{}\n{}", line(0, 0, 0, "a", " b"), line(0, 2, 0, "a", " c")), 1),
    ];
    for (text, want_line) in cases {
        match parse_requests("piqa", p, text.as_bytes()) {
            Err(e @ TaskError::Parse { line, .. }) => {
                assert_eq!(line, want_line, "{e}");
                let msg = e.to_string();
                assert!(msg.contains("piqa") && msg.contains("x/requests.jsonl"), "{msg}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}

fn write_task(dir: &Path, task: &str, lines: &[String]) {
    let req = task_file(dir, task, "rc_0shot", "requests.jsonl.gz");
    std::fs::create_dir_all(req.parent().unwrap()).unwrap();
    let cfg = r#"{"task_name": "x", "task_config": {"primary_metric": "acc_raw"}, "num_instances": 1}"#;
    std::fs::write(req.with_file_name("config.json"), cfg).unwrap();
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&req).unwrap(), flate2::Compression::fast());
    gz.write_all(lines.join("\n").as_bytes()).unwrap();
    gz.finish().unwrap();
}

#[test]
fn load_task_errors_name_task_and_file() {
    let dir = tmpdir("tasks-errors");
    match load_task(&dir, "arc_hard") {
        Err(e @ TaskError::UnknownTask { .. }) => assert!(e.to_string().contains("arc_hard") && e.to_string().contains("arc_easy")),
        other => panic!("{other:?}"),
    }
    match load_task(&dir, "boolq") {
        Err(e @ TaskError::MissingData { .. }) => {
            let m = e.to_string();
            assert!(m.contains("boolq") && m.contains("config.json") && m.contains("fetch-defaults --tasks"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    write_task(&dir, "winogrande", &[line(0, 0, 0, "a", " b"), "{\"doc_id\": 0".into()]);
    match load_task(&dir, "winogrande") {
        Err(e @ TaskError::Parse { line: 2, .. }) => {
            let m = e.to_string();
            assert!(m.contains("winogrande") && m.contains("requests.jsonl.gz"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    write_task(&dir, "piqa", &[line(0, 0, 1, "a", " b"), line(0, 1, 1, "a", " c")]);
    let t = load_task(&dir, "piqa").unwrap();
    assert_eq!(t.docs.len(), 1);
    assert_eq!(t.config.task_config.primary_metric.as_deref(), Some("acc_raw"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn encode_pair_follows_the_harness() {
    let tok = tiny_tokenizer();
    for (ctx, cont) in [("the cat sat in", " the hat"), ("Question: x?\nAnswer:", " in the"), ("a b ", "c")] {
        let e = encode_pair(&tok, ctx, cont, 0).unwrap();
        // The whole string is tokenized at once; the context part is encode(context.rstrip()).
        let trimmed = ctx.trim_end();
        assert_eq!(e.tokens, tok.encode(&format!("{ctx}{cont}")).unwrap());
        assert_eq!(e.cont_start, tok.encode(trimmed).unwrap().len());
        assert!(e.cont_start < e.tokens.len());
    }
    // Trailing space moves to the continuation: " c" is scored, not "c".
    let moved = encode_pair(&tok, "a b ", "c", 0).unwrap();
    assert_eq!(moved, encode_pair(&tok, "a b", " c", 0).unwrap());
    let empty = encode_pair(&tok, "", "the", 7).unwrap();
    assert_eq!(empty, Encoded { tokens: [vec![7], tok.encode("the").unwrap()].concat(), cont_start: 1 });
    assert!(encode_pair(&tok, "abc", "", 0).is_err());
}

fn docs() -> Vec<Doc> {
    let d = |doc_id, label, choices: &[(&str, &str)]| Doc {
        doc_id,
        label,
        choices: choices.iter().map(|(c, k)| (c.to_string(), k.to_string())).collect(),
    };
    vec![
        d(0, 1, &[("Question: the thing in the box?\nAnswer:", " the cat"), ("Question: the thing in the box?\nAnswer:", " a hat in the rain"), ("Question: the thing in the box?\nAnswer:", " in")]),
        // WinoGrande-style partial scoring: contexts differ at the end, continuation shared.
        d(1, 0, &[("So the ball hit Anna because Anna", " was tall."), ("So the ball hit Anna because Tom", " was tall.")]),
        // Contexts differ at the first token: no shared prefix.
        d(2, 1, &[("Anna went", " in"), ("Tom went", " in")]),
        // A continuation of one token right after the shared context.
        d(3, 0, &[("x y z", " a"), ("x y z", " b"), ("x y z", " the")]),
    ]
}

#[test]
fn shared_context_scoring_equals_scoring_from_scratch() {
    let tok = tiny_tokenizer();
    for (arch, seed) in [(Arch::Llama, 3), (Arch::Qwen3, 4)] {
        let model = tiny_model(arch, seed);
        for doc in docs() {
            let a = score_doc(&model, &tok, &doc).unwrap();
            let b = score_doc_scratch(&model, &tok, &doc).unwrap();
            for (x, y) in a.lls.iter().zip(&b.lls) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "doc {}: {x} vs {y}", doc.doc_id);
            }
            assert_eq!((a.pred, a.pred_norm), (b.pred, b.pred_norm));
            assert!(a.tokens <= b.tokens);
        }
    }
}

/// acc and acc_norm against a brute force: each choice's log-likelihood summed from the
/// model's full log-softmax (`Model::log_probs`), argmax by hand.
#[test]
fn accuracies_match_a_brute_force_on_a_tiny_model() {
    let tok = tiny_tokenizer();
    let model = tiny_model(Arch::Llama, 11);
    let docs = docs();
    let mut hits = (0usize, 0usize);
    let mut scores = Vec::new();
    for doc in &docs {
        let mut best = (0, f64::NEG_INFINITY);
        let mut best_norm = (0, f64::NEG_INFINITY);
        for (i, (c, k)) in doc.choices.iter().enumerate() {
            let c_ids = tok.encode(c.trim_end()).unwrap();
            let all = tok.encode(&format!("{c}{k}")).unwrap();
            let lp = model.log_probs(&all).unwrap().to_vec2::<f32>().unwrap();
            let ll: f64 = (c_ids.len()..all.len()).map(|j| lp[j - 1][all[j] as usize] as f64).sum();
            let chars = k.trim_start_matches(' ').chars().count() as f64;
            if ll > best.1 {
                best = (i, ll);
            }
            if ll / chars > best_norm.1 {
                best_norm = (i, ll / chars);
            }
        }
        let s = score_doc(&model, &tok, doc).unwrap();
        assert!((s.lls[best.0] - best.1).abs() < 1e-3, "doc {}", doc.doc_id);
        assert_eq!((s.pred, s.pred_norm), (best.0, best_norm.0), "doc {}", doc.doc_id);
        hits.0 += (best.0 == doc.label) as usize;
        hits.1 += (best_norm.0 == doc.label) as usize;
        scores.push(s);
    }
    let r = TaskResult::from_scores("t", scores, None);
    let n = docs.len() as f64;
    assert_eq!(r.docs, docs.len());
    assert!((r.acc - hits.0 as f64 / n).abs() < 1e-12);
    assert!((r.acc_norm - hits.1 as f64 / n).abs() < 1e-12);
}

#[test]
fn accuracy_counts_and_stderr_are_the_harness_ones() {
    use llvq_model::tasks::DocScore;
    // Choice 1 has the larger total, choice 0 the larger per-character score.
    let s = DocScore { doc_id: 0, label: 0, lls: vec![-4.0, -3.0], chars: vec![8, 2], pred: 1, pred_norm: 0, tokens: 0 };
    let r = TaskResult::from_scores("t", vec![s.clone(), DocScore { label: 1, ..s }], None);
    assert_eq!((r.acc, r.acc_norm), (0.5, 0.5));
    let (p, se) = mean_stderr(&[true, false, true, true]);
    assert_eq!(p, 0.75);
    // Sample standard deviation over sqrt(n): sqrt(sum (x - p)^2 / (n - 1) / n).
    let brute = ((3.0 * 0.25f64.powi(2) + 0.75f64.powi(2)) / 3.0 / 4.0).sqrt();
    assert!((se - brute).abs() < 1e-15);
}
