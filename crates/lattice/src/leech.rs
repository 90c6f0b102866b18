//! The Leech lattice in integer coordinates (paper Eq. 6-8).
//!
//! L_int = L_even ∪ L_odd with
//! - L_even: x_i ≡ 0 (mod 2), (x/2) mod 2 ∈ G24, Σx_i ≡ 0 (mod 8);
//! - L_odd:  x_i ≡ 1 (mod 2), ((x − 1)/2) mod 2 ∈ G24, Σx_i ≡ 4 (mod 8);
//!
//! and Λ24 = L_int/√8. A point of Shell(m) (squared norm 2m in Λ24) has integer squared norm 16m.
//! Everything in this crate works in L_int; callers scale by 1/√8 (or any scale) themselves.

use crate::golay::golay;

/// Dimension of the lattice.
pub const DIM: usize = 24;

/// A point of L_int.
pub type Point = [i32; DIM];

/// Which coset of L_int a point (or a class) lies in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Parity {
    Even,
    Odd,
}

impl Parity {
    pub fn name(self) -> &'static str {
        match self {
            Parity::Even => "even",
            Parity::Odd => "odd",
        }
    }
}

/// The Golay word of a point's coset: (x/2) mod 2 for even points, ((x − 1)/2) mod 2 for odd
/// ones (the shared README corrects §3.3 here). Arithmetic shift keeps this right for negatives.
#[inline]
pub fn golay_word(x: &Point, parity: Parity) -> u32 {
    let off = match parity {
        Parity::Even => 0,
        Parity::Odd => 1,
    };
    let mut c = 0u32;
    for (i, &v) in x.iter().enumerate() {
        c |= (((v - off) >> 1) & 1) as u32 * (1 << i);
    }
    c
}

/// Integer squared norm |x|².
#[inline]
pub fn norm2(x: &Point) -> i64 {
    x.iter().map(|&v| (v as i64) * (v as i64)).sum()
}

/// The parity of a point when all its coordinates agree in parity, else `None`.
pub fn parity_of(x: &Point) -> Option<Parity> {
    let odd = x.iter().filter(|&&v| v & 1 != 0).count();
    match odd {
        0 => Some(Parity::Even),
        DIM => Some(Parity::Odd),
        _ => None,
    }
}

/// Membership in L_int (Eq. 7-8). The origin is a lattice point (of no shell).
pub fn is_point(x: &Point) -> bool {
    let Some(p) = parity_of(x) else { return false };
    let sum: i64 = x.iter().map(|&v| v as i64).sum();
    let want = match p {
        Parity::Even => 0,
        Parity::Odd => 4,
    };
    sum.rem_euclid(8) == want && golay().contains(golay_word(x, p))
}

/// The shell m of a nonzero lattice point (|x|² = 16m), or `None` when the norm is not a
/// multiple of 16 (never the case for lattice points).
pub fn shell_of(x: &Point) -> Option<u32> {
    let n = norm2(x);
    (n % 16 == 0 && n > 0).then_some((n / 16) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_vectors() {
        let mut x = [0i32; 24];
        x[0] = 4;
        x[5] = -4;
        assert!(is_point(&x));
        assert_eq!(shell_of(&x), Some(2));
        x[5] = 0;
        assert!(!is_point(&x), "(4, 0^23) has sum 4: not in L_even");
        let mut y = [1i32; 24];
        y[3] = -3;
        assert!(is_point(&y));
        assert_eq!(shell_of(&y), Some(2));
        y[3] = 3;
        assert!(!is_point(&y), "(3, 1^23) breaks the Golay condition");
        let mut z = [0i32; 24];
        z[0] = 1;
        assert!(!is_point(&z), "mixed parity");
    }
}
