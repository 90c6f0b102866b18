//! The finite code Λ24(M) = Shell(2) ∪ … ∪ Shell(M) and its bijective index (paper §3.2, Eq. 15).
//!
//! Index layout (0-based, most significant level first):
//! 1. shells in increasing m: Shell(m) occupies [N(m−1), N(m));
//! 2. classes inside a shell in the order of [`classes_of_shell`] (even then odd, leaders in
//!    descending lexicographic order), each a contiguous range of its size;
//! 3. inside a class, `local = r + A·(s + 2^B·p)` (Eq. 15): r is the Golay refinement (rank of
//!    the codeword among words of weight w for even classes, its 12-bit message for odd ones),
//!    s the free sign bits, p the permutation rank.
//!
//! Sign bits (even classes), bit k = 1 meaning negative: first the nonzero F0(c) entries in
//! increasing coordinate order, then the F1(c) entries in increasing order except the last, whose
//! sign is fixed by Σx ≡ 0 (mod 8). The permutation rank of a group (F1, F0, or all 24 slots for
//! odd classes) is a mixed-radix number of combination ranks: the slots of the group's first
//! level among all its slots (combinatorial number system), then the second level's among the
//! slots left, and so on; the last level takes what remains. Even classes combine the groups as
//! p = p(F1) + P(F1)·p(F0).

use std::collections::HashMap;

use crate::error::LatticeError;
use crate::golay::{golay, weight_slot};
use crate::leech::{golay_word, is_point, parity_of, shell_of, Parity, Point, DIM};
use crate::shell::{classes_of_shell, theta, Class, Group, MAX_SHELL_LIMIT};

/// Binomial coefficients C(n, k) for n, k ≤ 24.
pub(crate) struct Binomials([[u32; DIM + 1]; DIM + 1]);

impl Binomials {
    const fn new() -> Binomials {
        let mut t = [[0u32; DIM + 1]; DIM + 1];
        let mut n = 0;
        while n <= DIM {
            t[n][0] = 1;
            let mut k = 1;
            while k <= n {
                t[n][k] = t[n - 1][k - 1] + if k < n { t[n - 1][k] } else { 0 };
                k += 1;
            }
            n += 1;
        }
        Binomials(t)
    }
    #[inline(always)]
    pub(crate) fn get(&self, n: usize, k: usize) -> u64 {
        self.0[n][k] as u64
    }
}

pub(crate) static BINOM: Binomials = Binomials::new();

/// `CNS_i[r]` = the largest q with C(q, i) ≤ r, for r < C(24, i): one step of combinatorial
/// number system unranking as a table lookup instead of a downward scan (i = 2, 3, 4 cover the
/// rare levels that are unranked explicitly; 13 KB in all).
const fn cns_table<const N: usize>(i: usize) -> [u8; N] {
    let b = Binomials::new();
    let mut t = [0u8; N];
    let (mut q, mut r) = (i - 1, 0);
    while r < N {
        while q < DIM && b.0[q + 1][i] as usize <= r {
            q += 1;
        }
        t[r] = q as u8;
        r += 1;
    }
    t
}
static CNS2: [u8; 276] = cns_table(2);
static CNS3: [u8; 2024] = cns_table(3);
static CNS4: [u8; 10626] = cns_table(4);

/// Rank of an arrangement of a group's values over its slots. `values[j]` is the absolute value
/// on slot j.
fn rank_group(g: &Group, values: &[u8]) -> u64 {
    debug_assert_eq!(values.len(), g.slots as usize);
    let mut rank = 0u64;
    let mut radix = 1u64;
    // `free[k]`: slot indices not yet taken by earlier levels, in increasing order.
    let mut free: [u8; DIM] = [0; DIM];
    let mut n = g.slots as usize;
    for (k, f) in free.iter_mut().enumerate().take(n) {
        *f = k as u8;
    }
    for j in 0..(g.levels as usize).saturating_sub(1) {
        let v = g.value[j];
        let mut r = 0u64;
        let mut i = 0usize; // how many of this level's slots seen so far
        let mut kept = 0usize;
        for q in 0..n {
            let slot = free[q] as usize;
            if values[slot] == v {
                i += 1;
                r += BINOM.get(q, i);
            } else {
                free[kept] = slot as u8;
                kept += 1;
            }
        }
        rank += radix * r;
        radix *= BINOM.get(n, g.count[j] as usize);
        n = kept;
    }
    rank
}

