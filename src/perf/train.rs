//! `brainscale bench-train`: training throughput (tokens/s, TFLOP/s, MFU against the matmul
//! peak measured in the same run) of the GPT-2 prior at the study's sizes, and of the bio-signal
//! models (presets `biot-*`, `citrus-*`, or a `biot-*.toml` / `citrus-*.toml` model:
//! [`crate::perf::biosignal`], samples/s, with BIOT timed against PyTorch eager by `--torch`).
use crate::core::flops;
use crate::core::io;
use crate::models::gpt::{Gpt, GptConfig, Precision};
use crate::models::ModelConfig;
use crate::nn::{self, parse_device, reexec_for_precision, TrainConfig, Trainer};
use crate::perf::biosignal::{run_bench_bio, BenchBioArgs, BioBenchPreset};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// Named `bench-train` cases: the H100 targets and a CPU smoke size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPreset {
    /// GPT-2 small (d768 L12 H12), ctx 1024, batch 16, vocab 2048, bf16 (H100 target ≥ 410k tok/s).
    Gpt2Bf16,
    /// VideoGPT prior (d576 L8 H4), ctx 1024, batch 32, vocab 2048, fp32 with TF32 off.
    VideogptFp32,
    /// Same with TF32 matmuls.
    VideogptTf32,
    VideogptBf16,
    VideogptFp16,
    /// A small model for a CPU run: d128 L4 H4, ctx 256, batch 4, vocab 2048, fp32.
    CpuSmall,
    /// BIOT reference (d256 L4 H8, 3.2 M), 16 channels × 10 s at 200 Hz, batch 8, fp32.
    BiotCpu,
    /// BIOT reference, 18 channels × 10 s, batch 256 (GPU).
    BiotGpu,
    /// citrus-small (MAE, frequency target), 1 channel × 200 samples, batch 32, fp32.
    CitrusCpu,
    /// citrus-small, batch 2048 (GPU).
    CitrusGpu,
}

impl BenchPreset {
    /// The bio-signal case this preset names, if it is one.
    pub fn bio(self) -> Option<BioBenchPreset> {
        match self {
            BenchPreset::BiotCpu => Some(BioBenchPreset::BiotCpu),
            BenchPreset::BiotGpu => Some(BioBenchPreset::BiotGpu),
            BenchPreset::CitrusCpu => Some(BioBenchPreset::CitrusCpu),
            BenchPreset::CitrusGpu => Some(BioBenchPreset::CitrusGpu),
            _ => None,
        }
    }
}

impl BenchPreset {
    /// Model, precision and batch size of a GPT preset (the bio-signal presets fall back to
    /// `cpu-small`: they are dispatched before, see [`BenchPreset::bio`]).
    pub fn case(self) -> (GptConfig, Precision, usize) {
        let videogpt = GptConfig {
            name: "videogpt-prior".into(),
            d_model: 576,
            n_layer: 8,
            n_head: 4,
            ctx: 1024,
            vocab: 2048,
            dropout: 0.2,
            attn_dropout: 0.3,
            pos: crate::models::gpt::PosEmbedding::Factorized,
            latent_shape: Some([4, 16, 16]),
            tie_weights: true,
        };
        match self {
            BenchPreset::Gpt2Bf16 => (
                GptConfig {
                    name: "gpt2-small-v2048".into(),
                    d_model: 768,
                    n_layer: 12,
                    n_head: 12,
                    dropout: 0.0,
                    attn_dropout: 0.0,
                    pos: crate::models::gpt::PosEmbedding::Learned,
                    latent_shape: None,
                    ..videogpt
                },
                Precision::Bf16,
                16,
            ),
            BenchPreset::VideogptFp32 => (videogpt, Precision::Fp32, 32),
            BenchPreset::VideogptTf32 => (videogpt, Precision::Tf32, 32),
            BenchPreset::VideogptBf16 => (videogpt, Precision::Bf16, 32),
            BenchPreset::VideogptFp16 => (videogpt, Precision::Fp16, 32),
            BenchPreset::CpuSmall
            | BenchPreset::BiotCpu
            | BenchPreset::BiotGpu
            | BenchPreset::CitrusCpu
            | BenchPreset::CitrusGpu => (
                GptConfig {
                    name: "cpu-small".into(),
                    d_model: 128,
                    n_layer: 4,
                    n_head: 4,
                    ctx: 256,
                    dropout: 0.0,
                    attn_dropout: 0.0,
                    pos: crate::models::gpt::PosEmbedding::Learned,
                    latent_shape: None,
                    ..videogpt
                },
                Precision::Fp32,
                4,
            ),
        }
    }
}

/// `brainscale bench-train`: training throughput of one model / precision / batch / device.
#[derive(clap::Args, Debug)]
pub struct BenchTrainArgs {
    /// A named case (model, precision, batch); explicit flags below override it.
    #[arg(long, value_enum)]
    pub preset: Option<BenchPreset>,
    /// Model config TOML instead of a preset.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Sequence length (default: the model's ctx).
    #[arg(long)]
    pub ctx: Option<i64>,
    /// Timed optimizer steps (after the warm-up ones).
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Append the result row to this CSV (created with a header).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Bio-signal cases: channels per window.
    #[arg(long)]
    pub channels: Option<i64>,
    /// Bio-signal cases: samples per channel at the model rate.
    #[arg(long)]
    pub samples: Option<i64>,
    /// BIOT on the CPU: also time the same configuration in PyTorch eager
    /// (`bench/biot_torch.py`) and print the ratio.
    #[arg(long)]
    pub torch: bool,
    /// Bio-signal cases: alternate brainscale and PyTorch this many times; medians reported.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
}

