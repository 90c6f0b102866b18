//! Batched parallel dequantizer (§3.3).
