//! Seeded randomness and hashing, one of each for the whole workspace.
//!
//! They live on the bottom floor (this crate has no dependencies that could change their output)
//! because stored seeds and fingerprints must mean the same thing in every crate and every
//! version: a rotation seed in a `.llvq` file reproduces the same signs, a perplexity fingerprint
//! names the same tokens.
//! - [`SplitMix64`]: the generator (Steele, Lea, Flood 2014), with bit-reproducible uniforms,
//!   signs and Gaussians;
//! - [`finalize`] / [`mix`]: its output function, used to derive independent seeds from
//!   `(seed, index)` pairs;
//! - [`fnv1a`]: FNV-1a 64, the content hash of files, texts and token streams.

/// SplitMix64's increment (2^64 / φ, odd).
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (Stafford's "Mix13"): a bijection of `u64` with full avalanche.
#[must_use]
pub fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for item `k` of a stream seeded by `seed`: decorrelates `(seed, k)` pairs.
#[must_use]
pub fn mix(seed: u64, k: u64) -> u64 {
    finalize(seed ^ k.wrapping_mul(GOLDEN_GAMMA))
}

/// FNV-1a 64 offset basis: the start value of [`fnv1a`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`, continuing from `h` (start from [`FNV_OFFSET`]).
#[must_use]
pub fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// SplitMix64 (Steele, Lea, Flood 2014; Vigna's reference constants), the stable
/// generator behind every seeded choice in the workspace (rotation signs and fallback matrices,
/// lab sample streams, per-matrix seeds). Never change it: stored seeds must reproduce the same
/// rotations.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is SplitMix64 of `seed + γ`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        finalize(self.state)
    }

    /// Uniform in the open interval `(0, 1)` (53 random bits, centred in their cell).
    pub fn next_f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// `+1.0` or `-1.0` from the top bit.
    pub fn next_sign(&mut self) -> f64 {
        if self.next_u64() >> 63 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// Integer in `0..bound` by Lemire's multiply-shift (`bound > 0`).
    pub fn next_below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// Two independent standard normals (Marsaglia's polar method), bit-reproducible.
    pub fn next_gaussian_pair(&mut self) -> (f64, f64) {
        loop {
            let u = 2.0 * self.next_f64() - 1.0;
            let v = 2.0 * self.next_f64() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * ln_portable(s) / s).sqrt();
                return (u * f, v * f);
            }
        }
    }
}

/// Natural logarithm of a positive finite `x` from basic IEEE operations only, so its
/// result does not depend on the platform's libm (accurate to a few ulps).
fn ln_portable(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_finite());
    let (mut x, mut e) = (x, 0i64);
    if x < f64::MIN_POSITIVE {
        x *= 18_014_398_509_481_984.0; // 2^54: make subnormals normal
        e = -54;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln m = 2 atanh(t), t = (m-1)/(m+1), |t| <= 0.172: the odd series converges fast.
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut series = 0.0;
    for k in (0..14).rev() {
        series = series * t2 + 1.0 / f64::from(2 * k + 1);
    }
    e as f64 * std::f64::consts::LN_2 + 2.0 * t * series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_published_vectors() {
        // Test vectors of the FNV reference (Fowler/Noll/Vo): "", "a", "foobar".
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        // Continuing a hash equals hashing the concatenation.
        assert_eq!(fnv1a(fnv1a(FNV_OFFSET, b"foo"), b"bar"), fnv1a(FNV_OFFSET, b"foobar"));
    }

    #[test]
    fn mix_is_the_generator_output() {
        // mix(s, 1) is the first output of a generator seeded with s (k·γ added by XOR vs +: equal
        // here because s = 0).
        assert_eq!(mix(0, 1), SplitMix64::new(0).next_u64());
    }

    #[test]
    fn splitmix64_reference_vector() {
        // Published outputs of SplitMix64 for seed 1234567.
        let mut g = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| g.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821
            ]
        );
    }

    #[test]
    fn portable_ln_and_gaussians() {
        let mut x = 1e-300;
        while x < 1e300 {
            let (a, b) = (ln_portable(x), x.ln());
            assert!(
                (a - b).abs() <= 4.0 * f64::EPSILON * b.abs().max(1.0),
                "ln({x}): {a} vs {b}"
            );
            x *= 1.7;
        }
        assert_eq!(ln_portable(1.0), 0.0);
        assert!((ln_portable(5e-324) - 5e-324f64.ln()).abs() < 1e-12);
        // Moments of the polar-method normals.
        let mut g = SplitMix64::new(9);
        let (mut s1, mut s2, mut s4) = (0.0, 0.0, 0.0);
        let count = 200_000;
        for _ in 0..count / 2 {
            let (a, b) = g.next_gaussian_pair();
            for v in [a, b] {
                s1 += v;
                s2 += v * v;
                s4 += v * v * v * v;
            }
        }
        let c = count as f64;
        assert!((s1 / c).abs() < 0.01 && (s2 / c - 1.0).abs() < 0.02 && (s4 / c - 3.0).abs() < 0.1);
    }
}
