//! The packed runtime layout and its kernels (issue 9 items 3, 4, 6): every SIMD path against
//! the scalar reference and against the dense matrix, and `from_codes` against the codes' own
//! `decode_scaled`.

use llvq_codes::{from_spec, Quantizer};
use llvq_model::qmatmul::kernels::{available, Isa};
use llvq_model::qmatmul::packed::Scratch;
use llvq_model::qmatmul::{F16Matrix, MatVec, PackError, PackedWeight};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

mod common;
use common::{gauss, random_codes};

/// Checks `got` against f64 dot products of `w` (`rows × cols`) with `x`, relative to
/// Σ(|w| + 2·max|W|)·|x|: a packed weight is mult·n + offset with |offset| up to about twice the
/// largest weight, so a zero weight carries rounding of that size.
fn check_against_dense(w: &[f32], rows: usize, cols: usize, x: &[f32], got: &[f32], what: &str) {
    let t = x.len() / cols;
    let wmax = w.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
    for s in 0..t {
        for r in 0..rows {
            let (mut dot, mut mag) = (0f64, 0f64);
            for j in 0..cols {
                let p = w[r * cols + j] as f64 * x[s * cols + j] as f64;
                dot += p;
                mag += (w[r * cols + j].abs() as f64 + 2.0 * wmax) * (x[s * cols + j] as f64).abs();
            }
            let g = got[s * rows + r] as f64;
            assert!(
                (g - dot).abs() <= 2e-5 * mag + 1e-6,
                "{what}: vector {s} row {r}: {g} vs {dot} (Σ|wx| {mag})"
            );
        }
    }
}

/// Every kernel family and both entry points against the dense matrix.
fn check_kernels(w: &PackedWeight, t: usize, rng: &mut StdRng, what: &str) {
    let (rows, cols) = (w.rows(), w.cols());
    let dense = w.to_dense();
    let x = gauss(rng, t * cols);
    let mut y = vec![0f32; t * rows];
    w.matmul_ref(&x, &mut y);
    check_against_dense(&dense, rows, cols, &x, &y, &format!("{what} ref"));
    let mut scratch = Scratch::default();
    for isa in available() {
        y.iter_mut().for_each(|v| *v = f32::NAN);
        for (xt, yt) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
            w.matvec_on(xt, yt, &mut scratch, isa);
        }
        check_against_dense(&dense, rows, cols, &x, &y, &format!("{what} matvec {isa:?}"));
    }
    y.iter_mut().for_each(|v| *v = f32::NAN);
    w.matmul(&x, &mut y);
    check_against_dense(&dense, rows, cols, &x, &y, &format!("{what} matmul t={t}"));
}

/// One code per layout: 4-bit identity (uniform, E8P12, Λ24), 4-bit LUT (Lloyd), 8-bit
/// identity (6-bit uniform, Λ24(20)) and 8-bit LUT (6-bit Lloyd).
const LAYOUTS: &[(&str, u32, bool)] = &[
    ("uniform:bits=4", 4, true),
    ("e8p12:scale=1.0375", 4, true),
    ("llvq-ss:m=2,scale=1.3", 4, true),
    ("llvq-sg:m=2,gain=1,levels=4/5.5", 4, true),
    ("lloyd:bits=3", 4, false),
    ("uniform:bits=6", 8, true),
    ("lloyd:bits=6", 8, false),
];

fn codes() -> &'static Vec<Box<dyn Quantizer>> {
    static C: std::sync::OnceLock<Vec<Box<dyn Quantizer>>> = std::sync::OnceLock::new();
    C.get_or_init(|| LAYOUTS.iter().map(|(s, _, _)| from_spec(s).unwrap()).collect())
}

/// Packs random codes, checks the layout and that it decodes as `decode_scaled` does.
fn packed(q: &dyn Quantizer, rows: usize, cols: usize, rng: &mut StdRng) -> PackedWeight {
    let d = q.dim();
    let padded = cols.div_ceil(d) * d;
    let (codes, scales) = random_codes(q, rows, padded, rng);
    let w = PackedWeight::from_codes(q, rows, cols, padded, &codes, &scales).unwrap();
    let mut want = vec![0f32; rows * padded];
    q.decode_scaled(&codes, &scales, &mut want).unwrap();
    let got = w.to_dense();
    for r in 0..rows {
        for j in 0..cols {
            let (g, e) = (got[r * cols + j], want[r * padded + j]);
            assert!(
                (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                "{} ({r}, {j}): {g} vs {e}",
                q.spec()
            );
        }
    }
    w
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]
    #[test]
    fn every_layout_agrees_with_the_reference(which in 0..LAYOUTS.len(), rows in 1usize..70, cols in 1usize..260,
                                              t in 1usize..18, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let q = codes()[which].as_ref();
        let w = packed(q, rows, cols, &mut rng);
        prop_assert_eq!(w.level_bits(), LAYOUTS[which].1);
        prop_assert_eq!(w.is_identity(), LAYOUTS[which].2);
        check_kernels(&w, t, &mut rng, LAYOUTS[which].0);
    }

    #[test]
    fn q8_rows_round_to_half_a_step(rows in 1usize..40, cols in 1usize..200, per_row in any::<bool>(),
                                    t in 1usize..18, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let w = gauss(&mut rng, rows * cols);
        let chunk = if per_row { cols.div_ceil(8) * 8 } else { 32 };
        let p = PackedWeight::q8_rows(rows, cols, &w, chunk).unwrap();
        let d = p.to_dense();
        for r in 0..rows {
            for c in 0..cols.div_ceil(chunk) {
                let seg = r * cols + c * chunk..r * cols + ((c + 1) * chunk).min(cols);
                let step = w[seg.clone()].iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                for i in seg {
                    prop_assert!((d[i] - w[i]).abs() <= 0.5 * step * (1.0 + 1e-5), "({}, {}): {} vs {}", r, i, d[i], w[i]);
                }
            }
        }
        check_kernels(&p, t, &mut rng, "q8");
    }

    #[test]
    fn f16_matrix_agrees_with_the_reference(rows in 1usize..70, cols in 1usize..200, t in 1usize..18, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let w = gauss(&mut rng, rows * cols);
        let m = F16Matrix::from_f32(rows, cols, &w).unwrap();
        let dense = m.to_dense();
        for (a, b) in dense.iter().zip(&w) {
            prop_assert!((a - b).abs() <= 1e-3 * b.abs().max(6e-5));
        }
        let x = gauss(&mut rng, t * cols);
        let mut y = vec![0f32; t * rows];
        for (xt, yt) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
            m.matvec_ref(xt, yt);
        }
        check_against_dense(&dense, rows, cols, &x, &y, "f16 ref");
        for isa in available() {
            for (xt, yt) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
                m.matvec_on(xt, yt, isa);
            }
            check_against_dense(&dense, rows, cols, &x, &y, &format!("f16 {isa:?}"));
        }
        m.matmul(&x, &mut y);
        check_against_dense(&dense, rows, cols, &x, &y, "f16 matmul");
    }
}

