//! `llvq bench`: throughput tables measured in-process (medians over repeats), with the plain
//! reference run beside the optimized path as the baseline, so ratios survive a noisy machine.
use llvq_lattice::seed::{SplitMix64, GOLDEN_GAMMA};
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use llvq_lattice::dequant::{decode_batch, decode_serial};
use llvq_lattice::{Metric, Searcher, DIM};
use serde_json::json;

use super::common::median;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Encode (exact search, both metrics) and decode throughput per core at M = 12 and 13.
    Codec {
        /// Gaussian vectors per timed run.
        #[arg(long, default_value_t = 2000)]
        vectors: usize,
        /// Timed runs per row; the median is reported.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Vectors for the unpruned reference search (slow).
        #[arg(long, default_value_t = 20)]
        reference_vectors: usize,
        /// Balls to measure.
        #[arg(long, value_delimiter = ',', default_values_t = vec![12u32, 13])]
        max_shells: Vec<u32>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Read bandwidth of main memory: the bound on generation, which streams every resident
    /// weight once per token (compare `weight_bytes` of `llvq eval speed` against it).
    Memory {
        /// Buffer size in MiB (well above the last-level cache).
        #[arg(long, default_value_t = 512)]
        mib: usize,
        /// Timed passes; the median is reported.
        #[arg(long, default_value_t = 7)]
        repeats: usize,
        /// Worker threads (sets RAYON_NUM_THREADS); default: all cores.
        #[arg(long, value_parser = super::common::threads)]
        threads: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

/// Deterministic standard normals (Box-Muller over a SplitMix64 stream): the bench needs no
/// statistical quality beyond "Gaussian-looking", only reproducibility.
fn gaussians(n: usize, seed: u64) -> Vec<f32> {
    let mut g = SplitMix64::new(seed.wrapping_mul(GOLDEN_GAMMA) | 1);
    let mut next = || (g.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (0..n)
        .map(|_| {
            let (u, v) = (next().max(1e-300), next());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect()
}

/// Median items/s of `f` over `repeats` runs of `items` items.
fn rate(items: usize, repeats: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                items as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Codec {
            vectors,
            repeats,
            reference_vectors,
            max_shells,
            seed,
            json,
        } => codec(vectors, repeats, reference_vectors, &max_shells, seed, json),
        BenchCmd::Memory {
            mib,
            repeats,
            threads,
            json,
        } => memory(mib, repeats, threads, json),
    }
}

/// Median read bandwidth over `repeats` passes: each thread sums its contiguous share of a
/// buffer of `mib` MiB (integer adds, so the loop vectorises and the sum cannot be elided).
fn memory(mib: usize, repeats: usize, threads: Option<usize>, json: bool) -> Result<()> {
    use rayon::prelude::*;
    super::common::set_threads(threads);
    anyhow::ensure!(mib > 0, "--mib must be positive");
    let words = mib << 18; // u32 words
    let buf: Vec<u32> = (0..words as u32).collect(); // touched, so every page is resident
    let threads = rayon::current_num_threads();
    let share = words.div_ceil(threads);
    let mut check = 0u32;
    let gbps = rate(words * 4, repeats, || {
        let s = buf
            .par_chunks(share)
            .map(|c| {
                let mut acc = [0u32; 16];
                for b in c.chunks_exact(16) {
                    for (a, &v) in acc.iter_mut().zip(b) {
                        *a = a.wrapping_add(v);
                    }
                }
                acc.iter().fold(0u32, |x, &y| x.wrapping_add(y))
            })
            .reduce(|| 0, u32::wrapping_add);
        check = check.wrapping_add(std::hint::black_box(s));
    }) / 1e9;
    std::hint::black_box(check);
    if json {
        outln!(
            "{}",
            json!({"read_gb_per_s": gbps, "mib": mib, "threads": threads, "repeats": repeats})
        )?;
    } else {
        outln!("memory read  {gbps:.2} GB/s  ({mib} MiB buffer, {threads} threads, median of {repeats})")?;
    }
    Ok(())
}

fn codec(
    vectors: usize,
    repeats: usize,
    reference_vectors: usize,
    max_shells: &[u32],
    seed: u64,
    json: bool,
) -> Result<()> {
    let mut rows = Vec::new();
    let threads = rayon::current_num_threads();
    for &m in max_shells {
        let s = Searcher::new(m)?;
        let g = gaussians(vectors * DIM, seed);
        let ys: Vec<[f32; DIM]> = g.chunks_exact(DIM).map(|c| c.try_into().unwrap()).collect();
        for metric in [Metric::Angular, Metric::Euclidean] {
            // Euclidean inputs in L_int units, scaled so a Gaussian block sits inside the ball
            // (|y|² ≈ 0.7·16M), as spherical shaping does with a fitted scale.
            let scale = match metric {
                Metric::Angular => 1.0,
                Metric::Euclidean => (0.7 * 16.0 * m as f32 / DIM as f32).sqrt(),
            };
            let ys: Vec<[f32; DIM]> = ys.iter().map(|y| y.map(|v| v * scale)).collect();
            let (mut shells, mut transforms, mut words) = (0u64, 0u64, 0u64);
            for y in &ys {
                let (_, st) = s.search_traced(y, metric)?;
                shells += st.shells as u64;
                transforms += st.transforms as u64;
                words += st.words as u64;
            }
            let fast = rate(ys.len(), repeats, || {
                for y in &ys {
                    std::hint::black_box(s.search(y, metric).unwrap());
                }
            });
            let nref = reference_vectors.min(ys.len()).max(1);
            let slow = rate(nref, 1, || {
                for y in &ys[..nref] {
                    std::hint::black_box(s.search_reference(y, metric).unwrap());
                }
            });
            let n = ys.len() as f64;
            rows.push(json!({
                "op": "encode", "max_shell": m, "metric": format!("{metric:?}").to_lowercase(),
                "vectors_per_s_per_core": fast, "weights_per_s_per_core": fast * DIM as f64,
                "reference_vectors_per_s": slow, "speedup_vs_reference": fast / slow,
                "avg_shells": shells as f64 / n, "avg_transforms": transforms as f64 / n, "avg_codewords": words as f64 / n,
            }));
        }
        // Decode: uniformly random indices of the ball.
        let len = s.ball().len();
        let idx: Vec<u64> = gaussians(vectors * 32, seed ^ 0xD1CE)
            .chunks_exact(2)
            .map(|p| ((p[0].to_bits() as u64) << 32 | p[1].to_bits() as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) % len)
            .collect();
        let mut out = vec![0.0f32; idx.len() * DIM];
        let serial = rate(idx.len(), repeats, || {
            decode_serial(s.ball(), &idx, 0.5, &mut out).unwrap()
        });
        let parallel = rate(idx.len(), repeats, || {
            decode_batch(s.ball(), &idx, 0.5, &mut out).unwrap()
        });
        rows.push(json!({
            "op": "decode", "max_shell": m, "vectors_per_s_per_core": serial, "weights_per_s_per_core": serial * DIM as f64,
            "weights_per_s_all_threads": parallel * DIM as f64, "threads": threads,
        }));
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"vectors": vectors, "repeats": repeats, "rows": rows}))?
        )?;
        return Ok(());
    }
    outln!("codec throughput, one core unless noted (median of {repeats} runs of {vectors} Gaussian vectors)")?;
    outln!(
        "{:<7} {:>2} {:<10} {:>12} {:>14} {:>10} {:>8} {:>10} {:>9}",
        "op",
        "M",
        "metric",
        "vectors/s",
        "weights/s",
        "vs ref",
        "shells",
        "transforms",
        "codewords"
    )?;
    for r in &rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        if r["op"] == "encode" {
            outln!(
                "{:<7} {:>2} {:<10} {:>12.0} {:>14.3e} {:>9.0}x {:>8.2} {:>10.2} {:>9.1}",
                "encode",
                r["max_shell"],
                r["metric"].as_str().unwrap(),
                f("vectors_per_s_per_core"),
                f("weights_per_s_per_core"),
                f("speedup_vs_reference"),
                f("avg_shells"),
                f("avg_transforms"),
                f("avg_codewords")
            )?;
        } else {
            outln!(
                "{:<7} {:>2} {:<10} {:>12.0} {:>14.3e}   ({:.3e} weights/s on {} threads)",
                "decode",
                r["max_shell"],
                "-",
                f("vectors_per_s_per_core"),
                f("weights_per_s_per_core"),
                f("weights_per_s_all_threads"),
                r["threads"]
            )?;
        }
    }
    Ok(())
}
