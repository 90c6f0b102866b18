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

/// The inputs of the int8-activation product of [`int8`] (interleaved layout): `xq` is the
/// activation in the same order, `d` its per-chunk scales and `sums` its per-chunk f32 sums.
#[derive(Clone, Copy)]
pub(crate) struct DotI8<'a> {
    pub run: Run<'a>,
    pub chunk: usize,
    pub xq: &'a [i8],
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

pub(crate) use scalar::expand_row;

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
