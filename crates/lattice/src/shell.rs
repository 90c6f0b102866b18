//! Shells and classes of Λ24 (paper §2.2, §2.4-2.6), generated from the construction.
//!
//! Shell(m) holds the points of integer squared norm 16m. A *class* is the set of points of one
//! parity sharing one multiset of absolute values; its *leader* lists those values in descending
//! order. The class size factorises as A · 2^B · P (§2.6), derived here from the placements:
//!
//! - **Even** classes: the w values ≡ 2 (mod 4) sit on F1(c) of a weight-w codeword c, the
//!   values ≡ 0 (mod 4) on F0(c), so A = #codewords of weight w. Signs on the nonzero F0 entries
//!   are free; on F1 only the parity of the negatives is free, fixed by Σx ≡ 0 (mod 8) to
//!   #neg ≡ Σ|x|/4 (mod 2). So B = nz(F0) + (w − 1) (w > 0), and P = P(F1) · P(F0), the
//!   multiset permutations inside each side. A class with w = 0 exists only when Σ|x| ≡ 0 (mod 8).
//! - **Odd** classes: every codeword gives a placement (A = 4096) and the congruences
//!   x_i ≡ 1 + 2c_i (mod 4) force every sign (B = 0); P = 24!/∏p_i!. Writing
//!   x_i = 1 + 2c_i + 4k_i, Σx ≡ 4 (mod 8) needs Σk_i odd, and k_i is odd exactly when
//!   |x_i| ≡ ±3 (mod 8) (for either c_i), so the class exists iff that count is odd.
//!
//! The paper's Eq. 12 divisor ∏q_j! is replaced by these derivations (see shared/README.md);
//! tests check every shell size against the theta series (`theta`).

use crate::golay::{golay, weight_slot};
use crate::leech::{Parity, DIM};

/// Most distinct absolute values a class can have for shells up to [`MAX_SHELL_LIMIT`].
pub const MAX_LEVELS: usize = 12;

/// The largest M whose ball Λ24(M) has at most 2^64 points, so that every index fits a `u64`.
/// Checked against the theta series by a test.
pub const MAX_SHELL_LIMIT: u32 = 33;

/// A set of slots (F1(c), F0(c), or all 24 for odd classes) and the multiset of absolute values
/// placed on them. Levels are listed in ranking order: rarest first; the last level fills the
/// slots left over, so it needs no ranking work.
#[derive(Clone, Debug)]
pub struct Group {
    /// Number of slots.
    pub slots: u8,
    /// Number of distinct values.
    pub levels: u8,
    pub value: [u8; MAX_LEVELS],
    pub count: [u8; MAX_LEVELS],
    /// Multiset permutations: slots! / ∏ count!.
    pub perms: u64,
}

impl Group {
    pub(crate) fn new(slots: usize, mut levels: Vec<(u8, u8)>) -> Group {
        // Rarest first, ties broken by larger value first: a fixed, documented order.
        levels.sort_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        assert!(levels.len() <= MAX_LEVELS);
        let mut g = Group {
            slots: slots as u8,
            levels: levels.len() as u8,
            value: [0; MAX_LEVELS],
            count: [0; MAX_LEVELS],
            perms: 1,
        };
        let mut perms: u128 = factorial(slots);
        for (j, &(v, c)) in levels.iter().enumerate() {
            g.value[j] = v;
            g.count[j] = c;
            perms /= factorial(c as usize);
        }
        g.perms = u64::try_from(perms).expect("group permutations fit u64");
        g
    }

    /// Number of nonzero values placed on this group's slots.
    pub fn nonzero(&self) -> u32 {
        (0..self.levels as usize)
            .filter(|&j| self.value[j] != 0)
            .map(|j| self.count[j] as u32)
            .sum()
    }
}

