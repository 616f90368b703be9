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
    /// Time the cross-validated ridge fit on generated data (seconds, GFLOP/s, ratio to GEMM peak).
    BenchRidge(crate::ridge::bench::BenchArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::BenchRidge(a) => crate::ridge::bench::run(&a),
    }
}
