//! The rate-distortion lab on the ideal Gaussian source (§4, Eq. 16-20; Table 4, Table 7,
//! Figure 1; App. E, F).
//!
//! Every measurement draws n i.i.d. N(0,1) vectors of 24 weights from the user's seed (codes with
//! 1- or 8-dimensional blocks quantize each vector block by block), so all rows see the same
//! sample. MSE is Eq. 16 per weight; its standard error is the sample standard deviation of the
//! per-vector MSE over √n (vectors are i.i.d.). SQNR in bits is −½ log2 MSE (Eq. 17), retention
//! is SQNR / R (Eq. 20) against the Shannon bound SQNR* = R (Eq. 19). Fitted parameters come from
//! the design streams of [`crate::source`], never from the measured sample.

use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::CodeError;
use crate::quantizer::Quantizer;
use crate::source::gaussian;

/// Weights per source vector (the Leech block; 1 and 8 divide it).
pub const VECTOR: usize = 24;

/// One measured row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Human label (Table 4 / Table 7 wording).
    pub label: String,
    /// Canonical SPEC, with every fitted parameter.
    pub spec: String,
    pub method_id: u16,
    pub dim: usize,
    pub bits_per_block: u32,
    /// Exact bits per weight: bits_per_block / dim.
    pub rate: f64,
    pub mse: f64,
    /// Standard error of `mse`.
    pub mse_se: f64,
    /// −½ log2 MSE (Eq. 17).
    pub sqnr_bits: f64,
    /// 100 · SQNR / R (Eq. 20).
    pub retention_pct: f64,
    /// Source vectors of 24 weights measured.
    pub vectors: usize,
    /// Seconds spent building (fitting) the code.
    pub fit_s: f64,
    /// Seconds spent encoding and decoding the sample.
    pub run_s: f64,
}

impl Row {
    /// The row of a code, its measured columns still zero: [`Row::measured`] fills them.
    pub fn new(label: String, spec: String, method_id: u16, dim: usize, bits_per_block: u32, rate: f64) -> Row {
        Row {
            label,
            spec,
            method_id,
            dim,
            bits_per_block,
            rate,
            mse: 0.0,
            mse_se: 0.0,
            sqnr_bits: 0.0,
            retention_pct: 0.0,
            vectors: 0,
            fit_s: 0.0,
            run_s: 0.0,
        }
    }

    /// The row measured: `mse` and `var` are the mean and sample variance of the per-vector MSE
    /// over `n` vectors. The one place that derives the standard error, SQNR and retention, so
    /// rows of the fixed codes and of GLVQ (measured by the CLI) stay comparable.
    pub fn measured(self, mse: f64, var: f64, n: f64, vectors: usize, fit_s: f64, run_s: f64) -> Row {
        let sqnr = -0.5 * mse.log2();
        Row {
            mse,
            mse_se: (var / n).sqrt(),
            sqnr_bits: sqnr,
            retention_pct: 100.0 * sqnr / self.rate,
            vectors,
            fit_s,
            run_s,
            ..self
        }
    }
}

/// The Shannon row at rate R: MSE* = 2^(−2R) (Eq. 18).
pub fn shannon_row(rate: f64) -> Row {
    let mse = (-2.0 * rate).exp2();
    Row {
        label: "Theoretical limit (Shannon)".into(),
        spec: "-".into(),
        method_id: 0,
        dim: 0,
        bits_per_block: 0,
        rate,
        mse,
        mse_se: 0.0,
        sqnr_bits: rate,
        retention_pct: 100.0,
        vectors: 0,
        fit_s: 0.0,
        run_s: 0.0,
    }
}

/// Sum and sum of squares of the per-vector MSE of `q` over `sample` (n × 24 weights).
pub fn distortion(q: &dyn Quantizer, sample: &[f32]) -> Result<(f64, f64), CodeError> {
    let d = q.dim();
    assert_eq!(VECTOR % d, 0, "block dimension must divide {VECTOR}");
    let parts = sample
        .par_chunks(VECTOR * 64)
        .map(|chunk| {
            let mut out = vec![0f32; d];
            let (mut s, mut s2) = (0f64, 0f64);
            for v in chunk.chunks_exact(VECTOR) {
                let mut e = 0f64;
                for b in v.chunks_exact(d) {
                    q.quantize_block(b, &mut out)?;
                    e += b.iter().zip(&out).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum::<f64>();
                }
                let e = e / VECTOR as f64;
                s += e;
                s2 += e * e;
            }
            Ok((s, s2))
        })
        .collect::<Result<Vec<_>, CodeError>>()?;
    Ok(parts.into_iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1)))
}

