//! Zero-shot task scoring: request parsing, the harness's pairing rule, shared-context scoring
//! against scoring from scratch, acc / acc_norm arithmetic, and errors naming task and file.
use std::io::Write;
use std::path::Path;

use llvq_model::tasks::requests::parse_requests;
use llvq_model::tasks::score::{encode_pair, mean_stderr, Encoded};
use llvq_model::tasks::{
    load_task, score_doc, score_doc_kv, score_doc_scratch, score_docs, task_file, Doc, DocScore, Scoring, TaskError,
    TaskResult,
};
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
    assert_eq!(
        docs[1].choices.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
        [" yes", " no"]
    );
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
        Err(e @ TaskError::UnknownTask { .. }) => {
            assert!(e.to_string().contains("arc_hard") && e.to_string().contains("arc_easy"))
        }
        other => panic!("{other:?}"),
    }
    match load_task(&dir, "boolq") {
        Err(e @ TaskError::MissingData { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("boolq") && m.contains("config.json") && m.contains("fetch-defaults --tasks"),
                "{m}"
            );
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
    for (ctx, cont) in [
        ("the cat sat in", " the hat"),
        ("Question: x?\nAnswer:", " in the"),
        ("a b ", "c"),
    ] {
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
    assert_eq!(
        empty,
        Encoded {
            tokens: [vec![7], tok.encode("the").unwrap()].concat(),
            cont_start: 1
        }
    );
    assert!(encode_pair(&tok, "abc", "", 0).is_err());
}

fn docs() -> Vec<Doc> {
    let d = |doc_id, label, choices: &[(&str, &str)]| Doc {
        doc_id,
        label,
        choices: choices.iter().map(|(c, k)| (c.to_string(), k.to_string())).collect(),
    };
    vec![
        d(
            0,
            1,
            &[
                ("Question: the thing in the box?\nAnswer:", " the cat"),
                ("Question: the thing in the box?\nAnswer:", " a hat in the rain"),
                ("Question: the thing in the box?\nAnswer:", " in"),
            ],
        ),
        // WinoGrande-style partial scoring: contexts differ at the end, continuation shared.
        d(
            1,
            0,
            &[
                ("So the ball hit Anna because Anna", " was tall."),
                ("So the ball hit Anna because Tom", " was tall."),
            ],
        ),
        // Contexts differ at the first token: no shared prefix.
        d(2, 1, &[("Anna went", " in"), ("Tom went", " in")]),
        // A continuation of one token right after the shared context.
        d(3, 0, &[("x y z", " a"), ("x y z", " b"), ("x y z", " the")]),
    ]
}

fn assert_same_scores(a: &DocScore, b: &DocScore, tol: f64, what: &str) {
    assert_eq!(a.lls.len(), b.lls.len(), "{what}: doc {}", b.doc_id);
    for (x, y) in a.lls.iter().zip(&b.lls) {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: doc {}: {x} vs {y}",
            b.doc_id
        );
    }
    assert_eq!((a.pred, a.pred_norm), (b.pred, b.pred_norm), "{what}: doc {}", b.doc_id);
}

#[test]
fn batched_and_kv_cache_scoring_equal_scoring_from_scratch() {
    let tok = tiny_tokenizer();
    for (arch, seed) in [(Arch::Llama, 3), (Arch::Qwen3, 4)] {
        let model = tiny_model(arch, seed);
        let docs = docs();
        let scratch: Vec<DocScore> = docs
            .iter()
            .map(|d| score_doc_scratch(&model, &tok, d).unwrap())
            .collect();
        for (doc, b) in docs.iter().zip(&scratch) {
            let a = score_doc(&model, &tok, doc).unwrap();
            assert_same_scores(&a, b, 1e-4, "batched");
            assert_same_scores(&score_doc_kv(&model, &tok, doc).unwrap(), b, 1e-4, "kv");
            assert!(a.tokens <= b.tokens);
        }
        // Packing several documents into one forest changes nothing: 1 token per pass is
        // one document per pass, 40 packs some, 10^4 all.
        for pack in [1, 40, 10_000] {
            let packed = score_docs(&model, &tok, &docs, Scoring::Batched, pack).unwrap();
            assert_eq!(packed.len(), docs.len());
            for (a, b) in packed.iter().zip(&scratch) {
                assert_eq!(a.doc_id, b.doc_id);
                assert_same_scores(a, b, 1e-4, &format!("packed {pack}"));
            }
        }
    }
}

/// Every row of `forward_tree` equals the last row of a plain causal forward over that
/// token's own path (root to token), for a forest with branches at several depths and two
/// roots; and bad layouts are errors.
#[test]
fn forward_tree_rows_equal_plain_forwards_of_each_path() {
    for (arch, seed) in [(Arch::Llama, 5), (Arch::Qwen3, 6)] {
        let model = tiny_model(arch, seed);
        let vocab = model.config().vocab_size as u32;
        // 0-4: a chain; 5-7 branch off 2; 8-9 branch off 4; 10-12 a second root; 13 off 0.
        let parents: Vec<Option<usize>> = vec![
            None,
            Some(0),
            Some(1),
            Some(2),
            Some(3),
            Some(2),
            Some(5),
            Some(6),
            Some(4),
            Some(8),
            None,
            Some(10),
            Some(11),
            Some(0),
        ];
        let ids: Vec<u32> = (0..parents.len() as u32).map(|i| (i * 7 + 3) % vocab).collect();
        let rows: Vec<usize> = (0..ids.len()).rev().collect();
        let got = model
            .forward_tree(&ids, &parents, &rows)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (r, &i) in rows.iter().enumerate() {
            let mut path = vec![i];
            while let Some(p) = parents[*path.last().unwrap()] {
                path.push(p);
            }
            let path: Vec<u32> = path.iter().rev().map(|&j| ids[j]).collect();
            let want = model.logits(&path).unwrap().to_vec2::<f32>().unwrap().pop().unwrap();
            for (x, y) in got[r].iter().zip(&want) {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                    "{arch:?} token {i}: {x} vs {y}"
                );
            }
        }
        assert!(model.forward_tree(&ids[..2], &[None, Some(1)], &[0]).is_err());
        assert!(model.forward_tree(&ids[..2], &[None], &[0]).is_err());
        assert!(model.forward_tree(&ids[..2], &[None, Some(0)], &[2]).is_err());
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
            let ll: f64 = (c_ids.len()..all.len())
                .map(|j| lp[j - 1][all[j] as usize] as f64)
                .sum();
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
    let s = DocScore {
        doc_id: 0,
        label: 0,
        lls: vec![-4.0, -3.0],
        chars: vec![8, 2],
        pred: 1,
        pred_norm: 0,
        tokens: 0,
    };
    let r = TaskResult::from_scores("t", vec![s.clone(), DocScore { label: 1, ..s }], None);
    assert_eq!((r.acc, r.acc_norm), (0.5, 0.5));
    let (p, se) = mean_stderr(&[true, false, true, true]);
    assert_eq!(p, 0.75);
    // Sample standard deviation over sqrt(n): sqrt(sum (x - p)^2 / (n - 1) / n).
    let brute = ((3.0 * 0.25f64.powi(2) + 0.75f64.powi(2)) / 3.0 / 4.0).sqrt();
    assert!((se - brute).abs() < 1e-15);
}

// ---- The default model (and a compressed file of it when data/table has one). ----

fn data_file(name: &str) -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("note: {} absent (run `llvq fetch-defaults`); skipping", p.display());
        None
    }
}

