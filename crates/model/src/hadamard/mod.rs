//! Randomized Hadamard transforms for incoherence processing (QuIP#/QuaRot style).
//!
//! # The math
//!
//! A linear layer's weight `W` (`[out, in]`, row-major) is quantized as
//! `W' = R_out · W · R_inᵀ`, where each `R` is an orthogonal *randomized Hadamard
//! transform* of order `n`:
//!
//! ```text
//! R = H · D / √n,    H Hᵀ = n I,  H ∈ {±1}^{n×n},  D = diag(d),  d_i ∈ {±1}
//! ```
//!
//! Because `R` is orthogonal, `W = R_outᵀ · W' · R_in` exactly, and the calibration
//! Hessian `E[x xᵀ]` of the layer input becomes `R_in E[x xᵀ] R_inᵀ` ([`Rotation::conjugate`]).
//! Every entry of `R` has magnitude `1/√n`, so a weight row with one huge outlier is
//! spread evenly over all coordinates ("incoherence"), which is what makes the
//! rotated weights easy to quantize.
//!
//! # Which Hadamard matrices
//!
//! `H` is a Kronecker product `H = F_1 ⊗ F_2 ⊗ … ⊗ F_k` of factors taken from
//! * **Sylvester** `2^k` (`H_2^{⊗k}`), applied by the in-place fast Walsh–Hadamard
//!   butterfly, `log2(2^k)` additions per element;
//! * **Paley I**, order `q + 1` for a prime `q ≡ 3 (mod 4)`:
//!   `H = I + [[0, 1ᵀ], [−1, Q]]`, with `Q` the Jacobsthal matrix
//!   `Q_ij = χ(j − i)` (`χ` the quadratic character mod `q`);
//! * **Paley II**, order `2(q + 1)` for a prime `q ≡ 1 (mod 4)`: with the symmetric
//!   conference matrix `C = [[0, 1ᵀ], [1, Q]]`, `H = C ⊗ [[1, 1], [1, −1]] + I ⊗ [[1, −1], [−1, −1]]`.
//!
//! Paley matrices are generated from quadratic residues, never typed in, and are kept
//! as small dense factors of order at most [`MAX_PALEY_ORDER`] (a dense factor of order
//! `p` costs `p` multiply-adds per element and `p²` storage). For a given `n` the
//! decomposition `n = 2^k · ∏ p_i` with the least apply cost `k + Σ p_i` (then the fewest
//! factors) is chosen, e.g. `576 = 12·12·4`, `1536 = 12·128`, `192 = 12·16`,
//! `9728 = 76·128` (`76` is Paley II with `q = 37`).
//!
//! `H x` is computed factor by factor: viewing `x` as a tensor `[p_1, …, p_k]`, factor
//! `F_i` acts along axis `i` only. No `n × n` matrix is ever formed on the apply path.
//!
//! # Fallback
//!
//! When no such decomposition of `n` exists (odd `n`, or `n = 2^k·m` where no Paley
//! order of at most [`MAX_PALEY_ORDER`] covers `m`, e.g. `172 = 4·43`), let `h` be the
//! largest constructible Hadamard order dividing `n` and `r = n / h`. Then
//!
//! ```text
//! R = (Q_r ⊗ H_h / √h) · D
//! ```
//!
//! where `Q_r` is a seeded random orthogonal `r × r` matrix:
//! * for `r ≤` [`MAX_DENSE_FALLBACK`], a dense matrix: Gaussian entries from the seed,
//!   orthonormalized by modified Gram–Schmidt applied twice in `f64` (orthogonal to
//!   rounding);
//! * for larger `r` (where `r²` storage and `r` multiply-adds per element would hurt),
//!   a structured "mixer": [`MIXER_ROUNDS`] rounds of
//!   `signs → Hadamard on the first m coordinates → random permutation → signs →
//!   Hadamard on the last m coordinates`, with `m > r/2` the largest cheap Hadamard
//!   order below `r`; the two blocks overlap, so every coordinate is mixed. Each step is
//!   orthogonal, so `Q_r` is exactly orthogonal, but its entries are not all `±1/√r`.
//!
//! The fallback keeps `R` orthogonal and deterministic; it only weakens the
//! entry-magnitude bound from exactly `1/√n` to "random-orthogonal-like".
//!
//! # Randomness
//!
//! All randomness comes from [`SplitMix64`] seeded with the caller's `u64` seed: first
//! the `n` signs of `D` (top bit of each draw), then whatever the fallback needs.
//! Gaussians use Marsaglia's polar method with a logarithm written here in basic
//! arithmetic, and every floating-point step is an IEEE-754 correctly rounded
//! operation (`+ − × ÷ √`), so the same seed yields bit-identical transforms on every
//! machine and independent of any dependency version.

//!
//! Files: [`paley`] (orders and ±1 factors), [`kernels`] (one factor
//! along one axis), [`mixer`] (the fallback), [`rotation`] ([`Rotation`]).

mod kernels;
mod mixer;
mod paley;

mod rotation;
#[cfg(test)]
mod tests;

pub use llvq_lattice::seed::SplitMix64;
pub use paley::{hadamard, hadamard_factors};
pub use rotation::Rotation;

/// Largest Paley factor used. Larger factors would cost more per element than the
/// fallback and `p²` memory.
pub const MAX_PALEY_ORDER: usize = 1024;
/// Largest fallback remainder realised as a dense random orthogonal matrix; larger
/// remainders use the structured mixer.
pub const MAX_DENSE_FALLBACK: usize = 256;
/// Rounds of the structured fallback mixer.
pub const MIXER_ROUNDS: usize = 2;
/// Largest Paley factor inside a mixer block (keeps the mixer cheap).
pub(crate) const MIXER_MAX_PALEY: usize = 64;
/// Column tile width of the dense kernel when the factor's axis is not innermost.
pub(crate) const TILE: usize = 64;
/// Target number of elements per parallel task in `rotate_rows`.
pub(crate) const ROW_TASK_ELEMS: usize = 1 << 14;
/// Target number of elements of one `[n, width]` column panel in `rotate_cols`
/// (fits in L2).
pub(crate) const PANEL_ELEMS: usize = 1 << 15;
/// Bound on the number of slice references built per wave in `rotate_cols`.
pub(crate) const MAX_PANEL_REFS: usize = 1 << 20;
