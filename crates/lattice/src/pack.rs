//! Bit packing.
