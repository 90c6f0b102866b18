//! Integer dot products of 4-bit levels with int8 activations (the layout of
//! [`crate::qmatmul::int8::I8Weight`]).
//!
//! A group is 8 chunks of one row; lane k of every 8 × i32 vector belongs to chunk k, so one
//! group's integer sums Σ_{j∈c} n_j·q_j come out as one vector without horizontal adds, next
//! to the group's 8 contiguous mult values. Per group and 32 bytes of levels (64 weights):
//! one load, a mask and a shift give the low- and high-nibble vectors, and two u8×i8 products
//! (`vpmaddubsw` on AVX2, `vpdpbusd` with AVX-512 VNNI) accumulate them. Products are at most
//! 2·15·127 per i16 lane and a chunk of ≤ 32 weights makes ≤ 8 of them, so the i16 sums of
//! the AVX2 path cannot overflow.
//!
//! 16-bit activations reuse the same products: q = 256·h + l with h, l ∈ [−128, 127] (q up to
//! ±32639), so Σ n·q = 256·Σ n·h + Σ n·l costs a second pair of u8×i8 products on the same
//! level vectors (no widening shuffles), and both sums stay exact in i16 as above.

use super::DotI8;

/// `ys[i] = Σ_c md_c·isum_ic·mult_ic + offset_ic·S_c` over the rows of `a.run` (`nch` = 8 ×
/// groups chunks per row); with `a.xh` the activation is `256·xh + xq`.
pub(crate) fn rows_dot_scalar(a: &DotI8, ys: &mut [f32]) {
    let (chunk, xq, d, sums) = (a.chunk, a.xq, a.d, a.sums);
    let xh = a.xh.unwrap_or(&[]);
    let (levels, rb, mult, offset) = (a.run.levels, a.run.rb, a.run.mult, a.run.offset);
    let nch = d.len();
    let gb = 4 * chunk; // bytes of levels per group
    for (i, y) in ys.iter_mut().enumerate() {
        let row = &levels[i * rb..(i + 1) * rb];
        let mut acc = 0f32;
        for (g, lv) in row.chunks_exact(gb).enumerate() {
            let span = g * 8 * chunk..(g + 1) * 8 * chunk;
            let xg = &xq[span.clone()];
            // The activation byte at `at` of this group, as an integer (l + 256·h for 16 bits).
            let x = |at: usize| {
                xg[at] as i32
                    + if xh.is_empty() {
                        0
                    } else {
                        256 * xh[span.start + at] as i32
                    }
            };
            let mut isum = [0i32; 8];
            for (u, blk) in lv.chunks_exact(32).enumerate() {
                for (b, &byte) in blk.iter().enumerate() {
                    let lane = b / 4;
                    isum[lane] += (byte & 0xF) as i32 * x(64 * u + b);
                    isum[lane] += (byte >> 4) as i32 * x(64 * u + 32 + b);
                }
            }
            for (k, &s) in isum.iter().enumerate() {
                let c = g * 8 + k;
                acc += s as f32 * (mult[i * nch + c] * d[c]) + offset[i * nch + c] * sums[c];
            }
        }
        *y = acc;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::super::avx2::hsum;
    use super::super::DotI8;

    /// `acc += Σ_{4 bytes} a·b` per i32 lane (u8 × i8): the EVEX `vpdpbusd` of AVX-512 VNNI
    /// on ymm registers (needs AVX512VNNI + AVX512VL). Written as inline assembly so the crate
    /// keeps building on toolchains older than the stabilised AVX-512 intrinsics (Rust 1.89).
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        let mut acc = acc;
        std::arch::asm!(
            "vpdpbusd {acc}, {a}, {b}",
            acc = inout(ymm_reg) acc,
            a = in(ymm_reg) a,
            b = in(ymm_reg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
        acc
    }

    /// Block `k` of a row's levels (32 bytes, 64 weights) as its low and high nibbles.
    #[inline(always)]
    unsafe fn block(row: *const __m256i, k: usize, mask: __m256i) -> [__m256i; 2] {
        let l = _mm256_loadu_si256(row.add(k));
        [
            _mm256_and_si256(l, mask),
            _mm256_and_si256(_mm256_srli_epi16(l, 4), mask),
        ]
    }

    /// `Σ n·x` per chunk lane over the `U` blocks of group `g`: `x` the activation bytes of
    /// the whole vector (`lo` of block k multiplies bytes 64k.., `hi` bytes 64k + 32..).
    #[inline(always)]
    unsafe fn group<const U: usize, const VNNI: bool>(
        nib: &[[__m256i; 2]; 4],
        xp: *const __m256i,
        g: usize,
        ones: __m256i,
    ) -> __m256i {
        let mut s = _mm256_setzero_si256();
        for (u, [lo, hi]) in nib.iter().enumerate().take(U) {
            let xb = xp.add(2 * (g * U + u));
            let (xlo, xhi) = (_mm256_loadu_si256(xb), _mm256_loadu_si256(xb.add(1)));
            if VNNI {
                s = dpbusd(s, *lo, xlo);
                s = dpbusd(s, *hi, xhi);
            } else {
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(*lo, xlo));
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(*hi, xhi));
            }
        }
        if VNNI {
            s
        } else {
            _mm256_madd_epi16(s, ones)
        }
    }

    /// The kernel for chunks of `U·8` weights (`U` 32-byte blocks of levels per group); `VNNI`
    /// picks `vpdpbusd` over `vpmaddubsw` + `vpmaddwd`; `WIDE` adds 256× the products with the
    /// high activation bytes `a.xh` (16-bit activations).
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const U: usize, const VNNI: bool, const WIDE: bool>(a: &DotI8, ys: &mut [f32]) {
        let (xq, d, sums) = (a.xq, a.d, a.sums);
        let (levels, rb, mult, offset) = (a.run.levels, a.run.rb, a.run.mult, a.run.offset);
        let nch = d.len();
        let ng = nch / 8;
        let mask = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let xp = xq.as_ptr() as *const __m256i;
        let xhp = a.xh.map_or(xp, |h| h.as_ptr() as *const __m256i);
        let zero = _mm256_setzero_si256();
        for (i, y) in ys.iter_mut().enumerate() {
            let row = levels.as_ptr().add(i * rb) as *const __m256i;
            let m = mult.as_ptr().add(i * nch);
            let o = offset.as_ptr().add(i * nch);
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            for g in 0..ng {
                let mut nib = [[zero; 2]; 4];
                for (u, n) in nib.iter_mut().enumerate().take(U) {
                    *n = block(row, g * U + u, mask);
                }
                let mut isum = group::<U, VNNI>(&nib, xp, g, ones);
                if WIDE {
                    let hs = group::<U, VNNI>(&nib, xhp, g, ones);
                    isum = _mm256_add_epi32(isum, _mm256_slli_epi32(hs, 8));
                }
                let md = _mm256_mul_ps(_mm256_loadu_ps(m.add(8 * g)), _mm256_loadu_ps(d.as_ptr().add(8 * g)));
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), md, acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(o.add(8 * g)),
                    _mm256_loadu_ps(sums.as_ptr().add(8 * g)),
                    acc1,
                );
            }
            *y = hsum(_mm256_add_ps(acc0, acc1));
        }
    }

    /// Dispatch on the chunk length (8, 16, 24 or 32 weights).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA (and AVX512VNNI + AVX512VL with `vnni`); `a.run` holds
    /// `ys.len()` rows of `rb = groups·4·chunk` bytes and `ys.len() × nch` mults and offsets,
    /// `xq` (and `xh`) `nch·chunk` bytes, `d`/`sums` `nch = 8·groups` values.
    pub(crate) unsafe fn rows_dot(vnni: bool, a: &DotI8, ys: &mut [f32]) {
        macro_rules! go {
            ($u:literal) => {
                match (vnni, a.xh.is_some()) {
                    (true, false) => rows::<$u, true, false>(a, ys),
                    (false, false) => rows::<$u, false, false>(a, ys),
                    (true, true) => rows::<$u, true, true>(a, ys),
                    (false, true) => rows::<$u, false, true>(a, ys),
                }
            };
        }
        match a.chunk {
            8 => go!(1),
            16 => go!(2),
            24 => go!(3),
            32 => go!(4),
            c => unreachable!("chunk {c} is not 8, 16, 24 or 32"),
        }
    }
}
