//! Packed 4-bit kernels against candle's dense f32 matmul on SmolLM2-135M shapes (issue 9).
//!
//! `RAYON_NUM_THREADS=2 cargo bench -p llvq-model --bench qmatmul`. Also times decoding the
//! 2-bit code stream anew (what a kernel without the packed layout would pay per product).

use std::time::Duration;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llvq_codes::{from_spec, Quantizer};
use llvq_lattice::Ball;
use llvq_model::hadamard::Rotation;
use llvq_model::qmatmul::rotate::FastRotation;
use llvq_model::qmatmul::{MatVec, PackedWeight};
use rand::{Rng, SeedableRng};

/// (rows, cols) of SmolLM2-135M's linears: q/o, k/v, gate/up, down; the head separately.
const SHAPES: &[(usize, usize)] = &[(576, 576), (192, 576), (1536, 576), (576, 1536)];
const HEAD: (usize, usize) = (49152, 576);
const PREFILL: usize = 512;

/// Random valid Λ24(13) codes (uniform over the ball's indices) with random block scales.
fn packed(q: &dyn Quantizer, n: u64, rows: usize, cols: usize, seed: u64) -> (PackedWeight, Vec<u64>, Vec<f32>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let blocks = rows * cols / 24;
    let codes: Vec<u64> = (0..blocks).map(|_| rng.random_range(0..n)).collect();
    let scales: Vec<f32> = (0..blocks).map(|_| 0.01 + 0.01 * rng.random::<f32>()).collect();
    (
        PackedWeight::from_codes(q, rows, cols, cols, &codes, &scales).unwrap(),
        codes,
        scales,
    )
}

fn bench(c: &mut Criterion) {
    let q = from_spec("llvq-ss:m=13,scale=1").unwrap();
    let n = Ball::new(13).unwrap().len();
    let mut shapes = SHAPES.to_vec();
    shapes.push(HEAD);
    let mut g = c.benchmark_group("matvec");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(30);
    for (i, &(rows, cols)) in shapes.iter().enumerate() {
        let (w, codes, scales) = packed(q.as_ref(), n, rows, cols, i as u64);
        let id = format!("{rows}x{cols}");
        let x: Vec<f32> = (0..cols).map(|j| (j as f32 * 0.37).sin()).collect();
        let mut y = vec![0f32; rows];
        g.throughput(Throughput::Bytes(w.resident_bytes() as u64));
        g.bench_function(BenchmarkId::new("packed4", &id), |b| b.iter(|| w.matvec(&x, &mut y)));
        let dense = Tensor::from_vec(w.to_dense(), (rows, cols), &Device::Cpu).unwrap();
        let xt = Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap();
        g.throughput(Throughput::Bytes((rows * cols * 4) as u64));
        g.bench_function(BenchmarkId::new("candle_f32", &id), |b| {
            b.iter(|| xt.matmul(&dense.t().unwrap()).unwrap())
        });
        if rows == 576 && cols == 576 {
            let mut out = vec![0f32; rows * cols];
            g.bench_function(BenchmarkId::new("decode_2bit_stream", &id), |b| {
                b.iter(|| q.decode_scaled(&codes, &scales, &mut out).unwrap())
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("matmul_t512");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10);
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        let (w, _, _) = packed(q.as_ref(), n, rows, cols, i as u64);
        let id = format!("{rows}x{cols}");
        let x: Vec<f32> = (0..PREFILL * cols).map(|j| (j as f32 * 0.37).sin()).collect();
        let mut y = vec![0f32; PREFILL * rows];
        g.throughput(Throughput::Elements((PREFILL * rows * cols) as u64));
        g.bench_function(BenchmarkId::new("packed4", &id), |b| b.iter(|| w.matmul(&x, &mut y)));
        let dense = Tensor::from_vec(w.to_dense(), (rows, cols), &Device::Cpu).unwrap();
        let xt = Tensor::from_vec(x.clone(), (PREFILL, cols), &Device::Cpu).unwrap();
        g.bench_function(BenchmarkId::new("candle_f32", &id), |b| {
            b.iter(|| xt.matmul(&dense.t().unwrap()).unwrap())
        });
    }
    g.finish();
    // Online rotations of the activations (both directions), per token and for a prefill,
    // against the GEMM they accompany.
    let mut g = c.benchmark_group("rotate");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    for n in [576usize, 1536] {
        let r = FastRotation::new(&Rotation::new(n, 7)).expect("a Hadamard order");
        for t in [1, PREFILL] {
            let mut x: Vec<f32> = (0..t * n).map(|j| (j as f32 * 0.37).sin()).collect();
            g.throughput(Throughput::Elements((t * n) as u64));
            g.bench_function(BenchmarkId::new(format!("n{n}"), t), |b| {
                b.iter(|| {
                    r.rows(&mut x, t, false);
                    r.rows(&mut x, t, true)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
