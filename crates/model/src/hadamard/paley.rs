//! Which Hadamard orders exist here and their ±1 factors: Sylvester 2^k, Paley I (q ≡ 3 mod 4) and
//! Paley II (q ≡ 1 mod 4) from quadratic residues, and the cheapest Kronecker plan for an order n.

use super::*;

pub(crate) fn is_prime(q: usize) -> bool {
    if q < 2 {
        return false;
    }
    if q % 2 == 0 {
        return q == 2;
    }
    let mut d = 3;
    while d <= q / d {
        if q % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PaleyKind {
    /// Order `q + 1`, `q ≡ 3 (mod 4)` prime.
    I,
    /// Order `2(q + 1)`, `q ≡ 1 (mod 4)` prime.
    II,
}

/// The Paley construction giving a Hadamard matrix of `order`, if any (powers of two
/// are left to Sylvester, orders above `max` are refused).
pub(crate) fn paley_kind(order: usize, max: usize) -> Option<PaleyKind> {
    if order < 12 || order > max || order % 4 != 0 || order.is_power_of_two() {
        return None;
    }
    let q = order - 1;
    if q % 4 == 3 && is_prime(q) {
        return Some(PaleyKind::I);
    }
    let q = order / 2 - 1;
    if q % 4 == 1 && is_prime(q) {
        return Some(PaleyKind::II);
    }
    None
}

/// Quadratic character mod prime `q`: `χ(0) = 0`, `+1` on residues, `−1` otherwise.
pub(crate) fn quadratic_character(q: usize) -> Vec<i8> {
    let mut chi = vec![-1i8; q];
    chi[0] = 0;
    for x in 1..q as u64 {
        chi[(x * x % q as u64) as usize] = 1;
    }
    chi
}

/// The ±1 Paley matrix of `order` (row-major).
pub(crate) fn paley_matrix(order: usize, kind: PaleyKind) -> Vec<i8> {
    let mut h = vec![0i8; order * order];
    match kind {
        PaleyKind::I => {
            let q = order - 1;
            let chi = quadratic_character(q);
            for (i, row) in h.chunks_exact_mut(order).enumerate() {
                for (j, e) in row.iter_mut().enumerate() {
                    // Skew matrix S = [[0, 1ᵀ], [-1, Q]]; H = I + S.
                    let s = match (i, j) {
                        (0, 0) => 0,
                        (0, _) => 1,
                        (_, 0) => -1,
                        _ => chi[(j + q - i) % q],
                    };
                    *e = s + i8::from(i == j);
                }
            }
        }
        PaleyKind::II => {
            let q = order / 2 - 1;
            let chi = quadratic_character(q);
            for (row_idx, row) in h.chunks_exact_mut(order).enumerate() {
                let (a, x) = (row_idx / 2, row_idx % 2);
                for (col_idx, e) in row.iter_mut().enumerate() {
                    let (b, y) = (col_idx / 2, col_idx % 2);
                    *e = if a == b {
                        // 0 entries of C become [[1, -1], [-1, -1]].
                        if x == 0 && y == 0 {
                            1
                        } else {
                            -1
                        }
                    } else {
                        // ±1 entries c of C become c·[[1, 1], [1, -1]].
                        let c = if a == 0 || b == 0 { 1 } else { chi[(b + q - a) % q] };
                        if x == 1 && y == 1 {
                            -c
                        } else {
                            c
                        }
                    };
                }
            }
        }
    }
    h
}

/// Sylvester matrix of order `2^k`: `H_ij = (−1)^{popcount(i & j)}`.
pub(crate) fn sylvester_matrix(order: usize) -> Vec<i8> {
    (0..order * order)
        .map(|k| {
            if ((k / order) & (k % order)).count_ones() % 2 == 0 {
                1
            } else {
                -1
            }
        })
        .collect()
}

/// ±1 matrix of one factor order (power of two → Sylvester, else Paley).
pub(crate) fn factor_matrix(order: usize) -> Vec<i8> {
    if order.is_power_of_two() {
        sylvester_matrix(order)
    } else {
        let kind = paley_kind(order, usize::MAX).expect("factor orders come from the search");
        paley_matrix(order, kind)
    }
}

pub(crate) fn divisors(n: usize) -> Vec<usize> {
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut d = 1;
    while d <= n / d {
        if n % d == 0 {
            small.push(d);
            if d != n / d {
                large.push(n / d);
            }
        }
        d += 1;
    }
    small.extend(large.into_iter().rev());
    small
}

/// Cheapest decomposition of every divisor `d` of `n`:
/// `(divisors ascending, per divisor Option<(cost, Paley orders descending)>)`.
#[allow(clippy::type_complexity)]
pub(crate) fn plan_table(n: usize) -> (Vec<usize>, Vec<Option<(usize, Vec<usize>)>>) {
    let divs = divisors(n);
    let paley: Vec<bool> = divs.iter().map(|&p| paley_kind(p, MAX_PALEY_ORDER).is_some()).collect();
    let mut best: Vec<Option<(usize, Vec<usize>)>> = Vec::with_capacity(divs.len());
    for &d in &divs {
        if d.is_power_of_two() {
            best.push(Some((d.trailing_zeros() as usize, Vec::new())));
            continue;
        }
        let mut choice: Option<(usize, Vec<usize>)> = None;
        for (pi, &p) in divs.iter().enumerate() {
            if p > d {
                break;
            }
            if !paley[pi] || d % p != 0 {
                continue;
            }
            let sub = divs.binary_search(&(d / p)).expect("quotient of divisors is a divisor");
            if let Some((cost, rest)) = &best[sub] {
                let cand = (cost + p, rest.len() + 1);
                let better = match &choice {
                    None => true,
                    Some((c, f)) => cand < (*c, f.len()),
                };
                if better {
                    let mut fs = rest.clone();
                    fs.push(p);
                    fs.sort_unstable_by(|a, b| b.cmp(a));
                    choice = Some((cand.0, fs));
                }
            }
        }
        best.push(choice);
    }
    (divs, best)
}

/// Full factor list of a constructible order `d` from its Paley part.
pub(crate) fn with_sylvester(d: usize, paley: &[usize]) -> Vec<usize> {
    let mut fs = paley.to_vec();
    let pow2 = d / paley.iter().product::<usize>();
    if pow2 > 1 || fs.is_empty() {
        fs.push(pow2);
    }
    fs
}

/// The factor orders of the Hadamard matrix of order `n` used by [`Rotation`]:
/// Paley orders (descending) followed by the Sylvester power of two (if > 1).
/// `Some(vec![1])` for `n = 1`; `None` when `n = 0` or `n` needs the fallback.
#[must_use]
pub fn hadamard_factors(n: usize) -> Option<Vec<usize>> {
    if n == 0 {
        return None;
    }
    let (_, best) = plan_table(n);
    best.last()
        .and_then(|b| b.as_ref())
        .map(|(_, paley)| with_sylvester(n, paley))
}

/// A Hadamard matrix (entries ±1, `H Hᵀ = n I`) of order `n`, row-major, as the
/// Kronecker product of the factors of [`hadamard_factors`] (first factor outermost);
/// `None` if the constructions here give none. Dense `n²` bytes: for tests and checks.
#[must_use]
pub fn hadamard(n: usize) -> Option<Vec<i8>> {
    let factors = hadamard_factors(n)?;
    let mut h = vec![1i8];
    let mut size = 1;
    for f in factors {
        let m = factor_matrix(f);
        let big = size * f;
        let mut out = vec![0i8; big * big];
        for (r, row) in out.chunks_exact_mut(big).enumerate() {
            let (ra, rb) = (r / f, r % f);
            for (c, e) in row.iter_mut().enumerate() {
                *e = h[ra * size + c / f] * m[rb * f + c % f];
            }
        }
        h = out;
        size = big;
    }
    Some(h)
}
