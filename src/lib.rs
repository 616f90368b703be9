//! brainscale: how well does a video transformer of a given size, trained on a given amount of
//! data, predict the brain's fMRI response to a movie?
//!
//! Each pipeline stage is a module and a subcommand that reads files and writes files
//! (see DESIGN.md): `dataset` → `video` (decode) → `features` → `align` → `ridge` (encode) → `maps`.
pub mod cli;
pub mod features;
pub mod flops;
pub mod io;
pub mod models;
pub mod ridge;
pub mod stats;
pub mod train;
pub mod video;
