//! Any (M, u64) given to the decoder yields a valid point of Λ24(M) that encodes back, or an
//! out-of-range error. Run: `cargo +nightly fuzz run decode` from the repository root.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llvq_lattice::leech::{is_point, shell_of};
use llvq_lattice::{Ball, MAX_SHELL_LIMIT};

fuzz_target!(|data: (u8, u64)| {
    let m = 2 + data.0 as u32 % (MAX_SHELL_LIMIT - 1);
    let ball = Ball::new(m).unwrap();
    match ball.decode(data.1) {
        Ok(x) => {
            assert!(is_point(&x));
            assert!(shell_of(&x).unwrap() <= m);
            assert_eq!(ball.encode(&x).unwrap(), data.1);
        }
        Err(_) => assert!(data.1 >= ball.len()),
    }
});