/// One class: parity, leader, and the factors of its size.
#[derive(Clone, Debug)]
pub struct Class {
    pub parity: Parity,
    /// The shell m (integer squared norm 16m).
    pub shell: u32,
    /// Absolute values in descending order: the class leader.
    pub leader: [u8; DIM],
    /// Even classes: number of values ≡ 2 (mod 4), the weight of the admissible codewords.
    /// Odd classes: 0 (every codeword is admissible).
    pub weight: u32,
    /// Admissible Golay codewords, A.
    pub golay_count: u32,
    /// Free sign bits, B.
    pub sign_bits: u32,
    /// Permutation factor P (product over the groups).
    pub perms: u64,
    /// Cardinality A · 2^B · P.
    pub size: u64,
    /// Even: [F1 group, F0 group]; odd: [all 24 slots, empty].
    pub groups: [Group; 2],
    /// Σ|x_i| (used by the even sign-parity rule).
    pub abs_sum: u32,
}

impl Class {
    /// The distinct absolute values with their multiplicities, in descending value order.
    pub fn multiset(&self) -> Vec<(u8, u8)> {
        let mut out: Vec<(u8, u8)> = Vec::new();
        for &a in &self.leader {
            match out.last_mut() {
                Some((v, c)) if *v == a => *c += 1,
                _ => out.push((a, 1)),
            }
        }
        out
    }

    /// Parity required of the number of negative F1 entries (even classes).
    pub fn f1_negative_parity(&self) -> u32 {
        (self.abs_sum / 4) & 1
    }
}

pub(crate) fn factorial(n: usize) -> u128 {
    (1..=n as u128).product()
}

fn make_class(parity: Parity, shell: u32, leader: [u8; DIM]) -> Option<Class> {
    let abs_sum: u32 = leader.iter().map(|&a| a as u32).sum();
    let levels_of = |pred: &dyn Fn(u8) -> bool| -> Vec<(u8, u8)> {
        let mut out: Vec<(u8, u8)> = Vec::new();
        for &a in leader.iter().filter(|&&a| pred(a)) {
            match out.last_mut() {
                Some((v, c)) if *v == a => *c += 1,
                _ => out.push((a, 1)),
            }
        }
        out
    };
    let (weight, golay_count, sign_bits, groups) = match parity {
        Parity::Even => {
            let w = leader.iter().filter(|&&a| a % 4 == 2).count() as u32;
            let slot = weight_slot(w)?;
            if w == 0 && abs_sum % 8 != 0 {
                return None;
            }
            let f1 = Group::new(w as usize, levels_of(&|a| a % 4 == 2));
            let f0 = Group::new(DIM - w as usize, levels_of(&|a| a % 4 == 0));
            let b = f0.nonzero() + w.saturating_sub(1);
            (w, golay().words_of_weight(slot).len() as u32, b, [f1, f0])
        }
        Parity::Odd => {
            let odd_count = leader.iter().filter(|&&a| matches!(a % 8, 3 | 5)).count();
            if odd_count % 2 == 0 {
                return None;
            }
            (
                0,
                4096,
                0,
                [Group::new(DIM, levels_of(&|_| true)), Group::new(0, Vec::new())],
            )
        }
    };
    let perms = groups[0].perms as u128 * groups[1].perms as u128;
    let size = golay_count as u128 * (1u128 << sign_bits) * perms;
    Some(Class {
        parity,
        shell,
        leader,
        weight,
        golay_count,
        sign_bits,
        perms: u64::try_from(perms).ok()?,
        size: u64::try_from(size).expect("class size fits u64 for supported shells"),
        groups,
        abs_sum,
    })
}

