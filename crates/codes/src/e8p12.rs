//! E8P12, QuIP#'s 2-bit 8-dimensional code (Tseng et al. 2024), generated from its construction.
//!
//! D̂8 = D8 + ½ (half-integer vectors with even coordinate sum) is a coset of D8 inside E8. The
//! code is built from 256 "absolute" source points a (all entries positive half-integers):
//! - the 227 distinct |x| for x ∈ D̂8 with |x|² ≤ 10, and
//! - 29 patterns of norm² 12 with five entries 3/2 and three entries 1/2: the 28 whose three ½s
//!   fall one in coordinates 0-3 and two in 4-7, or all three in 0-3, plus {2, 3, 7}. (QuIP#'s
//!   table has the same 29 except that it lists {0, 4, 5} twice and omits {1, 4, 5}; we keep
//!   all 256 points distinct.)
//!
//! A codeword is s ⊙ a ± ¼·1 where the sign vector s has the number of negatives that puts s ⊙ a
//! in D̂8 (negatives ≡ Σa (mod 2)), so 7 free sign bits: 8 + 7 + 1 = 16 bits per 8 weights, a
//! subset of E8 + ¼. Code layout: bits 0-7 source point, bits 8-14 negative signs of coordinates
//! 1-7 (coordinate 0 takes the parity), bit 15 the shift (1: +¼, 0: −¼).
//!
//! Encoding is exact nearest-codeword search: for each shift and source point the best signs are
//! those of the input, and a wrong sign parity costs flipping the cheapest coordinate; that is
//! 2 × 256 short scores instead of 65,536 distances ([`E8p12::encode_reference`] is the twin
//! that scans all codewords). The scale (codebook ÷ s) is fitted on a design sample.

use std::sync::OnceLock;

use crate::e8::E8Code;
use crate::error::CodeError;
use crate::source::{design, fit_scale};
use crate::spec::{CodeId, Spec};

/// Weights per block.
pub use crate::e8::{BITS, DIM};
/// Bits per block.
const _: () = assert!(BITS as usize == 2 * DIM);

/// The 256 source points, entries in units of ½ (odd integers), in generation order.
pub fn source_points() -> &'static [[u8; DIM]; 256] {
    static P: OnceLock<[[u8; DIM]; 256]> = OnceLock::new();
    P.get_or_init(|| {
        let mut pts: Vec<[u8; DIM]> = Vec::with_capacity(256);
        // |x| for x ∈ D̂8, |x|² ≤ 10, i.e. odd entries with Σ(2|x_i|)² ≤ 40. Every such
        // pattern is the |x| of some D̂8 point: one sign flip fixes the sum's parity.
        let mut a = [1u8; DIM];
        loop {
            if a.iter().map(|&v| (v as u32).pow(2)).sum::<u32>() <= 40 {
                pts.push(a);
            }
            // Odometer over {1, 3, 5}^8, last coordinate fastest.
            let mut k = DIM;
            loop {
                if k == 0 {
                    break;
                }
                k -= 1;
                if a[k] < 5 {
                    a[k] += 2;
                    break;
                }
                a[k] = 1;
            }
            if a == [1u8; DIM] {
                break;
            }
        }
        assert_eq!(pts.len(), 227);
        // Norm² 12: five 3/2 and three 1/2, by the position set S of the ½s.
        let mut extra: Vec<[u8; DIM]> = Vec::new();
        for mask in 0u32..256 {
            if mask.count_ones() != 3 {
                continue;
            }
            let low = (mask & 0x0F).count_ones();
            if low == 1 || low == 3 || mask == (1 << 2) | (1 << 3) | (1 << 7) {
                extra.push(std::array::from_fn(|i| if mask >> i & 1 == 1 { 1 } else { 3 }));
            }
        }
        assert_eq!(extra.len(), 29);
        pts.extend(extra);
        pts.try_into().unwrap()
    })
}

/// Required parity of the number of negative signs for source point `a`.
#[inline]
fn need_parity(a: &[u8; DIM]) -> u32 {
    (a.iter().map(|&v| v as u32).sum::<u32>() / 2) & 1
}

/// E8P12 with a fitted input scale: x̂ = c(s·w)/s.
#[derive(Clone, Debug)]
pub struct E8p12 {
    scale: f32,
    half: [[f32; DIM]; 256],
    norm2: [f32; 256],
    parity: [u32; 256],
}

impl E8p12 {
    /// Builds from `e8p12[:scale=s]`; without `scale` it is fitted on a design sample.
    pub fn from_spec(spec: &Spec) -> Result<E8p12, CodeError> {
        spec.only("scale")?;
        let mut q = E8p12::with_scale(1.0);
        match spec.scale("scale")? {
            Some(s) => q.scale = s,
            None => {
                let sample = design(DIM * 50_000, 0xE8);
                q.scale = fit_scale(&sample, DIM, 1.0, 30, |y, c| {
                    let code = q.encode_unscaled(y);
                    q.decode_unscaled(code, c);
                }) as f32;
            }
        }
        Ok(q)
    }

