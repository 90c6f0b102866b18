//! Exact search over Λ24(M) (§3.1), in both scoring modes.
//!
//! Both modes reduce to B_m = max{⟨x, y⟩ : x ∈ Shell(m)} per shell, scored as
//! - Euclidean (spherical shaping): maximise 2B_m − 16m, i.e. minimise |y − x|² over the ball;
//! - Angular (shape-gain): maximise B_m / √(16m), the cosine up to the constant |y|.
//!
//! For a fixed parity, Golay word c and class, the best point is found without enumeration
//! (Adoul-Barth): odd classes pair the sorted z = t(c)∘y (t_i = −1 on F1(c)) with the sorted
//! signed values v(a) = ±a (≡ 1 mod 4); even classes pair the sorted |y| on F1(c) and on F0(c) with
//! the sorted values of each side, take signs from y, and if the F1 sign parity is wrong flip the
//! cheapest F1 entry. The search is exact branch-and-bound over (shell, parity, codeword, class):
//!
//! 1. **Class bound.** Ignoring the Golay constraint, ⟨x, y⟩ ≤ Σ sorted|x|·sorted|y|; shells and
//!    classes whose bound cannot beat the best score so far are skipped.
//! 2. **Codeword bound (Lagrangian).** For μ > 0 and every x of the coset (p, c),
//!    ⟨x, y⟩ − μ|x|² ≤ Σ_i max_{v ≡ r_i (mod 4)} (v y_i − μ v²) = G(c), where the residue r_i
//!    depends only on (p, c_i). So B_m(c) ≤ G(c) + 16mμ. G is affine in the bits of c, so one
//!    Walsh-Hadamard transform of length 4096 gives it for all codewords at once (coordinate i of
//!    the codeword with message u is the parity of u·column_i). μ_m = |y|/(8√m) makes the bound
//!    tight for points near shell m. Two shared multipliers (tangent at M and at 0.6·M) bound
//!    every shell from four transforms; a (shell, parity) whose survivors are still many gets a
//!    transform with its own μ_m.
//! 3. Survivors are scored exactly; the best (shell, parity, codeword, class) is rebuilt into a
//!    point and indexed.
//!
//! Bounds are computed in f32 and get a rounding slack that only ever lets more through; exact
//! scores are accumulated in f64. Angular inputs are first scaled by a power of two (exact), so
//! the result does not depend on |y|.
//!
//! [`Searcher::search_reference`] is the plain twin: the same exact scoring over every
//! (shell, parity, codeword, class) with no pruning; tests require the two to agree, both to
//! agree with brute force over enumerated Λ24(2) and Λ24(3), and the search to agree with an
//! oracle that shares no code with this module (`tests/exact_oracle.rs`) up to M = 33.

use std::cell::RefCell;

use crate::error::LatticeError;
use crate::golay::{golay, weight_slot, WORDS};
use crate::index::Ball;
use crate::leech::{Parity, Point, DIM};

/// Scoring mode of the search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Nearest point of the ball in Euclidean distance (spherical shaping); input in L_int units.
    Euclidean,
    /// Maximum cosine over the union of shells 2..=M (shape-gain); input at any scale (the
    /// result is the same for every nonzero multiple, subnormal inputs included). The zero
    /// vector has no direction: it returns index 0 (a point of Shell(2)).
    Angular,
}

impl Metric {
    /// Score of a shell-m point with ⟨x, y⟩ = b: larger is better. Exact scores are kept in
    /// f64 so that candidates closer than f32 rounding are still ordered correctly.
    #[inline]
    fn score(self, b: f64, m: u32) -> f64 {
        match self {
            Metric::Euclidean => 2.0 * b - 16.0 * m as f64,
            Metric::Angular => b / (4.0 * (m as f64).sqrt()),
        }
    }
    /// The ⟨x, y⟩ a shell-m point needs to reach `score`.
    #[inline]
    fn needed(self, score: f64, m: u32) -> f64 {
        match self {
            Metric::Euclidean => 0.5 * (score + 16.0 * m as f64),
            Metric::Angular => score * 4.0 * (m as f64).sqrt(),
        }
    }
}

/// The point chosen by a search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Found {
    pub index: u64,
    pub point: Point,
}

/// Distinct values with multiplicities, largest first.
#[derive(Clone, Copy, Debug)]
struct Levels {
    len: u8,
    value: [f32; 12],
    count: [u8; 12],
}

impl Levels {
    fn from_desc(pairs: impl Iterator<Item = (f32, u8)>) -> Levels {
        let mut l = Levels {
            len: 0,
            value: [0.0; 12],
            count: [0; 12],
        };
        for (v, c) in pairs {
            l.value[l.len as usize] = v;
            l.count[l.len as usize] = c;
            l.len += 1;
        }
        l
    }
    /// Σ over levels of value · (sum of the next `count` entries of a descending list), given
    /// the prefix sums of that list.
    #[inline(always)]
    fn dot(&self, prefix: &[f64]) -> f64 {
        let mut s = 0.0f64;
        let mut at = 0usize;
        for j in 0..self.len as usize {
            let end = at + self.count[j] as usize;
            s += self.value[j] as f64 * (prefix[end] - prefix[at]);
            at = end;
        }
        s
    }
}