/// A bio-signal case: a bio preset, or a bio-signal model file (`model = "biot"`, ...).
fn bio_case(a: &BenchTrainArgs) -> Option<BenchBioArgs> {
    let by_file = a
        .model
        .as_ref()
        .is_some_and(|m| crate::models::BioModelConfig::is_signal_config(m));
    let preset = a.preset.and_then(BenchPreset::bio);
    (preset.is_some() || by_file).then(|| BenchBioArgs {
        preset,
        model: a.model.clone(),
        batch_size: a.batch_size,
        channels: a.channels,
        samples: a.samples,
        steps: a.steps,
        warmup: a.warmup,
        device: a.device.clone(),
        torch: a.torch,
        repeats: a.repeats,
        csv: a.csv.clone(),
    })
}

/// One bench-train measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchTrainRow {
    pub model: String,
    pub device: String,
    pub precision: String,
    pub d_model: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub ctx: i64,
    pub vocab: i64,
    pub batch_size: usize,
    pub params_total: u64,
    pub params_matmul: u64,
    pub steps: u64,
    pub tokens_per_s: f64,
    pub tflops: f64,
    pub peak_matmul_tflops: f64,
    pub mfu: f64,
}

/// Measures training tokens/s of `model_cfg` at sequence length `ctx` on random tokens.
pub fn bench_train(
    model_cfg: &GptConfig,
    precision: Precision,
    batch: usize,
    ctx: i64,
    steps: u64,
    warmup: u64,
    device: Device,
) -> Result<BenchTrainRow> {
    if ctx <= 0 || ctx > model_cfg.ctx {
        bail!("--ctx {ctx} must be in 1..={}", model_cfg.ctx);
    }
    if steps == 0 {
        bail!("--steps must be positive");
    }
    let cfg = TrainConfig {
        precision,
        batch_size: batch,
        max_steps: steps + warmup,
        warmup_steps: 1,
        ..TrainConfig::default()
    };
    let mut t = Trainer::<Gpt>::new(model_cfg, &cfg, device)?;
    tch::manual_seed(1);
    let data = Tensor::randint(
        model_cfg.vocab,
        [(4 * batch).max(64) as i64, ctx + 1],
        (Kind::Int64, Device::Cpu),
    );
    let pc = model_cfg.param_counts();
    let fpt = flops::train_flops_per_token(
        pc.matmul,
        model_cfg.n_layer as u64,
        ctx as u64,
        model_cfg.d_model as u64,
    );
    let r = nn::throughput(&mut t, &data, steps, warmup, fpt)?;
    Ok(BenchTrainRow {
        model: model_cfg.name.clone(),
        device: format!("{device:?}"),
        precision: precision.name().into(),
        d_model: model_cfg.d_model,
        n_layer: model_cfg.n_layer,
        n_head: model_cfg.n_head,
        ctx,
        vocab: model_cfg.vocab,
        batch_size: batch,
        params_total: pc.total,
        params_matmul: pc.matmul,
        steps,
        tokens_per_s: r.units_per_s,
        tflops: r.flops / 1e12,
        peak_matmul_tflops: r.peak_flops / 1e12,
        mfu: r.mfu,
    })
}

pub fn run_bench_train(a: &BenchTrainArgs) -> Result<()> {
    if let Some(b) = bio_case(a) {
        let precision = a.precision.unwrap_or(Precision::Fp32);
        if reexec_for_precision(precision)? {
            return Ok(());
        }
        let r = run_bench_bio(&b, parse_device(&a.device)?, precision)?;
        println!("{}", crate::perf::biosignal::describe(&r));
        return Ok(());
    }
    if a.channels.is_some() || a.samples.is_some() || a.torch {
        bail!("--channels, --samples and --torch apply to the bio-signal cases (biot-*, citrus-*)");
    }
    let (mut cfg, mut precision, mut batch) = a.preset.unwrap_or(BenchPreset::CpuSmall).case();
    if let Some(m) = &a.model {
        cfg = GptConfig::load(m)?;
    } else if a.preset.is_none() {
        bail!("give --preset or --model");
    }
    precision = a.precision.unwrap_or(precision);
    batch = a.batch_size.unwrap_or(batch);
    let ctx = a.ctx.unwrap_or(cfg.ctx);
    if reexec_for_precision(precision)? {
        return Ok(());
    }
    let device = parse_device(&a.device)?;
    let r = bench_train(&cfg, precision, batch, ctx, a.steps, a.warmup, device)?;
    println!(
        "{} ({} params, {} in matmuls) d{} L{} H{} ctx {} batch {} vocab {} {} on {}:\n  {:.0} tokens/s, {:.4} TFLOP/s achieved, peak matmul {:.4} TFLOP/s (measured now), MFU {:.1}%",
        r.model, r.params_total, r.params_matmul, r.d_model, r.n_layer, r.n_head, r.ctx, r.batch_size, r.vocab, r.precision, r.device,
        r.tokens_per_s, r.tflops, r.peak_matmul_tflops, 100.0 * r.mfu
    );
    if let Some(path) = &a.csv {
        io::append_csv(path, r)?;
    }
    Ok(())
}
