//! The f32 online rotations (`qmatmul::rotate`) against the f64 transform of `hadamard`.

use llvq_model::hadamard::Rotation;
use llvq_model::qmatmul::rotate::{FastRotation, OnlineRotation, SUB_ROWS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// `rows` rows of the f64 transform, rounded to f32.
fn reference(rot: &Rotation, x: &[f32], transpose: bool) -> Vec<f32> {
    let mut xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for row in xd.chunks_exact_mut(rot.dim()) {
        if transpose {
            rot.apply_t(row);
        } else {
            rot.apply(row);
        }
    }
    xd.into_iter().map(|v| v as f32).collect()
}

/// Every row agrees to f32 rounding: |err| ≤ 1e-5·‖row‖ per coordinate (an orthogonal
/// transform keeps the norm, and each output is a sum of n ± terms rounded in f32).
fn check(n: usize, t: usize, seed: u64, rng: &mut StdRng) {
    let rot = Rotation::new(n, seed);
    let fast = FastRotation::new(&rot).unwrap_or_else(|| panic!("order {n} ({}) has no f32 transform", rot.describe()));
    let x: Vec<f32> = (0..t * n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    for transpose in [false, true] {
        let want = reference(&rot, &x, transpose);
        let mut got = x.clone();
        fast.rows(&mut got, t, transpose);
        for (r, (g, w)) in got.chunks_exact(n).zip(want.chunks_exact(n)).enumerate() {
            let norm = w.iter().map(|v| v * v).sum::<f32>().sqrt();
            for (j, (a, b)) in g.iter().zip(w).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * norm,
                    "n {n} t {t} transpose {transpose}: row {r} [{j}] {a} vs {b}"
                );
            }
        }
        // R then Rᵀ is the identity.
        fast.rows(&mut got, t, !transpose);
        for (a, b) in got.iter().zip(&x) {
            assert!((a - b).abs() <= 1e-5, "n {n} t {t}: round trip {a} vs {b}");
        }
    }
}

#[test]
fn f32_transform_matches_f64_on_the_default_models_orders() {
    let mut rng = StdRng::seed_from_u64(9);
    // SmolLM2-135M: hidden 576 = 12·12·4, MLP 1536 = 12·128, k/v 192 = 12·16; t = 1 (a
    // generated token), around the sub-block size, and prefill blocks split over tasks.
    for n in [576, 1536, 192] {
        for t in [1, 2, 7, SUB_ROWS, SUB_ROWS + 1, 37, 130] {
            check(n, t, 1000 + n as u64 + t as u64, &mut rng);
        }
    }
}

#[test]
fn f32_transform_matches_f64_on_other_orders() {
    let mut rng = StdRng::seed_from_u64(10);
    for n in [
        1, 2, 8, 12, 20, 24, 28, 40, 64, 96, 144, 240, 768, 896, 1024, 2048, 4864,
    ] {
        for t in [1, 3, 19] {
            if FastRotation::new(&Rotation::new(n, 5)).is_some() {
                check(n, t, n as u64 * 31 + t as u64, &mut rng);
            } else {
                assert!(
                    Rotation::new(n, 5).is_fallback() || n == 0,
                    "order {n} has a Hadamard matrix but no f32 transform"
                );
            }
        }
    }
}

#[test]
fn fallback_orders_keep_the_f64_transform() {
    // 43·4: no Hadamard matrix of order 172 is constructed, so the rotation is a fallback.
    let rot = Arc::new(Rotation::new(172, 3));
    if rot.is_fallback() {
        let online = OnlineRotation::new(rot.clone());
        assert!(!online.is_fast());
        let x: Vec<f32> = (0..2 * 172).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut got = x.clone();
        online.rows(&mut got, 2, false);
        assert_eq!(got, reference(&rot, &x, false));
    }
}
