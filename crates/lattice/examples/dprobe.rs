use llvq_lattice::dequant::decode_serial;
use llvq_lattice::{Ball, DIM};
fn main() {
    let m: u32 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(13);
    let n: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(1 << 16);
    let ball = Ball::new(m).unwrap();
    let idx: Vec<u64> = (0..n as u64).map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % ball.len()).collect();
    let mut out = vec![0.0f32; n * DIM];
    let t = std::time::Instant::now();
    for _ in 0..4 { decode_serial(&ball, &idx, 0.5, &mut out).unwrap(); }
    let dt = t.elapsed().as_secs_f64() / 4.0;
    println!("M={m}: {:.1} M weights/s ({})", n as f64 * 24.0 / dt / 1e6, out[5]);
}
