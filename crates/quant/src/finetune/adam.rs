//! Adam (Kingma & Ba) on the scale vectors, with a warmup + cosine learning-rate schedule.
//!
//! The parameters stay f32 (the stored form, so the file reproduces the run); the moments are
//! f64. Plain loops: a model has a few hundred thousand scales, nothing next to a forward pass.

use serde::{Deserialize, Serialize};

/// Adam's state: first and second moments per scale, and the step count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub m: Vec<Vec<f64>>,
    pub v: Vec<Vec<f64>>,
    pub t: u64,
}

pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

impl Adam {
    pub fn new(lens: &[usize]) -> Adam {
        Adam {
            m: lens.iter().map(|&n| vec![0.0; n]).collect(),
            v: lens.iter().map(|&n| vec![0.0; n]).collect(),
            t: 0,
        }
    }

    /// One bias-corrected step of size `lr` on `params` with gradients `grads`.
    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f64>], lr: f64) {
        self.t += 1;
        let c1 = 1.0 - BETA1.powi(self.t as i32);
        let c2 = 1.0 - BETA2.powi(self.t as i32);
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            for i in 0..p.len() {
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * g[i];
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * g[i] * g[i];
                let upd = lr * (m[i] / c1) / ((v[i] / c2).sqrt() + EPS);
                p[i] = (p[i] as f64 - upd) as f32;
            }
        }
    }
}

/// Learning rate of step `step` (0-based) of `steps`: linear warmup over the first 5% of the
/// steps (at least one), then a cosine decay to 10% of `peak`.
pub fn lr_at(step: u64, steps: u64, peak: f64) -> f64 {
    let warm = (steps / 20).max(1);
    if step < warm {
        return peak * (step + 1) as f64 / warm as f64;
    }
    let span = steps.saturating_sub(warm).max(1) as f64;
    let x = ((step - warm) as f64 / span).min(1.0);
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * x).cos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_each_scale_by_lr_against_its_gradient() {
        // With bias correction the first update is lr·g/(|g| + eps) ≈ lr·sign(g).
        let mut a = Adam::new(&[3]);
        let mut p = vec![vec![1.0f32; 3]];
        a.step(&mut p, &[vec![2.0, -0.5, 0.0]], 0.01);
        assert!(
            (p[0][0] - 0.99).abs() < 1e-6 && (p[0][1] - 1.01).abs() < 1e-6 && p[0][2] == 1.0,
            "{p:?}"
        );
    }

    #[test]
    fn schedule_warms_up_then_decays_to_a_tenth() {
        assert!((lr_at(0, 100, 1.0) - 0.2).abs() < 1e-12);
        assert!((lr_at(4, 100, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(99, 100, 1.0) - 0.1).abs() < 1e-3);
        assert!(lr_at(50, 100, 1.0) < lr_at(20, 100, 1.0));
        assert!(lr_at(0, 1, 2.0) == 2.0);
    }
}