/// What the search needs of one class.
#[derive(Clone, Debug)]
struct ClassPlan {
    /// Index of the class in the ball.
    class: usize,
    /// All absolute values, descending (the class bound).
    abs: Levels,
    /// Odd: signed values v(a) descending. Even: the F1 values, descending.
    first: Levels,
    /// Even: the nonzero F0 values, descending.
    second: Levels,
    /// Even: smallest F1 value (cost of the parity fix) and the required F1 negative parity.
    f1_min: f32,
    f1_parity: u32,
}

/// Classes of one shell grouped the way codewords select them.
struct ShellPlan {
    m: u32,
    /// Even classes by Golay weight slot.
    even: [Vec<ClassPlan>; 5],
    odd: Vec<ClassPlan>,
}

/// Residues mod 4 of x_i on F0 and F1 for each parity (Eq. 7-8).
const RESIDUES: [[i32; 2]; 2] = [[0, 2], [1, 3]];

/// Work counters of one search, reported by benchmarks to show where the time goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Shells searched (not cut by their bound).
    pub shells: u32,
    /// Walsh transforms computed (two shared ones plus one per crowded (shell, parity)).
    pub transforms: u32,
    /// (shell, parity, codeword) triples scored exactly.
    pub words: u32,
}

/// Exact searcher over one ball. Immutable after construction: share it across threads.
pub struct Searcher {
    ball: Ball,
    shells: Vec<ShellPlan>,
    /// Sparse Walsh transform tables: coordinate i adds d_i·lo_sign[i] to row `row[i]`.
    row: [usize; DIM],
    lo_sign: Vec<[f32; 64]>,
}

/// The best candidate so far: score and enough to rebuild the point.
#[derive(Clone, Copy)]
struct Best {
    score: f64,
    class: usize,
    word: u32,
}

impl Best {
    const NONE: Best = Best {
        score: f64::NEG_INFINITY,
        class: usize::MAX,
        word: 0,
    };
    fn is_set(&self) -> bool {
        self.class != usize::MAX
    }
}

/// Number of shared multipliers, and the shells they are tangent at (fractions of M). Two
/// measured best (instruction counts at M = 12): one leaves inner shells loosely bounded,
/// three costs more transforms than it saves.
const SHARED: usize = 2;
const SHARED_AT: [f32; SHARED] = [1.0, 0.6];

/// Survivors of the shared bound above which a (shell, parity) gets its own transform.
const OWN_TRANSFORM_AT: usize = 32;

thread_local! {
    static SCRATCH: RefCell<Option<Box<Context>>> = const { RefCell::new(None) };
}

impl Searcher {
    pub fn new(max_shell: u32) -> Result<Searcher, LatticeError> {
        let ball = Ball::new(max_shell)?;
        let mut shells = Vec::new();
        for m in 2..=max_shell {
            let start = ball.shell_class_start(m);
            let mut plan = ShellPlan {
                m,
                even: Default::default(),
                odd: Vec::new(),
            };
            for (k, c) in ball.shell_classes(m).iter().enumerate() {
                let ms = c.multiset();
                let abs = Levels::from_desc(ms.iter().map(|&(v, n)| (v as f32, n)));
                let mut p = ClassPlan {
                    class: start + k,
                    abs,
                    first: abs,
                    second: abs,
                    f1_min: 0.0,
                    f1_parity: 0,
                };
                match c.parity {
                    Parity::Odd => {
                        let mut signed: Vec<(f32, u8)> = ms
                            .iter()
                            .map(|&(a, n)| (if a % 4 == 1 { a as f32 } else { -(a as f32) }, n))
                            .collect();
                        signed.sort_by(|a, b| b.0.total_cmp(&a.0));
                        p.first = Levels::from_desc(signed.into_iter());
                        plan.odd.push(p);
                    }
                    Parity::Even => {
                        p.first = Levels::from_desc(ms.iter().filter(|x| x.0 % 4 == 2).map(|&(v, n)| (v as f32, n)));
                        p.second = Levels::from_desc(
                            ms.iter()
                                .filter(|x| x.0 % 4 == 0 && x.0 != 0)
                                .map(|&(v, n)| (v as f32, n)),
                        );
                        p.f1_min = if p.first.len > 0 {
                            p.first.value[p.first.len as usize - 1]
                        } else {
                            0.0
                        };
                        p.f1_parity = c.f1_negative_parity();
                        plan.even[weight_slot(c.weight).unwrap()].push(p);
                    }
                }
            }
            shells.push(plan);
        }
        let g = golay();
        let row = std::array::from_fn(|i| (g.column(i) >> 6) as usize);
        let lo_sign = (0..DIM)
            .map(|i| {
                let b = g.column(i) & 63;
                std::array::from_fn(|u| {
                    if (u as u16 & b).count_ones() & 1 == 1 {
                        -1.0
                    } else {
                        1.0
                    }
                })
            })
            .collect();
        Ok(Searcher {
            ball,
            shells,
            row,
            lo_sign,
        })
    }

