//! brainscale: how well does a video transformer of a given size, trained on a given amount of
//! data, predict the brain's fMRI response to a movie?
//!
//! Each pipeline stage is a module and a subcommand that reads files and writes files
//! (see DESIGN.md): `dataset` → `video` (decode) → `features` → `align` → `ridge` (encode) → `maps`.
//! The modules are listed bottom-up: each one imports only modules listed before it.

// Shared pieces of no stage.
pub mod coverage; // whether a movie covers a BOLD run (durations)
pub mod flops; // training FLOPs of a transformer
pub mod hrf; // the canonical haemodynamic response function
pub mod io; // atomic writes, safetensors and JSON files
pub mod progress; // progress bars
pub mod stats; // Pearson r and its summaries

// Inputs: movies and their decoded frames; the features format every extractor writes.
pub mod video;

pub mod extractor;

// fMRI track, stage by stage.
pub mod dataset; // movie-fMRI datasets: layouts, checks, subject data, synthetic data

// Model track: the video tokenizer and GPT prior (models) and their training, which the
// features stage's GPT extractor uses.
pub mod models;
pub mod train;

// fMRI track, continued.
pub mod features; // frames → features at frame or clip times

pub mod align; // features → design matrices on the TR grid

pub mod ridge; // cross-validated ridge regression (CPU and libtorch)

pub mod encode; // design matrices + BOLD → held-out r per voxel or parcel

pub mod maps; // r → brain maps and summaries

pub mod pipeline; // the stages chained (`brainscale demo`)

// Scaling track: grids of pretrain → extract → encode cells, and scaling-law fits.
pub mod bench;
pub mod scaling;

// The command line over all of them.
pub mod cli;