/// Scatters the low bits of `bits` onto the set bits of `mask` (x86 `pdep`): the k-th set bit
/// of `mask` is kept when bit k of `bits` is set. Maps "the q-th free slot" to the slot itself.
#[inline(always)]
fn deposit(bits: u32, mask: u32) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "bmi2"))]
    {
        // SAFETY: the cfg guarantees the BMI2 instruction is available.
        unsafe { core::arch::x86_64::_pdep_u32(bits, mask) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "bmi2")))]
    {
        deposit_plain(bits, mask)
    }
}

/// The portable twin of [`deposit`] (and its oracle in tests).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "bmi2"), allow(dead_code))]
fn deposit_plain(bits: u32, mask: u32) -> u32 {
    let (mut out, mut m, mut k) = (0u32, mask, 0);
    while m != 0 {
        let low = m & m.wrapping_neg();
        if bits >> k & 1 == 1 {
            out |= low;
        }
        m &= m - 1;
        k += 1;
    }
    out
}

/// `(a / b, a % b)`, in 32 bits when `a` fits: ranks are mostly small after the first level, and a
/// 32-bit divide is several times cheaper than a 64-bit one on x86.
#[inline(always)]
fn divmod(a: u64, b: u64) -> (u64, u64) {
    if a >> 32 == 0 {
        let (a, b) = (a as u32, b as u32);
        ((a / b) as u64, (a % b) as u64)
    } else {
        (a / b, a % b)
    }
}

/// Bit-planes of the absolute values: bit i of `planes[k]` is bit k of |x_i|. Every coordinate of
/// Λ24(M ≤ 33) in L_int has |x_i| ≤ √(16·33) < 32, so five planes hold it. Writing a level is
/// then five masked ORs instead of one store per slot, and the final assembly vectorises.
pub(crate) type Planes = [u32; PLANES];
pub(crate) const PLANES: usize = 5;

/// ORs the slots `mask` with value `v` into the planes.
#[inline(always)]
fn add_level(planes: &mut Planes, mask: u32, v: u8) {
    for (k, p) in planes.iter_mut().enumerate() {
        *p |= mask & 0u32.wrapping_sub((v as u32 >> k) & 1);
    }
}

/// Inverse of [`rank_group`]: the group's slots are the set bits of `slots` (coordinates, in
/// increasing order); ORs the absolute value of each into the bit-planes.
#[inline]
fn unrank_group(g: &Group, mut rank: u64, slots_mask: u32, planes: &mut Planes) {
    debug_assert_eq!(slots_mask.count_ones(), g.slots as u32);
    let mut n = g.slots as usize;
    // Slots not yet taken by earlier levels, as a bit mask.
    let mut free: u32 = slots_mask;
    let last = (g.levels as usize).saturating_sub(1);
    for j in 0..last {
        let t = g.count[j] as usize;
        let (quot, mut r) = divmod(rank, BINOM.get(n, t));
        rank = quot;
        // Combinatorial number system: largest q with C(q, i) ≤ r, for i = t down to 1.
        // The last step (i = 1) is q = r itself, which also covers singleton levels.
        let mut taken: u32 = 0; // bit q set when the q-th free slot is taken by this level
        let mut q = n;
        for i in (2..=t).rev() {
            q = match i {
                2 => CNS2[r as usize] as usize,
                3 => CNS3[r as usize] as usize,
                4 => CNS4[r as usize] as usize,
                _ => {
                    q -= 1;
                    while BINOM.get(q, i) > r {
                        q -= 1;
                    }
                    q
                }
            };
            r -= BINOM.get(q, i);
            taken |= 1 << q;
        }
        taken |= 1 << r;
        let slots = deposit(taken, free);
        free &= !slots;
        add_level(planes, slots, g.value[j]);
        n -= t;
    }
    if g.levels > 0 {
        add_level(planes, free, g.value[last]);
    }
}