/// Measures `q` on `vectors` source vectors drawn from `seed`.
pub fn measure(label: &str, q: &dyn Quantizer, vectors: usize, seed: u64, fit_s: f64) -> Result<Row, CodeError> {
    let sample = gaussian(vectors * VECTOR, seed);
    let t = Instant::now();
    let (s, s2) = distortion(q, &sample)?;
    let n = vectors as f64;
    let mse = s / n;
    let var = ((s2 - n * mse * mse) / (n - 1.0).max(1.0)).max(0.0);
    let row = Row::new(
        label.to_string(),
        q.spec(),
        q.method().id(),
        q.dim(),
        q.bits(),
        q.rate(),
    );
    Ok(row.measured(mse, var, n, vectors, fit_s, t.elapsed().as_secs_f64()))
}

/// Builds `spec` (timing the fit) and measures it.
pub fn run_spec(label: &str, spec: &str, vectors: usize, seed: u64) -> Result<Row, CodeError> {
    let t = Instant::now();
    let q = crate::from_spec(spec)?;
    let fit = t.elapsed().as_secs_f64();
    measure(label, q.as_ref(), vectors, seed, fit)
}

/// Bits of the Λ24(M) index, ⌈log2 N(M)⌉, from the theta series (no tables built).
pub fn ball_bits(m: u32) -> u32 {
    let theta = llvq_lattice::shell::theta(m);
    let n: u128 = theta[2..=m as usize].iter().sum();
    128 - (n - 1).leading_zeros()
}

/// The largest M whose index fits in `bits` bits (None below Λ24(2)).
pub fn largest_ball(bits: u32) -> Option<u32> {
    (2..=llvq_lattice::MAX_SHELL_LIMIT)
        .take_while(|&m| ball_bits(m) <= bits)
        .last()
}

/// The Table 4 rows at `rate` bits/dim (Table 4 is `rate = 2`): label and SPEC, in table order.
/// Codes that exist only at 2 bits/dim (INT2, E8P12, the E8 ball) appear only there; the
/// Leech codes take the largest ball that fits 24·R bits (shape-gain: with one gain bit).
pub fn table_codes(rate: u32) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if rate == 2 {
        v.push(("Uniform (INT2 grid)".to_string(), "int2".to_string()));
    } else {
        v.push((format!("Uniform ({rate}-bit)"), format!("uniform:bits={rate}")));
    }
    v.push(("Lloyd-Max".into(), format!("lloyd:bits={rate}")));
    if rate == 2 {
        v.push(("E8 coset (E8 ball)".into(), "e8ball".into()));
        v.push(("QuIP#/E8P12".into(), "e8p12".into()));
    }
    let bits = 24 * rate;
    if let Some(m) = largest_ball(bits) {
        v.push((format!("LLVQ spherical shaping Λ24({m})"), format!("llvq-ss:m={m}")));
    }
    if let Some(m) = largest_ball(bits - 1) {
        v.push((
            format!("LLVQ shape-gain Λ24({m}) + 1 gain bit"),
            format!("llvq-sg:m={m},gain=1"),
        ));
    }
    v
}

/// Table 7: spherical shaping Λ24(13) and shape-gain Λ24(13−j) + k gain bits at 2 bits/dim,
/// both gain variants (App. F).
pub fn gain_sweep_codes() -> Vec<(String, String)> {
    let mut v = vec![(
        "Leech spherical shaping Λ24(13)".to_string(),
        "llvq-ss:m=13".to_string(),
    )];
    for variant in ["opt", "chi"] {
        for (m, k) in [(13, 0), (12, 1), (11, 2), (10, 4)] {
            let name = if variant == "opt" { "optimal-scale" } else { "χ24" };
            v.push((
                format!("Leech shape-gain norm(Λ24({m})) + {k} {name} gain bits"),
                format!("llvq-sg:m={m},gain={k},variant={variant}"),
            ));
        }
    }
    v
}

/// Figure 1: one family per code, SPECs at rates from about 1 to 2.5 bits/dim.
pub fn curve_codes() -> Vec<(String, Vec<String>)> {
    let mut v = vec![
        (
            "Uniform".to_string(),
            (1..=3).map(|b| format!("uniform:bits={b}")).collect::<Vec<_>>(),
        ),
        (
            "Lloyd-Max".to_string(),
            (1..=3).map(|b| format!("lloyd:bits={b}")).collect(),
        ),
        ("INT2".to_string(), vec!["int2".to_string()]),
        ("E8 ball".to_string(), vec!["e8ball".to_string()]),
        ("QuIP#/E8P12".to_string(), vec!["e8p12".to_string()]),
    ];
    // Λ24(3..=24): 25 to 59 index bits, 1.04 to 2.46 bits/dim.
    v.push((
        "LLVQ spherical shaping".to_string(),
        (3..=24).map(|m| format!("llvq-ss:m={m}")).collect(),
    ));
    v.push((
        "LLVQ shape-gain (+1 gain bit)".to_string(),
        (3..=23).map(|m| format!("llvq-sg:m={m},gain=1")).collect(),
    ));
    v
}

