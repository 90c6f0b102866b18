//! Properties of the codes: registry, SPEC round trips, bits counted, exact encoders against
//! plain scans, and measured MSE against independent computations.

use llvq_codes::e8ball::E8Ball;
use llvq_codes::e8p12::{self, E8p12};
use llvq_codes::lab::{distortion, VECTOR};
use llvq_codes::shellscan::ShellScan;
use llvq_codes::source::gaussian;
use llvq_codes::{from_spec, CodeError, CodeId, Quantizer, Spec, CODES};
use llvq_lattice::{Ball, Metric, Searcher};

fn mse(q: &dyn Quantizer, xs: &[f32]) -> (f64, f64) {
    let (s, s2) = distortion(q, xs).unwrap();
    let n = (xs.len() / VECTOR) as f64;
    let m = s / n;
    (m, ((s2 / n - m * m) / n).sqrt())
}

#[test]
fn registry_ids_are_stable_and_unique() {
    // The ids are written into outputs: these values are a contract, never to be reused.
    let expect = [
        ("int2", 1),
        ("uniform", 2),
        ("lloyd", 3),
        ("e8p12", 4),
        ("e8ball", 5),
        ("llvq-ss", 6),
        ("llvq-sg", 7),
        ("glvq", 8),
    ];
    assert_eq!(CODES.len(), expect.len());
    for (name, id) in expect {
        let m = CodeId::from_name(name).unwrap();
        assert_eq!(m.id(), id);
        assert_eq!(CodeId::from_id(id), Some(m));
        assert_eq!(m.name(), name);
    }
}

#[test]
fn spec_errors_name_the_culprit() {
    assert!(matches!(Spec::parse("nope:m=1"), Err(CodeError::UnknownMethod { name, .. }) if name == "nope"));
    assert!(matches!(Spec::parse("lloyd:bits"), Err(CodeError::BadSpec { .. })));
    assert!(matches!(
        Spec::parse("lloyd:bits=2,bits=3"),
        Err(CodeError::BadSpec { .. })
    ));
    assert!(matches!(from_spec("lloyd:bitz=2"), Err(CodeError::UnknownParam { key, .. }) if key == "bitz"));
    assert!(matches!(
        from_spec("lloyd:bits=x"),
        Err(CodeError::BadParam { key: "bits", .. })
    ));
    assert!(matches!(
        from_spec("uniform:bits=8,dim=9"),
        Err(CodeError::TooManyBits { .. })
    ));
    assert!(matches!(
        from_spec("llvq-ss:m=1,scale=1"),
        Err(CodeError::BadParam { key: "m", .. })
    ));
    assert!(matches!(
        from_spec("llvq-sg:m=12,gain=1,levels=2/1"),
        Err(CodeError::BadParam { key: "levels", .. })
    ));
    assert!(matches!(
        from_spec("e8p12:scale=-1"),
        Err(CodeError::BadParam { key: "scale", .. })
    ));
    // GLVQ parses as a SPEC but is learned per layer: no fixed block code to build.
    assert!(matches!(from_spec("glvq:d=8"), Err(CodeError::BadSpec { reason, .. }) if reason.contains("pipeline")));
}

/// Issue 16: a stored value that overflows or underflows as the f32 the code keeps (or whose
/// reciprocal does) is refused when the SPEC is read, instead of producing NaN output.
#[test]
fn spec_values_are_checked_as_the_f32_the_code_stores() {
    for (spec, key) in [
        ("e8p12:scale=1e-45", "scale"),
        ("e8p12:scale=1e39", "scale"),
        ("e8p12:scale=1e38", "scale"),
        ("e8ball:scale=1e-40", "scale"),
        ("llvq-ss:m=2,scale=1e39", "scale"),
        ("llvq-ss:m=2,scale=nan", "scale"),
        ("llvq-sg:m=2,gain=1,levels=1e300/1e301", "levels"),
        ("llvq-sg:m=2,gain=1,levels=1/1.00000001", "levels"),
    ] {
        match from_spec(spec) {
            Err(CodeError::BadParam { key: k, .. }) if k == key => {}
            Err(e) => panic!("{spec}: {e}"),
            Ok(q) => panic!("{spec} accepted as {}", q.spec()),
        }
    }
    // The extremes still accepted give finite reconstructions of a Gaussian sample.
    for spec in [
        "e8p12:scale=1.2e-38",
        "e8p12:scale=8e37",
        "llvq-ss:m=2,scale=1.2e-38",
        "llvq-sg:m=2,gain=1,levels=1e-30/1e30",
    ] {
        let q = from_spec(spec).unwrap();
        let xs: Vec<f32> = gaussian(q.dim() * 64, 9).iter().map(|v| v.clamp(-4.0, 4.0)).collect();
        let codes = q.encode(&xs).unwrap();
        let mut out = vec![0f32; xs.len()];
        q.decode(&codes, &mut out).unwrap();
        assert!(out.iter().all(|v| v.is_finite()), "{spec}");
    }
}

