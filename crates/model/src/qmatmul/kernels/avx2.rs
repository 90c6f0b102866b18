//! AVX2/FMA/F16C kernels. Eight weights per step: a 4-bit unit (4 bytes, byte i = weights i and
//! i + 4) is broadcast to 8 lanes, shifted per lane and masked; an 8-bit unit is zero-extended.
//! Levels go through the LUT (two 8-entry permutes and a blend for 16 entries, a gather for 256)
//! unless it is the identity, are converted to f32 and multiply-added with x; each chunk's
//! partial vector is scaled by its mult with one more FMA, so the only horizontal sum is per row.

use std::arch::x86_64::*;

use half::f16;

use super::{Dot, Layout};

const NIB4: u8 = 0;
const NIB4_LUT: u8 = 1;
const BYTE8: u8 = 2;
const BYTE8_LUT: u8 = 3;

/// The sum of the eight lanes (shared with the int8 kernels).
#[inline(always)]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Eight weights' LUT values from unit `u` of a row.
#[inline(always)]
unsafe fn unit<const L: u8>(row: *const u8, u: usize, lut: *const f32, lo: __m256, hi: __m256) -> __m256 {
    match L {
        NIB4 | NIB4_LUT => {
            let b = _mm256_set1_epi32((row.add(u * 4) as *const i32).read_unaligned());
            let shifts = _mm256_setr_epi32(0, 8, 16, 24, 4, 12, 20, 28);
            let v = _mm256_and_si256(_mm256_srlv_epi32(b, shifts), _mm256_set1_epi32(0xF));
            if L == NIB4 {
                _mm256_cvtepi32_ps(v)
            } else {
                let a = _mm256_permutevar8x32_ps(lo, v);
                let c = _mm256_permutevar8x32_ps(hi, v);
                _mm256_blendv_ps(a, c, _mm256_castsi256_ps(_mm256_slli_epi32(v, 28)))
            }
        }
        _ => {
            let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(row.add(u * 8) as *const __m128i));
            if L == BYTE8 {
                _mm256_cvtepi32_ps(v)
            } else {
                _mm256_i32gather_ps::<4>(lut, v)
            }
        }
    }
}

/// Rows of chunks of `U` units (`U = 0`: `units` at run time).
#[target_feature(enable = "avx2,fma")]
unsafe fn rows<const L: u8, const U: usize>(a: &Dot, units: usize, ys: &mut [f32]) {
    let (lut, x, sums) = (a.lut, a.x, a.sums);
    let (levels, rb, mult, offset) = (a.run.levels, a.run.rb, a.run.mult, a.run.offset);
    let units = if U == 0 { units } else { U };
    let nch = sums.len();
    let (lo, hi) = if L == NIB4_LUT {
        (_mm256_loadu_ps(lut.as_ptr()), _mm256_loadu_ps(lut.as_ptr().add(8)))
    } else {
        (_mm256_setzero_ps(), _mm256_setzero_ps())
    };
    let xp = x.as_ptr();
    for (i, y) in ys.iter_mut().enumerate() {
        let row = levels.as_ptr().add(i * rb);
        let m = mult.as_ptr().add(i * nch);
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut u = 0;
        let mut c = 0;
        // Two chunks per step: independent accumulators hide the FMA latency.
        while c + 1 < nch {
            let mut t0 = _mm256_mul_ps(unit::<L>(row, u, lut.as_ptr(), lo, hi), _mm256_loadu_ps(xp.add(u * 8)));
            let mut t1 = _mm256_mul_ps(
                unit::<L>(row, u + units, lut.as_ptr(), lo, hi),
                _mm256_loadu_ps(xp.add((u + units) * 8)),
            );
            for k in 1..units {
                t0 = _mm256_fmadd_ps(
                    unit::<L>(row, u + k, lut.as_ptr(), lo, hi),
                    _mm256_loadu_ps(xp.add((u + k) * 8)),
                    t0,
                );
                let k1 = u + units + k;
                t1 = _mm256_fmadd_ps(
                    unit::<L>(row, k1, lut.as_ptr(), lo, hi),
                    _mm256_loadu_ps(xp.add(k1 * 8)),
                    t1,
                );
            }
            acc0 = _mm256_fmadd_ps(t0, _mm256_set1_ps(*m.add(c)), acc0);
            acc1 = _mm256_fmadd_ps(t1, _mm256_set1_ps(*m.add(c + 1)), acc1);
            u += 2 * units;
            c += 2;
        }
        if c < nch {
            let mut t0 = _mm256_setzero_ps();
            for k in 0..units {
                t0 = _mm256_fmadd_ps(
                    unit::<L>(row, u + k, lut.as_ptr(), lo, hi),
                    _mm256_loadu_ps(xp.add((u + k) * 8)),
                    t0,
                );
            }
            acc0 = _mm256_fmadd_ps(t0, _mm256_set1_ps(*m.add(c)), acc0);
        }
        // Σ_c offset_rc·S_c, eight chunks per FMA (a scalar f32 sum here is a serial chain
        // of nch dependent adds, as long as the rest of the row).
        let op = offset.as_ptr().add(i * nch);
        let mut k = 0;
        while k + 8 <= nch {
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(op.add(k)), _mm256_loadu_ps(sums.as_ptr().add(k)), acc1);
            k += 8;
        }
        let mut s = 0f32;
        while k < nch {
            s += *op.add(k) * sums[k];
            k += 1;
        }
        *y = hsum(_mm256_add_ps(acc0, acc1)) + s;
    }
}