/// x_i = ±|x_i| from the bit-planes and the mask of negative coordinates (vectorised by the
/// compiler: 24 lanes, no data-dependent branch).
#[inline(always)]
fn assemble(planes: &Planes, neg: u32, x: &mut Point) {
    for (i, xi) in x.iter_mut().enumerate() {
        let bit = 1u32 << i;
        let mut a = 0i32;
        for (k, &p) in planes.iter().enumerate() {
            a |= (((p & bit) != 0) as i32) << k;
        }
        let n = ((neg & bit) != 0) as i32;
        *xi = (a ^ -n) + n;
    }
}

/// Λ24(M): the union of shells 2..=M, with its index (§3.2) and reference decoder (§3.3).
pub struct Ball {
    max_shell: u32,
    classes: Vec<Class>,
    /// `offsets[k]`: first index of class k; one extra entry holds N(M).
    offsets: Vec<u64>,
    /// First class of each shell m at `shell_first[m - 2]`, plus an end entry.
    shell_first: Vec<usize>,
    /// Leader → class, for encoding.
    by_leader: HashMap<[u8; DIM], usize>,
}

impl Ball {
    /// Builds the tables of Λ24(M) for 2 ≤ M ≤ [`MAX_SHELL_LIMIT`].
    pub fn new(max_shell: u32) -> Result<Ball, LatticeError> {
        if !(2..=MAX_SHELL_LIMIT).contains(&max_shell) {
            return Err(LatticeError::UnsupportedShell {
                max_shell,
                limit: MAX_SHELL_LIMIT,
            });
        }
        let mut classes = Vec::new();
        let mut shell_first = Vec::new();
        for m in 2..=max_shell {
            shell_first.push(classes.len());
            classes.extend(classes_of_shell(m));
        }
        shell_first.push(classes.len());
        let mut offsets = Vec::with_capacity(classes.len() + 1);
        let mut acc: u128 = 0;
        for c in &classes {
            offsets.push(acc as u64);
            acc += c.size as u128;
        }
        // N(M) ≤ 2^64 by the choice of MAX_SHELL_LIMIT; N(33) itself may equal 2^64 only in
        // theory, so store N − 1 + 1 saturating (indices are < N either way).
        offsets.push(u64::try_from(acc).unwrap_or(u64::MAX));
        let by_leader = classes.iter().enumerate().map(|(k, c)| (c.leader, k)).collect();
        Ok(Ball {
            max_shell,
            classes,
            offsets,
            shell_first,
            by_leader,
        })
    }

    /// M, the outermost shell.
    pub fn max_shell(&self) -> u32 {
        self.max_shell
    }

    /// N(M), the number of points.
    pub fn len(&self) -> u64 {
        self.offsets[self.classes.len()]
    }

    /// Never empty (Shell(2) alone has 196,560 points); provided for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// ⌈log2 N(M)⌉: bits per index when packed.
    pub fn bits(&self) -> u32 {
        let n = self.len();
        64 - (n - 1).leading_zeros()
    }

    /// All classes in index order.
    pub fn classes(&self) -> &[Class] {
        &self.classes
    }

    /// Classes of shell m (empty slice outside 2..=M).
    pub fn shell_classes(&self, m: u32) -> &[Class] {
        if !(2..=self.max_shell).contains(&m) {
            return &[];
        }
        let k = (m - 2) as usize;
        &self.classes[self.shell_first[k]..self.shell_first[k + 1]]
    }

    /// Index of the first class of shell m (for `m = M + 1`, the class count).
    pub fn shell_class_start(&self, m: u32) -> usize {
        self.shell_first[(m - 2) as usize]
    }

    /// First index of class k.
    pub fn class_offset(&self, k: usize) -> u64 {
        self.offsets[k]
    }

    /// Cumulative count N(m) for 2 ≤ m ≤ M (points of shells 2..=m).
    pub fn cumulative(&self, m: u32) -> u64 {
        self.offsets[self.shell_first[(m - 1) as usize]]
    }

    /// Theta-series coefficients n(2..=M), for cross-checks and reports.
    pub fn theta(&self) -> Vec<u128> {
        theta(self.max_shell)
    }