/// All classes of Shell(m) in index order: even classes first, then odd; within a parity,
/// leaders in descending lexicographic order.
pub fn classes_of_shell(m: u32) -> Vec<Class> {
    let target = 16 * m as i64;
    let mut out = Vec::new();
    for parity in [Parity::Even, Parity::Odd] {
        let floor: u8 = match parity {
            Parity::Even => 0,
            Parity::Odd => 1,
        };
        let mut top = ((target as f64).sqrt() as u8) + 1;
        while top > 0 && (top % 2 != floor % 2 || (top as i64) * (top as i64) > target) {
            top -= 1;
        }
        let mut leader = [floor; DIM];
        // Fill positions 0..24 with non-increasing values ≥ floor of the right parity.
        fn rec(pos: usize, max_v: u8, rem: i64, floor: u8, leader: &mut [u8; DIM], out: &mut Vec<[u8; DIM]>) {
            let left = (DIM - pos) as i64;
            if rem == left * (floor as i64) * (floor as i64) {
                for v in &mut leader[pos..] {
                    *v = floor;
                }
                out.push(*leader);
                // Continue: larger values at `pos` may also work.
            }
            if pos == DIM {
                return;
            }
            let mut v = max_v;
            while v > floor {
                let v2 = (v as i64) * (v as i64);
                // Remaining positions after this one hold at least floor².
                if v2 + (left - 1) * (floor as i64) * (floor as i64) <= rem {
                    leader[pos] = v;
                    rec(pos + 1, v, rem - v2, floor, leader, out);
                }
                v -= 2;
            }
        }
        let mut leaders = Vec::new();
        rec(0, top, target, floor, &mut leader, &mut leaders);
        leaders.sort_unstable_by(|a, b| b.cmp(a));
        leaders.dedup();
        out.extend(leaders.into_iter().filter_map(|l| make_class(parity, m, l)));
    }
    out
}

/// Coefficients of the Leech theta series: n(m) = (65520/691)(σ11(m) − τ(m)) for m = 0..=max
/// (entry 0 is the origin, entry 1 is 0). Independent of the class construction: it is the
/// check the class tables are tested against.
pub fn theta(max: u32) -> Vec<u128> {
    let len = max as usize + 2;
    // Δ(q) = q ∏ (1 − q^n)^24 ; τ(m) is the coefficient of q^m.
    let mut prod = vec![0i128; len];
    prod[0] = 1;
    for n in 1..len {
        for _ in 0..24 {
            for k in (n..len).rev() {
                prod[k] -= prod[k - n];
            }
        }
    }
    let tau = |m: usize| if m == 0 { 0 } else { prod[m - 1] };
    let sigma11 = |m: usize| -> i128 { (1..=m).filter(|d| m % d == 0).map(|d| (d as i128).pow(11)).sum() };
    (0..=max as usize)
        .map(|m| {
            if m == 0 {
                return 1;
            }
            let v = 65520 * (sigma11(m) - tau(m));
            assert_eq!(v % 691, 0);
            (v / 691) as u128
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theta_known_values() {
        let t = theta(4);
        assert_eq!(&t[..], &[1, 0, 196_560, 16_773_120, 398_034_000]);
    }

    #[test]
    fn class_sizes_match_theta_series() {
        let t = theta(MAX_SHELL_LIMIT);
        for m in 2..=MAX_SHELL_LIMIT {
            let n: u128 = classes_of_shell(m).iter().map(|c| c.size as u128).sum();
            assert_eq!(n, t[m as usize], "shell {m}");
        }
    }

    #[test]
    fn max_shell_limit_is_largest_fitting_u64() {
        let t = theta(MAX_SHELL_LIMIT + 1);
        let cum = |m: u32| -> u128 { (2..=m).map(|k| t[k as usize]).sum() };
        assert!(cum(MAX_SHELL_LIMIT) <= 1u128 << 64);
        assert!(cum(MAX_SHELL_LIMIT + 1) > 1u128 << 64);
    }

    #[test]
    fn paper_table2_shell_2_and_4() {
        let sizes = |m| {
            let mut v: Vec<(Parity, u64)> = classes_of_shell(m).iter().map(|c| (c.parity, c.size)).collect();
            v.sort();
            v
        };
        assert_eq!(
            sizes(2),
            vec![(Parity::Even, 1104), (Parity::Even, 97152), (Parity::Odd, 98304)]
        );
        let s4 = sizes(4);
        assert_eq!(s4.len(), 8);
        assert!(s4.contains(&(Parity::Even, 48)));
        assert!(s4.contains(&(Parity::Even, 777216)));
        assert!(s4.contains(&(Parity::Odd, 174096384)));
    }

    #[test]
    fn leaders_have_shell_norm() {
        for m in 2..=20 {
            for c in classes_of_shell(m) {
                let n: u32 = c.leader.iter().map(|&a| a as u32 * a as u32).sum();
                assert_eq!(n, 16 * m);
                assert!(c.leader.windows(2).all(|w| w[0] >= w[1]));
            }
        }
    }
}
