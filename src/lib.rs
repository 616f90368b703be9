//! brainscale: how model size, data size and compute shape what a model learns about the brain
//! (fMRI track) and the body (bio-signal track).
//!
//! The modules are listed bottom-up: each one imports only modules listed before it
//! (`python3 ../shared/tools/modcycles.py src` checks that there are no cycles).
//! (Each module stands in its own group so that rustfmt keeps this order.)

// Shared pieces of no stage: files, statistics, FLOPs, memory, progress, plotting, provenance.
pub mod core;

// The model-agnostic training engine.
pub mod nn;

// One file per architecture (GPT-2, VQ-VAE, BIOT, CiTrus) with its config.
pub mod models;

// Cross-validated (banded) ridge regression: the plan once, CPU and libtorch backends.
pub mod ridge;

// Where work runs: SLURM job arrays, voxel shards and their merge.
pub mod exec;

// The fMRI track: movies → tokens → priors → features → TR grid → ridge → maps.
pub mod fmri;

// The bio-signal track: readers, windows, resampling, pretraining, fine-tuning, transfer.
pub mod biosignal;

// Grids of cells over both tracks, scaling-law fits, the study's figures, the report.
pub mod study;

// Throughput benchmarks (`bench-*`).
pub mod perf;

// The command line over all of them.
pub mod cli;