    /// The ball searched.
    pub fn ball(&self) -> &Ball {
        &self.ball
    }

    fn check(y: &[f32; DIM]) -> Result<(), LatticeError> {
        match y.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(LatticeError::NonFinite {
                coordinate: i,
                value: y[i],
            }),
            None => Ok(()),
        }
    }

    /// The vector actually searched. Euclidean: y itself. Angular: the cosine does not depend on
    /// |y|, so y is scaled once by the power of two that brings max|y_i| into [1, 2). A power of
    /// two is exact in f32, so y and 2^k·y give bit-identical searches, and the bounds'
    /// tolerances see the same magnitudes at every input scale (tiny inputs are not lost to
    /// underflow, huge ones do not overflow). `None`: the zero vector, which has no direction.
    fn prepare(y: &[f32; DIM], metric: Metric) -> Option<[f32; DIM]> {
        if metric == Metric::Euclidean {
            return Some(*y);
        }
        let max = y.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        if max == 0.0 {
            return None;
        }
        // f64 holds every f32 (subnormals included) as a normal number, so its exponent is exact.
        let e = ((max as f64).to_bits() >> 52) as i32 - 1023;
        let f = 2f64.powi(-e);
        Some(y.map(|v| (v as f64 * f) as f32))
    }

    /// Exact search of one vector (branch-and-bound). Non-finite input is an error.
    pub fn search(&self, y: &[f32; DIM], metric: Metric) -> Result<Found, LatticeError> {
        self.search_traced(y, metric).map(|(f, _)| f)
    }

    /// [`Searcher::search`] with its work counters.
    pub fn search_traced(&self, y: &[f32; DIM], metric: Metric) -> Result<(Found, SearchStats), LatticeError> {
        Self::check(y)?;
        let Some(y) = Self::prepare(y, metric) else {
            return Ok((
                Found {
                    index: 0,
                    point: self.ball.decode(0)?,
                },
                SearchStats::default(),
            ));
        };
        let norm = y.iter().map(|v| v * v).sum::<f32>().sqrt();
        SCRATCH.with(|cell| {
            let mut slot = cell.borrow_mut();
            let ctx = slot.get_or_insert_with(|| Box::new(Context::new()));
            ctx.reset(&y);
            let best = self.run(ctx, norm, metric);
            Ok((self.finish(&y, best)?, ctx.stats))
        })
    }

    fn run(&self, ctx: &mut Context, norm: f32, metric: Metric) -> Best {
        let outer = self.ball.max_shell() as f32;
        // Shared multipliers bound every shell from 2·SHARED transforms: B_m(c) ≤ G_μ(c) + 16mμ
        // for each μ, so the smallest of those bounds holds. Euclidean: μ = ½ makes 2G(c) bound
        // 2⟨x,y⟩ − |x|² on all shells at once (μ grows when y lies outside the ball). Angular:
        // tangents at the outer shell, where the best direction usually lies, and further in.
        for (k, mu) in ctx.mu0.iter_mut().enumerate() {
            let m_k = (outer * SHARED_AT[k]).max(2.0);
            *mu = match metric {
                Metric::Euclidean => (norm / (8.0 * m_k.sqrt())).max(0.5),
                Metric::Angular => norm / (8.0 * m_k.sqrt()),
            };
        }
        // Equal multipliers (Euclidean inside the ball: all ½) need one transform pair.
        ctx.nshared = 1 + ctx.mu0[1..].iter().filter(|&&mu| mu != ctx.mu0[0]).count();
        let mut top = [0usize; 2];
        let mut best_word = [[0.0f32; 2]; SHARED];
        #[allow(clippy::needless_range_loop)] // k indexes four parallel arrays of ctx
        for k in 0..ctx.nshared {
            for (p, res) in RESIDUES.iter().enumerate() {
                let mut w = std::mem::take(&mut ctx.shared[k][p]);
                ctx.lift0[k][p] = self.codeword_bounds(&ctx.y, ctx.mu0[k], *res, &mut w);
                let t = argmin(&w);
                if k == 0 {
                    top[p] = t;
                }
                best_word[k][p] = ctx.lift0[k][p] - 0.5 * w[t];
                ctx.shared[k][p] = w;
                ctx.stats.transforms += 1;
            }
        }
        // The Walsh bounds are computed in f32: a bound may come out below its true value by
        // rounding, so every comparison of a bound with the best score gives it `tol` (in ⟨x, y⟩
        // units) of slack. Terms of G(c) + 16mμ are at most about 4√M·|y| + 16M in size, and
        // 1e-5 of that is ~100 f32 ulps. (The slack must widen what survives: issue 10 came from
        // a slack of the opposite sign, which skipped bounds within `tol` above the best.)
        let tol = 1e-5 * (1.0 + 4.0 * outer.sqrt() * norm + 16.0 * outer);
        let mut order: Vec<(f64, usize)> = self
            .shells
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let class_ub = s
                    .even
                    .iter()
                    .flatten()
                    .chain(&s.odd)
                    .map(|p| p.abs.dot(&ctx.abs_prefix))
                    .fold(f64::MIN, f64::max);
                let mut word_ub = f32::MIN;
                for (p, present) in [s.even.iter().any(|v| !v.is_empty()), !s.odd.is_empty()]
                    .into_iter()
                    .enumerate()
                {
                    if present {
                        let ub = (0..ctx.nshared)
                            .map(|j| best_word[j][p] + 16.0 * s.m as f32 * ctx.mu0[j])
                            .fold(f32::MAX, f32::min);
                        word_ub = word_ub.max(ub);
                    }
                }
                (
                    metric
                        .score((word_ub + tol) as f64, s.m)
                        .min(metric.score(class_ub, s.m)),
                    k,
                )
            })
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut best = Best::NONE;
        // Seed the bar: the best-bounded codeword of each parity on the most promising shell.
        let first = &self.shells[order[0].1];
        for parity in [Parity::Even, Parity::Odd] {
            self.visit(first, parity, top[parity as usize], metric, ctx, &mut best);
        }
        for &(ub, k) in &order {
            if best.is_set() && ub <= best.score {
                break;
            }
            self.search_shell(&self.shells[k], metric, norm, ctx, &mut best, tol);
        }
        best
    }

    /// Searches one shell, both parities: codewords whose bound beats the best are scored,
    /// most promising first. The shared bound (μ0) selects them unless too many pass; then a
    /// transform with the shell's own μ_m = |y|/(8√m) tightens the cut.
    fn search_shell(&self, shell: &ShellPlan, metric: Metric, norm: f32, ctx: &mut Context, best: &mut Best, tol: f32) {
        let m = shell.m;
        ctx.stats.shells += 1;
        for parity in [Parity::Even, Parity::Odd] {
            let pi = parity as usize;
            let has_classes = match parity {
                Parity::Even => shell.even.iter().any(|v| !v.is_empty()),
                Parity::Odd => !shell.odd.is_empty(),
            };
            if !has_classes {
                continue;
            }
            // Walsh value below which a codeword's bound beats `best` (bound = lift − w/2).
            // A codeword survives when its bound plus the rounding slack can reach the best.
            let cut = |lift: f32, best: &Best| (2.0 * (lift as f64 + tol as f64 - metric.needed(best.score, m))) as f32;
            let lifts: [f32; SHARED] = std::array::from_fn(|k| ctx.lift0[k][pi] + 16.0 * m as f32 * ctx.mu0[k]);
            let ns = ctx.nshared;
            let passes =
                |ctx: &Context, u: usize, best: &Best| (0..ns).all(|k| ctx.shared[k][pi][u] < cut(lifts[k], best));
            let mut cand = std::mem::take(&mut ctx.cand);
            let cuts: [f32; SHARED] = std::array::from_fn(|k| cut(lifts[k], best));
            // Vectorised count of the codewords every shared bound lets through.
            let passing: u32 = if ns == 1 {
                ctx.shared[0][pi].iter().map(|&w| (w < cuts[0]) as u32).sum()
            } else {
                ctx.shared[0][pi]
                    .iter()
                    .zip(&ctx.shared[1][pi])
                    .map(|(&a, &b)| ((a < cuts[0]) & (b < cuts[1])) as u32)
                    .sum()
            };
            let passing = passing as usize;
            if passing == 0 {
                ctx.cand = cand;
                continue;
            }
            let own_lift = if passing > OWN_TRANSFORM_AT {
                let mu = norm / (8.0 * (m as f32).sqrt());
                let mut own = std::mem::take(&mut ctx.own);
                let lift = self.codeword_bounds(&ctx.y, mu, RESIDUES[pi], &mut own) + 16.0 * m as f32 * mu;
                ctx.own = own;
                ctx.stats.transforms += 1;
                below(&ctx.own, cut(lift, best), &mut cand);
                cand.retain(|&u| passes(ctx, u as usize, best));
                cand.sort_unstable_by(|&a, &b| ctx.own[a as usize].total_cmp(&ctx.own[b as usize]));
                Some(lift)
            } else {
                below(&ctx.shared[0][pi], cuts[0], &mut cand);
                cand.retain(|&u| passes(ctx, u as usize, best));
                cand.sort_unstable_by(|&a, &b| ctx.shared[0][pi][a as usize].total_cmp(&ctx.shared[0][pi][b as usize]));
                None
            };
            for &u in &cand {
                let u = u as usize;
                // Candidates are sorted by the bound they were selected with, so the first that
                // fails it ends the list; the other bounds only skip.
                let (key, other) = match own_lift {
                    Some(l) => (ctx.own[u] < cut(l, best), passes(ctx, u, best)),
                    None => (ctx.shared[0][pi][u] < cut(lifts[0], best), passes(ctx, u, best)),
                };
                if !key {
                    break;
                }
                if other {
                    self.visit(shell, parity, u, metric, ctx, best);
                }
            }
            cand.clear();
            ctx.cand = cand;
        }
    }

    /// Exact scoring of every class of `shell` with parity `parity` for codeword message `u`.
    #[inline]
    fn visit(&self, shell: &ShellPlan, parity: Parity, u: usize, metric: Metric, ctx: &mut Context, best: &mut Best) {
        let c = golay().word(u);
        ctx.stats.words += 1;
        match parity {
            Parity::Odd => ctx.score_odd(c, &shell.odd, metric, shell.m, best),
            Parity::Even => {
                let slot = weight_slot(c.count_ones()).unwrap();
                ctx.score_even(c, &shell.even[slot], metric, shell.m, best)
            }
        }
    }

    /// Fills `walsh[u] = Σ_i d_i (−1)^{c(u)_i}` with d_i = h(r1, y_i) − h(r0, y_i), where
    /// h(r, y) = max over v ≡ r (mod 4) of v·y − μv² (the best coordinate of the coset, ignoring
    /// the norm and the sum rule). Returns `lift` with G(c(u)) = lift − walsh[u] / 2.
    ///
    /// The transform input has only 24 nonzeros, so the six stages over the low message bits
    /// are done directly (each coordinate adds ±d_i to one 64-wide row) and only the six
    /// stages over the high bits run as butterflies.
    fn codeword_bounds(&self, y: &[f32; DIM], mu: f32, res: [i32; 2], walsh: &mut [f32]) -> f32 {
        let h = |r: i32, y: f32| -> f32 {
            let target = y / (2.0 * mu);
            let k = ((target - r as f32) * 0.25).round();
            let v = r as f32 + 4.0 * k;
            v * (y - mu * v)
        };
        walsh.fill(0.0);
        let (mut base, mut dsum) = (0.0f32, 0.0f32);
        for i in 0..DIM {
            let h0 = h(res[0], y[i]);
            let d = h(res[1], y[i]) - h0;
            base += h0;
            dsum += d;
            let row: &mut [f32; 64] = (&mut walsh[self.row[i] * 64..][..64]).try_into().unwrap();
            for (o, s) in row.iter_mut().zip(&self.lo_sign[i]) {
                *o += d * s;
            }
        }
        fwht_from(walsh, 64);
        base + 0.5 * dsum
    }

    /// The plain twin of [`Searcher::search`]: exact scoring of every (shell, parity, codeword,
    /// class), no bounds. Slow (milliseconds per vector); the oracle for tests.
    pub fn search_reference(&self, y: &[f32; DIM], metric: Metric) -> Result<Found, LatticeError> {
        Self::check(y)?;
        let Some(y) = Self::prepare(y, metric) else {
            return Ok(Found {
                index: 0,
                point: self.ball.decode(0)?,
            });
        };
        let y = &y;
        let mut ctx = Context::new();
        ctx.reset(y);
        let mut best = Best::NONE;
        let g = golay();
        for shell in &self.shells {
            for u in 0..WORDS {
                let c = g.word(u);
                ctx.score_odd(c, &shell.odd, metric, shell.m, &mut best);
                let slot = weight_slot(c.count_ones()).unwrap();
                ctx.score_even(c, &shell.even[slot], metric, shell.m, &mut best);
            }
        }
        self.finish(y, best)
    }

    /// Rebuilds the best (class, codeword) into a point and indexes it.
    fn finish(&self, y: &[f32; DIM], best: Best) -> Result<Found, LatticeError> {
        let class = &self.ball.classes()[best.class];
        let c = best.word;
        let mut x = [0i32; DIM];
        let ms = class.multiset();
        match class.parity {
            Parity::Odd => {
                // Pair z = t∘y (descending) with the signed values (descending).
                let t = |i: usize| if c >> i & 1 == 1 { -1.0f32 } else { 1.0 };
                let mut pos: Vec<usize> = (0..DIM).collect();
                pos.sort_by(|&a, &b| (t(b) * y[b]).total_cmp(&(t(a) * y[a])));
                let mut signed: Vec<i32> = Vec::with_capacity(DIM);
                for &(a, n) in &ms {
                    let v = if a % 4 == 1 { a as i32 } else { -(a as i32) };
                    signed.extend(std::iter::repeat_n(v, n as usize));
                }
                signed.sort_by(|a, b| b.cmp(a));
                for (&i, &v) in pos.iter().zip(&signed) {
                    x[i] = if c >> i & 1 == 1 { -v } else { v };
                }
            }
            Parity::Even => {
                let mut side = |in_f1: bool, pred: &dyn Fn(u8) -> bool| -> Option<usize> {
                    let mut pos: Vec<usize> = (0..DIM).filter(|&i| (c >> i & 1 == 1) == in_f1).collect();
                    pos.sort_by(|&a, &b| y[b].abs().total_cmp(&y[a].abs()));
                    let mut vals: Vec<i32> = Vec::new();
                    for &(a, n) in ms.iter().filter(|p| pred(p.0)) {
                        vals.extend(std::iter::repeat_n(a as i32, n as usize));
                    }
                    for (&i, &v) in pos.iter().zip(&vals) {
                        x[i] = if y[i] < 0.0 { -v } else { v };
                    }
                    pos.last().copied()
                };
                let cheapest = side(true, &|a| a % 4 == 2);
                side(false, &|a| a % 4 == 0);
                let neg = (0..DIM).filter(|&i| c >> i & 1 == 1 && x[i] < 0).count() as u32;
                if neg & 1 != class.f1_negative_parity() {
                    let i = cheapest.expect("parity fix needs an F1 entry");
                    x[i] = -x[i];
                }
            }
        }
        let index = self.ball.class_offset(best.class) + crate::index::encode_local(class, &x);
        Ok(Found { index, point: x })
    }
}

