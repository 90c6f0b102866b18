//! Criterion benchmarks of the codec: exact search (both metrics, M = 12 and 13), the unpruned
//! reference search as the in-process baseline, and the dequantizer per core.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llvq_lattice::dequant::decode_serial;
use llvq_lattice::{Metric, Searcher, DIM};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;

fn inputs(n: usize, scale: f32) -> Vec<[f32; DIM]> {
    let mut rng = StdRng::seed_from_u64(5);
    (0..n)
        .map(|_| std::array::from_fn(|_| rng.sample::<f32, _>(StandardNormal) * scale))
        .collect()
}

fn search(c: &mut Criterion) {
    let mut g = c.benchmark_group("search");
    g.sample_size(10);
    for m in [12u32, 13] {
        let s = Searcher::new(m).unwrap();
        for metric in [Metric::Angular, Metric::Euclidean] {
            let scale = if metric == Metric::Euclidean {
                (0.7 * 16.0 * m as f32 / 24.0).sqrt()
            } else {
                1.0
            };
            let ys = inputs(256, scale);
            g.throughput(Throughput::Elements(ys.len() as u64));
            g.bench_with_input(BenchmarkId::new(format!("{metric:?}"), m), &ys, |b, ys| {
                b.iter(|| {
                    ys.iter()
                        .map(|y| s.search(y, metric).unwrap().index)
                        .fold(0, u64::wrapping_add)
                })
            });
        }
        let ys = inputs(4, 1.0);
        g.throughput(Throughput::Elements(ys.len() as u64));
        g.bench_with_input(BenchmarkId::new("AngularReference", m), &ys, |b, ys| {
            b.iter(|| {
                ys.iter()
                    .map(|y| s.search_reference(y, Metric::Angular).unwrap().index)
                    .fold(0, u64::wrapping_add)
            })
        });
    }
    g.finish();
}

fn dequant(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for m in [12u32, 13] {
        let s = Searcher::new(m).unwrap();
        let n = 1 << 14;
        let idx: Vec<u64> = (0..n as u64)
            .map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % s.ball().len())
            .collect();
        let mut out = vec![0.0f32; n * DIM];
        g.throughput(Throughput::Elements((n * DIM) as u64));
        g.bench_function(BenchmarkId::new("weights", m), |b| {
            b.iter(|| decode_serial(s.ball(), &idx, 0.5, &mut out).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, search, dequant);
criterion_main!(benches);
