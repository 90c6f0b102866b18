//! The grid view (issue 9 item 3): every code's blocks decode identically through
//! `decode_block` and `mult · lut[level] + offset`, and the level ranges hold for every M.

use llvq_codes::llvq::lattice_grid_bias;
use llvq_codes::{from_spec, CodeError, Quantizer};
use llvq_lattice::{Ball, Parity, MAX_SHELL_LIMIT};
use rand::{Rng, SeedableRng};

/// Codes with every parameter given (no design fit), covering 4-bit identity, 4-bit LUT,
/// 8-bit identity (Λ24(M) beyond the 4-bit range, 6-bit uniform) and 8-bit LUT (6-bit Lloyd).
const CODES: &[&str] = &[
    "int2",
    "uniform:bits=1",
    "uniform:bits=2",
    "uniform:bits=3,dim=4",
    "uniform:bits=6",
    "lloyd:bits=2",
    "lloyd:bits=3,dim=8",
    "lloyd:bits=6",
    "e8p12:scale=1.0375",
    "e8ball:scale=1.015",
    "llvq-ss:m=2,scale=1.3",
    "llvq-ss:m=13,scale=0.97",
    "llvq-ss:m=20,scale=1.2",
    "llvq-sg:m=2,gain=1,levels=4/5.5",
    "llvq-sg:m=12,gain=1,levels=4/5.5",
    "llvq-sg:m=3,gain=2,variant=chi,levels=3.5/4.5/5/6",
];

/// Compares both decodings of `code`; returns false when `code` is not a valid code.
fn agree(q: &dyn Quantizer, code: u64) -> bool {
    let d = q.dim();
    let mut want = vec![0f32; d];
    if q.decode_block(code, &mut want).is_err() {
        return false;
    }
    let grid = q.grid().unwrap_or_else(|| panic!("{} has no grid", q.spec()));
    let mut levels = vec![0u8; d];
    let (mult, offset) = q.decode_block_grid(code, &mut levels).unwrap();
    let big = grid.lut.iter().fold(0f32, |a, v| a.max(v.abs()));
    let tol = 8.0 * f32::EPSILON * (mult.abs() * big + offset.abs());
    for i in 0..d {
        let n = levels[i] as usize;
        assert!(
            n < grid.lut.len(),
            "{}: level {n} beyond the {}-entry LUT",
            q.spec(),
            grid.lut.len()
        );
        let got = mult * grid.lut[n] + offset;
        assert!(
            (got - want[i]).abs() <= tol,
            "{} code {code:#x} coordinate {i}: {got} vs {want:?}",
            q.spec()
        );
    }
    true
}

#[test]
fn every_code_decodes_identically_through_its_grid() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for spec in CODES {
        let q = from_spec(spec).unwrap();
        let g = q.grid().unwrap();
        assert!(g.lut.len() <= 256);
        let bits = q.bits();
        let mut valid = 0;
        if bits <= 16 {
            for c in 0..1u64 << bits {
                valid += agree(q.as_ref(), c) as usize;
            }
            assert_eq!(valid, 1 << bits, "{spec}");
        } else {
            let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            for _ in 0..20_000 {
                valid += agree(q.as_ref(), rng.random::<u64>() & mask) as usize;
            }
            assert!(valid > 1000, "{spec}: only {valid} valid random codes");
        }
    }
}

#[test]
fn grid_widths_are_as_documented() {
    let w = |s: &str| from_spec(s).unwrap().grid().unwrap();
    assert!(w("llvq-ss:m=13,scale=1").is_identity() && w("llvq-ss:m=13,scale=1").level_bits() == 4);
    assert!(w("llvq-sg:m=12,gain=1,levels=4/5").level_bits() == 4);
    assert!(w("llvq-ss:m=20,scale=1").level_bits() == 8);
    assert!(w("e8p12:scale=1").level_bits() == 4 && w("e8ball:scale=1").level_bits() == 4);
    assert!(w("uniform:bits=2").is_identity() && !w("lloyd:bits=2").is_identity());
    assert_eq!(w("lloyd:bits=2").level_bits(), 4);
    assert_eq!(w("lloyd:bits=6").level_bits(), 8);
    assert!(from_spec("uniform:bits=9").unwrap().grid().is_none());
    let q = from_spec("uniform:bits=9").unwrap();
    assert!(matches!(
        q.decode_block_grid(0, &mut [0]),
        Err(CodeError::NoGrid { .. })
    ));
    let q = from_spec("e8p12:scale=1").unwrap();
    assert!(matches!(
        q.decode_block_grid(0, &mut [0; 7]),
        Err(CodeError::GridLength { got: 7, .. })
    ));
}

/// The level range per M, from the class tables (every point of a class is a signed
/// permutation of its leader, so the leader's largest entry bounds every coordinate): with the
/// 4-bit bias 16, n = (x + 16 − p)/2 must lie in 0..=15 for x = ±leader[0]; with bias 128 in
/// 0..=255. Λ24(M ≤ 13) must take 4 bits, as the issue expects.
#[test]
fn lattice_level_ranges_hold_for_every_class_of_every_m() {
    let mut four_up_to = 0;
    for m in 2..=MAX_SHELL_LIMIT {
        let ball = Ball::new(m).unwrap();
        let bias = lattice_grid_bias(&ball);
        let top = if bias == 16 { 15 } else { 255 };
        let mut fits4 = true;
        for c in ball.classes() {
            let p = (c.parity == Parity::Odd) as i32;
            let a = c.leader[0] as i32;
            assert!(
                c.leader.iter().all(|&v| v as i32 % 2 == p),
                "M={m}: mixed parity leader"
            );
            for x in [-a, a] {
                let n = x + bias - p;
                assert!(
                    n % 2 == 0 && (0..=2 * top).contains(&n),
                    "M={m}: x={x} outside the {bias} grid"
                );
                fits4 &= (0..=30).contains(&(x + 16 - p));
            }
        }
        // 8 bits only where 4 bits truly fail.
        assert_eq!(bias == 16, fits4, "M={m}");
        if bias == 16 {
            four_up_to = m;
        }
    }
    assert!(four_up_to >= 13, "Λ24(13) must fit 4-bit levels");
    eprintln!("4-bit lattice levels up to M = {four_up_to}");
}
