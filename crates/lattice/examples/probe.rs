use llvq_lattice::{Metric, Searcher};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
fn main() {
    let m: u32 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(12);
    let n: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(2000);
    let s = Searcher::new(m).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let ys: Vec<[f32; 24]> = (0..n).map(|_| std::array::from_fn(|_| rng.sample::<f32, _>(StandardNormal))).collect();
    for metric in [Metric::Angular, Metric::Euclidean] {
        let scale = if metric == Metric::Euclidean { 2.2 } else { 1.0 };
        let t = std::time::Instant::now();
        let (mut sh, mut tr, mut wo) = (0u64, 0u64, 0u64);
        for y in &ys {
            let y2 = y.map(|v| v * scale);
            let (_, st) = s.search_traced(&y2, metric).unwrap();
            sh += st.shells as u64; tr += st.transforms as u64; wo += st.words as u64;
        }
        let dt = t.elapsed().as_secs_f64();
        println!("M={m} {metric:?}: {:.0} vec/s shells {:.2} transforms {:.2} words {:.1}", n as f64 / dt, sh as f64 / n as f64, tr as f64 / n as f64, wo as f64 / n as f64);
    }
}