fn check_batched_against_one_at_a_time(path: &Path) {
    let (model, tok) = llvq_model::compressed::load_any(path, &Default::default()).unwrap();
    let mut docs = docs();
    docs.push(Doc {
        doc_id: 9,
        label: 2,
        choices: ["Paris.", "Berlin, the capital of Germany.", "a city in France"]
            .iter()
            .map(|c| {
                (
                    "Question: Which city is the capital of France?\nAnswer:".to_string(),
                    format!(" {c}"),
                )
            })
            .collect(),
    });
    let packed = score_docs(&model, &tok, &docs, Scoring::Batched, 10_000).unwrap();
    for (doc, a) in docs.iter().zip(&packed) {
        let kv = score_doc_kv(&model, &tok, doc).unwrap();
        assert_same_scores(a, &kv, 1e-4, &format!("{}: batched vs kv", path.display()));
        assert_same_scores(
            a,
            &score_doc_scratch(&model, &tok, doc).unwrap(),
            1e-4,
            "batched vs scratch",
        );
    }
}

#[test]
fn batched_scoring_equals_one_choice_at_a_time_on_the_default_model() {
    if let Some(p) = data_file(llvq_model::data::MODEL_FILE) {
        check_batched_against_one_at_a_time(&p);
    }
}

/// A `.llvq` file runs its compressed linears through the same forest forward.
#[test]
fn batched_scoring_equals_one_choice_at_a_time_on_a_compressed_file() {
    if let Some(p) = data_file("table/sg1-both.llvq") {
        check_batched_against_one_at_a_time(&p);
    }
}