    /// The class holding `index`, and the index local to it.
    #[inline]
    pub fn locate(&self, index: u64) -> Result<(usize, u64), LatticeError> {
        if index >= self.len() {
            return Err(LatticeError::IndexOutOfRange {
                index,
                len: self.len(),
                max_shell: self.max_shell,
            });
        }
        // Branch-free binary search for the last class offset ≤ index (offsets[0] = 0).
        let classes = &self.offsets[..self.classes.len()];
        let (mut base, mut len) = (0usize, classes.len());
        while len > 1 {
            let half = len / 2;
            base = if classes[base + half] <= index {
                base + half
            } else {
                base
            };
            len -= half;
        }
        Ok((base, index - classes[base]))
    }

    /// Index → point (the scalar reference dequantizer, §3.3). Every `u64` either decodes to a
    /// point of Λ24(M) or returns [`LatticeError::IndexOutOfRange`].
    pub fn decode(&self, index: u64) -> Result<Point, LatticeError> {
        let (k, local) = self.locate(index)?;
        let mut x = [0i32; DIM];
        decode_local(&self.classes[k], local, &mut x);
        Ok(x)
    }

    /// Point → index. Errors when `x` is not in L_int or lies outside the ball (the origin
    /// included: the ball has no point of norm 0).
    pub fn encode(&self, x: &Point) -> Result<u64, LatticeError> {
        if !is_point(x) {
            return Err(LatticeError::NotALatticePoint { point: *x });
        }
        let shell = shell_of(x).unwrap_or(0);
        if shell < 2 || shell > self.max_shell {
            return Err(LatticeError::OutsideBall {
                shell,
                max_shell: self.max_shell,
            });
        }
        let mut leader = [0u8; DIM];
        for (l, &v) in leader.iter_mut().zip(x) {
            *l = v.unsigned_abs() as u8;
        }
        leader.sort_unstable_by(|a, b| b.cmp(a));
        let k = *self
            .by_leader
            .get(&leader)
            .expect("every lattice point of the ball has a class");
        Ok(self.offsets[k] + encode_local(&self.classes[k], x))
    }
}

/// Local index of a lattice point within its class (Eq. 15).
pub(crate) fn encode_local(class: &Class, x: &Point) -> u64 {
    let g = golay();
    let parity = parity_of(x).expect("point has a parity");
    let c = golay_word(x, parity);
    match class.parity {
        Parity::Odd => {
            let r = g.message(c) as u64;
            let abs: Vec<u8> = x.iter().map(|v| v.unsigned_abs() as u8).collect();
            let p = rank_group(&class.groups[0], &abs);
            r + 4096 * p
        }
        Parity::Even => {
            let r = g.rank_in_weight(c) as u64;
            let (mut f1, mut f0) = (Vec::with_capacity(24), Vec::with_capacity(24));
            let (mut sign0, mut sign1) = (Vec::new(), Vec::new());
            for (i, &v) in x.iter().enumerate() {
                if c >> i & 1 == 1 {
                    f1.push(v.unsigned_abs() as u8);
                    sign1.push(v < 0);
                } else {
                    f0.push(v.unsigned_abs() as u8);
                    if v != 0 {
                        sign0.push(v < 0);
                    }
                }
            }
            sign1.pop(); // the last F1 sign is implied by the sum rule
            let mut s = 0u64;
            for (k, &neg) in sign0.iter().chain(sign1.iter()).enumerate() {
                s |= (neg as u64) << k;
            }
            let p = rank_group(&class.groups[0], &f1) + class.groups[0].perms * rank_group(&class.groups[1], &f0);
            r + class.golay_count as u64 * (s + (p << class.sign_bits))
        }
    }
}