/// Big enough for many rayon tasks and many GEMM tiles (rows not a multiple of the tile).
#[test]
fn large_shapes_split_over_tasks_and_tiles() {
    let mut rng = StdRng::seed_from_u64(7);
    let q = from_spec("llvq-ss:m=2,scale=1.3").unwrap();
    let w = packed(q.as_ref(), 1001, 577, &mut rng);
    for t in [1, 3, 33] {
        check_kernels(&w, t, &mut rng, "1001x577");
    }
    assert!(available().contains(&Isa::Scalar));
}

/// The paper's codes at their default SPECs (scales fitted), as the pipeline writes them.
#[test]
fn from_codes_matches_decode_scaled_on_the_pipeline_codes() {
    let mut rng = StdRng::seed_from_u64(11);
    for spec in [
        "llvq-sg:m=12,gain=1",
        "llvq-ss:m=13",
        "e8p12",
        "uniform:bits=2",
        "lloyd:bits=2",
    ] {
        let q = from_spec(spec).unwrap();
        let w = packed(q.as_ref(), 9, 100, &mut rng);
        assert_eq!(w.level_bits(), 4, "{spec}");
        check_kernels(&w, 5, &mut rng, spec);
        let bpw = w.bits_per_weight();
        let expect = 4.0 + 64.0 / w.chunk() as f64;
        // Padding to the chunk adds a little on a 100-column matrix.
        assert!(bpw >= expect && bpw < expect * 1.4, "{spec}: {bpw} bits/weight");
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let q = from_spec("uniform:bits=9").unwrap();
    assert!(matches!(
        PackedWeight::from_codes(q.as_ref(), 1, 8, 8, &[0; 8], &[1.0; 8]),
        Err(PackError::NoGrid { .. })
    ));
    let q = from_spec("e8p12:scale=1").unwrap();
    let e = PackedWeight::from_codes(q.as_ref(), 2, 16, 16, &[0; 3], &[1.0; 3]);
    assert!(matches!(
        e,
        Err(PackError::Shape {
            what: "blocks",
            got: 3,
            expected: 4
        })
    ));
    let e = PackedWeight::from_codes(q.as_ref(), 1, 16, 16, &[0; 2], &[1.0, f32::NAN]);
    assert!(matches!(e, Err(PackError::BadValue { index: 1, .. })));
    let e = PackedWeight::from_codes(q.as_ref(), 1, 16, 12, &[0; 2], &[1.0; 2]);
    assert!(matches!(
        e,
        Err(PackError::Shape {
            what: "padded columns",
            ..
        })
    ));
    let e = PackedWeight::from_codes(q.as_ref(), 1, 8, 8, &[1 << 20], &[1.0]);
    assert!(matches!(e, Err(PackError::Code { block: 0, .. })));
    assert!(matches!(
        PackedWeight::q8_rows(1, 2, &[1.0, f32::INFINITY], 8),
        Err(PackError::BadValue { index: 1, .. })
    ));
    assert!(matches!(
        F16Matrix::from_f32(1, 1, &[1e6]),
        Err(PackError::BadValue { .. })
    ));
}

/// Timing probe (not a check): `cargo test --test qmatmul -- --ignored --nocapture probe`
/// under `/usr/bin/time` separates CPU time from wall time on a loaded machine.
#[test]
#[ignore]
fn probe_single_thread_matvec() {
    let mut rng = StdRng::seed_from_u64(3);
    let q = from_spec("llvq-ss:m=2,scale=1.3").unwrap();
    let w = packed(q.as_ref(), 192, 576, &mut rng);
    let x = gauss(&mut rng, 576);
    let mut y = vec![0f32; 192];
    let mut s = Scratch::default();
    let isa = *available().last().unwrap();
    let t0 = std::time::Instant::now();
    for _ in 0..20_000 {
        w.matvec_on(&x, &mut y, &mut s, isa);
    }
    eprintln!(
        "{isa:?}: {:.2} µs per 192x576 matvec (wall)",
        t0.elapsed().as_secs_f64() / 20_000.0 * 1e6
    );
}
