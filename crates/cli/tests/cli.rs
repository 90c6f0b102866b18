//! One integration-test binary for the `llvq` command line: exit codes, messages and `--json`
//! shapes, run through the built binary on tiny models and files each test writes itself.
//! Tests are named after the hostile input of issue 16 they pin.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use llvq_model::config::Arch;
use llvq_model::testing::{random_weights, tiny_config, tiny_tokenizer, tmpdir};

fn llvq(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llvq"));
    c.args(args).env("RAYON_NUM_THREADS", "2");
    c
}

fn run(args: &[&str]) -> Output {
    llvq(args).stdin(Stdio::null()).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A two-layer Llama-style HF directory and a calibration/evaluation text.
fn setup(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = tmpdir(&format!("cli-{name}"));
    let cfg = tiny_config(Arch::Llama);
    let model = dir.join("model");
    llvq_model::export::export_hf(&cfg, &tiny_tokenizer(), &random_weights(&cfg, 7), &model).unwrap();
    let words = ["the", "lattice", "in", "leech", "golay", "code", "shell", "theta"];
    let text: Vec<&str> = (0..400usize).map(|i| words[(i * 7 + i / 3) % words.len()]).collect();
    let calib = dir.join("calib.txt");
    std::fs::write(&calib, text.join(" ")).unwrap();
    (dir, model, calib)
}

/// The arguments of `llvq quantize` of `model` with `method`, calibrated on `calib`.
fn quantize_args<'a>(model: &'a Path, calib: &'a Path, out: &'a Path, method: &'a str) -> Vec<&'a str> {
    vec![
        "quantize",
        "--model",
        p(model),
        "--calib",
        p(calib),
        "--out",
        p(out),
        "--method",
        method,
    ]
}

/// `llvq quantize` with `method` on few short calibration windows.
fn quantize_with(method: &str, model: &Path, calib: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = quantize_args(model, calib, out, method);
    args.extend(["--calib-seqs", "2", "--calib-ctx", "32"]);
    args.extend(extra);
    run(&args)
}

/// `llvq quantize` with a fast method and few short calibration windows.
fn quantize(model: &Path, calib: &Path, out: &Path, extra: &[&str]) -> Output {
    quantize_with("rtn", model, calib, out, extra)
}

/// The arguments of `llvq eval ppl` of `model` on at most `windows` windows of `ctx` tokens.
fn ppl_args<'a>(model: &'a Path, text: &'a Path, ctx: &'a str, windows: &'a str) -> Vec<&'a str> {
    vec![
        "eval",
        "ppl",
        "--model",
        p(model),
        "--text",
        p(text),
        "--ctx",
        ctx,
        "--max-windows",
        windows,
    ]
}

/// Runs `args` with stdout a pipe whose reading end is closed at once (`llvq … | head -0`).
fn closed_stdout(args: &[&str]) -> Output {
    let mut child = llvq(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

/// Runs `args` with stdout on /dev/full (every write fails with ENOSPC).
fn full_stdout(args: &[&str]) -> Option<Output> {
    let full = File::options().write(true).open("/dev/full").ok()?;
    Some(llvq(args).stdin(Stdio::null()).stdout(full).output().unwrap())
}

#[test]
fn quantize_refuses_an_output_that_is_an_input_or_a_directory() {
    let (dir, model, calib) = setup("overwrite");
    let weights = model.join("model.safetensors");
    let before = std::fs::read(&weights).unwrap();
    let link = dir.join("link.llvq");
    std::os::unix::fs::symlink(&weights, &link).unwrap();
    let hard = dir.join("hard.llvq");
    std::fs::hard_link(&calib, &hard).unwrap();
    for (out, what) in [
        (&weights, "input model"),
        (&link, "input model"),
        (&calib, "calibration text"),
        (&hard, "calibration text"),
    ] {
        let o = quantize(&model, &calib, out, &[]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("refusing to overwrite") && e.contains(what), "{e}");
    }
    assert_eq!(std::fs::read(&weights).unwrap(), before, "the model is untouched");
    // An existing directory (here the model itself) fails before any work: no parts, no temp file.
    for out in [&model, &dir] {
        let o = quantize(&model, &calib, out, &[]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("existing directory"), "{e}");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert!(
            !leftovers
                .iter()
                .any(|n| n.to_string_lossy().contains(".parts") || n.to_string_lossy().ends_with(".tmp")),
            "{leftovers:?}"
        );
    }
    let o = quantize(&model, &calib, &dir.join("no/such/dir/x.llvq"), &[]);
    assert!(
        o.status.code() == Some(1) && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn closed_stdout_ends_quietly_and_a_full_disk_is_a_clean_error() {
    let (dir, model, calib) = setup("pipe");
    let out = dir.join("q.llvq");
    assert!(quantize(&model, &calib, &out, &[]).status.success());
    let ppl = ppl_args(&model, &calib, "16", "2");
    let mut ppl_json = ppl_args(&out, &calib, "16", "1");
    ppl_json.push("--json");
    let generate = ["generate", "--model", p(&model), "--prompt", "the", "-n", "3"];
    let cases: [&[&str]; 7] = [
        &["lattice", "theta", "--max-shell", "33"],
        &["lattice", "classes", "--shell", "12", "--json"],
        &["inspect", p(&out), "--tensors"],
        &["inspect", p(&out), "--json"],
        &ppl,
        &ppl_json,
        &generate,
    ];
    for args in cases {
        let o = closed_stdout(args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
        assert!(!e.contains("panicked") && !e.contains("error"), "{args:?}: {e}");
        if let Some(o) = full_stdout(args) {
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
            assert!(
                e.contains("writing to stdout") && !e.contains("panicked"),
                "{args:?}: {e}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_numbers_are_refused_when_parsed() {
    let (dir, model, calib) = setup("values");
    let out = dir.join("q.llvq");
    // clap's usage errors exit 2 and name the flag.
    for (args, flag) in [
        (
            vec![
                "generate",
                "--model",
                p(&model),
                "--prompt",
                "x",
                "--temperature",
                "nan",
            ],
            "--temperature",
        ),
        (
            vec!["generate", "--model", p(&model), "--prompt", "x", "--temperature=-1"],
            "--temperature",
        ),
        (
            vec!["generate", "--model", p(&model), "--prompt", "x", "--threads", "0"],
            "--threads",
        ),
        (vec!["eval", "ppl", "--model", p(&model), "--threads", "0"], "--threads"),
        (
            vec!["eval", "speed", "--model", p(&model), "--threads", "0"],
            "--threads",
        ),
        (
            vec!["quantize", "--model", p(&model), "--out", p(&out), "--damp=-0.5"],
            "--damp",
        ),
        (
            vec!["quantize", "--model", p(&model), "--out", p(&out), "--damp", "inf"],
            "--damp",
        ),
        (
            vec!["quantize", "--model", p(&model), "--out", p(&out), "--threads", "0"],
            "--threads",
        ),
    ] {
        let o = run(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(flag), "{args:?}: {e}");
    }
    // A code whose stored values overflow or underflow f32 is refused when its SPEC is read.
    for spec in [
        "e8p12:scale=1e-45",
        "e8p12:scale=1e39",
        "llvq-ss:m=4,scale=1e39",
        "llvq-sg:m=4,gain=1,levels=1e300/1e301",
    ] {
        let o = llvq(&["vq", "--code", spec]).stdin(Stdio::null()).output().unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{spec}: {e}");
        assert!(e.contains("is invalid"), "{spec}: {e}");
    }
    let o = run(&quantize_args(&model, &calib, &out, "e8p12:scale=1e-45"));
    assert!(
        o.status.code() == Some(1) && stderr(&o).contains("scale"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn failed_start_leaves_nothing_that_blocks_the_rerun() {
    let (dir, model, calib) = setup("restart");
    let out = dir.join("q.llvq");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, " \n").unwrap();
    let o = quantize(&model, &empty, &out, &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("calibration") && e.contains("empty.txt") && !e.contains("evaluation"),
        "{e}"
    );
    assert!(!dir.join("q.llvq.parts").exists());
    // A parts directory without finished layers (left by an older version) blocks nothing either.
    std::fs::create_dir(dir.join("q.llvq.parts")).unwrap();
    std::fs::write(dir.join("q.llvq.parts/manifest.json"), "{\"seed\": 99}").unwrap();
    let o = quantize(&model, &calib, &out, &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["layers_resumed"], 0);
    assert!(
        v["bpw"].as_f64().unwrap() > 2.0 && v["file_bytes"].as_u64() == Some(std::fs::metadata(&out).unwrap().len())
    );
    assert!(!dir.join("q.llvq.parts").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn broken_llvq_files_get_llvq_errors_and_inspect_fails_where_eval_fails() {
    let (dir, model, calib) = setup("broken");
    let out = dir.join("q.llvq");
    assert!(quantize(&model, &calib, &out, &[]).status.success());
    let ppl = |f: &Path| run(&ppl_args(f, &calib, "16", "1"));
    let inspect = |f: &Path| run(&["inspect", p(f), "--json"]);
    // The intact file: inspect's JSON agrees with the file and the config.
    let o = inspect(&out);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["quantized_linears"], 7 * 2);
    assert_eq!(v["file_bytes"].as_u64(), Some(std::fs::metadata(&out).unwrap().len()));
    assert!(ppl(&out).status.success());

    let bytes = std::fs::read(&out).unwrap();
    let mut broken: Vec<(PathBuf, Vec<u8>)> = vec![
        (dir.join("empty.llvq"), vec![]),
        (dir.join("garbage.llvq"), b"not a model at all".to_vec()),
        (dir.join("cut.llvq"), bytes[..bytes.len() / 2].to_vec()),
        (dir.join("head.llvq"), bytes[..12].to_vec()),
    ];
    // Consistent files with bad contents: a NaN scale, a config with fewer layers than stored,
    // one with 4·10⁹ layers.
    let c = llvq_quant::format::read(&out).unwrap();
    let mut nan = llvq_quant::format::read(&out).unwrap();
    nan.linears[2].scales[0] = 0x7E00; // f16 NaN
    let mut fewer = llvq_quant::format::read(&out).unwrap();
    fewer.header.config.as_mut().unwrap()["num_hidden_layers"] = 1.into();
    let mut huge = llvq_quant::format::read(&out).unwrap();
    huge.header.config.as_mut().unwrap()["num_hidden_layers"] = 4_000_000_000u64.into();
    for (name, contents) in [("nan.llvq", nan), ("fewer.llvq", fewer), ("huge.llvq", huge)] {
        let f = dir.join(name);
        llvq_quant::format::write(&f, &contents).unwrap();
        broken.push((f.clone(), std::fs::read(&f).unwrap()));
    }
    drop(c);
    for (f, data) in &broken {
        std::fs::write(f, data).unwrap();
        let name = f.file_name().unwrap().to_str().unwrap();
        for o in [ppl(f), inspect(f)] {
            let e = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{name}: {e}");
            assert!(
                e.contains(name) && !e.contains("GGUF") && !e.contains("panicked"),
                "{name}: {e}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hf_config_with_a_wrong_layer_count_is_an_error() {
    let (dir, model, calib) = setup("layers");
    let cfg_path = model.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    for (layers, says) in [(4_000_000_000u64, "layers need at least"), (1, "does not use")] {
        cfg["num_hidden_layers"] = layers.into();
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        let o = run(&["eval", "ppl", "--model", p(&model), "--text", p(&calib), "--ctx", "16"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains(says), "{layers}: {e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// Issue 15: the `--json` outputs of the pipeline's commands agree with each other — the bits
/// `quantize` reports are the bits `inspect` reads back from the file, perplexity is the same
/// number compressed and dense, and `eval speed` reports the keys the README documents.
#[test]
fn json_outputs_agree_across_commands() {
    let (dir, model, calib) = setup("json");
    let out = dir.join("m.llvq");
    let q = json(&quantize(&model, &calib, &out, &["--json"]));
    let i = json(&run(&["inspect", p(&out), "--json"]));
    assert_eq!(num(&q, "bpw"), num(&i, "bpw"), "quantize {q}\ninspect {i}");
    assert_eq!(q["file_bytes"].as_u64(), Some(std::fs::metadata(&out).unwrap().len()));
    assert_eq!(q["params"].as_u64(), i["params"].as_u64());

    let ppl = |extra: &[&str]| {
        let mut a = ppl_args(&out, &calib, "32", "3");
        a.push("--json");
        a.extend(extra);
        num(&json(&run(&a)), "ppl")
    };
    let (c, d) = (ppl(&[]), ppl(&["--dense"]));
    assert!(c.is_finite() && c > 1.0, "ppl {c}");
    assert!((c - d).abs() <= 1e-4 * d, "compressed {c} vs dense {d}");

    let s = json(&run(&[
        "eval",
        "speed",
        "--model",
        p(&out),
        "--ctx",
        "16",
        "-n",
        "4",
        "--reps",
        "1",
        "--json",
        "--compare",
    ]));
    for key in [
        "prefill_tokens_per_s",
        "gen_tokens_per_s",
        "resident_bits_per_weight",
        "weight_bytes",
    ] {
        assert!(num(&s, key) > 0.0, "{key} in {s}");
        assert!(num(&s["dense"], key) > 0.0, "dense.{key} in {s}");
    }
    assert_eq!(num(&s, "threads"), 2.0, "{s}");
    assert_eq!(num(&s["dense"], "resident_bits_per_weight"), 32.0, "{s}");
    assert!(num(&s, "weight_bytes") <= num(&s["dense"], "weight_bytes"), "{s}");
}

/// Issue 15: command-line usage errors found by the parser exit with 2 (clap's convention), every
/// other failure (a value checked when the command runs, a missing file) with 1, and each message
/// names what was wrong.
#[test]
fn exit_codes_and_messages() {
    let (dir, model, calib) = setup("exit");
    let o = run(&quantize_args(&model, &calib, &dir.join("x.llvq"), "nope"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown method") && stderr(&o).contains("nope"),
        "{}",
        stderr(&o)
    );
    let o = run(&["lattice", "theta", "--max-shell", "99"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("99") && stderr(&o).contains("2..=33"),
        "{}",
        stderr(&o)
    );
    let o = run(&["lattice", "theta"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--max-shell"), "{}", stderr(&o));
    let o = run(&["no-such-command"]);
    assert_eq!(o.status.code(), Some(2));
    let missing = dir.join("missing.llvq");
    let o = run(&["inspect", p(&missing)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.llvq"), "{}", stderr(&o));
    let t = json(&run(&["lattice", "theta", "--max-shell", "3", "--json"]));
    assert!(t.is_array() || t.is_object(), "{t}");
}

/// Issue 11: `quantize --finetune-tokens` tunes in one run and `inspect` says so; `finetune`
/// refuses a non-llvq input and an empty tuning text, leaving no output.
#[test]
fn finetune_tunes_in_one_run_and_refuses_bad_input() {
    let (dir, model, calib) = setup("finetune");
    let out = dir.join("t.llvq");
    let tune = ["--finetune-tokens", "64", "--tune-ctx", "32", "--teacher", p(&model)];
    let o = quantize(&model, &calib, &out, &tune);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["inspect", p(&out), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tuned"]["tokens"], 64);
    assert!(v["bits"]["input_scale"].as_u64().unwrap() > 0);
    let o = run(&["inspect", p(&out)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("tuned          yes: 64 tokens"));

    let again = dir.join("again.llvq");
    let o = run(&[
        "finetune",
        p(&calib),
        "--out",
        p(&again),
        "--teacher",
        p(&model),
        "--tune-calib",
        p(&calib),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("not an llvq file"),
        "{}",
        stderr(&o)
    );
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let o = run(&[
        "finetune",
        p(&out),
        "--out",
        p(&again),
        "--teacher",
        p(&model),
        "--calib",
        p(&empty),
    ]);
    assert!(!o.status.success() && stderr(&o).contains("empty"), "{}", stderr(&o));
    assert!(!again.exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 12: a GLVQ file quantizes, inspects (its side information shown and counted) and
/// evaluates through the same commands as every other method.
#[test]
fn glvq_quantizes_inspects_and_evaluates() {
    let (dir, model, calib) = setup("glvq");
    let out = dir.join("g.llvq");
    let q = |out: &Path, method: &str| quantize_with(method, &model, &calib, out, &[]);
    let o = q(&out, "glvq:group=16,iters=2,ldlq=1");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["inspect", p(&out), "--json", "--tensors"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["bits"]["side"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        v["bits"]["code"].as_u64().unwrap(),
        2 * v["quantized_weights"].as_u64().unwrap()
    );
    let g = &v["glvq"];
    assert_eq!(
        g["groups"].as_u64().unwrap(),
        g["below"].as_u64().unwrap() + g["at"].as_u64().unwrap() + g["above"].as_u64().unwrap()
    );
    assert_eq!(g["below"], g["above"], "SDBA moves as many groups down as up");
    assert!(
        v["linears"][0]["glvq"]["side"]["mu"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    let o = run(&["inspect", p(&out)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("glvq") && text.contains("side"),
        "{text}"
    );
    let mut ppl = ppl_args(&out, &calib, "16", "1");
    ppl.push("--json");
    let o = run(&ppl);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = q(&dir.join("bad.llvq"), "glvq:bits=8");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bit target 8"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}
