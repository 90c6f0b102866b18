fn main() {
    let mut a: Vec<f32> = (0..4096).map(|i| (i as f32 * 0.37).sin()).collect();
    let t = std::time::Instant::now();
    for _ in 0..2000 { llvq_lattice::search::fwht(&mut a); a.iter_mut().for_each(|v| *v *= 1.0 / 64.0); }
    println!("fwht {:.2} us ({})", t.elapsed().as_secs_f64() / 2000.0 * 1e6, a[7]);
}
