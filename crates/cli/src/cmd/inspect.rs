//! `llvq inspect`: the layout and all-in bits of a compressed model file.
use anyhow::Result;
use clap::Args;
use llvq_quant::format;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// A file written by `llvq quantize`.
    pub file: PathBuf,
    /// List every tensor, not only the totals by kind.
    #[arg(long)]
    pub tensors: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: InspectArgs) -> Result<()> {
    let c = format::read(&a.file)?;
    // Everything eval checks (config, shapes, tokenizer, every code decodes) is checked here
    // too: a file `inspect` describes is one `eval` can load.
    llvq_model::compressed::load(&a.file, &llvq_model::compressed::LoadOptions::default())?;
    let file_bytes = std::fs::metadata(&a.file)?.len();
    // Codes, scales, seeds and, in a tuned file, the input scales.
    let bits = c.bits();
    let params = c.params();
    let plain_params = params - bits.weights;
    let h = &c.header;
    let cfg = |k: &str| h.config.as_ref().and_then(|c| c.get(k)).cloned();
    let linears: Vec<_> = c
        .linears
        .iter()
        .map(|l| {
            let b = l.meta.bits_stored();
            json!({"name": l.name, "rows": l.meta.rows, "cols": l.meta.cols, "block": l.meta.block,
                   "bits_per_block": l.meta.bits, "group": l.meta.group, "rot_in": l.meta.rot_in.is_some(),
                   "rot_out": l.meta.rot_out.is_some(), "code_bytes": l.codes.len(), "bpw": b.bpw(),
                   "glvq": l.meta.glvq.as_ref().map(|g| json!({"meta": g, "side": glvq_side(l)}))})
        })
        .collect();
    let plain: Vec<_> = c
        .plain
        .iter()
        .map(|p| json!({"name": p.name, "dtype": format!("{:?}", p.dtype), "shape": p.shape, "bytes": p.data.len()}))
        .collect();
    let summary = json!({
        "file": a.file.display().to_string(),
        "format_version": h.format_version, "codec_version": h.codec_version,
        "method": h.method, "code": h.code, "ldlq": h.ldlq, "rotate": h.rotate, "seed": h.seed,
        "mode": h.mode, "calib": h.calib,
        "architecture": cfg("model_type"), "layers": cfg("num_hidden_layers"),
        "quantized_linears": c.linears.len(), "quantized_weights": bits.weights,
        "bits": bits, "bpw": bits.bpw(), "tuned": h.tuned, "glvq": glvq_summary(&c.linears),
        "plain_tensors": c.plain.len(), "plain_params": plain_params,
        "file_bytes": file_bytes, "params": params, "file_bpw": file_bytes as f64 * 8.0 / params.max(1) as f64,
    });
    if a.json {
        let mut v = summary;
        if a.tensors {
            v["linears"] = linears.into();
            v["plain"] = plain.into();
        }
        outln!("{v}")?;
        return Ok(());
    }
    // JSON values as text, strings without their quotes.
    let s = |k: &str| match &summary[k] {
        serde_json::Value::String(t) => t.clone(),
        v => v.to_string(),
    };
    outln!(
        "file           {} ({} bytes, format {}, codec {})",
        a.file.display(),
        file_bytes,
        s("format_version"),
        s("codec_version")
    )?;
    outln!("model          {} with {} layers", s("architecture"), s("layers"))?;
    outln!(
        "method         {}  ldlq {}  rotate {}  seed {}  calibration {} {}",
        s("method"),
        s("ldlq"),
        s("rotate"),
        s("seed"),
        s("mode"),
        s("calib")
    )?;
    outln!("code           {}", s("code"))?;
    outln!("linears        {} tensors, {} weights", c.linears.len(), bits.weights)?;
    let w = bits.weights.max(1) as f64;
    outln!(
        "  bits/weight  {:.4} all-in = code {:.4} + scales {:.4} + seeds {:.5} + side {:.4}",
        bits.bpw(),
        bits.code as f64 / w,
        bits.scale as f64 / w,
        bits.seed as f64 / w,
        bits.side as f64 / w
    )?;
    if bits.input_scale > 0 {
        outln!(
            "  input scales {:.5} bits/weight (f32, one per column of every linear)",
            bits.input_scale as f64 / w
        )?;
    }
    match &h.tuned {
        None => outln!("tuned          no")?,
        Some(t) => outln!(
            "tuned          yes: {} tokens ({} steps of {}, best at {}{}), objective {}, lr {} ({}), {}held-out {:.5} → {:.5}, {:.0} s",
            t.tokens,
            t.steps,
            t.ctx,
            t.best_step,
            if t.interrupted { ", interrupted" } else { "" },
            t.objective,
            t.lr,
            t.schedule,
            if t.tied { "tied, " } else { "" },
            t.held_out_before,
            t.held_out_loss,
            t.seconds
        )?,
    }
    if let Some(g) = summary["glvq"].as_object() {
        outln!(
            "glvq           {} groups: {} at N−1, {} at N, {} at N+1 bits/weight; µ {}; |G|_F median {}",
            g["groups"],
            g["below"],
            g["at"],
            g["above"],
            g["mu"],
            g["g_frobenius_median"]
        )?;
    }
    outln!("plain          {} tensors, {} parameters", c.plain.len(), plain_params)?;
    outln!(
        "whole file     {:.3} bits per parameter ({} parameters)",
        summary["file_bpw"].as_f64().unwrap_or(0.0),
        params
    )?;
    if a.tensors {
        outln!(
            "\n{:<48} {:>6} {:>6} {:>5} {:>4} {:>6} {:>4} {:>10} {:>7}",
            "linear",
            "rows",
            "cols",
            "block",
            "bits",
            "group",
            "rot",
            "bytes",
            "bpw"
        )?;
        for l in &c.linears {
            let rot = match (l.meta.rot_in.is_some(), l.meta.rot_out.is_some()) {
                (true, true) => "io",
                (true, false) => "i",
                (false, true) => "o",
                _ => "-",
            };
            outln!(
                "{:<48} {:>6} {:>6} {:>5} {:>4} {:>6} {:>4} {:>10} {:>7.4}",
                l.name,
                l.meta.rows,
                l.meta.cols,
                l.meta.block,
                l.meta.bits,
                l.meta.group,
                rot,
                l.codes.len(),
                l.meta.bits_stored().bpw()
            )?;
        }
        outln!(
            "\n{:<48} {:>6} {:>16} {:>10}",
            "plain tensor",
            "dtype",
            "shape",
            "bytes"
        )?;
        for p in &c.plain {
            outln!(
                "{:<48} {:>6} {:>16} {:>10}",
                p.name,
                format!("{:?}", p.dtype),
                format!("{:?}", p.shape),
                p.data.len()
            )?;
        }
    }
    Ok(())
}