    /// The code at a given input scale.
    pub fn with_scale(scale: f32) -> E8p12 {
        let src = source_points();
        let mut half = [[0f32; DIM]; 256];
        let mut norm2 = [0f32; 256];
        let mut parity = [0u32; 256];
        for (k, a) in src.iter().enumerate() {
            half[k] = a.map(|v| v as f32 * 0.5);
            norm2[k] = half[k].iter().map(|v| v * v).sum();
            parity[k] = need_parity(a);
        }
        E8p12 {
            scale,
            half,
            norm2,
            parity,
        }
    }

    /// The fitted input scale s.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Nearest codeword of `y` (codebook units): exact, by source point and shift.
    pub fn encode_unscaled(&self, y: &[f32]) -> u64 {
        let mut best = (f32::INFINITY, 0u64);
        for (shift_bit, shift) in [(0u64, -0.25f32), (1, 0.25)] {
            let mut z = [0f32; DIM];
            let mut negs = 0u32;
            let mut sign_bits = 0u64;
            for i in 0..DIM {
                let v = y[i] - shift;
                z[i] = v.abs();
                if v < 0.0 {
                    negs += 1;
                    if i > 0 {
                        sign_bits |= 1 << (i - 1);
                    }
                }
            }
            let zz: f32 = z.iter().map(|v| v * v).sum();
            for k in 0..256 {
                let h = &self.half[k];
                let mut dot = 0f32;
                let mut cheapest = f32::INFINITY;
                for i in 0..DIM {
                    let p = z[i] * h[i];
                    dot += p;
                    cheapest = cheapest.min(p);
                }
                let mut d = zz - 2.0 * dot + self.norm2[k];
                let wrong = (negs & 1) != self.parity[k];
                if wrong {
                    d += 4.0 * cheapest;
                }
                if d < best.0 {
                    let mut bits = sign_bits;
                    if wrong {
                        // Flip the cheapest coordinate; coordinate 0's sign is implied anyway.
                        let i = (0..DIM)
                            .min_by(|&a, &b| (z[a] * h[a]).total_cmp(&(z[b] * h[b])))
                            .unwrap();
                        if i > 0 {
                            bits ^= 1 << (i - 1);
                        }
                    }
                    best = (d, k as u64 | bits << 8 | shift_bit << 15);
                }
            }
        }
        best.1
    }

    /// Codeword of `code` in codebook units.
    pub fn decode_unscaled(&self, code: u64, out: &mut [f32]) {
        let k = (code & 0xFF) as usize;
        let signs = (code >> 8) & 0x7F;
        let shift = if code >> 15 & 1 == 1 { 0.25 } else { -0.25 };
        let neg0 = (signs.count_ones() & 1) != self.parity[k];
        for (i, (o, &v)) in out.iter_mut().zip(&self.half[k]).enumerate() {
            let neg = if i == 0 { neg0 } else { signs >> (i - 1) & 1 == 1 };
            *o = if neg { -v } else { v } + shift;
        }
    }

    /// Reference twin of [`E8p12::encode_unscaled`]: scans all 65,536 codewords.
    pub fn encode_reference(&self, y: &[f32]) -> u64 {
        let mut c = [0f32; DIM];
        let mut best = (f32::INFINITY, 0u64);
        for code in 0..1u64 << BITS {
            self.decode_unscaled(code, &mut c);
            let d: f32 = c.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum();
            if d < best.0 {
                best = (d, code);
            }
        }
        best.1
    }
}

impl E8Code for E8p12 {
    const ID: CodeId = CodeId::E8p12;
    fn codeword(&self, code: u64, out: &mut [f32]) {
        self.decode_unscaled(code, out);
    }
    fn nearest(&self, y: &[f32; DIM]) -> u64 {
        self.encode_unscaled(y)
    }
    fn scale(&self) -> f32 {
        self.scale
    }
    /// s ⊙ a has entries in {±½, ±3/2, ±5/2} (source entries are 1, 3 or 5 halves), so
    /// s ⊙ a = n − 5/2 with n ∈ 0..=5 and a codeword is (n − 5/2 ± ¼)/scale: 4-bit identity
    /// levels, the shift in the offset.
    fn levels(&self, code: u64, levels: &mut [u8]) -> f32 {
        let k = (code & 0xFF) as usize;
        let signs = (code >> 8) & 0x7F;
        let shift = if code >> 15 & 1 == 1 { 0.25 } else { -0.25 };
        let neg0 = (signs.count_ones() & 1) != self.parity[k];
        for (i, (l, &a)) in levels.iter_mut().zip(&source_points()[k]).enumerate() {
            let neg = if i == 0 { neg0 } else { signs >> (i - 1) & 1 == 1 };
            // Doubled coordinate ±a is odd in −5..=5; n = (±a + 5)/2.
            let v = if neg { -(a as i32) } else { a as i32 };
            *l = ((v + 5) / 2) as u8;
        }
        shift - 2.5
    }
}