/// A measured curve.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Curve {
    pub family: String,
    pub rows: Vec<Row>,
}

/// App. E: the distribution of the nearest-codeword angle D = arccos(max cos)/π for one code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AngularSet {
    /// "single shell", "union of shells" or "E8P12 ×3".
    pub family: String,
    pub label: String,
    /// log2 |C| / 24.
    pub rate: f64,
    /// Minimum, quartiles and maximum of D.
    pub quartiles: [f64; 5],
    pub mean: f64,
    pub samples: usize,
}

fn summary(family: &str, label: String, rate: f64, mut d: Vec<f64>) -> AngularSet {
    d.sort_by(f64::total_cmp);
    let q = |p: f64| d[((d.len() - 1) as f64 * p).round() as usize];
    AngularSet {
        family: family.to_string(),
        label,
        rate,
        quartiles: [q(0.0), q(0.25), q(0.5), q(0.75), q(1.0)],
        mean: d.iter().sum::<f64>() / d.len() as f64,
        samples: d.len(),
    }
}

/// App. E: for `samples` directions uniform on S^23 (normalised N(0, I24) draws from `seed`),
/// the angle D = arccos(max cos)/π to the nearest codeword of (1) single Leech shells m,
/// (2) unions of shells 2..=m (Λ24(m), there is no shell 1), for 2 ≤ m ≤ `max_shell`, and
/// (3) E8P12 stacked three times (the product of three normalised E8P12 codes scaled by 1/√3, whose
/// best cosine is Σ_b |y_b| cos_b / (√3 |y|) with cos_b the best cosine in block b).
pub fn angular(samples: usize, seed: u64, max_shell: u32) -> Result<Vec<AngularSet>, CodeError> {
    use crate::shellscan::ShellScan;
    use llvq_lattice::Ball;
    if samples == 0 {
        return Ok(Vec::new());
    }
    let ball = Ball::new(max_shell)?;
    let scans: Vec<ShellScan> = (2..=max_shell).map(|m| ShellScan::new(&ball, m)).collect();
    let ys = gaussian(samples * VECTOR, seed);
    let cos: Vec<Vec<f32>> = ys
        .par_chunks(VECTOR)
        .map(|y| {
            let y: &[f32; VECTOR] = y.try_into().unwrap();
            scans.iter().map(|s| s.best_cos(y)).collect()
        })
        .collect();
    let theta = llvq_lattice::shell::theta(max_shell);
    let angle = |c: f32| (c.clamp(-1.0, 1.0) as f64).acos() / std::f64::consts::PI;
    let mut out = Vec::new();
    let mut cum = 0u128;
    for (k, m) in (2..=max_shell).enumerate() {
        let n = theta[m as usize];
        cum += n;
        let single: Vec<f64> = cos.iter().map(|c| angle(c[k])).collect();
        out.push(summary(
            "single shell",
            format!("Shell({m})"),
            (n as f64).log2() / 24.0,
            single,
        ));
        let union: Vec<f64> = cos
            .iter()
            .map(|c| angle(c[..=k].iter().cloned().fold(f32::MIN, f32::max)))
            .collect();
        out.push(summary(
            "union of shells",
            format!("Λ24({m})"),
            (cum as f64).log2() / 24.0,
            union,
        ));
    }
    // E8P12 ×3: best cosine per 8-dim block over the normalised codewords.
    let e8 = crate::e8p12::E8p12::with_scale(1.0);
    let mut words = vec![[0f32; 8]; 1 << 16];
    for (code, w) in words.iter_mut().enumerate() {
        e8.decode_unscaled(code as u64, w);
        let n = w.iter().map(|v| v * v).sum::<f32>().sqrt();
        w.iter_mut().for_each(|v| *v /= n);
    }
    let e8d: Vec<f64> = ys
        .par_chunks(VECTOR)
        .map(|y| {
            let mut num = 0f32;
            for b in y.chunks_exact(8) {
                let best = words
                    .iter()
                    .map(|w| w.iter().zip(b).map(|(a, c)| a * c).sum::<f32>())
                    .fold(f32::MIN, f32::max);
                num += best;
            }
            let n = y.iter().map(|v| v * v).sum::<f32>().sqrt();
            angle(num / (3f32.sqrt() * n))
        })
        .collect();
    out.push(summary("E8P12 x3", "E8P12 ×3".into(), 2.0, e8d));
    Ok(out)
}
