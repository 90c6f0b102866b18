//! One module per top-level subcommand.
pub mod bench;
pub mod codec;
pub mod lattice;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod finetune;
pub mod generate;
pub mod inspect;
pub mod quantize;
pub mod rd;
pub mod tasks;
pub mod vq;

/// `--threads`: a positive count (0 would leave rayon to pick, silently).
pub fn threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite, non-negative float (`--damp`, `--temperature`): NaN or a negative value would
/// otherwise reach the numerics and come out as NaN weights or NaN probabilities.
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Ok(x) => Err(format!("{x} is not a finite non-negative number")),
        Err(e) => Err(e.to_string()),
    }
}
