//! The video prior's subcommands: `tokenizer train` (a VQ-VAE on movies), `tokenizer
//! encode` (movies → code caches; `tokenize` is its old, hidden name) and `pretrain` (a GPT-2
//! prior on the codes). Flags become the stages' option structs; results are printed here.
use crate::fmri::pretrain::{self, PretrainOptions};
use crate::fmri::tokenize::{self, TokenizerTrainConfig};
use crate::models::gpt::Precision;
use crate::nn::{reexec_for_precision, TrainConfig};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `brainscale tokenizer ...`.
#[derive(Subcommand, Debug)]
pub enum TokenizerCommand {
    /// Train a VQ-VAE on movies.
    Train(TokenizerTrainArgs),
    /// Turn movies into VQ-VAE code caches (`<movie>.codes.safetensors`).
    Encode(TokenizeArgs),
    /// Import a VideoGPT VQ-VAE Lightning checkpoint (`bair_stride4x2x2`,
    /// `ucf101_stride4x4x4`, `kinetics_stride4x4x4`, `kinetics_stride2x4x4`) as a tokenizer folder.
    Import(TokenizerImportArgs),
}

/// `brainscale tokenizer import CKPT --out DIR`.
#[derive(Args, Debug)]
pub struct TokenizerImportArgs {
    /// VideoGPT VQ-VAE checkpoint (`.ckpt`: `state_dict` + `hyper_parameters['args']`).
    pub ckpt: PathBuf,
    /// Output tokenizer folder (works with `tokenizer encode`, `pretrain`, `features`).
    #[arg(long)]
    pub out: PathBuf,
}

