//! An exactness oracle for `Searcher::search` that shares no code with `search.rs` (issue 10).
//!
//! The oracle rebuilds the classes of every shell from the definition of L_int (Eq. 6-8) — not
//! from the crate's class tables — and scores, in f64, every (shell, class, admissible Golay
//! codeword) by the Adoul-Barth placement:
//! - odd classes: x_i = t_i·v(a) with t_i = −1 on F1(c), v(a) = ±a ≡ 1 (mod 4), so every sign is
//!   forced and the best placement pairs the sorted t∘y with the sorted v (rearrangement);
//! - even classes of weight w, w = |c|: values ≡ 2 (mod 4) on F1(c), ≡ 0 (mod 4) on F0(c), sorted
//!   |y| paired with sorted values on each side, signs from y; Σx ≡ 0 (mod 8) fixes the parity of
//!   the F1 negatives, and a wrong parity costs flipping the smallest F1 product (checked below
//!   against brute force over permutations and signs).
//!
//! The only shared piece is the Golay code itself (the lattice is defined by it). A plain class
//! bound (sorted |a| against sorted |y|, rearrangement inequality) orders and skips classes.
//!
//! Ties: the search's point counts as exact when its f64 score is within 1e-9·(1 + |score|) of the
//! oracle's best (Euclidean score 2⟨x,y⟩ − |x|², angular ⟨x,y⟩/|x|).

use llvq_lattice::golay::{golay, WORDS};
use llvq_lattice::leech::is_point;
use llvq_lattice::{Ball, Metric, Point, Searcher, DIM};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;

/// One class: its shell, parity and values as (value, count) runs.
struct OClass {
    m: u32,
    odd: bool,
    /// Odd: signed values v(a), descending. Even: F1 values (≡ 2 mod 4), descending.
    first: Vec<(f64, usize)>,
    /// Even: F0 values (≡ 0 mod 4, zeros included), descending.
    second: Vec<(f64, usize)>,
    /// Even: weight of the admissible codewords and the required parity of F1 negatives.
    weight: u32,
    neg_parity: u32,
    /// Smallest F1 value (parity fix).
    f1_min: f64,
    /// All absolute values, descending (class bound).
    abs: Vec<(f64, usize)>,
    /// Class size A·2^B·P, to check the enumeration against the crate's shell sizes.
    size: u128,
}

fn factorial(n: usize) -> u128 {
    (1..=n as u128).product()
}

fn multinomial(runs: &[(u32, usize)]) -> u128 {
    let n: usize = runs.iter().map(|r| r.1).sum();
    runs.iter().fold(factorial(n), |p, r| p / factorial(r.1))
}

fn runs(vals: &[u32]) -> Vec<(u32, usize)> {
    let mut out: Vec<(u32, usize)> = Vec::new();
    for &a in vals {
        match out.last_mut() {
            Some((v, c)) if *v == a => *c += 1,
            _ => out.push((a, 1)),
        }
    }
    out
}

fn to_f64(r: &[(u32, usize)]) -> Vec<(f64, usize)> {
    r.iter().map(|&(v, c)| (v as f64, c)).collect()
}

/// All classes of Shell(m) from the definition: 24 absolute values of one parity with
/// Σa² = 16m, kept when some sign pattern and codeword make a lattice point.
fn classes_of(m: u32) -> Vec<OClass> {
    let mut out = Vec::new();
    for odd in [false, true] {
        let mut leader = Vec::with_capacity(DIM);
        let start = if odd { 1 } else { 0 };
        let top = ((16 * m) as f64).sqrt() as u32;
        enumerate(16 * m, top, start, &mut leader, &mut |vals: &[u32]| {
            if let Some(c) = make(m, odd, vals) {
                out.push(c);
            }
        });
    }
    out
}

