//! Arbitrary f32 inputs to the search: an error for non-finite values, otherwise a point of the
//! ball whose index decodes back to it; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llvq_lattice::{Metric, Searcher};

fuzz_target!(|data: ([f32; 24], bool)| {
    static S: std::sync::OnceLock<Searcher> = std::sync::OnceLock::new();
    let s = S.get_or_init(|| Searcher::new(6).unwrap());
    let metric = if data.1 { Metric::Angular } else { Metric::Euclidean };
    match s.search(&data.0, metric) {
        Ok(f) => assert_eq!(s.ball().decode(f.index).unwrap(), f.point),
        Err(_) => assert!(data.0.iter().any(|v| !v.is_finite())),
    }
});
