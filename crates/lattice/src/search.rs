//! Exact search (§3.1).
pub enum Metric { Euclidean, Angular }
pub struct Searcher;