/// Descending multisets of `DIM` values ≡ `start` (mod 2), each ≤ `max`, with squares summing to `rest`.
fn enumerate(rest: u32, max: u32, start: u32, cur: &mut Vec<u32>, f: &mut dyn FnMut(&[u32])) {
    if cur.len() == DIM {
        if rest == 0 {
            f(cur);
        }
        return;
    }
    let left = (DIM - cur.len()) as u32;
    // The remaining entries are at least `start` each.
    if rest < left * start * start {
        return;
    }
    let mut a = max - (max + start) % 2;
    loop {
        if a * a <= rest && rest <= left * a * a {
            cur.push(a);
            enumerate(rest - a * a, a, start, cur, f);
            cur.pop();
        }
        if a < start + 2 {
            break;
        }
        a -= 2;
    }
}

fn make(m: u32, odd: bool, vals: &[u32]) -> Option<OClass> {
    let abs = runs(vals);
    if odd {
        // Σx ≡ 4 (mod 8) needs an odd number of v(a) ≡ 5 (mod 8), i.e. of a ≡ 3, 5 (mod 8).
        let k = vals.iter().filter(|&&a| a % 8 == 3 || a % 8 == 5).count();
        if k % 2 == 0 {
            return None;
        }
        let mut v: Vec<i64> = vals
            .iter()
            .map(|&a| if a % 4 == 1 { a as i64 } else { -(a as i64) })
            .collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        let mut first: Vec<(f64, usize)> = Vec::new();
        for &x in &v {
            match first.last_mut() {
                Some((p, c)) if *p == x as f64 => *c += 1,
                _ => first.push((x as f64, 1)),
            }
        }
        let size = 4096 * multinomial(&abs);
        return Some(OClass {
            m,
            odd,
            first,
            second: vec![],
            weight: 0,
            neg_parity: 0,
            f1_min: 0.0,
            abs: to_f64(&abs),
            size,
        });
    }
    let f1: Vec<u32> = vals.iter().copied().filter(|a| a % 4 == 2).collect();
    let f0: Vec<u32> = vals.iter().copied().filter(|a| a % 4 == 0).collect();
    let w = f1.len() as u32;
    let words = golay().words_of_weight(match w {
        0 => 0,
        8 => 1,
        12 => 2,
        16 => 3,
        24 => 4,
        _ => return None,
    });
    let sum: u32 = vals.iter().sum();
    // Σx ≡ Σa + 4·#neg(F1) (mod 8), since −a ≡ a + 4 (mod 8) for a ≡ 2 (mod 4) and −a ≡ a for a ≡ 0.
    if w == 0 && sum % 8 != 0 {
        return None;
    }
    let nz0 = f0.iter().filter(|&&a| a != 0).count() as u32;
    let sign_bits = nz0 + w.saturating_sub(1);
    let size = words.len() as u128 * (1u128 << sign_bits) * multinomial(&runs(&f1)) * multinomial(&runs(&f0));
    Some(OClass {
        m,
        odd,
        f1_min: f1.last().map_or(0.0, |&a| a as f64),
        first: to_f64(&runs(&f1)),
        second: to_f64(&runs(&f0)),
        weight: w,
        neg_parity: (sum / 4) % 2,
        abs: to_f64(&abs),
        size,
    })
}

/// Σ value·(sum of the next `count` entries) over runs, given prefix sums of a descending list.
fn dot(runs: &[(f64, usize)], prefix: &[f64]) -> f64 {
    let mut s = 0.0;
    let mut at = 0;
    for &(v, c) in runs {
        s += v * (prefix[at + c] - prefix[at]);
        at += c;
    }
    s
}

/// Per-codeword sorted data of one input.
struct Prepared {
    /// Odd: prefix sums of t∘y sorted descending, per codeword message.
    odd: Vec<[f64; DIM + 1]>,
    /// Even: prefix sums of |y| on F1 (descending) then, from 0 again, on F0; |F1|; F1 negative
    /// count parity; smallest |y| on F1.
    f1: Vec<[f64; DIM + 1]>,
    f0: Vec<[f64; DIM + 1]>,
    neg: Vec<u32>,
    min1: Vec<f64>,
    abs_prefix: [f64; DIM + 1],
}

