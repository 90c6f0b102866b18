//! Spherically bounded E8 at 2 bits/dim: the 2^16 smallest points of E8 (the "E8 coset" row of
//! Table 4; E8 = D8 ∪ (D8 + ½), Conway & Sloane ch. 4).
//!
//! Shells of E8 up to norm² 10 hold 56,881 points; the remaining 8,655 are the first points of the
//! norm² 12 shell in lexicographic order of their coordinates (any subset of one shell gives the
//! same distortion up to sampling noise; the order only has to be fixed). Codes are the ranks in
//! the order (norm², coordinates). Encoding: the nearest E8 point by the Conway-Sloane decoder
//! (round to D8 and to D8 + ½, fix the sum parity by re-rounding the worst coordinate); when it
//! lies in the ball it is the nearest codeword. Otherwise the full shells are searched class by
//! class (one sort of |y|, sorted pairing with each class's absolute values, signs from y; on
//! D8 + ½ the number of negatives must be ≡ Σ|x| (mod 2), fixed by flipping the cheapest pair)
//! and the 8,655 points of the partial shell are scanned. [`E8Ball::encode_reference`] scans all
//! 2^16 points; tests require the two to agree.

use std::collections::HashMap;

use crate::e8::E8Code;
use crate::error::CodeError;
use crate::source::{design, fit_scale};
use crate::spec::{CodeId, Spec};

pub use crate::e8::{BITS, DIM};
const SIZE: usize = 1 << BITS;

/// The ball: codewords (coordinates ×2 as integers) in code order, and their inverse.
pub struct E8Ball {
    scale: f32,
    points: Vec<[f32; DIM]>,
    index: HashMap<[i8; DIM], u16>,
    /// Classes of the full shells (norm² ≤ 10).
    classes: Vec<BallClass>,
    /// The partial shell, coordinate-major, for the vectorised scan; its first code.
    columns: Vec<Vec<f32>>,
    partial_start: usize,
}

/// One orbit of a full shell under permutations and admissible sign changes.
struct BallClass {
    /// Absolute values, descending.
    abs: [f32; DIM],
    norm2: f32,
    /// D8 + ½: required parity of the number of negative coordinates; None on D8 (free signs).
    parity: Option<u32>,
}

/// All E8 points with norm² ≤ 12, doubled coordinates, sorted by (norm², coordinates).
fn enumerate() -> Vec<[i8; DIM]> {
    let mut out = Vec::new();
    // Doubled coordinates: all even in [-6, 6] or all odd in [-5, 5]; Σx ≡ 0 (mod 2) means the
    // doubled sum ≡ 0 (mod 4). Norm² ≤ 12 means Σ(2x)² ≤ 48.
    for (lo, step, n) in [(-6i32, 2i32, 7u32), (-5, 2, 6)] {
        let total = n.pow(DIM as u32);
        for mut k in 0..total {
            let mut p = [0i8; DIM];
            let mut s2 = 0;
            let mut sum = 0;
            for i in (0..DIM).rev() {
                let v = lo + step * (k % n) as i32;
                k /= n;
                p[i] = v as i8;
                s2 += v * v;
                sum += v;
            }
            if s2 <= 48 && sum.rem_euclid(4) == 0 {
                out.push(p);
            }
        }
    }
    out.sort_by_key(|p| (p.iter().map(|&v| (v as i32).pow(2)).sum::<i32>(), *p));
    out
}

