//! brainscale: how model size, data size and compute shape what a model learns about the brain
//! (fMRI track) and the body (bio-signal track).
//!
//! (Each module stands in its own group so that rustfmt keeps this order.)
//!
//! Each pipeline stage is a module and a subcommand that reads files and writes files
//! (see the README's architecture section). The modules are listed bottom-up: each one imports
//! only modules listed before it (`python3 ../shared/tools/modcycles.py src` checks it).

// Shared pieces of no stage.
pub mod coverage; // whether a movie covers a BOLD run (durations)

pub mod flops; // training FLOPs of a transformer

pub mod hrf; // the canonical haemodynamic response function

pub mod io; // atomic writes, safetensors and JSON files

pub mod progress; // progress bars

pub mod memory; // resident memory of this process (peak, current)

pub mod stats; // Pearson r and its summaries

// The model-agnostic training engine and the model files (one per architecture).
pub mod nn;

pub mod models;

// Inputs: movies and their decoded frames; the features format every extractor writes.
pub mod video;

pub mod extractor;

// fMRI track, stage by stage.
pub mod dataset; // movie-fMRI datasets: layouts, checks, subject data, synthetic data

pub mod tokenizer; // movies → VQ-VAE codes

pub mod pretrain; // codes → a trained GPT-2 prior

pub mod features; // frames → features at frame or clip times

pub mod align; // features → design matrices on the TR grid

pub mod ridge; // cross-validated ridge regression (CPU and libtorch)

pub mod encode; // design matrices + BOLD → held-out r per voxel or parcel

pub mod encode_stream; // encode with Y streamed from the voxel cache, sharded, merged

pub mod encode_bands; // several feature spaces: banded ridge per voxel, R² split

pub mod maps_bands; // per-band maps of a banded fit

pub mod maps; // r → brain maps and summaries

pub mod figures; // publication-style maps and the study's figure set

pub mod provenance; // the commands and versions behind a work folder

pub mod report; // one self-contained report.html

pub mod pipeline; // the stages chained (`brainscale demo`)

// Bio-signal track: readers, windows, resampling, synthetic data, metrics, training.
pub mod biosignal;

// Benchmarks and scaling: training throughput, grids of cells, scaling-law fits.
pub mod bench_train;

pub mod bench;

pub mod scaling;

// The command line over all of them.
pub mod cli;
