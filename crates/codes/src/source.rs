//! The i.i.d. N(0,1) source of §4, seeded and reproducible.
//!
//! Values are drawn in chunks of [`CHUNK`] from `StdRng::seed_from_u64(mix(seed, chunk))`, so a
//! sample depends only on (seed, length), never on the thread count. Fitting (scales, gain
//! codebooks) draws from [`DESIGN_SEED`]-derived streams; the lab measures on the user's seed, so
//! codes are always fitted on one sample and measured on another.

use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

/// Values per independently seeded chunk.
pub const CHUNK: usize = 1 << 14;

/// Root of every design (fitting) stream; measurement seeds are the user's.
pub const DESIGN_SEED: u64 = 0xD351_6E5E_ED00_0001;

pub use llvq_lattice::seed::mix;

/// `len` i.i.d. N(0,1) values from `seed`.
pub fn gaussian(len: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0f32; len];
    v.par_chunks_mut(CHUNK).enumerate().for_each(|(k, c)| {
        let mut rng = StdRng::seed_from_u64(mix(seed, k as u64));
        c.iter_mut().for_each(|x| *x = rng.sample(StandardNormal));
    });
    v
}

/// A design sample of `len` values for the fitting step named by `tag`.
pub fn design(len: usize, tag: u64) -> Vec<f32> {
    gaussian(len, mix(DESIGN_SEED, tag))
}

/// Fits the scale s of a lattice-type code used as x̂ = c(s·w)/s, where `nearest` maps a block
/// (already multiplied by s) to its codeword. Lloyd iteration on the one parameter: with the
/// assignment fixed, the best reconstruction factor is α = Σ⟨w, c⟩ / Σ|c|², so s ← 1/α; each
/// step is a nearest-neighbour step followed by a centroid step, so the MSE never increases,
/// and at the fixed point dMSE/ds = 0.
pub fn fit_scale<F>(samples: &[f32], dim: usize, s0: f64, iters: usize, nearest: F) -> f64
where
    F: Fn(&[f32], &mut [f32]) + Sync,
{
    let mut s = s0;
    for _ in 0..iters {
        let (wc, cc) = samples
            .par_chunks(dim * 64)
            .map(|chunk| {
                let mut y = vec![0f32; dim];
                let mut c = vec![0f32; dim];
                let (mut wc, mut cc) = (0f64, 0f64);
                for w in chunk.chunks_exact(dim) {
                    for (yi, &wi) in y.iter_mut().zip(w) {
                        *yi = wi * s as f32;
                    }
                    nearest(&y, &mut c);
                    wc += w.iter().zip(&c).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>();
                    cc += c.iter().map(|&b| b as f64 * b as f64).sum::<f64>();
                }
                (wc, cc)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let next = cc / wc;
        let done = ((next - s) / s).abs() < 1e-4;
        s = next;
        if done {
            break;
        }
    }
    s
}
