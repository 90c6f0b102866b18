//! `llvq codec`: encode and decode Leech lattice points as text through stdin/stdout.
//!
//! Lines are processed in chunks; each chunk is searched in parallel and written in order. The
//! first malformed line stops the run with an error naming its line number; nothing is written
//! for it or after it.
use std::io::{BufRead, BufWriter, Write};

use anyhow::{anyhow, bail, Result};
use clap::{Subcommand, ValueEnum};
use llvq_lattice::{Ball, Metric, Searcher, DIM};
use rayon::prelude::*;

#[derive(Clone, Copy, ValueEnum)]
pub enum MetricArg {
    /// Nearest point of the ball (spherical shaping); input in L_int units.
    Euclidean,
    /// Largest cosine over the union of shells (shape-gain); input at any scale.
    Angular,
}

#[derive(Subcommand)]
pub enum CodecCmd {
    /// stdin: one decimal index per line; stdout: the 24 integer coordinates (L_int) of each.
    Decode {
        /// Outermost shell M of the ball Λ24(M).
        #[arg(long)]
        max_shell: u32,
    },
    /// stdin: 24 numbers per line; stdout: the index of the chosen lattice point.
    Encode {
        #[arg(long)]
        max_shell: u32,
        #[arg(long, value_enum)]
        metric: MetricArg,
    },
}

const CHUNK: usize = 4096;

/// Reads stdin in chunks of lines, maps each chunk (in parallel) and writes results in order.
/// `f` returns one output line per input line, or an error message for that line.
fn stream<T: Send>(
    f: impl Fn(&str) -> Result<T> + Sync,
    show: impl Fn(&T, &mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut line_no = 0usize;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        for line in lines.by_ref().take(CHUNK) {
            chunk.push(line?);
        }
        if chunk.is_empty() {
            break;
        }
        let results: Vec<Result<T>> = chunk.par_iter().map(|l| f(l)).collect();
        for r in results {
            line_no += 1;
            match r {
                Ok(v) => show(&v, &mut out)?,
                Err(e) => {
                    out.flush()?;
                    bail!("line {line_no}: {e}");
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

pub fn run(cmd: CodecCmd) -> Result<()> {
    match cmd {
        CodecCmd::Decode { max_shell } => {
            let ball = Ball::new(max_shell)?;
            stream(
                |line| {
                    let t = line.trim();
                    let i: u64 = t
                        .parse()
                        .map_err(|_| anyhow!("expected a decimal index, found {t:?}"))?;
                    Ok(ball.decode(i)?)
                },
                |x, out| {
                    let s: Vec<String> = x.iter().map(|v| v.to_string()).collect();
                    writeln!(out, "{}", s.join(" "))
                },
            )
        }
        CodecCmd::Encode { max_shell, metric } => {
            let searcher = Searcher::new(max_shell)?;
            let metric = match metric {
                MetricArg::Euclidean => Metric::Euclidean,
                MetricArg::Angular => Metric::Angular,
            };
            stream(
                |line| {
                    let vals: Vec<f32> = line
                        .split_whitespace()
                        .map(|w| w.parse::<f32>().map_err(|_| anyhow!("{w:?} is not a number")))
                        .collect::<Result<_>>()?;
                    let y: [f32; DIM] = vals
                        .try_into()
                        .map_err(|v: Vec<f32>| anyhow!("expected {DIM} numbers, found {}", v.len()))?;
                    Ok(searcher.search(&y, metric)?.index)
                },
                |i, out| writeln!(out, "{i}"),
            )
        }
    }
}