/// Per-query scratch: sorted magnitudes, Walsh buffers, sort buffers. Reused across queries
/// of a thread, so a search allocates nothing.
struct Context {
    y: [f32; DIM],
    abs_prefix: [f64; DIM + 1],
    /// Walsh values of the shared bound, per parity, and the matching lifts.
    shared: [[Vec<f32>; 2]; SHARED],
    lift0: [[f32; 2]; SHARED],
    mu0: [f32; SHARED],
    /// Distinct shared multipliers in use.
    nshared: usize,
    /// Walsh values of a shell's own bound.
    own: Vec<f32>,
    /// Candidate codeword messages.
    cand: Vec<u16>,
    buf: [f32; DIM],
    prefix_a: [f64; DIM + 1],
    prefix_b: [f64; DIM + 1],
    stats: SearchStats,
}

impl Context {
    fn new() -> Context {
        Context {
            y: [0.0; DIM],
            abs_prefix: [0.0; DIM + 1],
            shared: std::array::from_fn(|_| [vec![0.0; WORDS], vec![0.0; WORDS]]),
            lift0: [[0.0; 2]; SHARED],
            mu0: [0.0; SHARED],
            nshared: 1,
            own: vec![0.0; WORDS],
            cand: Vec::with_capacity(WORDS),
            buf: [0.0; DIM],
            prefix_a: [0.0; DIM + 1],
            prefix_b: [0.0; DIM + 1],
            stats: SearchStats::default(),
        }
    }

