//! Command-line interface: one subcommand per pipeline stage. Each stage module owns its
//! argument struct and its `run` function; this file only lists them.
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
    /// VQ-VAE tokenizer (VideoGPT): `tokenizer train`.
    Tokenizer {
        #[command(subcommand)]
        command: crate::models::vqvae::TokenizerCommand,
    },
    /// Movies → VQ-VAE code caches (`<movie>.codes.safetensors`).
    Tokenize(crate::models::vqvae::TokenizeArgs),
    /// Train the GPT-2 prior on code caches (resumable).
    Pretrain(crate::train::PretrainArgs),
    /// Training throughput: tokens/s, TFLOP/s and MFU against a peak measured in the same run.
    BenchTrain(crate::train::BenchTrainArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Tokenizer { command } => crate::models::vqvae::run_tokenizer_command(&command),
        Command::Tokenize(a) => crate::models::vqvae::run_tokenize(&a),
        Command::Pretrain(a) => crate::train::run_pretrain(&a),
        Command::BenchTrain(a) => crate::train::run_bench_train(&a),
    }
}
