//! Exact angular scan of single Leech shells (for App. E), independent of the lattice crate's
//! branch-and-bound search: it only uses the class tables and the Golay code.
//!
//! B_m(y) = max{⟨x, y⟩ : x ∈ Shell(m)}; every point of Shell(m) has |x| = 4√m in L_int, so the
//! best cosine on the shell is B_m / (4√m |y|), and over a union of shells it is the largest of
//! those. Per class and Golay word the best point is found without enumeration (Adoul-Barth):
//! - even classes (x ≡ 2 mod 4 on the word's support F1, ≡ 0 mod 4 on F0): pair sorted |y| with
//!   sorted values on each side, signs from y; Σx ≡ 0 (mod 8) fixes the parity of negatives on
//!   F1, and a wrong parity costs flipping the cheapest F1 pair;
//! - odd classes (x_i = t_i·v(a), v(a) = ±a ≡ 1 mod 4, t_i = −1 on F1): pair sorted t∘y with the
//!   sorted signed values. Σx (mod 8) is fixed by the class, so every word is admissible.
//!
//! The scan visits every (word, class) pair: slow, but plain.

use llvq_lattice::golay::{golay, weight_slot, WORDS};
use llvq_lattice::{Ball, Parity, DIM};

struct EvenClass {
    /// F1 values (≡ 2 mod 4) descending, F0 values (≡ 0 mod 4, zeros included) descending.
    f1: Vec<f32>,
    f0: Vec<f32>,
    parity: u32,
}

/// The classes of one shell, ready to score.
pub struct ShellScan {
    m: u32,
    even: [Vec<EvenClass>; 5],
    /// Odd classes: signed values v(a), descending.
    odd: Vec<Vec<f32>>,
}

impl ShellScan {
    /// Tables for Shell(m) taken from `ball` (which must contain shell m).
    pub fn new(ball: &Ball, m: u32) -> ShellScan {
        let mut even: [Vec<EvenClass>; 5] = Default::default();
        let mut odd = Vec::new();
        for c in ball.shell_classes(m) {
            let mut vals: Vec<u8> = c.leader.to_vec();
            vals.sort_unstable_by(|a, b| b.cmp(a));
            match c.parity {
                Parity::Even => {
                    let f1: Vec<f32> = vals.iter().filter(|&&v| v % 4 == 2).map(|&v| v as f32).collect();
                    let f0: Vec<f32> = vals.iter().filter(|&&v| v % 4 == 0).map(|&v| v as f32).collect();
                    let slot = weight_slot(f1.len() as u32).expect("even class weight is a Golay weight");
                    even[slot].push(EvenClass {
                        f1,
                        f0,
                        parity: c.f1_negative_parity(),
                    });
                }
                Parity::Odd => {
                    let mut v: Vec<f32> = vals
                        .iter()
                        .map(|&a| if a % 4 == 1 { a as f32 } else { -(a as f32) })
                        .collect();
                    v.sort_by(|a, b| b.total_cmp(a));
                    odd.push(v);
                }
            }
        }
        ShellScan { m, even, odd }
    }

    /// The shell m.
    pub fn shell(&self) -> u32 {
        self.m
    }

    /// B_m(y): the largest ⟨x, y⟩ over Shell(m).
    pub fn best_dot(&self, y: &[f32; DIM]) -> f32 {
        let g = golay();
        let mut best = f32::NEG_INFINITY;
        // Coordinates by decreasing |y|.
        let mut order: [usize; DIM] = std::array::from_fn(|i| i);
        order.sort_by(|&a, &b| y[b].abs().total_cmp(&y[a].abs()));
        for (slot, classes) in self.even.iter().enumerate() {
            if classes.is_empty() {
                continue;
            }
            for &c in g.words_of_weight(slot) {
                let (mut a1, mut a0) = ([0f32; DIM], [0f32; DIM]);
                let (mut n1, mut n0, mut neg1) = (0usize, 0usize, 0u32);
                for &i in &order {
                    if c >> i & 1 == 1 {
                        a1[n1] = y[i].abs();
                        n1 += 1;
                        neg1 += (y[i] < 0.0) as u32;
                    } else {
                        a0[n0] = y[i].abs();
                        n0 += 1;
                    }
                }
                for k in classes {
                    let mut s = 0f32;
                    let mut cheapest = f32::INFINITY;
                    for (v, a) in k.f1.iter().zip(&a1) {
                        let p = v * a;
                        s += p;
                        cheapest = cheapest.min(p);
                    }
                    for (v, a) in k.f0.iter().zip(&a0) {
                        s += v * a;
                    }
                    if !k.f1.is_empty() && (neg1 & 1) != k.parity {
                        s -= 2.0 * cheapest;
                    }
                    best = best.max(s);
                }
            }
        }
        if !self.odd.is_empty() {
            for u in 0..WORDS {
                let c = g.word(u);
                let mut z: [f32; DIM] = std::array::from_fn(|i| if c >> i & 1 == 1 { -y[i] } else { y[i] });
                z.sort_by(|a, b| b.total_cmp(a));
                for v in &self.odd {
                    best = best.max(v.iter().zip(&z).map(|(a, b)| a * b).sum());
                }
            }
        }
        best
    }

    /// Best cosine between y and Shell(m).
    pub fn best_cos(&self, y: &[f32; DIM]) -> f32 {
        let n = y.iter().map(|v| v * v).sum::<f32>().sqrt();
        self.best_dot(y) / (4.0 * (self.m as f32).sqrt() * n)
    }
}