/// Point of a class from its local index. `local < class.size` is the caller's invariant.
#[inline]
pub(crate) fn decode_local(class: &Class, local: u64, x: &mut Point) {
    let g = golay();
    // A takes four values; dividing by each as a constant lets the compiler multiply instead.
    let (rest, r) = match class.golay_count {
        4096 => (local >> 12, (local & 4095) as usize),
        2576 => (local / 2576, (local % 2576) as usize),
        759 => (local / 759, (local % 759) as usize),
        _ => (local, 0),
    };
    let s = rest & ((1u64 << class.sign_bits) - 1);
    let p = rest >> class.sign_bits;
    let mut planes: Planes = [0; PLANES];
    const ALL: u32 = (1 << DIM) - 1;
    let neg = match class.parity {
        Parity::Odd => {
            let c = g.word(r);
            unrank_group(&class.groups[0], p, ALL, &mut planes);
            // x_i ≡ 1 + 2c_i (mod 4): keep v when it has that residue, else negate, i.e. negate
            // where bit 1 of v differs from c_i.
            planes[1] ^ c
        }
        Parity::Even => {
            let slot = weight_slot(class.weight).expect("even class weight is a Golay weight");
            let c = g.word_of_weight(slot, r);
            let p1 = class.groups[0].perms;
            // Each side unranks straight onto its coordinates: F1(c) = bits of c, F0 = the rest.
            unrank_group(&class.groups[0], p % p1, c, &mut planes);
            unrank_group(&class.groups[1], p / p1, !c & ALL, &mut planes);
            let nz0 = planes.iter().fold(0, |a, &q| a | q) & !c & ALL;
            // Sign bits: nonzero F0 entries take bits 0.., F1 entries bits nz0.. in coordinate
            // order. The last F1 entry lands on bit B, past the free bits (so zero); the sum
            // rule then fixes it: F1 negatives ≡ Σ|x|/4 (mod 2).
            let k0 = nz0.count_ones();
            let mut neg = deposit(s as u32 & ((1u32 << k0) - 1), nz0) | deposit((s >> k0) as u32, c);
            if c != 0 && (neg & c).count_ones() & 1 != class.f1_negative_parity() {
                neg ^= 1 << (31 - c.leading_zeros());
            }
            neg
        }
    };
    assemble(&planes, neg, x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_rank_round_trip_exhaustive() {
        // A small group with three levels: every rank unranks to a distinct arrangement that
        // ranks back to itself.
        let g = Group::new(7, vec![(4, 2), (2, 1), (0, 4)]);
        assert_eq!(g.perms, 105);
        let mut seen = std::collections::HashSet::new();
        for r in 0..g.perms {
            let mut planes: Planes = [0; PLANES];
            unrank_group(&g, r, 0x7f, &mut planes);
            let v: Vec<u8> = (0..7)
                .map(|i| (0..PLANES).map(|k| ((planes[k] >> i & 1) << k) as u8).sum())
                .collect();
            assert_eq!(rank_group(&g, &v), r);
            assert!(seen.insert(v));
        }
    }

    #[test]
    fn cns_tables_match_the_scan() {
        for (i, table) in [(2, &CNS2[..]), (3, &CNS3[..]), (4, &CNS4[..])] {
            assert_eq!(table.len() as u64, BINOM.get(DIM, i));
            for (r, &q) in table.iter().enumerate() {
                let scan = (0..DIM).rev().find(|&q| BINOM.get(q, i) <= r as u64).unwrap();
                assert_eq!(q as usize, scan, "i = {i}, r = {r}");
            }
        }
    }

    #[test]
    fn deposit_matches_plain_twin() {
        let mut x = 0x1234_5678u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (bits, mask) = (x as u32, (x >> 32) as u32 & 0xff_ffff);
            assert_eq!(deposit(bits, mask), deposit_plain(bits, mask));
        }
    }

    #[test]
    fn shell2_exhaustive_round_trip() {
        let ball = Ball::new(2).unwrap();
        assert_eq!(ball.len(), 196_560);
        let mut seen = std::collections::HashSet::new();
        for i in 0..ball.len() {
            let x = ball.decode(i).unwrap();
            assert!(is_point(&x), "index {i} decoded to {x:?}");
            assert_eq!(shell_of(&x), Some(2));
            assert_eq!(ball.encode(&x).unwrap(), i);
            assert!(seen.insert(x));
        }
        assert!(ball.decode(ball.len()).is_err());
    }

    #[test]
    fn bits_of_paper_rates() {
        assert_eq!(Ball::new(13).unwrap().bits(), 48);
        assert_eq!(Ball::new(12).unwrap().bits(), 47);
        assert_eq!(Ball::new(13).unwrap().len(), 280_974_212_784_720);
    }
}
