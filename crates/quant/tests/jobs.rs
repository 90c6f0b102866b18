//! Issue 14: offline Hessians sharded by data, layer ranges as jobs, and their merge, on tiny
//! synthetic models. The reference is always an independent single-process `--mode full` run.
use std::ops::Range;
use std::path::{Path, PathBuf};

use llvq_model::config::{Arch, Config};
use llvq_model::testing::{random_weights, tmpdir};
use llvq_quant::calib::CalibParams;
use llvq_quant::hessians;
use llvq_quant::pipeline::{calibrate, merge_parts, quantize_layers, sharded_run, CalibrateParams, Placement, Shard};
use llvq_quant::{CalibMode, QuantError, QuantizeParams, Rotate};

mod common;
use common::{error_text, go, quantize};

/// A Qwen2-style model (biases: plain tensors inside the layers) 48 wide, MLP 40, 3 layers.
fn config(arch: Arch) -> Config {
    Config {
        num_layers: 3,
        ..common::config(arch)
    }
}

/// An HF directory (f32, or bf16 when `bf16`) and a calibration text.
fn setup(name: &str, arch: Arch, bf16: bool, seed: u64) -> (PathBuf, PathBuf, PathBuf) {
    let dir = tmpdir(name);
    let cfg = config(arch);
    let w = random_weights(&cfg, seed);
    let model = if bf16 {
        common::write_bf16_model(&dir, &cfg, &w)
    } else {
        common::write_model(&dir, &cfg, &w)
    };
    let calib = common::write_calib(&dir, 777, 900);
    (dir, model, calib)
}

fn params(calib: &Path) -> QuantizeParams {
    QuantizeParams {
        seed: 9,
        calib: CalibParams { seqs: 6, ctx: 48 },
        mode: CalibMode::Full,
        ..common::params("e8p12", calib, Rotate::Both)
    }
}

fn calib_params(p: &QuantizeParams, shard: Shard) -> CalibrateParams {
    CalibrateParams {
        calib_text: p.calib_text.clone(),
        calib: p.calib,
        shard,
        max_memory: None,
        activations: Placement::Memory,
    }
}

/// Bits of every Hessian mean of a directory.
fn hessian_bits(dir: &Path) -> Vec<Vec<u64>> {
    let m = hessians::read_manifest(dir).unwrap();
    (0..m.num_layers)
        .flat_map(|l| {
            let path = hessians::layer_path(dir, l);
            let h = hessians::read_layer(&path, l, m.tokens, false).unwrap();
            let bits = |h: llvq_quant::calib::LayerHessians| -> Vec<Vec<u64>> {
                h.hessians
                    .into_iter()
                    .map(|(_, h)| h.mean().into_iter().map(f64::to_bits).collect())
                    .collect()
            };
            let exact = bits(h);
            // Sums rounded to f64 on reading (what quantizing uses) give the same means.
            assert_eq!(bits(hessians::read_layer(&path, l, m.tokens, true).unwrap()), exact);
            exact
        })
        .collect()
}