impl Prepared {
    fn new() -> Prepared {
        Prepared {
            odd: vec![[0.0; DIM + 1]; WORDS],
            f1: vec![[0.0; DIM + 1]; WORDS],
            f0: vec![[0.0; DIM + 1]; WORDS],
            neg: vec![0; WORDS],
            min1: vec![0.0; WORDS],
            abs_prefix: [0.0; DIM + 1],
        }
    }
}

/// Fills `p` for input y (buffers are reused across inputs of a thread).
fn prepare(y: &[f64; DIM], p: &mut Prepared) {
    let g = golay();
    let mut by_abs: Vec<usize> = (0..DIM).collect();
    by_abs.sort_by(|&a, &b| y[b].abs().total_cmp(&y[a].abs()));
    for (k, &i) in by_abs.iter().enumerate() {
        p.abs_prefix[k + 1] = p.abs_prefix[k] + y[i].abs();
    }
    p.neg.fill(0);
    p.min1.fill(0.0);
    let mut by_y: Vec<usize> = (0..DIM).collect();
    by_y.sort_by(|&a, &b| y[b].total_cmp(&y[a]));
    for u in 0..WORDS {
        let c = g.word(u);
        // t∘y descending: merge y on F0 (descending) with −y on F1 (y ascending).
        let (mut f0, mut f1) = ([0.0; DIM], [0.0; DIM]);
        let (mut n0, mut n1) = (0, 0);
        for k in 0..DIM {
            let (i, j) = (by_y[k], by_y[DIM - 1 - k]);
            if c >> i & 1 == 0 {
                f0[n0] = y[i];
                n0 += 1;
            }
            if c >> j & 1 == 1 {
                f1[n1] = -y[j];
                n1 += 1;
            }
        }
        let (mut a, mut b) = (0, 0);
        for k in 0..DIM {
            let take0 = b == n1 || (a < n0 && f0[a] >= f1[b]);
            let z = if take0 {
                a += 1;
                f0[a - 1]
            } else {
                b += 1;
                f1[b - 1]
            };
            p.odd[u][k + 1] = p.odd[u][k] + z;
        }
        let (mut n1, mut n0) = (0, 0);
        for &i in &by_abs {
            if c >> i & 1 == 1 {
                p.f1[u][n1 + 1] = p.f1[u][n1] + y[i].abs();
                n1 += 1;
                p.neg[u] += (y[i] < 0.0) as u32;
                p.min1[u] = y[i].abs();
            } else {
                p.f0[u][n0 + 1] = p.f0[u][n0] + y[i].abs();
                n0 += 1;
            }
        }
    }
}

/// Scores and the exact optimum for one ball.
struct Oracle {
    classes: Vec<OClass>,
    /// Message of each codeword, grouped by weight slot (0, 8, 12, 16, 24).
    by_weight: [Vec<usize>; 5],
}

fn score(metric: Metric, b: f64, m: u32) -> f64 {
    match metric {
        Metric::Euclidean => 2.0 * b - 16.0 * m as f64,
        Metric::Angular => b / (16.0 * m as f64).sqrt(),
    }
}

fn point_score(metric: Metric, x: &Point, y: &[f64; DIM]) -> f64 {
    let b: f64 = x.iter().zip(y).map(|(&a, &v)| a as f64 * v).sum();
    let n2: i64 = x.iter().map(|&a| a as i64 * a as i64).sum();
    assert_eq!(n2 % 16, 0);
    score(metric, b, (n2 / 16) as u32)
}

impl Oracle {
    fn new(max_shell: u32) -> Oracle {
        let classes: Vec<OClass> = (2..=max_shell).flat_map(classes_of).collect();
        let g = golay();
        let mut by_weight: [Vec<usize>; 5] = Default::default();
        for u in 0..WORDS {
            let slot = [0, 8, 12, 16, 24]
                .iter()
                .position(|&w| w == g.word(u).count_ones())
                .unwrap();
            by_weight[slot].push(u);
        }
        Oracle { classes, by_weight }
    }

