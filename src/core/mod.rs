//! Shared pieces that know no stage and no track: atomic files and tensor files, statistics,
//! FLOP counts, memory, progress bars, plotting primitives and provenance.

pub mod flops;
pub mod io;
pub mod memory;
pub mod plot;
pub mod progress;
pub mod provenance;
pub mod stats;