#[test]
fn sharded_hessians_and_layer_jobs_give_the_full_mode_file_byte_for_byte() {
    for (arch, bf16) in [(Arch::Qwen2, false), (Arch::Llama, true)] {
        let (dir, model, calib) = setup(&format!("jobs-{arch:?}-{bf16}"), arch, bf16, 21);
        let p = params(&calib);
        let whole = dir.join("whole.llvq");
        quantize(&model, &whole, &p).unwrap();
        let whole = std::fs::read(&whole).unwrap();

        // 1, 2 and 3 shards: identical Hessian bits once merged. The two shards keep their
        // activations on disk (the others in memory), and the scratch files are gone after.
        let mut bits = Vec::new();
        for n in 1..=3 {
            let shards: Vec<PathBuf> = (0..n)
                .map(|i| {
                    let d = dir.join(format!("h{n}-{i}"));
                    let cp = CalibrateParams {
                        activations: if n == 2 { Placement::Disk } else { Placement::Memory },
                        ..calib_params(&p, Shard { index: i, count: n })
                    };
                    let r = calibrate(&model, &d, &cp, &mut go).unwrap();
                    assert!(std::fs::read_dir(&d).unwrap().all(|e| !e
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("hidden-")));
                    assert_eq!(r.windows, Some(Shard { index: i, count: n }.windows(6)));
                    d
                })
                .collect();
            let merged = dir.join(format!("h{n}"));
            let m = hessians::merge(&shards, &merged).unwrap();
            assert!(m.complete() && m.tokens == 6 * 48, "{m:?}");
            bits.push(hessian_bits(&merged));
        }
        assert!(
            bits.iter().all(|b| *b == bits[0]),
            "{arch:?}: Hessian bits depend on the sharding"
        );

        // Layer ranges as jobs, merged in any order: the single-process bytes.
        let all: Range<usize> = 0..3;
        let ranges: [&[Range<usize>]; 3] = [std::slice::from_ref(&all), &[0..1, 1..3], &[2..3, 0..1, 1..2]];
        for (k, rs) in ranges.iter().enumerate() {
            let parts: Vec<PathBuf> = rs
                .iter()
                .map(|r| {
                    let part = dir.join(format!("part{k}-{}-{}.llvq", r.start, r.end));
                    quantize_layers(
                        &model,
                        &dir.join(format!("h{}", k + 1)),
                        r.clone(),
                        &part,
                        &p,
                        None,
                        &mut go,
                    )
                    .unwrap();
                    // The per-layer scratch files are gone once the part exists.
                    assert!(!llvq_quant::format::with_suffix(&part, ".layers").exists());
                    part
                })
                .collect();
            let out = dir.join(format!("merged{k}.llvq"));
            merge_parts(&parts, &out).unwrap();
            assert!(
                std::fs::read(&out).unwrap() == whole,
                "{arch:?} bf16={bf16}: ranges {rs:?} differ from the single run"
            );
        }
        // The in-process chain the Slurm scripts run.
        let out = dir.join("chain.llvq");
        sharded_run(&model, &out, &p, 2, &[0..2, 2..3], &dir.join("work")).unwrap_or_else(|e| panic!("{e}"));
        assert!(std::fs::read(&out).unwrap() == whole);
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn bad_parts_and_hessians_are_refused_by_name_and_nothing_is_written() {
    let (dir, model, calib) = setup("jobs-bad", Arch::Qwen3, false, 5);
    // A scalar code keeps this many runs fast; the Hessian path is the same.
    let p = QuantizeParams {
        method: "gptq".into(),
        ..params(&calib)
    };
    let h = dir.join("h");
    calibrate(&model, &h, &calib_params(&p, Shard::default()), &mut go).unwrap();
    let part = |name: &str, r: Range<usize>, p: &QuantizeParams, h: &Path| {
        let out = dir.join(name);
        quantize_layers(&model, h, r, &out, p, None, &mut go).map(|_| out)
    };
    let a = part("a.llvq", 0..1, &p, &h).unwrap();
    let b = part("b.llvq", 1..3, &p, &h).unwrap();
    let c = part("c.llvq", 1..2, &p, &h).unwrap();
    let out = dir.join("out.llvq");
    let err = |parts: &[&PathBuf]| {
        let v: Vec<PathBuf> = parts.iter().map(|p| p.to_path_buf()).collect();
        let e = merge_parts(&v, &out).unwrap_err().to_string();
        assert!(!out.exists(), "written despite: {e}");
        e
    };
    // A missing layer, overlapping ranges.
    let e = err(&[&a, &c]);
    assert!(e.contains("layers 2..3"), "{e}");
    let e = err(&[&a, &b, &c]);
    assert!(
        e.contains("overlap") && (e.contains("b.llvq") || e.contains("c.llvq")),
        "{e}"
    );
    // Other parameters: the part is named, and the field.
    let d = part("d.llvq", 1..3, &QuantizeParams { seed: 10, ..p.clone() }, &h).unwrap();
    let e = err(&[&a, &d]);
    assert!(e.contains("d.llvq") && e.contains("seed"), "{e}");
    // Hessians of another model: refused when quantizing, and parts from other Hessians when merging.
    let (dir2, model2, _) = setup("jobs-bad-other", Arch::Qwen3, false, 6);
    let e = quantize_layers(&model2, &h, 0..1, &dir.join("x.llvq"), &p, None, &mut go)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another model"), "{e}");
    let h2 = dir.join("h2");
    calibrate(
        &model,
        &h2,
        &CalibrateParams {
            calib: CalibParams { seqs: 6, ctx: 40 },
            ..calib_params(&p, Shard::default())
        },
        &mut go,
    )
    .unwrap();
    let windows_6x40 = QuantizeParams {
        calib: CalibParams { seqs: 6, ctx: 40 },
        ..p.clone()
    };
    let f = part("f.llvq", 1..3, &windows_6x40, &h2).unwrap();
    let e = err(&[&a, &f]);
    assert!(e.contains("f.llvq") && e.contains("Hessians"), "{e}");
    // Not a part at all.
    let whole = dir.join("whole.llvq");
    quantize(&model, &whole, &p).unwrap();
    let e = err(&[&a, &whole]);
    assert!(e.contains("whole.llvq") && e.contains("not a layer-range part"), "{e}");

    // Sequential mode, an incomplete or mismatched Hessian directory, an over-tight memory limit.
    let sequential = QuantizeParams {
        mode: CalibMode::Sequential,
        ..p.clone()
    };
    let e = error_text(part("s.llvq", 0..1, &sequential, &h));
    assert!(e.contains("--mode full"), "{e}");
    let half = dir.join("half");
    calibrate(&model, &half, &calib_params(&p, Shard { index: 0, count: 2 }), &mut go).unwrap();
    let e = part("i.llvq", 0..1, &p, &half).unwrap_err().to_string();
    assert!(e.contains("3 of the 6") && e.contains("merge"), "{e}");
    let windows_5x48 = QuantizeParams {
        calib: CalibParams { seqs: 5, ctx: 48 },
        ..p.clone()
    };
    let e = error_text(part("j.llvq", 0..1, &windows_5x48, &h));
    assert!(e.contains("6 × 48"), "{e}");
    let e = part("k.llvq", 2..4, &p, &h).unwrap_err().to_string();
    assert!(e.contains("3 layers"), "{e}");
    let e = quantize_layers(&model, &h, 0..1, &dir.join("m.llvq"), &p, Some(1000), &mut go).unwrap_err();
    assert!(
        matches!(e, QuantError::Memory { .. }) && e.to_string().contains("--max-memory"),
        "{e}"
    );
    assert!(!dir.join("m.llvq").exists());
    let e = calibrate(
        &model,
        &dir.join("hm"),
        &CalibrateParams {
            max_memory: Some(1000),
            ..calib_params(&p, Shard::default())
        },
        &mut go,
    )
    .unwrap_err();
    assert!(matches!(e, QuantError::Memory { .. }), "{e}");
    assert!(!dir.join("hm").exists());

    // Merging Hessians: a window twice, another calibration, an existing output.
    let e = hessians::merge(&[half.clone(), h.clone()], &dir.join("hh"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("twice") && e.contains("half"), "{e}");
    let e = hessians::merge(&[h.clone(), h2.clone()], &dir.join("hh"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("h2") && e.contains("calib"), "{e}");
    assert!(!dir.join("hh").exists());
    let e = calibrate(&model, &h, &calib_params(&p, Shard::default()), &mut go)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exists"), "{e}");
    // A truncated or misplaced layer file is an error naming it.
    let l1 = hessians::layer_path(&h, 1);
    let bytes = std::fs::read(&l1).unwrap();
    std::fs::write(&l1, &bytes[..bytes.len() - 16]).unwrap();
    let e = quantize_layers(&model, &h, 1..2, &dir.join("t.llvq"), &p, None, &mut go)
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer-0001"), "{e}");
    std::fs::copy(hessians::layer_path(&h, 2), &l1).unwrap();
    let e = quantize_layers(&model, &h, 1..2, &dir.join("t.llvq"), &p, None, &mut go)
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds layer 2"), "{e}");
    assert!(!dir.join("t.llvq").exists());
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&dir2).ok();
}
