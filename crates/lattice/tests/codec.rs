//! Integration tests of the codec: index round trips over every supported ball, any u64 to the
//! decoder, the batched dequantizer against the scalar reference, and (feature `slow-tests`,
//! run by CI in release mode) exhaustive checks over fully enumerated Λ24(3).

use llvq_lattice::dequant::decode_batch;
use llvq_lattice::leech::{is_point, shell_of};
use llvq_lattice::{Ball, LatticeError, Searcher, DIM, MAX_SHELL_LIMIT};
use proptest::prelude::*;

fn balls() -> &'static Vec<Ball> {
    static B: std::sync::OnceLock<Vec<Ball>> = std::sync::OnceLock::new();
    B.get_or_init(|| (2..=MAX_SHELL_LIMIT).map(|m| Ball::new(m).unwrap()).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any u64 decodes to a point of the ball that encodes back to it, or is out of range.
    #[test]
    fn any_u64_decodes_or_errors(m in 2u32..=MAX_SHELL_LIMIT, raw in any::<u64>(), small in any::<bool>()) {
        let ball = &balls()[(m - 2) as usize];
        // Half the cases land inside the ball, half anywhere in u64.
        let i = if small { raw % ball.len() } else { raw };
        match ball.decode(i) {
            Ok(x) => {
                prop_assert!(i < ball.len());
                prop_assert!(is_point(&x));
                let s = shell_of(&x).unwrap();
                prop_assert!((2..=m).contains(&s));
                prop_assert_eq!(ball.encode(&x).unwrap(), i);
            }
            Err(e) => {
                prop_assert!(i >= ball.len());
                prop_assert_eq!(e, LatticeError::IndexOutOfRange { index: i, len: ball.len(), max_shell: m });
            }
        }
    }

    /// The shell of a decoded point is the one the index range says (N(m−1) ≤ i < N(m)).
    #[test]
    fn shells_in_index_order(m in 3u32..=20, raw in any::<u64>()) {
        let ball = &balls()[(m - 2) as usize];
        let i = raw % ball.len();
        let s = shell_of(&ball.decode(i).unwrap()).unwrap();
        prop_assert!(i < ball.cumulative(s));
        if s > 2 {
            prop_assert!(i >= ball.cumulative(s - 1));
        }
    }
}

#[test]
fn batched_dequantizer_matches_reference() {
    for m in [2u32, 12, 13, 24, 33] {
        let ball = &balls()[(m - 2) as usize];
        let idx: Vec<u64> = (0..20_000u64)
            .map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % ball.len())
            .collect();
        let mut out = vec![0.0f32; idx.len() * DIM];
        decode_batch(ball, &idx, 0.25, &mut out).unwrap();
        for (k, &i) in idx.iter().enumerate() {
            let x = ball.decode(i).unwrap();
            let want: Vec<f32> = x.iter().map(|&v| v as f32 * 0.25).collect();
            assert_eq!(&out[k * DIM..(k + 1) * DIM], &want[..], "M={m} index {i}");
        }
        let bad = [0, ball.len()];
        assert!(matches!(
            decode_batch(ball, &bad, 1.0, &mut out[..48]),
            Err(LatticeError::IndexOutOfRange { .. })
        ));
    }
}

#[test]
fn encode_rejects_non_points_and_outside() {
    let ball = &balls()[0];
    let mut x = [0i32; DIM];
    assert!(matches!(
        ball.encode(&x),
        Err(LatticeError::NotALatticePoint { .. }) | Err(LatticeError::OutsideBall { .. })
    ));
    x[0] = 8; // (8, 0^23): shell 4, outside Λ24(2)
    assert_eq!(
        ball.encode(&x),
        Err(LatticeError::OutsideBall { shell: 4, max_shell: 2 })
    );
    x[1] = 1;
    assert!(matches!(ball.encode(&x), Err(LatticeError::NotALatticePoint { .. })));
}

#[test]
fn unsupported_balls_are_errors() {
    assert!(Ball::new(1).is_err());
    assert!(Ball::new(MAX_SHELL_LIMIT + 1).is_err());
    assert!(Searcher::new(0).is_err());
}

/// Every index of Λ24(3) (16,969,680 points) round-trips, and the exact search agrees with a
/// brute-force scan of all of them on random inputs, in both metrics.
#[cfg(feature = "slow-tests")]
#[test]
fn brute_force_ball_3() {
    use llvq_lattice::Metric;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use rand_distr::StandardNormal;
    use rayon::prelude::*;

    let s = Searcher::new(3).unwrap();
    let ball = s.ball();
    assert_eq!(ball.len(), 16_969_680);
    let mut rng = StdRng::seed_from_u64(2024);
    let inputs: Vec<[f32; DIM]> = (0..24)
        .map(|k| {
            let scale = [0.7f32, 1.5, 3.0][k % 3];
            std::array::from_fn(|_| rng.sample::<f32, _>(StandardNormal) * scale)
        })
        .collect();
    // Per input: best Euclidean score 2<x,y> − |x|² and best cosine·|x|-free score <x,y>/|x|.
    let init = || (vec![f64::MIN; inputs.len()], vec![f64::MIN; inputs.len()]);
    let (euc, ang) = (0..ball.len())
        .into_par_iter()
        .fold(init, |(mut e, mut a), i| {
            let x = ball.decode(i).unwrap();
            assert_eq!(ball.encode(&x).unwrap(), i);
            let n2: f64 = x.iter().map(|&v| (v * v) as f64).sum();
            for (k, y) in inputs.iter().enumerate() {
                let d: f64 = x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum();
                e[k] = e[k].max(2.0 * d - n2);
                a[k] = a[k].max(d / n2.sqrt());
            }
            (e, a)
        })
        .reduce(init, |(e1, a1), (e2, a2)| {
            (
                e1.iter().zip(&e2).map(|(p, q)| p.max(*q)).collect(),
                a1.iter().zip(&a2).map(|(p, q)| p.max(*q)).collect(),
            )
        });
    for (k, y) in inputs.iter().enumerate() {
        for (metric, brute) in [(Metric::Euclidean, euc[k]), (Metric::Angular, ang[k])] {
            let x = s.search(y, metric).unwrap().point;
            let n2: f64 = x.iter().map(|&v| (v * v) as f64).sum();
            let d: f64 = x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum();
            let got = if metric == Metric::Euclidean {
                2.0 * d - n2
            } else {
                d / n2.sqrt()
            };
            assert!(
                (got - brute).abs() <= 1e-4 * (1.0 + brute.abs()),
                "input {k} {metric:?}: {got} vs brute {brute}"
            );
        }
    }
}
