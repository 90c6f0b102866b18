//! Kernel families and their dispatch. Each family computes, for a run of rows,
//! `y_r = Σ_c mult_rc · Σ_{j∈c} lut[n_j]·x_j + offset_rc · S_c` (see the module above);
//! [`scalar`] is the portable fallback, [`avx2`] the AVX2/FMA/F16C one (always present on the
//! workspace's x86-64-v3 target; checked at run time anyway). The f64 `*_ref` methods of the
//! matrix types are the oracles both are tested against.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
pub mod int8;
pub mod scalar;

use half::f16;

/// How a row's levels are stored and looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// 4-bit levels, identity LUT.
    Nib4,
    /// 4-bit levels, 16-entry LUT.
    Nib4Lut,
    /// 8-bit levels, identity LUT.
    Byte8,
    /// 8-bit levels, 256-entry LUT.
    Byte8Lut,
}

/// A kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    /// AVX2 plus AVX-512 VNNI (with AVX512VL): `vpdpbusd` for the int8-activation kernel; the
    /// f32 kernels run their AVX2 code.
    Avx512Vnni,
}

/// Whether the CPU runs the AVX2/FMA/F16C kernels.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX-512 VNNI on 256-bit registers.
fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2() && is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The fastest family this CPU runs.
pub fn best() -> Isa {
    if has_vnni() {
        Isa::Avx512Vnni
    } else if has_avx2() {
        Isa::Avx2
    } else {
        Isa::Scalar
    }
}

/// Every family this CPU runs (the tests compare each with the reference).
pub fn available() -> Vec<Isa> {
    let mut v = vec![Isa::Scalar];
    if has_avx2() {
        v.push(Isa::Avx2);
    }
    if has_vnni() {
        v.push(Isa::Avx512Vnni);
    }
    v
}

/// Consecutive rows of a packed matrix: `rb` bytes of levels and `nch` (mult, offset) pairs per
/// row. Both products take their rows as one, so a parallel task's share is cut in one place.
#[derive(Clone, Copy)]
pub(crate) struct Run<'a> {
    pub levels: &'a [u8],
    pub rb: usize,
    pub mult: &'a [f32],
    pub offset: &'a [f32],
}

impl Run<'_> {
    /// Rows `r0..r0 + n` of the run, `nch` chunks per row.
    pub(crate) fn rows(self, r0: usize, n: usize, nch: usize) -> Self {
        Run {
            levels: &self.levels[r0 * self.rb..(r0 + n) * self.rb],
            rb: self.rb,
            mult: &self.mult[r0 * nch..(r0 + n) * nch],
            offset: &self.offset[r0 * nch..(r0 + n) * nch],
        }
    }
}

/// The inputs of the f32-activation product: `x` is zero-padded to the row length of `chunk`
/// multiples and `sums` holds its `nch` chunk sums. One struct is the one signature the
/// dispatcher and every family share.
#[derive(Clone, Copy)]
pub(crate) struct Dot<'a> {
    pub layout: Layout,
    pub run: Run<'a>,
    pub lut: &'a [f32],
    pub chunk: usize,
    pub x: &'a [f32],
    pub sums: &'a [f32],
}

/// The inputs of the integer-activation product of [`int8`] (interleaved layout): `xq` is the
/// activation in the same order (its low bytes with `xh`, the high bytes of 16-bit activations
/// q = 256·xh + xq), `d` its per-chunk scales and `sums` its per-chunk f32 sums.
#[derive(Clone, Copy)]
pub(crate) struct DotI8<'a> {
    pub run: Run<'a>,
    pub chunk: usize,
    pub xq: &'a [i8],
    pub xh: Option<&'a [i8]>,
    pub d: &'a [f32],
    pub sums: &'a [f32],
}

/// `ys[i] = row_i · x` for the rows of `a.run` (`ys.len()` of them).
pub(crate) fn rows_dot(isa: Isa, a: &Dot, ys: &mut [f32]) {
    let (nch, run) = (a.sums.len(), a.run);
    debug_assert!(
        run.levels.len() == ys.len() * run.rb && run.mult.len() == ys.len() * nch && a.x.len() == nch * a.chunk
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only produced by `best()` after detecting AVX2, FMA and F16C;
        // the slice lengths are those the kernel indexes (checked above in debug builds, and by
        // construction in `PackedWeight`).
        Isa::Avx2 | Isa::Avx512Vnni => unsafe { avx2::rows_dot(a, ys) },
        Isa::Scalar => scalar::rows_dot(a, ys),
    }
}

/// One row of a [`PackedWeight`](crate::qmatmul::PackedWeight): its levels and the tensor's
/// LUT, the row's chunk mults and offsets.
#[derive(Clone, Copy)]
pub(crate) struct PackedRow<'a> {
    pub layout: Layout,
    pub row: &'a [u8],
    pub lut: &'a [f32],
    pub mult: &'a [f32],
    pub offset: &'a [f32],
    pub chunk: usize,
}