    /// The best score over the ball: every class (unless its rearrangement bound cannot beat the
    /// best so far by more than rounding) against every admissible codeword.
    fn best(&self, y: &[f64; DIM], metric: Metric, p: &mut Prepared) -> f64 {
        prepare(y, p);
        let mut order: Vec<(f64, usize)> = self
            .classes
            .iter()
            .enumerate()
            .map(|(k, c)| (score(metric, dot(&c.abs, &p.abs_prefix), c.m), k))
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut best = f64::NEG_INFINITY;
        for &(ub, k) in &order {
            if ub < best - 1e-9 * (1.0 + best.abs()) {
                break;
            }
            let c = &self.classes[k];
            let mut b = f64::NEG_INFINITY;
            if c.odd {
                for pre in &p.odd {
                    b = b.max(dot(&c.first, pre));
                }
            } else {
                let slot = [0, 8, 12, 16, 24].iter().position(|&w| w == c.weight).unwrap();
                for &u in &self.by_weight[slot] {
                    let mut s = dot(&c.first, &p.f1[u]) + dot(&c.second, &p.f0[u]);
                    if p.neg[u] % 2 != c.neg_parity {
                        s -= 2.0 * c.f1_min * p.min1[u];
                    }
                    b = b.max(s);
                }
            }
            best = best.max(score(metric, b, c.m));
        }
        best
    }
}

/// How a search result compares with the oracle: `None` when exact (within the tie tolerance).
fn miss(s: &Searcher, oracle: &Oracle, y32: &[f32; DIM], metric: Metric, p: &mut Prepared) -> Option<String> {
    let y: [f64; DIM] = y32.map(|v| v as f64);
    let found = s.search(y32, metric).unwrap();
    assert!(is_point(&found.point));
    assert_eq!(s.ball().decode(found.index).unwrap(), found.point);
    let got = point_score(metric, &found.point, &y);
    let want = oracle.best(&y, metric, p);
    (got < want - 1e-9 * (1.0 + want.abs())).then(|| format!("{metric:?}: search {got} < oracle {want}; y = {y32:?}"))
}

