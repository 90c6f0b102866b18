//! What the two E8 codebooks ([`crate::e8p12`], [`crate::e8ball`]) share: 16-bit codes of 8
//! weights searched at one fitted scale, decoded to 4-bit identity grid levels. Each code says
//! how it searches and decodes in codebook units; the one [`Quantizer`] impl here adds the
//! scale and the argument checks, so the two cannot drift apart.

use crate::error::CodeError;
use crate::quantizer::{check_code, check_grid_len, check_len_eq, scaled_block, LevelGrid, Quantizer};
use crate::spec::CodeId;

pub const DIM: usize = 8;
pub const BITS: u32 = 16;

/// An E8 codebook in codebook units (inputs are multiplied by `scale()` before the search).
/// Public only to be nameable in the blanket impl; the module is private.
pub trait E8Code: Send + Sync {
    /// The registry entry; its name is what `spec()` and errors spell.
    const ID: CodeId;
    fn scale(&self) -> f32;
    /// The code of the nearest codeword to `y`.
    fn nearest(&self, y: &[f32; DIM]) -> u64;
    /// Codeword `code` (in range) into `out`.
    fn codeword(&self, code: u64, out: &mut [f32]);
    /// Codeword `code`'s levels and its offset (the codeword is `level + offset`).
    fn levels(&self, code: u64, levels: &mut [u8]) -> f32;
}

impl<T: E8Code> Quantizer for T {
    fn method(&self) -> CodeId {
        T::ID
    }
    fn spec(&self) -> String {
        format!("{}:scale={:?}", T::ID.name(), self.scale())
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn bits(&self) -> u32 {
        BITS
    }
    fn encode_block(&self, x: &[f32]) -> Result<u64, CodeError> {
        Ok(self.nearest(&scaled_block::<DIM>(x, self.scale())?))
    }
    fn decode_block(&self, code: u64, out: &mut [f32]) -> Result<(), CodeError> {
        check_code(code, BITS, T::ID.name())?;
        check_len_eq(out.len(), DIM)?;
        self.codeword(code, out);
        out.iter_mut().for_each(|v| *v /= self.scale());
        Ok(())
    }
    /// Every codeword is `level + offset` with 4-bit levels (see each code's `levels`).
    fn grid(&self) -> Option<LevelGrid> {
        Some(LevelGrid::identity(4))
    }
    fn decode_block_grid(&self, code: u64, levels: &mut [u8]) -> Result<(f32, f32), CodeError> {
        check_code(code, BITS, T::ID.name())?;
        check_grid_len(T::ID.name(), levels.len(), DIM)?;
        let offset = self.levels(code, levels);
        Ok((1.0 / self.scale(), offset / self.scale()))
    }
}