/// `r` expanded to f32 (`out.len()` = the row length): AVX2 for 4-bit identity levels, the
/// portable loop otherwise.
pub(crate) fn expand_row(isa: Isa, r: &PackedRow, out: &mut [f32]) {
    match (isa, r.layout) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2`/`Isa::Avx512Vnni` only come from `best()` after detecting the
        // features; a row of `out.len()` 4-bit levels is `out.len() / 2` bytes, unit u at 4u.
        (Isa::Avx2 | Isa::Avx512Vnni, Layout::Nib4) if r.chunk % 8 == 0 && r.row.len() * 2 >= out.len() => unsafe {
            let units = r.chunk / 8;
            avx2::expand_nib4(r.row, |c, k| 4 * (c * units + k), units, r.mult, r.offset, out)
        },
        _ => scalar::expand_row(r, out),
    }
}

/// Byte offset in a row of the interleaved layout of unit `k` (weights 8k..8k + 8) of chunk
/// `c`: group c/8, 32-byte block k, lane c % 8.
#[inline]
pub(crate) fn interleaved_unit(chunk: usize, c: usize, k: usize) -> usize {
    (c / 8) * 4 * chunk + 32 * k + 4 * (c % 8)
}

/// One row of an [`I8Weight`](crate::qmatmul::I8Weight) (chunk-interleaved 4-bit levels, see
/// [`int8`]) expanded to f32: `out` holds the row's `nch·chunk` weights in natural order.
pub(crate) fn expand_row_interleaved(
    isa: Isa,
    row: &[u8],
    mult: &[f32],
    offset: &[f32],
    chunk: usize,
    out: &mut [f32],
) {
    let at = |c: usize, k: usize| interleaved_unit(chunk, c, k);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the features come from `best()`; a row of `nch·chunk` weights is
        // `nch·chunk/2` bytes and `at` stays inside it for c < nch, k < chunk/8.
        Isa::Avx2 | Isa::Avx512Vnni if chunk % 8 == 0 && row.len() * 2 >= out.len() => unsafe {
            avx2::expand_nib4(row, at, chunk / 8, mult, offset, out)
        },
        _ => {
            for (c, o) in out.chunks_exact_mut(chunk).enumerate() {
                for (j, v) in o.iter_mut().enumerate() {
                    let b = row[at(c, j / 8) + j % 4];
                    let n = if j % 8 < 4 { b & 0xF } else { b >> 4 };
                    *v = mult[c] * n as f32 + offset[c];
                }
            }
        }
    }
}

/// `ys[i] = w_i · x` for consecutive f16 rows of `cols` values.
pub(crate) fn f16_rows_dot(isa: Isa, w: &[f16], cols: usize, x: &[f32], ys: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `rows_dot`; `w` holds `ys.len()` rows of `cols` values, `x` `cols`.
        Isa::Avx2 | Isa::Avx512Vnni => unsafe { avx2::f16_rows_dot(w, cols, x, ys) },
        _ => scalar::f16_rows_dot(w, cols, x, ys),
    }
}

/// The int8-activation product of [`int8`] over the rows of `a.run`.
pub(crate) fn rows_dot_i8(isa: Isa, a: &DotI8, ys: &mut [f32]) {
    let (run, chunk, xq, d, sums) = (a.run, a.chunk, a.xq, a.d, a.sums);
    let nch = d.len();
    assert!(
        nch % 8 == 0
            && run.rb == nch / 8 * 4 * chunk
            && run.levels.len() == ys.len() * run.rb
            && run.mult.len() == ys.len() * nch
            && run.offset.len() == run.mult.len()
            && xq.len() == nch * chunk
            && a.xh.is_none_or(|h| h.len() == xq.len())
            && sums.len() == nch
            && matches!(chunk, 8 | 16 | 24 | 32),
        "rows_dot_i8: inconsistent slices"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2`/`Isa::Avx512Vnni` only come from `best()`/`available()` after
        // detecting the features; the slice lengths are checked above.
        Isa::Avx2 | Isa::Avx512Vnni => unsafe { int8::x86::rows_dot(isa == Isa::Avx512Vnni, a, ys) },
        _ => int8::rows_dot_scalar(a, ys),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qmatmul::packed::get;

    /// A deterministic byte stream and scales (no RNG crate needed here).
    fn stream(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761) ^ seed).rotate_left(7) as u8)
            .collect()
    }

    #[test]
    fn every_family_expands_rows_as_the_layouts_define_them() {
        for chunk in [8, 16, 24, 32] {
            let nch = 16; // two interleaved groups
            let k = nch * chunk;
            let row = stream(k / 2, chunk as u32);
            let mult: Vec<f32> = (0..nch).map(|c| 0.5 + c as f32 * 0.25).collect();
            let offset: Vec<f32> = (0..nch).map(|c| -(c as f32) * 0.125).collect();
            let lut: Vec<f32> = (0..16).map(|v| v as f32).collect();
            // Natural 4-bit layout: weight j is nibble j of the unit stream (`get`).
            let want: Vec<f32> = (0..k)
                .map(|j| mult[j / chunk] * get(&row, 4, j) as f32 + offset[j / chunk])
                .collect();
            // Interleaved layout: unit k of chunk c at (c/8)·4·chunk + 32k + 4(c % 8).
            let want_il: Vec<f32> = (0..k)
                .map(|j| {
                    let (c, jj) = (j / chunk, j % chunk);
                    let b = row[(c / 8) * 4 * chunk + 32 * (jj / 8) + 4 * (c % 8) + jj % 4];
                    let n = if jj % 8 < 4 { b & 0xF } else { b >> 4 };
                    mult[c] * n as f32 + offset[c]
                })
                .collect();
            for isa in available() {
                let mut out = vec![f32::NAN; k];
                let pr = PackedRow {
                    layout: Layout::Nib4,
                    row: &row,
                    lut: &lut,
                    mult: &mult,
                    offset: &offset,
                    chunk,
                };
                expand_row(isa, &pr, &mut out);
                assert_eq!(out, want, "{isa:?} chunk {chunk}");
                let mut out = vec![f32::NAN; k];
                expand_row_interleaved(isa, &row, &mult, &offset, chunk, &mut out);
                assert_eq!(out, want_il, "{isa:?} chunk {chunk} interleaved");
            }
        }
    }
}
