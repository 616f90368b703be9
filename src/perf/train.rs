//! `brainscale bench-train`: training throughput (tokens/s, TFLOP/s, MFU against the matmul
//! peak measured in the same run) of the GPT-2 prior at the study's sizes, and of the bio-signal
//! models (presets `biot-*`, `citrus-*`, or a `biot-*.toml` / `citrus-*.toml` model:
//! [`crate::perf::biosignal`], samples/s, with BIOT timed against PyTorch eager by `--torch`).
//! Typed arguments in, a row out; `cli::perf` parses the flags, prints and appends the CSV.
use crate::core::flops;
use crate::models::gpt::{Gpt, GptConfig, Precision};
use crate::nn::{self, TrainConfig, Trainer};
use crate::perf::biosignal::BioBenchPreset;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Named `bench-train` cases: the H100 targets and a CPU smoke size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Measures training tokens/s of `model_cfg` at sequence length `ctx` on random tokens
/// (`steps` timed after `warmup`). Errors: `ctx` outside 1..=model ctx, no steps, and
/// those of building or training the model.
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