/// Brute force over permutations and signs of a small even group: the parity-fix rule (flip the
/// smallest product of the sorted pairing) is optimal.
#[test]
fn parity_fix_rule_is_optimal() {
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..300 {
        let n = rng.random_range(1..=6usize);
        let a: Vec<f64> = (0..n).map(|_| rng.random_range(0..4u32) as f64 * 2.0 + 2.0).collect();
        let y: Vec<f64> = (0..n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        let want_parity = rng.random_range(0..2u32);
        // Brute force.
        let mut best = f64::NEG_INFINITY;
        let mut perm: Vec<usize> = (0..n).collect();
        permutations(&mut perm, 0, &mut |p| {
            for signs in 0..1u32 << n {
                if signs.count_ones() % 2 != want_parity {
                    continue;
                }
                let s: f64 = (0..n)
                    .map(|i| if signs >> i & 1 == 1 { -1.0 } else { 1.0 } * a[p[i]] * y[i])
                    .sum();
                best = best.max(s);
            }
        });
        // The rule.
        let mut sa = a.clone();
        sa.sort_by(|p, q| q.total_cmp(p));
        let mut sy: Vec<f64> = y.iter().map(|v| v.abs()).collect();
        sy.sort_by(|p, q| q.total_cmp(p));
        let neg = y.iter().filter(|&&v| v < 0.0).count() as u32;
        let mut rule: f64 = sa.iter().zip(&sy).map(|(p, q)| p * q).sum();
        if neg % 2 != want_parity {
            rule -= 2.0 * sa[n - 1] * sy[n - 1];
        }
        assert!(
            (rule - best).abs() < 1e-9,
            "a={a:?} y={y:?} parity {want_parity}: rule {rule} brute {best}"
        );
    }
}

fn permutations(p: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
    if k == p.len() {
        f(p);
        return;
    }
    for j in k..p.len() {
        p.swap(k, j);
        permutations(p, k + 1, f);
        p.swap(k, j);
    }
}

/// The oracle's classes, rebuilt from the definition, have the crate's shell sizes (which are
/// checked against the theta series elsewhere) for every supported shell.
#[test]
fn oracle_classes_match_shell_sizes() {
    let ball = Ball::new(33).unwrap();
    for m in 2..=33u32 {
        let cls = classes_of(m);
        assert_eq!(cls.len(), ball.shell_classes(m).len(), "shell {m}: class count");
        let n: u128 = cls.iter().map(|c| c.size).sum();
        let want = ball.cumulative(m) as u128 - if m > 2 { ball.cumulative(m - 1) as u128 } else { 0 };
        assert_eq!(n, want, "shell {m}: size");
    }
}

/// The oracle agrees with brute force over every point of Λ24(2).
#[test]
fn oracle_agrees_with_brute_force_shell2() {
    let ball = Ball::new(2).unwrap();
    let pts: Vec<Point> = (0..ball.len()).map(|i| ball.decode(i).unwrap()).collect();
    let oracle = Oracle::new(2);
    let mut rng = StdRng::seed_from_u64(17);
    for t in 0..20 {
        let y: [f64; DIM] = std::array::from_fn(|_| rng.sample::<f64, _>(StandardNormal) * [1.0, 4.0][t % 2]);
        for metric in [Metric::Euclidean, Metric::Angular] {
            let brute = pts.iter().map(|x| point_score(metric, x, &y)).fold(f64::MIN, f64::max);
            let got = oracle.best(&y, metric, &mut Prepared::new());
            assert!(
                (got - brute).abs() <= 1e-9 * (1.0 + brute.abs()),
                "{metric:?}: oracle {got} vs brute {brute}"
            );
        }
    }
}

fn parse(s: &str) -> [f32; DIM] {
    let v: Vec<f32> = s.split_whitespace().map(|t| t.parse().unwrap()).collect();
    v.try_into().unwrap()
}

/// Issue 10: both inputs of the report, where the search returned a shell-12 point although an
/// odd shell-11 point of class 5⁴ 3⁷ 1¹³ is better.
#[test]
fn issue10_shell11_points_are_found() {
    let euc = parse(
        "-2.053028 5.972441 2.192987 -3.633713 0.618524 -5.584684 1.586175 -1.606087 1.603261 -4.457246 \
         1.531755 4.834437 -4.799969 -0.647973 0.171991 4.685292 0.391205 0.143176 2.354182 -2.625553 \
         -1.477946 -1.556050 0.917882 -0.929962",
    );
    let ang = parse(
        "-3.762803 0.550567 -3.515647 4.971914 3.787323 -4.929703 1.347323 -0.925257 -2.586554 -0.219621 \
         2.412371 1.118359 5.385370 -1.285401 -1.349464 -5.669654 -2.016758 -1.287712 0.335617 0.722852 \
         1.346847 -1.174876 2.452697 1.807928",
    );
    let better_euc: Point = parse("-1 5 3 -3 1 -5 3 -1 1 -3 1 3 -5 -1 1 5 1 1 3 -3 -1 -1 1 -1").map(|v| v as i32);
    let better_ang: Point = parse("-3 1 -3 5 3 -5 3 -1 -1 1 1 1 5 -1 -1 -5 -3 -1 1 1 1 -1 3 3").map(|v| v as i32);
    assert!(is_point(&better_euc) && is_point(&better_ang));
    for m in [12u32, 13] {
        let s = Searcher::new(m).unwrap();
        let oracle = Oracle::new(m);
        for (y, metric, better) in [(euc, Metric::Euclidean, better_euc), (ang, Metric::Angular, better_ang)] {
            let y64 = y.map(|v| v as f64);
            for (name, x) in [
                ("search", s.search(&y, metric).unwrap()),
                ("reference", s.search_reference(&y, metric).unwrap()),
            ] {
                let got = point_score(metric, &x.point, &y64);
                let bar = point_score(metric, &better, &y64);
                assert!(
                    got >= bar - 1e-12 * (1.0 + bar.abs()),
                    "M={m} {metric:?} {name}: {got} < {bar} ({:?})",
                    x.point
                );
            }
            assert!(miss(&s, &oracle, &y, metric, &mut Prepared::new()).is_none());
        }
    }
}

/// Gaussian inputs at several radii relative to the ball (radius √(16M) in L_int).
fn gaussian(rng: &mut StdRng, radius: f64) -> [f32; DIM] {
    let sigma = radius / (DIM as f64).sqrt();
    std::array::from_fn(|_| (rng.sample::<f64, _>(StandardNormal) * sigma) as f32)
}

/// Inputs built to sit on ties: lattice points, midpoints of two lattice points (on a Voronoi
/// boundary), vectors with repeated or zero coordinates.
fn adversarial(rng: &mut StdRng, ball: &Ball, k: usize) -> [f32; DIM] {
    let pick = |rng: &mut StdRng| ball.decode(rng.random_range(0..ball.len())).unwrap();
    match k % 6 {
        0 => pick(rng).map(|v| v as f32),
        1 => {
            // Midpoint of a ball point and a neighbour (x + a shell-2 vector).
            let x = pick(rng);
            let v = Ball::new(2).unwrap().decode(rng.random_range(0..196_560)).unwrap();
            std::array::from_fn(|i| (2 * x[i] + v[i]) as f32 * 0.5)
        }
        2 => {
            // Midpoint of two random ball points.
            let (x, z) = (pick(rng), pick(rng));
            std::array::from_fn(|i| (x[i] + z[i]) as f32 * 0.5)
        }
        3 => {
            // Few distinct magnitudes, random signs: many equal |y_i|.
            let levels = [0.0f32, 1.0, 2.0, 3.0];
            std::array::from_fn(|_| levels[rng.random_range(0..4)] * if rng.random_bool(0.5) { -1.0 } else { 1.0 })
        }
        4 => {
            // Sparse: most coordinates zero.
            let mut y = [0.0f32; DIM];
            for _ in 0..rng.random_range(1..6) {
                y[rng.random_range(0..DIM)] = rng.sample::<f32, _>(StandardNormal) * 6.0;
            }
            y
        }
        _ => {
            // All coordinates equal in magnitude, scaled.
            let s = rng.random_range(0.1f32..8.0);
            std::array::from_fn(|_| if rng.random_bool(0.5) { -s } else { s })
        }
    }
}

/// Runs `n` inputs per metric at `max_shell` through the search and the oracle in parallel and
/// returns the misses. Inputs: a quarter each inside the ball (0.5 R), near its surface (R), far
/// outside (8 R), and adversarial.
fn run(max_shell: u32, n: usize, seed: u64) -> (usize, Vec<String>) {
    use rayon::prelude::*;
    let s = Searcher::new(max_shell).unwrap();
    let oracle = Oracle::new(max_shell);
    let radius = ((16 * max_shell) as f64).sqrt();
    let mut rng = StdRng::seed_from_u64(seed);
    let inputs: Vec<[f32; DIM]> = (0..n)
        .map(|k| match k % 4 {
            0 => gaussian(&mut rng, 0.5 * radius),
            1 => gaussian(&mut rng, radius),
            2 => gaussian(&mut rng, 8.0 * radius),
            _ => adversarial(&mut rng, s.ball(), k / 4),
        })
        .collect();
    let misses: Vec<String> = inputs
        .par_iter()
        .map_init(Prepared::new, |p, y| {
            [Metric::Euclidean, Metric::Angular]
                .into_iter()
                .filter_map(|metric| miss(&s, &oracle, y, metric, p))
                .collect::<Vec<_>>()
        })
        .flatten()
        .collect();
    (2 * n, misses)
}

/// A quick run of the oracle comparison (the slow tests below run the full counts).
#[test]
fn search_matches_oracle_quick() {
    for (m, n) in [(4u32, 400usize), (12, 200)] {
        let (checked, misses) = run(m, n, 100 + m as u64);
        assert!(
            misses.is_empty(),
            "M={m}: {} of {checked} missed:\n{}",
            misses.len(),
            misses.join("\n")
        );
    }
}

/// Issue 10's acceptance run: 10,000 inputs per metric at M = 12 and 13, 1,000 at 19 and 33.
#[cfg(feature = "slow-tests")]
#[test]
fn search_matches_oracle() {
    for (m, n) in [(12u32, 10_000usize), (13, 10_000), (19, 1_000), (33, 1_000)] {
        let t = std::time::Instant::now();
        let (checked, misses) = run(m, n, 1000 + m as u64);
        eprintln!(
            "oracle M={m}: {checked} searches, {} misses, {:.1} s",
            misses.len(),
            t.elapsed().as_secs_f64()
        );
        assert!(
            misses.is_empty(),
            "M={m}: {} of {checked} missed:\n{}",
            misses.len(),
            misses.join("\n")
        );
    }
}

/// Issue 16, item 3: the angular search does not depend on the input's scale. Powers of two are
/// exact in f32, so 2^k·y is the same direction bit for bit; decimal scales 1e-30..1e30 round
/// each coordinate once (relative 6e-8), which moves no Gaussian input off its point here.
/// Tiny nonzero inputs, subnormals included, are searched like any other.
#[test]
fn angular_is_scale_invariant() {
    let s = Searcher::new(12).unwrap();
    let oracle = Oracle::new(12);
    let mut rng = StdRng::seed_from_u64(16);
    for t in 0..200 {
        let y: [f32; DIM] = std::array::from_fn(|_| rng.sample::<f32, _>(StandardNormal));
        let want = s.search(&y, Metric::Angular).unwrap().index;
        if t < 20 {
            assert!(miss(&s, &oracle, &y, Metric::Angular, &mut Prepared::new()).is_none());
        }
        for k in (-100..=100).step_by(20) {
            let f = 2f64.powi(k);
            let ys: [f32; DIM] = y.map(|v| (v as f64 * f) as f32);
            assert_eq!(
                s.search(&ys, Metric::Angular).unwrap().index,
                want,
                "input {t} at 2^{k}"
            );
        }
        for k in (-30..=30).step_by(3) {
            let f = 10f64.powi(k);
            let ys: [f32; DIM] = y.map(|v| (v as f64 * f) as f32);
            assert_eq!(
                s.search(&ys, Metric::Angular).unwrap().index,
                want,
                "input {t} at 1e{k}"
            );
        }
        if t < 10 {
            assert_eq!(
                s.search_reference(&y.map(|v| v * 1e-25), Metric::Angular)
                    .unwrap()
                    .index,
                want,
                "reference, input {t}"
            );
        }
    }
    // Subnormal inputs: a single smallest positive f32, and a few subnormal coordinates.
    let mut y = [0.0f32; DIM];
    y[5] = f32::from_bits(1);
    let mut big = [0.0f32; DIM];
    big[5] = 1.0;
    assert_eq!(
        s.search(&y, Metric::Angular).unwrap().index,
        s.search(&big, Metric::Angular).unwrap().index
    );
    assert_ne!(
        s.search(&y, Metric::Angular).unwrap().index,
        0,
        "(0⁵, 1, 0¹⁸) is not the direction of index 0"
    );
    y[9] = -f32::from_bits(3);
    y[17] = f32::from_bits(2);
    big[9] = -3.0;
    big[17] = 2.0;
    assert_eq!(
        s.search(&y, Metric::Angular).unwrap().index,
        s.search(&big, Metric::Angular).unwrap().index
    );
}
