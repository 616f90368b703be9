//! The study layer over both tracks: grids of cells (data size × model × precision), their
//! results, scaling-law fits and validation, the study's figures and the report.

pub mod figures;
pub mod grids;
pub mod report;
pub mod scaling;
