//! Memory: the estimates every job prints before it starts ("needs about X GB", refused above
//! `--max-memory`), and the figures of this process (Linux /proc) for reports and budgets.
//!
//! Each estimate is the largest of a job's phases, counted buffer by buffer from the code that
//! holds them, plus a margin measured at real widths (issue 14; README, "Models larger than the
//! machine").

use llvq_model::Config;

use super::params::{CalibMode, QuantizeParams};
use crate::calib::{XTX_BLOCKED_ABOVE, XTX_ROWS};
use crate::error::{QuantError, Result};
use crate::method::{Kind, Method};

/// Peak resident set size of this process, from /proc (Linux).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Memory the system has available for a new job (MemAvailable, Linux /proc), bytes.
pub fn available() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes every run holds besides the model (code tables, thread stacks, buffers); measured
/// on the tiny test models' runs (about 60 MB) and rounded up.
const BASE_BYTES: u64 = 100 << 20;

/// What the estimates add for the allocator and the libraries' workspaces: 8%. With 5%, a
/// one-layer Qwen3-4B run peaked only 1% below its estimate (README, "Models larger than the
/// machine").
fn with_margin(bytes: u64) -> u64 {
    bytes + bytes * 2 / 25
}

/// Refuses before any work when `needs` exceeds `max`.
pub(super) fn check_memory(needs: u64, max: Option<u64>, what: &str, hint: &str) -> Result<()> {
    match max {
        Some(max) if needs > max => Err(QuantError::Memory {
            needs,
            max,
            what: what.to_string(),
            hint: hint.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The widths of a layer's four inputs: hidden (q/k/v, gate/up), heads·head_dim (o), FFN (down).
fn input_widths(cfg: &Config) -> [u64; 4] {
    let h = cfg.hidden_size as u64;
    [
        h,
        (cfg.num_heads * cfg.head_dim) as u64,
        h,
        cfg.intermediate_size as u64,
    ]
}

/// Bytes the tokenizer holds per byte of calibration text while encoding it whole (its
/// encodings keep offsets and strings per token): measured 90 on `data/calib.txt` with
/// SmolLM2's tokenizer and 134 with the byte-level test tokenizer, rounded up.
const TOKENIZE_BYTES_PER_BYTE: u64 = 150;

/// Memory of `calibrate` on `windows` windows: tokenizing the whole text first, then the
/// embedding table while embedding, then one f32 layer, the hidden states in and out (one window
/// each when `spill` puts them on disk), the sums (`sum_bytes` an entry: 16 exact, 8 f64), one
/// window's XᵀX (f32, and candle's copy; a block of rows of it for wide inputs) and its
/// activations and attention scores.
#[allow(clippy::too_many_arguments)] // the sizes the estimate is made of
pub fn calibrate_memory(
    cfg: &Config,
    layer_f32: u64,
    embed_f32: u64,
    text_bytes: u64,
    windows: usize,
    ctx: usize,
    spill: bool,
    sum_bytes: u64,
) -> u64 {
    let t = ctx as u64;
    let xs = if spill {
        hidden_bytes(cfg, 1, ctx)
    } else {
        hidden_bytes(cfg, windows, ctx)
    };
    let sums = hessian_bytes(cfg, sum_bytes);
    let act =
        t * (3 * cfg.intermediate_size as u64 + 6 * cfg.hidden_size as u64) * 4 + 2 * cfg.num_heads as u64 * t * t * 4;
    let nmax = *input_widths(cfg).iter().max().expect("four inputs");
    let xtx_rows = if nmax > XTX_BLOCKED_ABOVE as u64 {
        XTX_ROWS as u64
    } else {
        nmax
    };
    with_margin(
        BASE_BYTES
            + (text_bytes * TOKENIZE_BYTES_PER_BYTE)
                .max(embed_f32 + xs)
                .max(layer_f32 + 2 * xs + sums + 2 * xtx_rows * nmax * 4 + act),
    )
}

/// Memory of quantizing one layer from sums of `sum_bytes` an entry: its f32 weights; then, input
/// by input, the sums not yet used and the largest of this input's phases
/// (`layer::quantize_layer`), with n × n f64 buffers `n2` and `lin` entries in the largest linear
/// reading the input:
/// - the mean (made in place from f64 sums; beside fixed-point sums, which are then freed);
/// - the factorisation: the mean, the rotated and padded copy factored in its own buffer, and
///   0.45 buffer of workspace (the ignored test `ldlq::memory_probe`), counted as 2.5;
/// - coding a linear: the mean and V, the padded f64 working copy, the f32 reconstruction and
///   a u64 code per block of `block` entries;
/// - its statistics, after V is freed: the mean, the weights and four f64 copies (40 bytes);
/// - GLVQ (`block` 0): the mean and the rotated copy beside its working copies (40 bytes an
///   entry);
///
/// plus the outer tensors (f32 and stored) for the part holding layer 0.
pub fn quantize_memory(
    cfg: &Config,
    layer_f32: u64,
    outer_f32: u64,
    with_outer: bool,
    sum_bytes: u64,
    block: u64,
) -> u64 {
    let widths = input_widths(cfg);
    let (h, i) = (cfg.hidden_size as u64, cfg.intermediate_size as u64);
    let att = h * (cfg.num_heads * cfg.head_dim) as u64;
    // The largest linear reading each input: q, o, gate or up, down.
    let lins = [att, att, h * i, h * i];
    let work = (0..widths.len())
        .map(|k| {
            let lin = lins[k];
            let rest: u64 = widths[k + 1..].iter().map(|n| n * n * sum_bytes).sum();
            let nn = widths[k] * widths[k];
            let n2 = nn * 8;
            let mean = if sum_bytes > 8 { nn * (sum_bytes + 8) } else { n2 };
            let phases = match (8 * lin).checked_div(block) {
                None => 2 * n2 + 40 * lin,
                Some(codes) => (2 * n2 + n2 / 2).max(2 * n2 + 12 * lin + codes).max(n2 + 40 * lin),
            };
            rest + mean.max(phases)
        })
        .max()
        .expect("four inputs");
    with_margin(BASE_BYTES + layer_f32 + work + if with_outer { outer_f32 * 3 / 2 } else { 0 })
}

/// The block dimension of a pipeline SPEC's code for [`quantize_memory`]: 0 for GLVQ, 1 (the
/// largest codes array) for a SPEC that does not parse (it fails later, with its own error).
pub(super) fn block_of(spec: &str) -> u64 {
    match Method::parse(spec).map(|m| m.kind) {
        Ok(Kind::Glvq(_)) => 0,
        Ok(Kind::Block(b)) => b.code.dim() as u64,
        Err(_) => 1,
    }
}

/// f32 hidden states of `windows` calibration windows of `ctx` tokens.
pub(super) fn hidden_bytes(cfg: &Config, windows: usize, ctx: usize) -> u64 {
    windows as u64 * ctx as u64 * cfg.hidden_size as u64 * 4
}

/// A layer's four input Hessians (or their sums) at `entry` bytes per entry.
fn hessian_bytes(cfg: &Config, entry: u64) -> u64 {
    input_widths(cfg).iter().map(|n| n * n * entry).sum()
}

/// Memory of the in-process `llvq quantize` (every layer in turn, read lazily): the larger of
/// calibrating one layer on every window (as `calibrate` on one shard: tokenizing, embedding,
/// one f32 layer, the hidden states in and out, the sums) and quantizing it (as a `--hessians`
/// job with the outer tensors) while the hidden states are held (full mode: in and out); full
/// mode's exact sums take 16 bytes an entry. With `spill` the hidden states are on disk and one
/// window of them is in memory.
pub fn run_memory(
    cfg: &Config,
    layer_f32: u64,
    outer_f32: u64,
    text_bytes: u64,
    p: &QuantizeParams,
    spill: bool,
) -> u64 {
    let (seqs, ctx) = (p.calib.seqs, p.calib.ctx);
    let embed_f32 = (cfg.vocab_size * cfg.hidden_size * 4) as u64;
    let (sum_bytes, carried) = match p.mode {
        CalibMode::Full => (16, 2),
        CalibMode::Sequential => (8, 1),
    };
    let xs = hidden_bytes(cfg, if spill { 1 } else { seqs }, ctx);
    calibrate_memory(cfg, layer_f32, embed_f32, text_bytes, seqs, ctx, spill, sum_bytes).max(
        quantize_memory(cfg, layer_f32, outer_f32, true, sum_bytes, block_of(&p.method)) + with_margin(carried * xs),
    )
}