/// Codes cheap to build (fitted values given where a fit would be slow).
const CHEAP: &[&str] = &[
    "int2",
    "uniform:bits=1",
    "uniform:bits=3",
    "lloyd:bits=1",
    "lloyd:bits=2",
    "lloyd:bits=3,dim=8",
    "e8p12:scale=1.0375",
    "e8ball:scale=1.015",
    "llvq-ss:m=2,scale=1.3",
    "llvq-sg:m=2,gain=1,levels=4/5.5",
    "llvq-sg:m=3,gain=2,variant=chi,levels=3.5/4.5/5/6",
];

#[test]
fn round_trips_and_bits() {
    let xs = gaussian(VECTOR * 64, 7);
    for spec in CHEAP {
        let q = from_spec(spec).unwrap();
        let d = q.dim();
        assert!(q.bits() <= 64 && q.bits() > 0, "{spec}");
        // The canonical SPEC rebuilds the same code.
        let again = from_spec(&q.spec()).unwrap();
        assert_eq!(again.spec(), q.spec(), "{spec}");
        let codes = q.encode(&xs).unwrap();
        assert_eq!(codes, again.encode(&xs).unwrap(), "{spec}");
        assert_eq!(codes.len(), xs.len() / d);
        let mut out = vec![0f32; xs.len()];
        q.decode(&codes, &mut out).unwrap();
        for (k, &c) in codes.iter().enumerate() {
            assert!(
                q.bits() == 64 || c >> q.bits() == 0,
                "{spec}: code {c:#x} wider than {} bits",
                q.bits()
            );
            // Batch and reference decoders agree; a reconstruction re-encodes to itself.
            let mut one = vec![0f32; d];
            q.decode_block(c, &mut one).unwrap();
            let blk = &out[k * d..(k + 1) * d];
            for (a, b) in one.iter().zip(blk) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{spec}: batch decode differs");
            }
            let c2 = q.encode_block(blk).unwrap();
            let mut two = vec![0f32; d];
            q.decode_block(c2, &mut two).unwrap();
            for (a, b) in one.iter().zip(&two) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                    "{spec}: codeword does not re-encode to itself"
                );
            }
        }
        assert!(
            q.decode_block(u64::MAX, &mut vec![0f32; d]).is_err() || q.bits() == 64,
            "{spec}"
        );
    }
}

#[test]
fn scaled_forms_scale_blocks() {
    let q = from_spec("e8p12:scale=1.0375").unwrap();
    let xs = gaussian(8 * 50, 3);
    let scales: Vec<f32> = (0..50).map(|i| 0.5 + i as f32 * 0.1).collect();
    let codes = q.encode_scaled(&xs, &scales).unwrap();
    let mut out = vec![0f32; xs.len()];
    q.decode_scaled(&codes, &scales, &mut out).unwrap();
    for (i, s) in scales.iter().enumerate() {
        let blk: Vec<f32> = xs[i * 8..(i + 1) * 8].iter().map(|v| v / s).collect();
        assert_eq!(codes[i], q.encode_block(&blk).unwrap());
        let mut r = [0f32; 8];
        q.decode_block(codes[i], &mut r).unwrap();
        for (a, b) in r.iter().zip(&out[i * 8..]) {
            assert!((a * s - b).abs() < 1e-5);
        }
    }
    assert!(matches!(
        q.encode_scaled(&xs, &scales[1..]),
        Err(CodeError::ScaleCount { got: 49, blocks: 50 })
    ));
    let mut bad = scales.clone();
    bad[3] = 0.0;
    assert!(matches!(
        q.encode_scaled(&xs, &bad),
        Err(CodeError::BadScale { block: 3, .. })
    ));
    assert!(matches!(
        q.encode(&xs[..7]),
        Err(CodeError::BadLength { got: 7, dim: 8 })
    ));
    let mut nan = xs[..8].to_vec();
    nan[5] = f32::NAN;
    assert!(matches!(
        q.encode_block(&nan),
        Err(CodeError::NonFinite { position: 5, .. })
    ));
}

