use llvq_lattice::{Metric, Searcher};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
fn main() {
    let m: u32 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(12);
    let n: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(50);
    let s = Searcher::new(m).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut bad = 0;
    for _ in 0..n {
        let y: [f32; 24] = std::array::from_fn(|_| rng.sample::<f32, _>(StandardNormal));
        for (metric, sc) in [(Metric::Angular, 1.0f32), (Metric::Euclidean, 2.2)] {
            let y2 = y.map(|v| v * sc);
            let a = s.search(&y2, metric).unwrap();
            let b = s.search_reference(&y2, metric).unwrap();
            let f = |x: &[i32; 24]| { let d: f64 = x.iter().zip(&y2).map(|(&p, &q)| p as f64 * q as f64).sum(); let n2: f64 = x.iter().map(|&p| (p as f64).powi(2)).sum(); if metric == Metric::Angular { d / n2.sqrt() } else { 2.0 * d - n2 } };
            if (f(&a.point) - f(&b.point)).abs() > 1e-4 { bad += 1; println!("{metric:?} {} vs {}", f(&a.point), f(&b.point)); }
        }
    }
    println!("bad {bad}");
}
