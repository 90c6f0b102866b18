//! The Leech lattice Λ24 for vector quantization (LLVQ, arXiv 2603.11021, §2-3, App. A-C).
//!
//! No ML dependencies: this crate is the codec. Modules follow the paper's hierarchy:
//! - [`golay`]: the extended Golay code G24 (§2.3);
//! - [`leech`]: integer coordinates L_int, cosets, membership (Eq. 6-8);
//! - [`shell`]: shells, classes and leaders, the theta series (§2.2, §2.4-2.6);
//! - [`index`]: the finite code Λ24(M) and its bijective index (§3.2);
//! - [`dequant`]: the batched, parallel dequantizer (§3.3);
//! - [`search`]: exact Euclidean and angular search over Λ24(M) (§3.1);
//! - [`pack`]: dense bit packing of indices;
//! - [`seed`]: the workspace's one seeded generator and one hash (kept here, below everything).

pub mod dequant;
pub mod error;
pub mod golay;
pub mod index;
pub mod leech;
pub mod pack;
pub mod search;
pub mod seed;
pub mod shell;

pub use error::LatticeError;
pub use index::Ball;
pub use leech::{Parity, Point, DIM};
pub use search::{Found, Metric, Searcher};
pub use shell::{Class, MAX_SHELL_LIMIT};
