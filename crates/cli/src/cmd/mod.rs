//! One module per top-level subcommand.
pub mod bench;
pub mod calibrate;
pub mod codec;
pub mod lattice;
pub mod eval;
pub mod export;
pub mod fetch;
pub mod generate;
pub mod inspect;
pub mod merge;
pub mod quantize;
pub mod rd;
pub mod synth;
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

/// A byte count: plain, or with a K/M/G/T suffix (powers of 1024), e.g. `24G`.
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    match num.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok((x * mul as f64) as u64),
        _ => Err(format!("{s:?} is not a size (e.g. 24G, 1500M)")),
    }
}