    fn reset(&mut self, y: &[f32; DIM]) {
        self.y = *y;
        let mut a: [f32; DIM] = y.map(f32::abs);
        a.sort_unstable_by(|p, q| q.total_cmp(p));
        for (i, &ai) in a.iter().enumerate() {
            self.abs_prefix[i + 1] = self.abs_prefix[i] + ai as f64;
        }
        self.stats = SearchStats::default();
    }

    /// Scores every odd class for codeword c.
    fn score_odd(&mut self, c: u32, classes: &[ClassPlan], metric: Metric, m: u32, best: &mut Best) {
        if classes.is_empty() {
            return;
        }
        for i in 0..DIM {
            self.buf[i] = if c >> i & 1 == 1 { -self.y[i] } else { self.y[i] };
        }
        self.buf.sort_unstable_by(|p, q| q.total_cmp(p));
        for i in 0..DIM {
            self.prefix_a[i + 1] = self.prefix_a[i] + self.buf[i] as f64;
        }
        for p in classes {
            self.consider(p, p.first.dot(&self.prefix_a), c, metric, m, best);
        }
    }

    /// Scores the even classes (all of weight |c|) for codeword c.
    fn score_even(&mut self, c: u32, classes: &[ClassPlan], metric: Metric, m: u32, best: &mut Best) {
        if classes.is_empty() {
            return;
        }
        let (mut n1, mut n0) = (0usize, DIM);
        let mut neg = 0u32;
        for i in 0..DIM {
            let a = self.y[i].abs();
            if c >> i & 1 == 1 {
                self.buf[n1] = a;
                n1 += 1;
                neg += (self.y[i] < 0.0) as u32;
            } else {
                n0 -= 1;
                self.buf[n0] = a;
            }
        }
        let (f1, f0) = self.buf.split_at_mut(n1);
        f1.sort_unstable_by(|p, q| q.total_cmp(p));
        f0.sort_unstable_by(|p, q| q.total_cmp(p));
        for (i, &v) in f1.iter().enumerate() {
            self.prefix_a[i + 1] = self.prefix_a[i] + v as f64;
        }
        for (i, &v) in f0.iter().enumerate() {
            self.prefix_b[i + 1] = self.prefix_b[i] + v as f64;
        }
        let min1 = if n1 > 0 { f1[n1 - 1] } else { 0.0 };
        for p in classes {
            let mut b = p.first.dot(&self.prefix_a) + p.second.dot(&self.prefix_b);
            if neg & 1 != p.f1_parity {
                b -= 2.0 * p.f1_min as f64 * min1 as f64;
            }
            self.consider(p, b, c, metric, m, best);
        }
    }