/// One GLVQ linear's side information in numbers: bits per vector, µ and ‖G_g‖_F of each group.
fn glvq_side(l: &format::QuantLinear) -> serde_json::Value {
    let Some(side) = &l.glvq else {
        return serde_json::Value::Null;
    };
    let f = |b: &u16| f16_bits_to_f64(*b);
    let d = l.meta.block;
    let gf: Vec<f64> = side
        .lattice
        .chunks(d * d)
        .map(|g| g.iter().map(|b| f(b).powi(2)).sum::<f64>().sqrt())
        .collect();
    json!({"vector_bits": side.vector_bits, "mu": side.mu.iter().map(f).collect::<Vec<_>>(), "g_frobenius": gf})
}

/// GLVQ groups of the whole file: how SDBA moved bits, the range of µ, the typical ‖G_g‖_F.
fn glvq_summary(linears: &[format::QuantLinear]) -> serde_json::Value {
    let gl: Vec<&format::QuantLinear> = linears.iter().filter(|l| l.glvq.is_some()).collect();
    if gl.is_empty() {
        return serde_json::Value::Null;
    }
    let (mut below, mut at, mut above, mut mus, mut gfs) = (0, 0, 0, Vec::new(), Vec::new());
    for l in &gl {
        let side = glvq_side(l);
        for b in l.glvq.as_ref().map(|s| s.vector_bits.clone()).unwrap_or_default() {
            match (b as u32).cmp(&l.meta.bits) {
                std::cmp::Ordering::Less => below += 1,
                std::cmp::Ordering::Equal => at += 1,
                std::cmp::Ordering::Greater => above += 1,
            }
        }
        mus.extend(side["mu"].as_array().into_iter().flatten().filter_map(|v| v.as_f64()));
        gfs.extend(
            side["g_frobenius"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_f64()),
        );
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let mu = if mus.is_empty() {
        json!("off")
    } else {
        json!(format!(
            "{:.0}..{:.0} (median {:.0})",
            mus.iter().cloned().fold(f64::INFINITY, f64::min),
            mus.iter().cloned().fold(0.0, f64::max),
            med(&mut mus).unwrap_or(0.0)
        ))
    };
    json!({"groups": below + at + above, "below": below, "at": at, "above": above, "mu": mu, "g_frobenius_median": med(&mut gfs)})
}

/// An IEEE half (bit pattern) as f64.
fn f16_bits_to_f64(b: u16) -> f64 {
    let (sign, exp, frac) = (
        if b >> 15 == 1 { -1.0 } else { 1.0 },
        ((b >> 10) & 0x1f) as i32,
        (b & 0x3ff) as f64,
    );
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}
