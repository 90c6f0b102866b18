//! Model loading and inference (issue 4).
