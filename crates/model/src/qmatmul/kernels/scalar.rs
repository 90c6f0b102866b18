//! Portable kernels: the same chunked sums as the SIMD paths, in plain Rust.

use half::f16;

use super::{Dot, Layout, PackedRow};
use crate::qmatmul::packed::get;

#[inline]
fn bits(layout: Layout) -> u32 {
    match layout {
        Layout::Nib4 | Layout::Nib4Lut => 4,
        Layout::Byte8 | Layout::Byte8Lut => 8,
    }
}

pub(crate) fn rows_dot(a: &Dot, ys: &mut [f32]) {
    let (layout, lut, chunk, x, sums) = (a.layout, a.lut, a.chunk, a.x, a.sums);
    let (levels, rb, mult, offset) = (a.run.levels, a.run.rb, a.run.mult, a.run.offset);
    let (b, nch) = (bits(layout), sums.len());
    for (i, y) in ys.iter_mut().enumerate() {
        let row = &levels[i * rb..(i + 1) * rb];
        let mut acc = 0f32;
        for c in 0..nch {
            let mut t = 0f32;
            for j in c * chunk..(c + 1) * chunk {
                t += lut[get(row, b, j) as usize] * x[j];
            }
            acc += mult[i * nch + c] * t + offset[i * nch + c] * sums[c];
        }
        *y = acc;
    }
}

/// One row expanded to f32 (`out.len()` = the row length).
pub(crate) fn expand_row(r: &PackedRow, out: &mut [f32]) {
    let b = bits(r.layout);
    for (c, o) in out.chunks_exact_mut(r.chunk).enumerate() {
        let (m, f) = (r.mult[c], r.offset[c]);
        for (i, v) in o.iter_mut().enumerate() {
            *v = m * r.lut[get(r.row, b, c * r.chunk + i) as usize] + f;
        }
    }
}

pub(crate) fn f16_rows_dot(w: &[f16], cols: usize, x: &[f32], ys: &mut [f32]) {
    for (y, row) in ys.iter_mut().zip(w.chunks_exact(cols)) {
        *y = row.iter().zip(x).map(|(a, &b)| a.to_f32() * b).sum();
    }
}