/// Dispatch on layout and chunk length.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a.run` holds `ys.len()` rows of `rb` bytes covering
/// `x.len()` weights and `ys.len() × sums.len()` mults and offsets, `x.len() = sums.len() · chunk`,
/// `chunk` a multiple of 8, and `lut` 16 (4-bit) or 256 (8-bit) entries.
pub(crate) unsafe fn rows_dot(a: &Dot, ys: &mut [f32]) {
    let units = a.chunk / 8;
    macro_rules! go {
        ($l:expr) => {
            match units {
                1 => rows::<{ $l }, 1>(a, units, ys),
                3 => rows::<{ $l }, 3>(a, units, ys),
                4 => rows::<{ $l }, 4>(a, units, ys),
                _ => rows::<{ $l }, 0>(a, units, ys),
            }
        };
    }
    match a.layout {
        Layout::Nib4 => go!(NIB4),
        Layout::Nib4Lut => go!(NIB4_LUT),
        Layout::Byte8 => go!(BYTE8),
        Layout::Byte8Lut => go!(BYTE8_LUT),
    }
}

/// Expands 4-bit identity-LUT chunks to f32 (`out` = chunks of `8·units` weights): unit `k` of
/// chunk `c` (8 weights, the layout of [`unit`]) sits at byte `at(c, k)` of `row`, and weight
/// i of the chunk becomes `mult[c]·n_i + offset[c]`. The tile expansion of prefill: the scalar
/// loop spent a division and a conversion per weight.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `at(c, k) + 4 ≤ row.len()` for every chunk and unit, and
/// `mult`/`offset` hold `out.len() / (8·units)` values.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn expand_nib4(
    row: &[u8],
    at: impl Fn(usize, usize) -> usize,
    units: usize,
    mult: &[f32],
    offset: &[f32],
    out: &mut [f32],
) {
    let (lo, hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (c, o) in out.chunks_exact_mut(8 * units).enumerate() {
        let (m, f) = (_mm256_set1_ps(mult[c]), _mm256_set1_ps(offset[c]));
        for k in 0..units {
            // `unit` reads 4 bytes at 4·u: address the unit's bytes directly.
            let v = unit::<NIB4>(row.as_ptr().add(at(c, k)), 0, std::ptr::null(), lo, hi);
            _mm256_storeu_ps(o.as_mut_ptr().add(8 * k), _mm256_fmadd_ps(v, m, f));
        }
    }
}

/// f16 rows: 16 weights per step (two F16C conversions, two accumulators).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` holds `ys.len()` rows of `cols` values, `x` `cols`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_rows_dot(w: &[f16], cols: usize, x: &[f32], ys: &mut [f32]) {
    let xp = x.as_ptr();
    for (i, y) in ys.iter_mut().enumerate() {
        let row = w.as_ptr().add(i * cols) as *const u16;
        let mut a0 = _mm256_setzero_ps();
        let mut a1 = _mm256_setzero_ps();
        let mut j = 0;
        while j + 16 <= cols {
            let w0 = _mm256_cvtph_ps(_mm_loadu_si128(row.add(j) as *const __m128i));
            let w1 = _mm256_cvtph_ps(_mm_loadu_si128(row.add(j + 8) as *const __m128i));
            a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp.add(j)), a0);
            a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp.add(j + 8)), a1);
            j += 16;
        }
        let mut s = hsum(_mm256_add_ps(a0, a1));
        while j < cols {
            s += f16::from_bits(*row.add(j)).to_f32() * x[j];
            j += 1;
        }
        *y = s;
    }
}