// ---- Arrow IPC streams and MMLU. ----

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn column_json(c: &llvq_model::tasks::arrow::Column) -> serde_json::Value {
    use llvq_model::tasks::arrow::Column;
    match c {
        Column::Int(v) => serde_json::json!(v),
        Column::Utf8(v) => serde_json::json!(v),
        Column::List { offsets, child } => {
            let inner = column_json(child);
            let inner = inner.as_array().unwrap();
            serde_json::Value::Array(
                offsets
                    .windows(2)
                    .map(|w| serde_json::json!(inner[w[0]..w[1]]))
                    .collect(),
            )
        }
    }
}

/// The fixtures were written by pyarrow (scripts/tasks_arrow_fixture.py), which also wrote
/// what it reads back as JSON: the reader here must see the same names and values.
#[test]
fn arrow_reader_agrees_with_pyarrow() {
    for name in ["mmlu_like", "widths", "sliced", "mmlu_four"] {
        let bytes = std::fs::read(fixture(&format!("{name}.arrow"))).unwrap();
        let want: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap()).unwrap();
        let t = llvq_model::tasks::arrow::read_stream(&bytes).unwrap();
        assert_eq!(serde_json::json!(t.names), want["names"], "{name}");
        for (n, c) in t.names.iter().zip(&t.columns) {
            assert_eq!(c.len(), t.rows, "{name}.{n}");
            assert_eq!(column_json(c), want["columns"][n], "{name}.{n}");
        }
    }
}

/// Truncated or corrupted streams are errors, never panics.
#[test]
fn broken_arrow_streams_are_errors() {
    use llvq_model::tasks::arrow::read_stream;
    let bytes = std::fs::read(fixture("mmlu_four.arrow")).unwrap();
    assert!(read_stream(&[]).is_err());
    assert!(read_stream(b"not an arrow file at all").is_err());
    for cut in (0..bytes.len()).step_by(7) {
        let _ = read_stream(&bytes[..cut]);
    }
    // Flip bytes one at a time over the whole file (xorshift positions and values).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut b = bytes.clone();
        let i = (x % b.len() as u64) as usize;
        b[i] ^= (x >> 32) as u8 | 1;
        let _ = read_stream(&b);
    }
    // Through the MMLU loader the error names the task and the file.
    let dir = tmpdir("mmlu-broken");
    let test = llvq_model::tasks::mmlu::split_file(&dir, "anatomy", "test");
    std::fs::create_dir_all(test.parent().unwrap()).unwrap();
    std::fs::write(&test, &bytes[..bytes.len() / 2]).unwrap();
    let e = llvq_model::tasks::load_task(&dir, "mmlu_anatomy").unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("mmlu_anatomy") && m.contains("test.arrow") && m.contains("Arrow"),
        "{m}"
    );
    // Rows without four choices are named.
    std::fs::copy(fixture("mmlu_like.arrow"), &test).unwrap();
    let m = llvq_model::tasks::load_task(&dir, "mmlu_anatomy")
        .unwrap_err()
        .to_string();
    assert!(m.contains("row 0") && m.contains("test.arrow"), "{m}");
    std::fs::remove_dir_all(&dir).unwrap();
    let m = llvq_model::tasks::load_task(&dir, "mmlu_5shot_virology")
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("mmlu_5shot_virology") && m.contains("fetch-defaults --tasks"),
        "{m}"
    );
}

