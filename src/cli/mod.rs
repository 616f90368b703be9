//! The command line: the only layer that parses flags and prints results. This file holds
//! the top-level `Cli`, its `Command` enum and the dispatch; each group of subcommands has
//! its own file (`fmri`: the fMRI stages; `prior`: tokenizer and pretrain; `biosignal`; `study`: the
//! grids, scaling fits and the report; `perf`: throughput benchmarks; `values`: stage enums as flags).

pub mod args;
pub mod biosignal;
pub mod biosignal_check;
pub mod fmri;
pub mod perf;
pub mod prior;
pub mod stats;
pub mod study;
pub mod values;
use self::fmri::{AlignArgs, DatasetCmd, DecodeArgs, DemoArgs, EncodeArgs, FeaturesArgs, MapsArgs};
use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "brainscale",
    version,
    about = "Video transformers, fMRI encoding models and scaling laws"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make or inspect datasets.
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Decode a dataset's movies (or given files) to cached RGB frames.
    Decode(DecodeArgs),
    /// Extract features from a dataset's movies.
    Features(FeaturesArgs),
    /// Align features to each run's TR grid (FIR delays or HRF).
    Align(AlignArgs),
    /// Cross-validated ridge per voxel, tested on held-out runs.
    Encode(EncodeArgs),
    /// Write r maps (NIfTI, PNG) and the per-subject summary.
    Maps(MapsArgs),
    /// The whole pipeline on the embedded synthetic dataset.
    Demo(DemoArgs),
    /// The VQ-VAE video tokenizer: `tokenizer train` on movies, `tokenizer encode` movies
    /// into code caches.
    #[command(subcommand)]
    Tokenizer(prior::TokenizerCommand),
    /// Old name of `tokenizer encode` (kept so that scripts work).
    #[command(hide = true)]
    Tokenize(prior::TokenizeArgs),
    /// Train a GPT-2 prior over code sequences.
    Pretrain(prior::PretrainArgs),
    /// Measure training throughput (tokens/s, TFLOP/s, MFU).
    BenchTrain(crate::cli::perf::BenchTrainArgs),
    /// Time the cross-validated ridge fit on generated data (seconds, GFLOP/s, ratio to GEMM peak).
    BenchRidge(crate::cli::perf::BenchRidgeArgs),
    /// Time the streamed ridge on a generated whole-brain problem larger than memory (Y made
    /// block by block from a seed): wall time, ratio to the GEMM peak, peak resident memory.
    BenchWholeBrain(crate::cli::perf::WholeBrainArgs),
    /// Time encode's per-voxel statistics on generated data: the block-permutation null (p,
    /// BH q, FWE p) and the block bootstrap (seconds, memory added).
    BenchSignificance(crate::cli::perf::BenchSignificanceArgs),
    /// Time the VQ-VAE encoder (the tokenize step) at VideoGPT's default widths, beside the
    /// reference PyTorch encoder at the same size, batch and threads (frames/s, CPU s per frame).
    BenchTokenize(crate::cli::perf::BenchTokenizeArgs),
    /// Grids of cells over data size × model × precision × seed (local or SLURM): run, status,
    /// collect, downstream. (`bench` is its old name, kept as an alias; throughput benchmarks
    /// are the `bench-*` commands.)
    #[command(subcommand, alias = "bench")]
    Grid(crate::cli::study::BenchCommand),
    /// Scaling-law fits over results rows (iso-FLOP and parametric).
    #[command(subcommand)]
    Scaling(crate::cli::study::ScalingCommand),
    /// The bio-signal track: check files, synthesise sets, resample, pretrain, fine-tune, and
    /// the transfer study (`demo`, `transfer`).
    #[command(subcommand)]
    Biosignal(crate::cli::biosignal::BiosignalCommand),
    /// One self-contained report.html of a work folder: summary, maps, study figures, commands.
    Report(crate::cli::study::ReportArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Dataset(c) => fmri::run_dataset(c)?,
        Command::Decode(a) => fmri::run_decode(a)?,
        Command::Features(a) => fmri::run_features(a)?,
        Command::Align(a) => fmri::run_align(a)?,
        Command::Encode(a) => fmri::run_encode(a)?,
        Command::Maps(a) => fmri::run_maps(a)?,
        Command::Demo(a) => fmri::run_demo(a)?,
        Command::Tokenizer(c) => prior::run_tokenizer(c)?,
        Command::Tokenize(a) => prior::run_tokenizer(prior::TokenizerCommand::Encode(a))?,
        Command::Pretrain(a) => prior::run_pretrain(&a)?,
        Command::BenchTrain(a) => perf::bench_train(&a)?,
        Command::BenchRidge(a) => perf::bench_ridge(&a)?,
        Command::BenchWholeBrain(a) => perf::bench_whole_brain(&a)?,
        Command::BenchSignificance(a) => perf::bench_significance(&a)?,
        Command::BenchTokenize(a) => perf::bench_tokenize(&a)?,
        Command::Grid(c) => crate::cli::study::bench(c)?,
        Command::Scaling(c) => crate::cli::study::scaling(c)?,
        Command::Biosignal(c) => crate::cli::biosignal::run(&c)?,
        Command::Report(a) => crate::cli::study::report(&a)?,
    }
    Ok(())
}

/// Submits this command's shards `tasks` of `n` as one SLURM job array (each task runs the
/// same command line with `--voxel-shard k/n` instead of `--slurm-shards`), scripts and logs
/// under `dir`; with `wait`, returns when the array has finished.
pub(crate) fn submit_shard_array(
    dir: &std::path::Path,
    sbatch: &[String],
    name: &str,
    n: usize,
    tasks: &[usize],
    wait: bool,
) -> Result<()> {
    if tasks.is_empty() {
        println!("all {n} parts are there (nothing to submit)");
        return Ok(());
    }
    let cfg = crate::exec::slurm::SlurmConfig {
        extra: sbatch.to_vec(),
        ..Default::default()
    };
    let args = crate::exec::slurm::shard_task_args(std::env::args().skip(1));
    let job = crate::exec::slurm::submit_shards(dir, &cfg, name, &args, n, tasks)?;
    println!("submitted SLURM job array {job}: shards {tasks:?} of {n}");
    if wait {
        crate::exec::slurm::wait(&job)?;
    }
    Ok(())
}