/// `brainscale tokenizer train`.
#[derive(Args, Debug)]
pub struct TokenizerTrainArgs {
    /// Movie files to train on.
    #[arg(long, required = true, num_args = 1..)]
    pub movies: Vec<PathBuf>,
    /// Output tokenizer folder.
    #[arg(long)]
    pub out: PathBuf,
    /// VQ-VAE config TOML (fields of VqVaeConfig); VideoGPT's defaults when absent.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Decode frame rate (native when absent).
    #[arg(long)]
    pub fps: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub frame_stride: usize,
    #[arg(long, default_value_t = 4)]
    pub hop: usize,
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Save every this many steps; a re-run with more --steps resumes from the folder.
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    /// Frame cache folder.
    #[arg(long, default_value = "cache/frames")]
    pub cache: PathBuf,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `brainscale tokenizer encode` (old name: `brainscale tokenize`).
#[derive(Args, Debug)]
pub struct TokenizeArgs {
    #[arg(long, required = true, num_args = 1..)]
    pub movies: Vec<PathBuf>,
    /// Tokenizer folder (from `brainscale tokenizer train`, or `tokenizer import` for a VideoGPT checkpoint).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Output folder of `<movie>.codes.safetensors`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub fps: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub frame_stride: usize,
    /// Frames between clip starts (default: the clip span, i.e. non-overlapping clips).
    #[arg(long)]
    pub hop: Option<usize>,
    #[arg(long, default_value = "cache/frames")]
    pub cache: PathBuf,
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `brainscale pretrain`.
#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Code caches (`*.codes.safetensors`) or folders of them, from `brainscale tokenizer encode`.
    #[arg(long, required = true, num_args = 1..)]
    pub codes: Vec<PathBuf>,
    /// Model config TOML (models/*.toml); its vocab must cover the codebook and ctx the clip.
    #[arg(long)]
    pub model: PathBuf,
    /// Output folder: checkpoints, loss.csv, summary.json, tokenizer/ (resumes if it holds a checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    /// Train on exactly the first N training clips (one clip = one sequence of t·h·w codes).
    #[arg(long)]
    pub train_samples: Option<usize>,
    #[arg(long, default_value_t = 1000)]
    pub max_steps: u64,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 3e-5)]
    pub min_lr: f64,
    #[arg(long, default_value_t = 100)]
    pub warmup_steps: u64,
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// Fraction of each code file's clips (its last ones) held out for evaluation.
    #[arg(long, default_value_t = 0.05)]
    pub eval_fraction: f64,
    #[arg(long, default_value_t = 200)]
    pub eval_every: u64,
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch CPU threads (default: libtorch's, one per core). Small priors train fastest on
    /// one thread, especially on a busy machine (see `biosignal pretrain --threads`).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Start from Hugging Face GPT-2 weights (model.safetensors) whose shapes match --model.
    #[arg(long)]
    pub init_hf: Option<PathBuf>,
    /// Also write the trained weights in Hugging Face GPT-2 naming to this file (learned
    /// positions and tied head only).
    #[arg(long)]
    pub export_hf: Option<PathBuf>,
    /// Tokenizer folder to bundle with the prior (default: the one the code caches name).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// `brainscale tokenizer train|encode` (and the hidden `tokenize`).
pub fn run_tokenizer(c: TokenizerCommand) -> Result<()> {
    match c {
        TokenizerCommand::Train(a) => {
            let o = tokenize::TrainOptions {
                movies: a.movies,
                out: a.out.clone(),
                config: a.config,
                fps: a.fps,
                train: TokenizerTrainConfig {
                    steps: a.steps,
                    batch_size: a.batch_size,
                    lr: a.lr,
                    seed: a.seed,
                    frame_stride: a.frame_stride,
                    hop: a.hop,
                    checkpoint_every: a.checkpoint_every,
                },
                cache: a.cache,
                device: a.device,
            };
            match tokenize::train_stage(&o)? {
                None => println!(
                    "{} already holds a trained tokenizer; delete it to retrain",
                    a.out.display()
                ),
                Some(losses) => println!(
                    "tokenizer: {} steps, reconstruction loss {:.4} → {:.4}; saved to {}",
                    a.steps,
                    losses[0],
                    losses.last().copied().unwrap_or(f64::NAN),
                    a.out.display()
                ),
            }
        }
        TokenizerCommand::Encode(a) => {
            let paths = tokenize::encode_stage(&tokenize::EncodeOptions {
                movies: a.movies,
                tokenizer: a.tokenizer,
                out: a.out.clone(),
                fps: a.fps,
                frame_stride: a.frame_stride,
                hop: a.hop,
                cache: a.cache,
                device: a.device,
            })?;
            let n = paths.len();
            println!(
                "tokenized {n} movie{} into {}",
                if n == 1 { "" } else { "s" },
                a.out.display()
            );
        }
        TokenizerCommand::Import(a) => {
            let cfg = tokenize::import_stage(&a.ckpt, &a.out)?;
            let lat = cfg.latent_shape();
            println!(
                "imported {}: {}×{}×{} clips → {}×{}×{} codes of {} (VideoGPT preprocessing); \
                 tokenizer in {}",
                a.ckpt.display(),
                cfg.clip_len,
                cfg.resolution,
                cfg.resolution,
                lat[0],
                lat[1],
                lat[2],
                cfg.n_codes,
                a.out.display()
            );
        }
    }
    Ok(())
}

/// `brainscale pretrain` (re-executed first when the precision needs it: TF32).
pub fn run_pretrain(a: &PretrainArgs) -> Result<()> {
    if reexec_for_precision(a.precision)? {
        return Ok(());
    }
    let o = PretrainOptions {
        codes: a.codes.clone(),
        model: a.model.clone(),
        out: a.out.clone(),
        train: TrainConfig {
            seed: a.seed,
            precision: a.precision,
            batch_size: a.batch_size,
            grad_accum: a.grad_accum,
            max_steps: a.max_steps,
            lr: a.lr,
            min_lr: a.min_lr,
            warmup_steps: a.warmup_steps,
            weight_decay: a.weight_decay,
            grad_clip: a.grad_clip,
            eval_every: a.eval_every,
            checkpoint_every: a.checkpoint_every,
            ..TrainConfig::default()
        },
        train_samples: a.train_samples,
        eval_fraction: a.eval_fraction,
        device: a.device.clone(),
        threads: a.threads,
        init_hf: a.init_hf.clone(),
        export_hf: a.export_hf.clone(),
        tokenizer: a.tokenizer.clone(),
    };
    let s = pretrain::pretrain(&o)?;
    if let Some(path) = &a.export_hf {
        println!("wrote Hugging Face GPT-2 weights to {}", path.display());
    }
    println!(
        "done: {} steps, {} tokens, train loss {:.4}, eval loss {}, {:.0} tokens/s, MFU {:.1}%; checkpoint {}",
        s.steps,
        s.tokens,
        s.final_train_loss,
        s.final_eval_loss.map_or("n/a".into(), |e| format!("{e:.4}")),
        s.tokens_per_s,
        100.0 * s.mfu,
        s.checkpoint.display()
    );
    Ok(())
}