/// Nearest point of D8 + c·½ (c = 0 or 1) to y, doubled coordinates.
fn nearest_d8(y: &[f32], odd: bool) -> ([i8; DIM], f32) {
    let off = if odd { 0.5 } else { 0.0 };
    let mut p = [0i32; DIM];
    let mut worst = (0usize, -1.0f32);
    let mut sum = 0i32;
    for i in 0..DIM {
        let r = (y[i] - off).round();
        let err = (y[i] - off - r).abs();
        p[i] = r as i32;
        sum += p[i];
        if err > worst.1 {
            worst = (i, err);
        }
    }
    if sum.rem_euclid(2) != 0 {
        let i = worst.0;
        let t = y[i] - off;
        p[i] += if t > p[i] as f32 { 1 } else { -1 };
    }
    let mut d = 0f32;
    let mut q = [0i8; DIM];
    for i in 0..DIM {
        let v = p[i] as f32 + off;
        d += (y[i] - v) * (y[i] - v);
        q[i] = (2 * p[i] + odd as i32).clamp(-127, 127) as i8;
    }
    (q, d)
}

impl E8Ball {
    /// Builds from `e8ball[:scale=s]`; without `scale` it is fitted on a design sample.
    pub fn from_spec(spec: &Spec) -> Result<E8Ball, CodeError> {
        spec.only("scale")?;
        let all = enumerate();
        let pts: Vec<[i8; DIM]> = all.into_iter().take(SIZE).collect();
        let points: Vec<[f32; DIM]> = pts.iter().map(|p| p.map(|v| v as f32 * 0.5)).collect();
        let norm = |p: &[i8; DIM]| p.iter().map(|&v| (v as i32).pow(2)).sum::<i32>();
        let partial_start = pts.iter().position(|p| norm(p) > 40).unwrap_or(SIZE);
        let mut leaders: Vec<[i8; DIM]> = pts[..partial_start]
            .iter()
            .map(|p| {
                let mut a = p.map(|v| v.abs());
                a.sort_unstable_by(|x, y| y.cmp(x));
                a
            })
            .collect();
        leaders.sort_unstable();
        leaders.dedup();
        let classes = leaders
            .iter()
            .map(|a| BallClass {
                abs: a.map(|v| v as f32 * 0.5),
                norm2: norm(a) as f32 / 4.0,
                parity: (a[0] % 2 != 0).then(|| (a.iter().map(|&v| v as u32).sum::<u32>() / 2) & 1),
            })
            .collect();
        let mut q = E8Ball {
            scale: 1.0,
            columns: (0..DIM)
                .map(|i| points[partial_start..].iter().map(|p| p[i]).collect())
                .collect(),
            classes,
            partial_start,
            points,
            index: pts.iter().enumerate().map(|(k, p)| (*p, k as u16)).collect(),
        };
        match spec.scale("scale")? {
            Some(s) => q.scale = s,
            None => {
                let sample = design(DIM * 20_000, 0xE8B);
                let s = fit_scale(&sample, DIM, 1.0, 30, |y, c| {
                    let k = q.encode_unscaled(y);
                    c.copy_from_slice(&q.points[k as usize]);
                });
                q.scale = s as f32;
            }
        }
        Ok(q)
    }

    /// Exact nearest codeword (codebook units).
    pub fn encode_unscaled(&self, y: &[f32]) -> u64 {
        let (a, da) = nearest_d8(y, false);
        let (b, db) = nearest_d8(y, true);
        let p = if da <= db { a } else { b };
        if let Some(&k) = self.index.get(&p) {
            return k as u64;
        }
        let (d_full, k_full) = self.best_full(y);
        let (d_part, k_part) = self.scan_partial(y);
        if d_full <= d_part {
            k_full
        } else {
            k_part
        }
    }

