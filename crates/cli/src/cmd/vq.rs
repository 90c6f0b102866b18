//! `llvq vq --code SPEC`: quantize raw little-endian f32 vectors from stdin to stdout, for
//! checking the codes from outside. Input length must be a whole number of blocks. With `--json`
//! the exact bits used (and the MSE of this input) go to stderr.

use std::io::Read;

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args)]
pub struct VqArgs {
    /// The code, e.g. `llvq-sg:m=12,gain=1`, `llvq-ss:m=13`, `e8p12`, `lloyd:bits=2`.
    #[arg(long)]
    code: String,
    /// Report the SPEC (with fitted values), bits and distortion as JSON on stderr.
    #[arg(long)]
    json: bool,
}

pub fn run(a: VqArgs) -> Result<()> {
    let q = llvq_codes::from_spec(&a.code).with_context(|| format!("building {}", a.code))?;
    let mut raw = Vec::new();
    std::io::stdin().lock().read_to_end(&mut raw).context("reading stdin")?;
    if raw.len() % 4 != 0 {
        bail!("stdin has {} bytes, not a whole number of f32 values", raw.len());
    }
    let xs: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    // A partial last block is a typed error naming the length and the block dimension.
    let codes = q.encode(&xs)?;
    let mut out = vec![0f32; xs.len()];
    q.decode(&codes, &mut out)?;
    let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    crate::out::bytes(&bytes)?;
    if a.json {
        let se: f64 = xs.iter().zip(&out).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum();
        let v = serde_json::json!({
            "spec": q.spec(),
            "method": q.method().name(),
            "method_id": q.method().id(),
            "dim": q.dim(),
            "bits_per_block": q.bits(),
            "blocks": codes.len(),
            "bits_total": codes.len() as u64 * q.bits() as u64,
            "bits_per_weight": q.rate(),
            "mse": if xs.is_empty() { 0.0 } else { se / xs.len() as f64 },
        });
        eprintln!("{v}");
    }
    Ok(())
}