/// Scalar codes: the measured MSE agrees with the exact integral within a few standard errors.
#[test]
fn scalar_mse_matches_exact_integral() {
    let xs = gaussian(VECTOR * 20_000, 11);
    for spec in [
        "int2",
        "uniform:bits=1",
        "uniform:bits=2",
        "lloyd:bits=1",
        "lloyd:bits=2",
        "lloyd:bits=3",
    ] {
        let s = Spec::parse(spec).unwrap();
        let q = llvq_codes::scalar::Scalar::from_spec(&s).unwrap();
        let (m, se) = mse(&q, &xs);
        assert!(
            (m - q.design_mse()).abs() < 4.0 * se,
            "{spec}: measured {m} ± {se}, exact {}",
            q.design_mse()
        );
    }
    // Lloyd-Max beats every other scalar code at its rate; the INT2 grid is worst.
    let d = |s: &str| {
        llvq_codes::scalar::Scalar::from_spec(&Spec::parse(s).unwrap())
            .unwrap()
            .design_mse()
    };
    assert!(d("lloyd:bits=2") < d("uniform:bits=2") && d("uniform:bits=2") < d("int2"));
}

#[test]
fn e8p12_is_its_construction() {
    let src = e8p12::source_points();
    let mut seen = std::collections::HashSet::new();
    for a in src.iter() {
        assert!(a.iter().all(|&v| v % 2 == 1));
        let n2: u32 = a.iter().map(|&v| (v as u32).pow(2)).sum();
        assert!(n2 <= 40 || n2 == 48, "norm² {}", n2 as f32 / 4.0);
        assert!(seen.insert(*a), "source points are distinct");
    }
    let q = E8p12::with_scale(1.0);
    let mut words = std::collections::HashSet::new();
    let mut c = [0f32; 8];
    for code in 0..1u64 << 16 {
        q.decode_unscaled(code, &mut c);
        // c ∓ ¼ ∈ D̂8: half-integers with an even sum.
        let shift = if code >> 15 == 1 { 0.25 } else { -0.25 };
        let h: Vec<f32> = c.iter().map(|v| 2.0 * (v - shift)).collect();
        assert!(h.iter().all(|v| v.fract() == 0.0 && (*v as i32).rem_euclid(2) == 1));
        assert_eq!(
            (h.iter().sum::<f32>() as i32).rem_euclid(4),
            0,
            "sum of D̂8 point is even"
        );
        assert!(words.insert(c.map(|v| (v * 4.0) as i32)));
    }
    assert_eq!(words.len(), 1 << 16);
}

#[test]
fn e8p12_encoder_is_exact() {
    let q = E8p12::with_scale(1.0);
    let xs = gaussian(8 * 300, 5);
    let mut a = [0f32; 8];
    let mut b = [0f32; 8];
    for y in xs.chunks_exact(8) {
        let y: Vec<f32> = y.iter().map(|v| v * 1.2).collect();
        q.decode_unscaled(q.encode_unscaled(&y), &mut a);
        q.decode_unscaled(q.encode_reference(&y), &mut b);
        let da: f32 = a.iter().zip(&y).map(|(p, v)| (p - v).powi(2)).sum();
        let db: f32 = b.iter().zip(&y).map(|(p, v)| (p - v).powi(2)).sum();
        assert!((da - db).abs() < 1e-4, "fast {da} vs scan {db}");
    }
}

