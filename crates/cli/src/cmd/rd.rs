//! `llvq rd`: the rate-distortion lab on the i.i.d. N(0,1) source (paper §4, App. E, F).
//!
//! `llvq rd` prints Table 4 (the 2-bit rows in the paper's order, then GLVQ's learned lattices
//! at 2 bits/dim, issue 12), `rd gain-sweep` Table 7,
//! `rd curve` Figure 1 (SVG/PNG), `rd angular` App. E. Every run is seeded; scales and gain
//! codebooks are fitted on the library's design streams, never on the measured sample.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use llvq_codes::lab::{self, Curve, Row};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RdArgs {
    #[command(subcommand)]
    cmd: Option<RdCmd>,
    #[command(flatten)]
    table: TableArgs,
}

#[derive(Subcommand)]
enum RdCmd {
    /// Table 7: spherical shaping vs shape-gain with 0/1/2/4 gain bits at 2 bits/dim.
    GainSweep(Common),
    /// Figure 1: SQNR versus rate for every code, with the Shannon line; SVG and PNG.
    Curve(CurveArgs),
    /// App. E: nearest-codeword angles, single Leech shells vs unions of shells vs E8P12.
    Angular(AngularArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// Source vectors of 24 weights (i.i.d. N(0,1)).
    #[arg(long, default_value_t = 100_000)]
    samples: usize,
    /// Seed of the measured sample (fits use the library's separate design streams).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TableArgs {
    /// Rate in bits/dim (Table 4 is 2; codes that exist only at 2 bits/dim are left out elsewhere).
    #[arg(long, default_value_t = 2)]
    bits: u32,
    #[command(flatten)]
    common: Common,
    /// Also draw the rows as SQNR vs rate against the Shannon line (.svg or .png).
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Args)]
struct CurveArgs {
    #[command(flatten)]
    common: Common,
    /// Output figure; written as given and with the other of .svg/.png beside it, and the
    /// measured curves as .json beside it.
    #[arg(long, default_value = "docs/rd/figure1.svg")]
    out: PathBuf,
    /// Redraw from a .json written by an earlier run instead of measuring.
    #[arg(long)]
    from: Option<PathBuf>,
}

#[derive(Args)]
struct AngularArgs {
    /// Unit vectors drawn uniformly on S^23.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Largest shell m of the Leech codes (13 reaches 2 bits/dim).
    #[arg(long, default_value_t = 13)]
    max_shell: u32,
    #[arg(long)]
    json: bool,
    /// Box-plot figure (.svg or .png); the other of .svg/.png is written beside it.
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn run(args: RdArgs) -> Result<()> {
    match args.cmd {
        None => table(args.table),
        Some(RdCmd::GainSweep(c)) => sweep(c),
        Some(RdCmd::Curve(c)) => curve(c),
        Some(RdCmd::Angular(a)) => angular(a),
    }
}

fn measure_all(codes: &[(String, String)], c: &Common) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (label, spec) in codes {
        let row = lab::run_spec(label, spec, c.samples, c.seed).with_context(|| format!("measuring {spec}"))?;
        if !c.json {
            eprintln!("  {label}: fit {:.1}s, run {:.1}s", row.fit_s, row.run_s);
        }
        rows.push(row);
    }
    Ok(rows)
}

fn print_rows(title: &str, rows: &[Row], c: &Common, secs: f64) -> Result<()> {
    outln!("{title}")?;
    outln!(
        "N(0,1) source, {} vectors of 24 weights, seed {}, {secs:.1} s",
        c.samples,
        c.seed
    )?;
    outln!()?;
    outln!("| Method | Dim | Bits/dim | MSE ± s.e. | SQNR (bits) | Ret (%) |")?;
    outln!("|---|---:|---:|---:|---:|---:|")?;
    for r in rows {
        let dim = if r.dim == 0 { "-".to_string() } else { r.dim.to_string() };
        let mse = if r.mse_se > 0.0 {
            format!("{:.5} ± {:.5}", r.mse, r.mse_se)
        } else {
            format!("{:.5}", r.mse)
        };
        outln!(
            "| {} | {dim} | {:.3} | {mse} | {:.3} | {:.1} |",
            r.label,
            r.rate,
            r.sqnr_bits,
            r.retention_pct
        )?;
    }
    outln!()?;
    for r in rows.iter().filter(|r| r.dim > 0) {
        outln!("  {} = {}", r.label, r.spec)?;
    }
    Ok(())
}

