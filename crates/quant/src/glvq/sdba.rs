//! Salience-driven bit allocation (§3.2): equal numbers of groups at N + 1 and N − 1.
//!
//! The paper's objective is the KL divergence between the layer's original and quantized
//! outputs; to second order that is the output error the proxy H measures. A group quantized
//! with white noise of relative variance D(b) (the MSE of the optimal uniform quantizer of
//! N(0,1) at b bits, [`super::learn::uniform_gaussian`]) adds about
//!
//! ```text
//!     E[ΔL_g] = D(b) · σ_g² · rows · tr(H_gg),       σ_g² = mean square of W_g,
//! ```
//!
//! so the salience is s_g = σ_g² · tr(H_gg) (our choice; the summary names only the KL
//! objective). Among the full-width groups (the tail group, if any, keeps N: see
//! [`super::groups`]), sorted by salience, the i-th most salient goes to N + 1 and the i-th
//! least to N − 1 while that pair lowers the expected loss:
//! s_hi·(D(N) − D(N+1)) > s_lo·(D(N−1) − D(N)). Equal numbers move up and down and all moved
//! groups have the same size, so the average is exactly N. A fractional N moves d bits per
//! vector the same way (coordinates split as in [`super::babai`]).

use super::babai::coord_bits;
use super::learn::uniform_gaussian;

/// s_g = mean(W_g²) · tr(H_gg) of a `rows × width` group and its `width × width` block.
pub fn salience(x: &[f64], h: &[f64], width: usize) -> f64 {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64;
    ms * (0..width).map(|i| h[i * width + i]).sum::<f64>()
}

/// Mean D over the coordinates of a vector of `vb` bits.
fn vector_mse(d: usize, vb: u32) -> f64 {
    coord_bits(d, vb).iter().map(|&b| uniform_gaussian(b).1).sum::<f64>() / d as f64
}

/// Bits per d-vector of each group. `full[g]` says whether group g is full-width (may move);
/// `target` is d·N; `enabled` false gives every group `target`.
pub fn allocate(saliences: &[f64], full: &[bool], d: usize, target: u32, enabled: bool) -> Vec<u32> {
    let mut out = vec![target; saliences.len()];
    if !enabled || target < d as u32 {
        return out;
    }
    let (up, down) = (target + d as u32, target - d as u32);
    let gain = vector_mse(d, target) - vector_mse(d, up);
    let cost = vector_mse(d, down) - vector_mse(d, target);
    let mut order: Vec<usize> = (0..saliences.len()).filter(|&g| full[g]).collect();
    // Most salient first; ties by index so the allocation is deterministic.
    order.sort_by(|&a, &b| saliences[b].total_cmp(&saliences[a]).then(a.cmp(&b)));
    for i in 0..order.len() / 2 {
        let (hi, lo) = (order[i], order[order.len() - 1 - i]);
        if saliences[hi] * gain > saliences[lo] * cost {
            out[hi] = up;
            out[lo] = down;
        } else {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn allocation_averages_exactly() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for (d, target) in [(8, 16), (8, 12), (24, 48), (32, 64), (8, 8)] {
            for n in 1..40 {
                let s: Vec<f64> = (0..n).map(|_| rng.random::<f64>().powi(6) * 100.0).collect();
                let mut full = vec![true; n];
                full[n - 1] = n % 3 != 0; // sometimes a tail group
                let a = allocate(&s, &full, d, target, true);
                // Every group has the same width except the tail, which keeps the target.
                assert_eq!(
                    a.iter().map(|&b| b as u64).sum::<u64>(),
                    target as u64 * n as u64,
                    "d={d} n={n} {a:?}"
                );
                assert!(a
                    .iter()
                    .all(|&b| b == target || b == target + d as u32 || b + d as u32 == target));
                let ups = a.iter().filter(|&&b| b > target).count();
                let downs = a.iter().filter(|&&b| b < target).count();
                assert_eq!(ups, downs);
                if !full[n - 1] {
                    assert_eq!(a[n - 1], target);
                }
                // Every up group is at least as salient as every down group.
                for (i, &bi) in a.iter().enumerate() {
                    for (j, &bj) in a.iter().enumerate() {
                        if bi > target && bj < target {
                            assert!(s[i] >= s[j]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn moves_only_when_salience_differs_enough() {
        // Equal saliences: nothing moves. Very different: the extremes move.
        assert_eq!(allocate(&[1.0; 6], &[true; 6], 8, 16, true), vec![16; 6]);
        let a = allocate(&[100.0, 1.0, 1.0, 0.01], &[true; 4], 8, 16, true);
        assert_eq!(a, vec![24, 16, 16, 8]);
        assert_eq!(allocate(&[100.0, 0.01], &[true; 2], 8, 16, false), vec![16, 16]);
        // Fractional N = 1.5 (12 bits per 8-vector): groups go to 2.5 and 0.5 bits.
        assert_eq!(allocate(&[100.0, 0.01], &[true; 2], 8, 12, true), vec![20, 4]);
    }
}