#[test]
fn e8ball_is_the_smallest_points_and_encodes_exactly() {
    let s = Spec::parse("e8ball:scale=1").unwrap();
    let q = E8Ball::from_spec(&s).unwrap();
    let mut norms = [0usize; 13];
    for k in 0..1 << 16 {
        let p = q.point(k);
        let d: Vec<i32> = p.iter().map(|v| (v * 2.0) as i32).collect();
        let all_even = d.iter().all(|v| v % 2 == 0);
        let all_odd = d.iter().all(|v| v.rem_euclid(2) == 1);
        assert!(all_even || all_odd);
        assert_eq!(d.iter().sum::<i32>().rem_euclid(4), 0, "E8: even coordinate sum");
        norms[(d.iter().map(|v| v * v).sum::<i32>() / 4) as usize] += 1;
    }
    // E8 theta series 1, 240, 2160, 6720, 17520, 30240 (norms 0..10), then part of norm 12.
    assert_eq!(norms[..11], [1, 0, 240, 0, 2160, 0, 6720, 0, 17520, 0, 30240]);
    assert_eq!(norms[12], 65536 - 56881);
    let xs = gaussian(8 * 300, 9);
    for y in xs.chunks_exact(8) {
        let y: Vec<f32> = y.iter().map(|v| v * 1.3).collect();
        let d = |k: u64| {
            q.point(k as usize)
                .iter()
                .zip(&y)
                .map(|(p, v)| (p - v).powi(2))
                .sum::<f32>()
        };
        assert!((d(q.encode_unscaled(&y)) - d(q.encode_reference(&y))).abs() < 1e-4);
    }
}

/// Λ24(2) is small enough to enumerate: both LLVQ encoders against brute force.
#[test]
fn llvq_encoders_match_brute_force_on_lambda24_2() {
    let ball = Ball::new(2).unwrap();
    let pts: Vec<[f32; 24]> = (0..ball.len())
        .map(|i| ball.decode(i).unwrap().map(|v| v as f32))
        .collect();
    let xs = gaussian(VECTOR * 150, 13);
    let ss = from_spec("llvq-ss:m=2,scale=1.3").unwrap();
    let sg = from_spec("llvq-sg:m=2,gain=0,levels=4.5").unwrap();
    let (mut brute_ss, mut brute_sg) = (0f64, 0f64);
    for w in xs.chunks_exact(VECTOR) {
        let y: Vec<f32> = w.iter().map(|v| v * 1.3).collect();
        let best_e = pts
            .iter()
            .map(|p| p.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f32>())
            .fold(f32::MAX, f32::min);
        let best_c = pts
            .iter()
            .map(|p| p.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() / 32f32.sqrt())
            .fold(f32::MIN, f32::max);
        brute_ss += best_e as f64 / (1.3f64 * 1.3) / 24.0;
        // Shell 2 has |x|² = 32 in L_int: ŝ = x/√32, reconstruction 4.5·ŝ.
        let wn: f32 = w.iter().map(|v| v * v).sum();
        brute_sg += (wn - 2.0 * 4.5 * best_c + 4.5 * 4.5) as f64 / 24.0;
    }
    let n = (xs.len() / VECTOR) as f64;
    let (m_ss, _) = mse(ss.as_ref(), &xs);
    let (m_sg, _) = mse(sg.as_ref(), &xs);
    assert!(
        (m_ss - brute_ss / n).abs() < 1e-4 * m_ss,
        "ss {m_ss} vs brute {}",
        brute_ss / n
    );
    assert!(
        (m_sg - brute_sg / n).abs() < 1e-4 * m_sg,
        "sg {m_sg} vs brute {}",
        brute_sg / n
    );
}

#[test]
fn paper_rates_are_exactly_two_bits() {
    let ss = from_spec("llvq-ss:m=13,scale=2.88").unwrap();
    assert_eq!((ss.dim(), ss.bits()), (24, 48));
    let sg = from_spec("llvq-sg:m=12,gain=1,levels=4.16/5.25").unwrap();
    assert_eq!((sg.dim(), sg.bits()), (24, 48));
    for (m, k) in [(11, 2), (10, 4)] {
        let q = from_spec(&format!(
            "llvq-sg:m={m},gain={k},levels={}",
            (0..1 << k).map(|i| (4 + i).to_string()).collect::<Vec<_>>().join("/")
        ))
        .unwrap();
        assert_eq!(q.bits(), 48, "Λ24({m}) + {k} gain bits");
    }
    assert_eq!(from_spec("e8p12:scale=1").unwrap().rate(), 2.0);
    assert_eq!(from_spec("int2").unwrap().rate(), 2.0);
}

