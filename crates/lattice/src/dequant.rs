//! The parallel dequantizer (§3.3): index → integer vector → f32 with a scale.
//!
//! Only small static tables (class offsets, leaders, binomials, the Golay words) and integer
//! div/mod are used; blocks are independent, so batches split across threads with rayon. The
//! scalar reference is [`Ball::decode`]; [`decode_batch`] must agree with it exactly (tested).

use rayon::prelude::*;

use crate::error::LatticeError;
use crate::index::{decode_local, Ball};
use crate::leech::DIM;

/// Blocks per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 4096;

/// Decodes `indices` into `out` (24 values per index), each coordinate of the L_int point
/// multiplied by `scale` (use `scale = s/√8` for Λ24 scaled by s). An out-of-range index is an
/// error naming it; `out` is then partly written.
pub fn decode_batch(ball: &Ball, indices: &[u64], scale: f32, out: &mut [f32]) -> Result<(), LatticeError> {
    if out.len() != indices.len() * DIM {
        return Err(LatticeError::BadLength {
            got: out.len(),
            expected: indices.len() * DIM,
        });
    }
    out.par_chunks_mut(CHUNK * DIM)
        .zip(indices.par_chunks(CHUNK))
        .try_for_each(|(o, idx)| decode_serial(ball, idx, scale, o))
}

/// Single-threaded batch decode (the per-core kernel of [`decode_batch`]).
pub fn decode_serial(ball: &Ball, indices: &[u64], scale: f32, out: &mut [f32]) -> Result<(), LatticeError> {
    let mut x = [0i32; DIM];
    for (&i, o) in indices.iter().zip(out.chunks_exact_mut(DIM)) {
        let (k, local) = ball.locate(i)?;
        decode_local(&ball.classes()[k], local, &mut x);
        for (d, &v) in o.iter_mut().zip(&x) {
            *d = v as f32 * scale;
        }
    }
    Ok(())
}
