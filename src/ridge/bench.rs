//! bench-ridge (in progress).
