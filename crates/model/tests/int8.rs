//! int8 activations on 4-bit levels (`qmatmul::I8Weight`): every kernel family against the
//! scalar twin, the layout against the packed weight it was built from, and the int8 (and
//! 16-bit) product against the exact one within the bound of rounding x to that precision.

use llvq_codes::from_spec;
use llvq_model::qmatmul::int8::{ActBits, I8Scratch};
use llvq_model::qmatmul::kernels::{available, Isa};
use llvq_model::qmatmul::{I8Weight, MatVec, PackError, PackedWeight};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;
use common::{gauss, random_codes};

/// A packed matrix of random codes with random positive block scales.
fn packed(spec: &str, rows: usize, cols: usize, rng: &mut StdRng) -> PackedWeight {
    let q = from_spec(spec).unwrap();
    let padded = cols.div_ceil(q.dim()) * q.dim();
    let (codes, scales) = random_codes(q.as_ref(), rows, padded, rng);
    PackedWeight::from_codes(q.as_ref(), rows, cols, padded, &codes, &scales).unwrap()
}

fn check(spec: &str, rows: usize, cols: usize, seed: u64) {
    for bits in [ActBits::I8, ActBits::I16] {
        check_bits(spec, rows, cols, seed, bits);
    }
}

fn check_bits(spec: &str, rows: usize, cols: usize, seed: u64, bits: ActBits) {
    let mut rng = StdRng::seed_from_u64(seed);
    let p = packed(spec, rows, cols, &mut rng);
    let mut w = I8Weight::from_packed(&p).unwrap();
    w.set_act_bits(bits);
    // Same matrix as the packed layout, weight for weight.
    assert_eq!(
        w.to_dense(),
        p.to_dense(),
        "{spec} {rows}x{cols}: re-laid weights differ"
    );
    // Activations with an outlier per vector, as real ones have.
    let mut x = gauss(&mut rng, cols);
    x[rng.random_range(0..cols)] *= 20.0;
    let mut exact = vec![0f32; rows];
    w.matvec_ref(&x, &mut exact);
    let bound = w.int8_error_bound(&x);
    let mut s = I8Scratch::default();
    let mut twin = vec![0f32; rows];
    let dense = w.to_dense();
    w.matvec_on(&x, &mut twin, &mut s, Isa::Scalar);
    for isa in available() {
        let mut y = vec![f32::NAN; rows];
        w.matvec_on(&x, &mut y, &mut s, isa);
        for r in 0..rows {
            let mag: f32 = (0..cols).map(|j| (dense[r * cols + j] * x[j]).abs()).sum::<f32>() + bound[r];
            // SIMD against the scalar twin: the integer sums are exact, only the f32
            // accumulation order differs.
            assert!(
                (y[r] - twin[r]).abs() <= 1e-5 * mag + 1e-6,
                "{spec} {rows}x{cols} {bits:?} {isa:?} row {r}: {} vs twin {}",
                y[r],
                twin[r]
            );
            assert!(
                (y[r] - exact[r]).abs() <= bound[r],
                "{spec} {rows}x{cols} {bits:?} {isa:?} row {r}: {} vs exact {} (bound {})",
                y[r],
                exact[r],
                bound[r]
            );
        }
    }
    // matmul: t ≤ 2 runs the int8 product, t > 2 the f32 tiles (exact to f32 rounding).
    let t = 5;
    let xs = gauss(&mut rng, t * cols);
    let mut y = vec![0f32; t * rows];
    w.matmul(&xs, &mut y);
    let mut e = vec![0f32; rows];
    for (xt, yt) in xs.chunks_exact(cols).zip(y.chunks_exact(rows)) {
        w.matvec_ref(xt, &mut e);
        for r in 0..rows {
            let mag: f32 = (0..cols)
                .map(|j| (dense[r * cols + j] * xt[j]).abs() + dense[r * cols + j].abs())
                .sum();
            assert!(
                (yt[r] - e[r]).abs() <= 1e-4 * mag + 1e-5,
                "{spec} matmul row {r}: {} vs {}",
                yt[r],
                e[r]
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    /// Random shapes, widths not multiples of 8, 24 or 192, every 4-bit identity code.
    #[test]
    fn int8_kernels_agree_with_the_scalar_twin_and_the_exact_product(
        code in 0usize..4, rows in 1usize..70, cols in 1usize..420, seed in 0u64..1000,
    ) {
        let spec = ["llvq-ss:m=2,scale=1.3", "llvq-sg:m=2,gain=1,levels=4/5.5", "e8p12:scale=1.0375", "uniform:bits=4"][code];
        check(spec, rows, cols, seed);
    }
}

#[test]
fn default_model_shapes_split_over_tasks() {
    // 1536 × 576 (gate/up) runs over rayon tasks; 576 × 1536 (down) has 8 groups per row.
    check("llvq-ss:m=2,scale=1.3", 1536, 576, 1);
    check("llvq-ss:m=2,scale=1.3", 576, 1536, 2);
}

#[test]
fn other_layouts_are_refused() {
    let mut rng = StdRng::seed_from_u64(3);
    for spec in ["lloyd:bits=3", "uniform:bits=6"] {
        let p = packed(spec, 4, 40, &mut rng);
        assert!(
            matches!(I8Weight::from_packed(&p), Err(PackError::NoChunk { .. })),
            "{spec}"
        );
    }
}

/// Timing probe (not a check): `cargo test -p llvq-model --test int8 -- --ignored --nocapture`.
/// Best of 20 bursts, single thread, so a loaded machine shows the kernels' own cost.
#[test]
#[ignore]
fn probe_int8_vs_f32_matvec() {
    use llvq_model::qmatmul::packed::Scratch;
    let mut rng = StdRng::seed_from_u64(3);
    for (rows, cols) in [(1536, 576), (576, 1536), (192, 576)] {
        let p = packed("llvq-ss:m=2,scale=1.3", rows, cols, &mut rng);
        let w = I8Weight::from_packed(&p).unwrap();
        let mut w16 = w.clone();
        w16.set_act_bits(ActBits::I16);
        let x = gauss(&mut rng, cols);
        let mut y = vec![0f32; rows];
        let best = |f: &mut dyn FnMut()| {
            (0..20)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    for _ in 0..50 {
                        f();
                    }
                    t0.elapsed().as_secs_f64() / 50.0 * 1e6
                })
                .fold(f64::INFINITY, f64::min)
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        pool.install(|| {
            let mut s = Scratch::default();
            let mut s8 = I8Scratch::default();
            for isa in available() {
                let f = best(&mut || p.matvec_on(&x, &mut y, &mut s, isa));
                let i = best(&mut || w.matvec_on(&x, &mut y, &mut s8, isa));
                let i16 = best(&mut || w16.matvec_on(&x, &mut y, &mut s8, isa));
                eprintln!("{rows}x{cols} {isa:?}: f32 activations {f:.1} µs, int8 {i:.1} µs, int16 {i16:.1} µs");
            }
        });
    }
}

#[test]
fn a_reused_scratch_gives_the_products_of_a_fresh_one() {
    // The scratch remembers the input it rounded (q/k/v share it); a changed input, precision
    // or chunk layout must be rounded again.
    let mut rng = StdRng::seed_from_u64(11);
    let (rows, cols) = (40, 100);
    let a = I8Weight::from_packed(&packed("llvq-ss:m=2,scale=1.3", rows, cols, &mut rng)).unwrap();
    let b = I8Weight::from_packed(&packed("e8p12:scale=1.0375", rows, cols, &mut rng)).unwrap();
    let mut a16 = a.clone();
    a16.set_act_bits(ActBits::I16);
    let x1 = gauss(&mut rng, cols);
    let mut x2 = x1.clone();
    x2[37] += 0.25;
    let mut shared = I8Scratch::default();
    for (w, x) in [
        (&a, &x1),
        (&a, &x1),
        (&a, &x2),
        (&a16, &x2),
        (&b, &x2),
        (&a, &x1),
        (&a16, &x1),
    ] {
        for isa in available() {
            let (mut y, mut want) = (vec![0f32; rows], vec![0f32; rows]);
            w.matvec_on(x, &mut y, &mut shared, isa);
            w.matvec_on(x, &mut want, &mut I8Scratch::default(), isa);
            assert_eq!(y, want, "{isa:?}");
        }
    }
}