fn emit(title: &str, rows: &[Row], c: &Common, secs: f64) -> Result<()> {
    if c.json {
        let v =
            serde_json::json!({"title": title, "samples": c.samples, "seed": c.seed, "seconds": secs, "rows": rows});
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        print_rows(title, rows, c, secs)?;
    }
    Ok(())
}

fn table(a: TableArgs) -> Result<()> {
    if !(1..=2).contains(&a.bits) {
        // At 3 bits/dim a 24-dim index needs 72 bits: past the u64 codes and Λ24(33).
        bail!("--bits {} is outside the lab's range 1..=2", a.bits);
    }
    let t = Instant::now();
    let mut rows = measure_all(&lab::table_codes(a.bits), &a.common)?;
    if a.bits == 2 {
        for (label, spec) in GLVQ_ROWS {
            let row = glvq_row(label, spec, &a.common).with_context(|| format!("measuring {spec}"))?;
            if !a.common.json {
                eprintln!("  {label}: fit {:.1}s", row.fit_s);
            }
            rows.push(row);
        }
    }
    rows.push(lab::shannon_row(a.bits as f64));
    let secs = t.elapsed().as_secs_f64();
    emit(
        &format!(
            "Table 4: information retention at {} bits/dim on a Gaussian source",
            a.bits
        ),
        &rows,
        &a.common,
        secs,
    )?;
    if let Some(p) = a.plot {
        let curves: Vec<Curve> = rows
            .iter()
            .filter(|r| r.dim > 0)
            .map(|r| Curve {
                family: r.label.clone(),
                rows: vec![r.clone()],
            })
            .collect();
        plot(&p, &curves, &format!("Gaussian source at {} bits/dim", a.bits))?;
    }
    Ok(())
}

/// GLVQ rows of Table 4 (issue 12, item 7): one group of 96 columns (4 source vectors per
/// row), H = I so the proxy loss is plain MSE; no SDBA (one group), with and without µ-law.
const GLVQ_ROWS: [(&str, &str); 4] = [
    ("GLVQ-8D (learned lattice)", "glvq:d=8,bits=2,group=96,sdba=0,mu=0"),
    ("GLVQ-8D + µ-law", "glvq:d=8,bits=2,group=96,sdba=0,mu=1"),
    ("GLVQ-24D (learned lattice)", "glvq:d=24,bits=2,group=96,sdba=0,mu=0"),
    ("GLVQ-24D + µ-law", "glvq:d=24,bits=2,group=96,sdba=0,mu=1"),
];

