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

/// For jobs whose memory must not grow with depth (`calibrate`, `quantize --hessians`): glibc
/// raises its mmap threshold after each large free (up to 32 MB), after which the per-layer
/// buffers come from heap arenas that keep freed memory, and the peak creeps up layer by layer
/// (measured: 594 → 728 MB from 4 to 16 layers). A fixed 1 MiB threshold hands every large
/// buffer back to the OS when it is freed.
pub fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: glibc's documented tuning call, made at start-up before the job's allocations.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 1 << 20);
        }
    }
}