#[test]
fn mmlu_names_expand_and_unknown_names_are_errors() {
    use llvq_model::tasks::expand_names;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let all = expand_names(&s(&["arc_easy", "mmlu"])).unwrap();
    assert_eq!(all.len(), 58);
    assert_eq!(
        (all[0].as_str(), all[1].as_str(), all[57].as_str()),
        ("arc_easy", "mmlu_abstract_algebra", "mmlu_world_religions")
    );
    let five = expand_names(&s(&["mmlu_5shot"])).unwrap();
    assert!(five.iter().all(|n| n.starts_with("mmlu_5shot_")) && five.len() == 57);
    assert_eq!(expand_names(&s(&["mmlu_anatomy"])).unwrap(), ["mmlu_anatomy"]);
    for bad in ["mmlu_anatomyy", "mmlu_5shot_", "arc"] {
        let m = expand_names(&s(&[bad])).unwrap_err().to_string();
        assert!(m.contains(bad) && m.contains("mmlu_5shot"), "{m}");
    }
}

/// The prompt is the harness's `mmlu/default` template, written out here by hand.
#[test]
fn mmlu_prompts_follow_the_harness_template() {
    let dir = tmpdir("mmlu-prompt");
    for split in ["test", "dev"] {
        let p = llvq_model::tasks::mmlu::split_file(&dir, "high_school_us_history", split);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(fixture("mmlu_four.arrow"), &p).unwrap();
    }
    let zero = llvq_model::tasks::load_task(&dir, "mmlu_high_school_us_history").unwrap();
    assert_eq!(zero.docs.len(), 6);
    let d = &zero.docs[1];
    assert_eq!(d.label, 1);
    let want = "The following are multiple choice questions (with answers) about high school us history.\n\n\
                What is 1 times two?\nA. 2\nB. 3\nC. 1\nD. 4\nAnswer:";
    let conts: Vec<&str> = d.choices.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(conts, [" A", " B", " C", " D"]);
    assert!(d.choices.iter().all(|c| c.0 == want), "{:?}", d.choices[0].0);
    let five = llvq_model::tasks::load_task(&dir, "mmlu_5shot_high_school_us_history").unwrap();
    let ctx = &five.docs[5].choices[0].0;
    let shot = |i: i64, a: &str| {
        format!(
            "What is {i} times two?\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer: {a}\n\n",
            2 * i,
            2 * i + 1,
            2 * i - 1,
            2 * i + 2
        )
    };
    let want = format!(
        "The following are multiple choice questions (with answers) about high school us history.\n\n{}{}{}{}{}{}",
        shot(0, "A"),
        shot(1, "B"),
        shot(2, "C"),
        shot(3, "D"),
        shot(4, "A"),
        "What is 5 times two?\nA. 10\nB. 11\nC. 9\nD. 12\nAnswer:"
    );
    assert_eq!(ctx, &want);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// On the real files (after `llvq fetch-defaults --tasks`): MMLU's published split sizes,
/// 14,042 test and 5 dev questions per subject over 57 subjects.
#[test]
fn mmlu_files_have_the_published_sizes() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let dir = &data;
    if !llvq_model::tasks::mmlu::split_file(dir, "anatomy", "test").is_file() {
        eprintln!("note: no data/tasks/mmlu (run `llvq fetch-defaults --tasks`); skipping");
        return;
    }
    let mut test = 0;
    for s in llvq_model::tasks::mmlu::SUBJECTS {
        let t = llvq_model::tasks::load_task(dir, &format!("mmlu_5shot_{s}")).unwrap();
        test += t.docs.len();
        let dev = llvq_model::tasks::mmlu::read_split(s, &llvq_model::tasks::mmlu::split_file(dir, s, "dev")).unwrap();
        assert_eq!(dev.len(), 5, "{s}");
    }
    assert_eq!(test, 14_042);
}
