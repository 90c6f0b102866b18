//! Quantizer trait and codes (issue 3).