    /// Nearest point of the full shells: the best class by sorted pairing, then its point.
    fn best_full(&self, y: &[f32]) -> (f32, u64) {
        let mut order: [usize; DIM] = std::array::from_fn(|i| i);
        order.sort_by(|&a, &b| y[b].abs().total_cmp(&y[a].abs()));
        let negs = y.iter().filter(|v| **v < 0.0).count() as u32;
        let mut best = (f32::INFINITY, 0usize, false);
        for (k, c) in self.classes.iter().enumerate() {
            let mut dot = 0f32;
            let mut cheapest = f32::INFINITY;
            for (j, &i) in order.iter().enumerate() {
                let p = c.abs[j] * y[i].abs();
                dot += p;
                cheapest = cheapest.min(p);
            }
            let flip = c.parity.is_some_and(|p| p != (negs & 1));
            if flip {
                dot -= 2.0 * cheapest;
            }
            let d = c.norm2 - 2.0 * dot;
            if d < best.0 {
                best = (d, k, flip);
            }
        }
        let c = &self.classes[best.1];
        let mut x = [0f32; DIM];
        let mut cheapest = (f32::INFINITY, 0usize);
        for (j, &i) in order.iter().enumerate() {
            x[i] = if y[i] < 0.0 { -c.abs[j] } else { c.abs[j] };
            let p = c.abs[j] * y[i].abs();
            if p < cheapest.0 {
                cheapest = (p, i);
            }
        }
        if best.2 {
            x[cheapest.1] = -x[cheapest.1];
        }
        let key = x.map(|v| (v * 2.0) as i8);
        (
            best.0,
            *self.index.get(&key).expect("class points lie in the ball") as u64,
        )
    }

    /// The partial shell, coordinate-major: minimises |c|² − 2⟨c, y⟩ (vectorises).
    fn scan_partial(&self, y: &[f32]) -> (f32, u64) {
        const BLOCK: usize = 512;
        let n = SIZE - self.partial_start;
        let norm2 = self
            .points
            .get(self.partial_start)
            .map_or(0.0, |p| p.iter().map(|v| v * v).sum::<f32>());
        let mut best = (f32::INFINITY, 0usize);
        let mut d = [0f32; BLOCK];
        for start in (0..n).step_by(BLOCK) {
            let len = BLOCK.min(n - start);
            let d = &mut d[..len];
            d.fill(norm2);
            for (i, col) in self.columns.iter().enumerate() {
                let t = -2.0 * y[i];
                for (dk, &ck) in d.iter_mut().zip(&col[start..start + len]) {
                    *dk += t * ck;
                }
            }
            for (k, &dk) in d.iter().enumerate() {
                if dk < best.0 {
                    best = (dk, start + k);
                }
            }
        }
        (best.0, (self.partial_start + best.1) as u64)
    }

    /// Reference: scan of all codewords.
    pub fn encode_reference(&self, y: &[f32]) -> u64 {
        let mut best = (f32::INFINITY, 0usize);
        for (k, c) in self.points.iter().enumerate() {
            let d: f32 = c.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum();
            if d < best.0 {
                best = (d, k);
            }
        }
        best.1 as u64
    }

    /// Codeword `k` in codebook units.
    pub fn point(&self, k: usize) -> &[f32; DIM] {
        &self.points[k]
    }
}

impl E8Code for E8Ball {
    const ID: CodeId = CodeId::E8Ball;
    fn scale(&self) -> f32 {
        self.scale
    }
    fn nearest(&self, y: &[f32; DIM]) -> u64 {
        self.encode_unscaled(y)
    }
    fn codeword(&self, code: u64, out: &mut [f32]) {
        out.copy_from_slice(&self.points[code as usize]);
    }
    /// Doubled coordinates v are all even in −6..=6 or all odd in −5..=5 (E8 = D8 ∪ D8 + ½,
    /// norm² ≤ 12), so with the block parity p, n = (v + 6 − p)/2 ∈ 0..=6 and a codeword is
    /// (n + (p − 6)/2)/scale: 4-bit identity levels.
    fn levels(&self, code: u64, levels: &mut [u8]) -> f32 {
        let pt = &self.points[code as usize];
        let p = (pt[0] * 2.0) as i32 & 1;
        for (l, &v) in levels.iter_mut().zip(pt) {
            *l = (((v * 2.0) as i32 + 6 - p) / 2) as u8;
        }
        (p as f32 - 6.0) * 0.5
    }
}