/// The single-shell scan agrees with brute force on Shell(2), and its union over shells 2..=4
/// agrees with the lattice crate's angular search (two independent exact methods).
#[test]
fn shell_scan_is_exact() {
    let ball = Ball::new(4).unwrap();
    let s2 = ShellScan::new(&ball, 2);
    let pts: Vec<[f32; 24]> = (0..ball.cumulative(2))
        .map(|i| ball.decode(i).unwrap().map(|v| v as f32))
        .collect();
    let scans: Vec<ShellScan> = (2..=4).map(|m| ShellScan::new(&ball, m)).collect();
    let search = Searcher::new(4).unwrap();
    let xs = gaussian(VECTOR * 40, 17);
    for w in xs.chunks_exact(VECTOR) {
        let y: &[f32; 24] = w.try_into().unwrap();
        let brute = pts
            .iter()
            .map(|p| p.iter().zip(y).map(|(a, b)| a * b).sum::<f32>())
            .fold(f32::MIN, f32::max);
        assert!(
            (s2.best_dot(y) - brute).abs() < 1e-3 * brute.abs(),
            "scan {} brute {brute}",
            s2.best_dot(y)
        );
        let union = scans.iter().map(|s| s.best_cos(y)).fold(f32::MIN, f32::max);
        let p = search.search(y, Metric::Angular).unwrap().point;
        let n = (p.iter().map(|&v| (v * v) as f32).sum::<f32>() * y.iter().map(|v| v * v).sum::<f32>()).sqrt();
        let cos = p.iter().zip(y).map(|(&a, b)| a as f32 * b).sum::<f32>() / n;
        assert!((union - cos).abs() < 1e-5, "scan {union} search {cos}");
    }
}

#[test]
fn source_is_reproducible_and_thread_independent() {
    let a = gaussian(100_000, 42);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let b = pool.install(|| gaussian(100_000, 42));
    assert_eq!(a, b);
    assert_ne!(a, gaussian(100_000, 43));
    let m: f64 = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
    let v: f64 = a.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / a.len() as f64;
    assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.02);
}

#[test]
fn gain_codes_follow_their_laws() {
    use llvq_codes::design::{chi_density, Grid};
    let chi = llvq_codes::llvq::chi_gain_grid();
    // One level: the mean of χ24, √2 Γ(12.5)/Γ(12).
    let mean = 2f64.sqrt() * (libm_lgamma(12.5) - libm_lgamma(12.0)).exp();
    assert!((chi.lloyd(1)[0] - mean).abs() < 1e-6);
    // Lloyd codes: more levels, less distortion; the law is normalised.
    let e: Vec<f64> = (0..4).map(|k| chi.mse(&chi.lloyd(1 << k))).collect();
    assert!(e.windows(2).all(|w| w[1] < w[0]), "{e:?}");
    let g = Grid::from_density(|r| chi_density(24, r), 0.0, 14.0, 10_000);
    assert!((g.mean() - mean).abs() < 1e-6);
}

fn libm_lgamma(x: f64) -> f64 {
    // ln Γ for half-integers and integers from the recurrence, independent of libm.
    let mut v = if x.fract() == 0.0 {
        0.0
    } else {
        0.5 * std::f64::consts::PI.ln()
    };
    let mut t = if x.fract() == 0.0 { 1.0 } else { 0.5 };
    while t < x {
        v += t.ln();
        t += 1.0;
    }
    v
}

/// The lab picks balls from the theta series; the class tables must agree on every width.
#[test]
fn lab_ball_widths_match_the_index() {
    use llvq_codes::lab::{ball_bits, largest_ball};
    for m in 2..=13 {
        assert_eq!(ball_bits(m), Ball::new(m).unwrap().bits(), "Λ24({m})");
    }
    assert_eq!(largest_ball(48), Some(13));
    assert_eq!(largest_ball(47), Some(12));
    assert_eq!(largest_ball(17), None);
}
