//! Throughput benchmarks (`bench-*` subcommands): figures measured on generated problems, each
//! with its ratio to a peak or anchor measured in the same run.

pub mod biosignal;
pub mod ridge;
pub mod ridge_banded;
pub mod significance;
pub mod train;
pub mod video;
pub mod whole_brain;
