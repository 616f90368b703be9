//! brainscale: how well does a video transformer of a given size, trained on a given amount of
//! data, predict the brain's fMRI response to a movie?
//!
//! Each pipeline stage is a module and a subcommand that reads files and writes files
//! (see DESIGN.md): `dataset` → `video` (decode) → `features` → `align` → `ridge` (encode) → `maps`.
pub mod align;
pub mod bench;
pub mod cli;
pub mod dataset;
pub mod encode;
pub mod encode_bands;
pub mod features;
pub mod flops;
pub mod io;
pub mod maps;
pub mod maps_bands;
pub mod models;
pub mod pipeline;
pub mod ridge;
pub mod scaling;
pub mod stats;
pub mod train;
pub mod video;