    #[inline(always)]
    fn consider(&self, p: &ClassPlan, b: f64, c: u32, metric: Metric, m: u32, best: &mut Best) {
        let s = metric.score(b, m);
        if s > best.score {
            *best = Best {
                score: s,
                class: p.class,
                word: c,
            };
        }
    }
}

/// Position of the smallest value (first on ties). Two passes that vectorise: the minimum,
/// then its position.
fn argmin(a: &[f32]) -> usize {
    let mut lanes = [f32::INFINITY; 8];
    for c in a.chunks_exact(8) {
        for l in 0..8 {
            lanes[l] = fmin(lanes[l], c[l]);
        }
    }
    let min = lanes.iter().copied().fold(f32::INFINITY, fmin);
    a.iter().position(|&v| v == min).unwrap_or(0)
}

/// Minimum without NaN handling (inputs are finite), so it compiles to one `minps`.
#[inline(always)]
fn fmin(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// Appends the positions of the values below `cut`. Most 32-value chunks hold none, which a
/// vectorised minimum shows before any per-value work.
fn below(a: &[f32], cut: f32, out: &mut Vec<u16>) {
    for (k, chunk) in a.chunks_exact(32).enumerate() {
        let chunk: &[f32; 32] = chunk.try_into().unwrap();
        let lanes: [f32; 8] =
            std::array::from_fn(|l| fmin(fmin(chunk[l], chunk[l + 8]), fmin(chunk[l + 16], chunk[l + 24])));
        if lanes.iter().copied().fold(f32::INFINITY, fmin) >= cut {
            continue;
        }
        for (j, &w) in chunk.iter().enumerate() {
            if w < cut {
                out.push((k * 32 + j) as u16);
            }
        }
    }
}

/// In-place Walsh-Hadamard transform (unnormalised) of a power-of-two length ≥ 8. The first
/// three stages run in registers on groups of eight; the wider stages are plain slice loops that
/// the compiler vectorises.
pub fn fwht(a: &mut [f32]) {
    let n = a.len();
    debug_assert!(n.is_power_of_two() && n >= 8);
    for c in a.chunks_exact_mut(8) {
        let v: &mut [f32; 8] = c.try_into().unwrap();
        let [a0, a1, a2, a3, a4, a5, a6, a7] = *v;
        let (b0, b1, b2, b3, b4, b5, b6, b7) = (a0 + a1, a0 - a1, a2 + a3, a2 - a3, a4 + a5, a4 - a5, a6 + a7, a6 - a7);
        let (c0, c1, c2, c3, c4, c5, c6, c7) = (b0 + b2, b1 + b3, b0 - b2, b1 - b3, b4 + b6, b5 + b7, b4 - b6, b5 - b7);
        *v = [c0 + c4, c1 + c5, c2 + c6, c3 + c7, c0 - c4, c1 - c5, c2 - c6, c3 - c7];
    }
    fwht_from(a, 8);
}

/// The butterfly stages of a Walsh-Hadamard transform from half-width `h` (≥ 8) upwards.
/// Stages go two at a time (radix 4) so each pass loads and stores the data once for two.
fn fwht_from(a: &mut [f32], mut h: usize) {
    type V = [f32; 8];
    let n = a.len();
    while 4 * h <= n {
        for block in a.chunks_exact_mut(4 * h) {
            let (q01, q23) = block.split_at_mut(2 * h);
            let (q0, q1) = q01.split_at_mut(h);
            let (q2, q3) = q23.split_at_mut(h);
            let it = q0
                .chunks_exact_mut(8)
                .zip(q1.chunks_exact_mut(8))
                .zip(q2.chunks_exact_mut(8).zip(q3.chunks_exact_mut(8)));
            for ((x0, x1), (x2, x3)) in it {
                let (x0, x1): (&mut V, &mut V) = (x0.try_into().unwrap(), x1.try_into().unwrap());
                let (x2, x3): (&mut V, &mut V) = (x2.try_into().unwrap(), x3.try_into().unwrap());
                let a: V = std::array::from_fn(|k| x0[k] + x1[k]);
                let b: V = std::array::from_fn(|k| x0[k] - x1[k]);
                let c: V = std::array::from_fn(|k| x2[k] + x3[k]);
                let d: V = std::array::from_fn(|k| x2[k] - x3[k]);
                *x0 = std::array::from_fn(|k| a[k] + c[k]);
                *x1 = std::array::from_fn(|k| b[k] + d[k]);
                *x2 = std::array::from_fn(|k| a[k] - c[k]);
                *x3 = std::array::from_fn(|k| b[k] - d[k]);
            }
        }
        h *= 4;
    }
    if 2 * h <= n {
        for block in a.chunks_exact_mut(2 * h) {
            let (lo, hi) = block.split_at_mut(h);
            for (x, y) in lo.chunks_exact_mut(8).zip(hi.chunks_exact_mut(8)) {
                let (x, y): (&mut V, &mut V) = (x.try_into().unwrap(), y.try_into().unwrap());
                let (s, d): (V, V) = (
                    std::array::from_fn(|k| x[k] + y[k]),
                    std::array::from_fn(|k| x[k] - y[k]),
                );
                *x = s;
                *y = d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leech::{is_point, norm2};
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use rand_distr::StandardNormal;

    fn dot(x: &Point, y: &[f32; DIM]) -> f64 {
        x.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    fn score(metric: Metric, x: &Point, y: &[f32; DIM]) -> f64 {
        let n2 = norm2(x) as f64;
        match metric {
            Metric::Euclidean => 2.0 * dot(x, y) - n2,
            Metric::Angular => dot(x, y) / n2.sqrt(),
        }
    }

    fn gaussian(rng: &mut StdRng, scale: f32) -> [f32; DIM] {
        std::array::from_fn(|_| rng.sample::<f32, _>(StandardNormal) * scale)
    }

    #[test]
    fn pruned_agrees_with_reference() {
        let mut rng = StdRng::seed_from_u64(7);
        for &mmax in &[4u32, 8] {
            let s = Searcher::new(mmax).unwrap();
            for t in 0..12 {
                let scale = [0.5f32, 2.0, 5.0, 12.0][t % 4];
                let y = gaussian(&mut rng, scale);
                for metric in [Metric::Euclidean, Metric::Angular] {
                    let a = s.search(&y, metric).unwrap();
                    let b = s.search_reference(&y, metric).unwrap();
                    assert!(is_point(&a.point));
                    assert_eq!(s.ball().decode(a.index).unwrap(), a.point);
                    let (sa, sb) = (score(metric, &a.point, &y), score(metric, &b.point, &y));
                    assert!(
                        (sa - sb).abs() <= 1e-4 * (1.0 + sb.abs()),
                        "M={mmax} {metric:?}: {sa} vs {sb}"
                    );
                }
            }
        }
    }

    #[test]
    fn brute_force_shell2() {
        // Every point of Λ24(2), enumerated through the index; both metrics on random inputs.
        let s = Searcher::new(2).unwrap();
        let pts: Vec<Point> = (0..s.ball().len()).map(|i| s.ball().decode(i).unwrap()).collect();
        let mut rng = StdRng::seed_from_u64(11);
        for t in 0..20 {
            let y = gaussian(&mut rng, if t % 2 == 0 { 1.0 } else { 4.0 });
            for metric in [Metric::Euclidean, Metric::Angular] {
                let brute = pts.iter().map(|x| score(metric, x, &y)).fold(f64::MIN, f64::max);
                let got = s.search(&y, metric).unwrap();
                let sg = score(metric, &got.point, &y);
                assert!(
                    (sg - brute).abs() <= 1e-4 * (1.0 + brute.abs()),
                    "{metric:?}: {sg} vs brute {brute}"
                );
            }
        }
    }

    #[test]
    fn zero_and_non_finite() {
        let s = Searcher::new(3).unwrap();
        let z = [0.0f32; DIM];
        assert_eq!(s.search(&z, Metric::Angular).unwrap().index, 0);
        let e = s.search(&z, Metric::Euclidean).unwrap();
        assert_eq!(norm2(&e.point), 32, "nearest ball point to 0 is on Shell(2)");
        let mut bad = [0.5f32; DIM];
        bad[3] = f32::NAN;
        assert!(matches!(
            s.search(&bad, Metric::Angular),
            Err(LatticeError::NonFinite { coordinate: 3, .. })
        ));
        bad[3] = f32::INFINITY;
        assert!(s.search(&bad, Metric::Euclidean).is_err());
    }

    #[test]
    fn lattice_points_are_found_exactly() {
        // A lattice point inside the ball is its own nearest point.
        let s = Searcher::new(6).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            let i = rng.random_range(0..s.ball().len());
            let x = s.ball().decode(i).unwrap();
            let y = x.map(|v| v as f32);
            assert_eq!(s.search(&y, Metric::Euclidean).unwrap().index, i);
            assert_eq!(s.search(&y, Metric::Angular).unwrap().point, x);
        }
    }
}