/// Measures a GLVQ SPEC on the same N(0,1) sample as the other rows. GLVQ fits its lattice to
/// the data it codes (its side information, G and µ, is stored with the codes), so unlike the
/// fixed codes it is fitted on the measured sample; the side information (≈1.1 kbit for d = 8,
/// ≈9.3 kbit for d = 24) is left out of the rate, as it is spread over the whole sample.
fn glvq_row(label: &str, spec: &str, c: &Common) -> Result<Row> {
    use llvq_quant::glvq::{quantize_layer, GlvqParams};
    let p = GlvqParams::from_spec(spec)?;
    let cols = 96;
    let per_row = cols / lab::VECTOR;
    let vectors = c.samples / per_row * per_row;
    if vectors == 0 {
        bail!("--samples {} is below the {per_row} vectors of one GLVQ row", c.samples);
    }
    let sample: Vec<f64> = llvq_codes::source::gaussian(vectors * lab::VECTOR, c.seed)
        .into_iter()
        .map(f64::from)
        .collect();
    let rows = sample.len() / cols;
    let h: Vec<f64> = (0..cols * cols)
        .map(|i| if i % (cols + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let t = Instant::now();
    let layer = quantize_layer(&sample, rows, cols, &h, &p)?;
    let fit_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = layer.decode_f64();
    let per: Vec<f64> = sample
        .chunks_exact(lab::VECTOR)
        .zip(out.chunks_exact(lab::VECTOR))
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / lab::VECTOR as f64)
        .collect();
    let n = per.len() as f64;
    let mse = per.iter().sum::<f64>() / n;
    let var = per.iter().map(|e| (e - mse).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let (spec, id) = (p.to_spec(), llvq_codes::CodeId::Glvq.id());
    let row = Row::new(label.to_string(), spec, id, p.d, p.vector_bits()?, p.bits);
    Ok(row.measured(mse, var, n, vectors, fit_s, t.elapsed().as_secs_f64()))
}

fn sweep(c: Common) -> Result<()> {
    let t = Instant::now();
    let rows = measure_all(&lab::gain_sweep_codes(), &c)?;
    emit(
        "Table 7: spherical shaping vs shape-gain at 2 bits/dim",
        &rows,
        &c,
        t.elapsed().as_secs_f64(),
    )
}

fn curve(a: CurveArgs) -> Result<()> {
    let t = Instant::now();
    let curves: Vec<Curve> = match &a.from {
        Some(p) => {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)?;
            serde_json::from_value(v["curves"].clone()).with_context(|| format!("{} has no curves", p.display()))?
        }
        None => {
            let mut curves = Vec::new();
            for (family, specs) in lab::curve_codes() {
                let codes: Vec<(String, String)> = specs.into_iter().map(|s| (family.clone(), s)).collect();
                let rows = measure_all(&codes, &a.common)?;
                curves.push(Curve { family, rows });
            }
            curves
        }
    };
    let secs = t.elapsed().as_secs_f64();
    if a.from.is_none() {
        let json = a.out.with_extension("json");
        if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let v =
            serde_json::json!({"samples": a.common.samples, "seed": a.common.seed, "seconds": secs, "curves": curves});
        std::fs::write(&json, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", json.display()))?;
        eprintln!("wrote {}", json.display());
    }
    if a.common.json {
        let v =
            serde_json::json!({"samples": a.common.samples, "seed": a.common.seed, "seconds": secs, "curves": curves});
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        outln!(
            "Figure 1: SQNR vs rate, {} vectors, seed {}, {secs:.1} s",
            a.common.samples,
            a.common.seed
        )?;
        outln!("| Family | SPEC | Bits/dim | MSE ± s.e. | SQNR (bits) | Ret (%) |")?;
        outln!("|---|---|---:|---:|---:|---:|")?;
        for c in &curves {
            for r in &c.rows {
                outln!(
                    "| {} | {} | {:.3} | {:.5} ± {:.5} | {:.3} | {:.1} |",
                    c.family,
                    r.spec,
                    r.rate,
                    r.mse,
                    r.mse_se,
                    r.sqnr_bits,
                    r.retention_pct
                )?;
            }
        }
    }
    let title = "SQNR vs rate on a Gaussian source (Figure 1)";
    plot(&a.out, &curves, title)?;
    if let Some(o) = sibling(&a.out) {
        plot(&o, &curves, title)?;
    }
    Ok(())
}

/// The .png beside a .svg and the other way round.
fn sibling(p: &std::path::Path) -> Option<PathBuf> {
    match p.extension().and_then(|e| e.to_str()) {
        Some("svg") => Some(p.with_extension("png")),
        Some("png") => Some(p.with_extension("svg")),
        _ => None,
    }
}

fn plot(path: &std::path::Path, curves: &[Curve], title: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = llvq_codes::plot::rate_curves(path, curves, title)?;
    eprintln!(
        "wrote {}{}",
        path.display(),
        if text {
            ""
        } else {
            " (no system font found: drawn without text)"
        }
    );
    Ok(())
}

fn angular(a: AngularArgs) -> Result<()> {
    let t = Instant::now();
    let sets = lab::angular(a.samples, a.seed, a.max_shell)?;
    let secs = t.elapsed().as_secs_f64();
    if a.json {
        let v = serde_json::json!({"samples": a.samples, "seed": a.seed, "seconds": secs, "codes": sets});
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        outln!(
            "App. E: nearest-codeword angle D = arccos(cos)/π, {} directions, seed {}, {secs:.1} s",
            a.samples,
            a.seed
        )?;
        outln!("| Family | Code | Bits/dim | mean D | min | Q1 | median | Q3 | max |")?;
        outln!("|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for s in &sets {
            let [q0, q1, q2, q3, q4] = s.quartiles;
            outln!(
                "| {} | {} | {:.3} | {:.4} | {q0:.4} | {q1:.4} | {q2:.4} | {q3:.4} | {q4:.4} |",
                s.family,
                s.label,
                s.rate,
                s.mean
            )?;
        }
    }
    if let Some(p) = a.plot {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        for f in std::iter::once(p.clone()).chain(sibling(&p)) {
            let text = llvq_codes::plot::angular_boxes(&f, &sets)?;
            eprintln!(
                "wrote {}{}",
                f.display(),
                if text {
                    ""
                } else {
                    " (no system font found: drawn without text)"
                }
            );
        }
    }
    Ok(())
}
