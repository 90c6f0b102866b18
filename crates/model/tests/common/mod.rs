//! Random packed matrices shared by the `qmatmul` and `int8` tests (one generator, so both
//! test the kernels on the same kind of data).

use llvq_codes::Quantizer;
use rand::rngs::StdRng;
use rand::Rng;

/// Scale group in weights: a multiple of 8, 24 and 32, so every chunk length divides it and
/// codes of fewer than 8 dimensions group into chunks sharing a scale.
const GROUP: usize = 96;

/// Standard normal samples (Box-Muller: enough for test data).
pub fn gauss(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect()
}

/// Codes and per-block scales for a random `rows × padded` matrix (scales per row and group).
pub fn random_codes(q: &dyn Quantizer, rows: usize, padded: usize, rng: &mut StdRng) -> (Vec<u64>, Vec<f32>) {
    let d = q.dim();
    let per_row = padded / d;
    let gs: Vec<f32> = (0..rows * padded.div_ceil(GROUP))
        .map(|_| 0.01 + rng.random::<f32>())
        .collect();
    let scales: Vec<f32> = (0..rows * per_row)
        .map(|b| gs[(b / per_row) * padded.div_ceil(GROUP) + (b % per_row) * d / GROUP])
        .collect();
    let x = gauss(rng, rows * padded);
    let xs: Vec<f32> = x.iter().enumerate().map(|(i, v)| v * scales[i / d]).collect();
    (q.encode_scaled(&xs, &scales).unwrap(), scales)
}
