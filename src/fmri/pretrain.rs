//! The pretrain stage of the fMRI track (`brainscale pretrain`): a GPT-2 prior trained on
//! VQ-VAE codes through the engine ([`crate::nn`]), and the small tokenizer + prior the demo
//! and tests train on CPU in seconds.
//!
//! Data unit: a *sample* is one clip's code sequence (t·h·w tokens, 1024 for 16 frames of
//! 64×64 at downsampling 4); `--train-samples N` trains on the first N training clips.
//! Each optimizer step sees `batch_size × grad_accum` samples of (t·h·w − 1) predicted tokens.
use crate::core::flops;
use crate::core::io;
use crate::fmri::codes::{self, CodeData};
use crate::fmri::tokenize;
use crate::models::gpt::{Gpt, GptConfig};
use crate::models::ModelConfig;
use crate::nn::{self, parse_device, FitOptions, TrainConfig, TrainSummary, Trainer};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::Device;

/// Trains (or resumes, if `out` holds a checkpoint) until `cfg.max_steps`; writes checkpoints,
/// `loss.csv`, `summary.json` and `config.toml` into `out`.
pub fn train_prior(
    model_cfg: &GptConfig,
    cfg: &TrainConfig,
    data: &CodeData,
    out: &Path,
    device: Device,
    progress: bool,
) -> Result<TrainSummary> {
    train_prior_from(model_cfg, cfg, data, out, device, progress, None)
}

/// [`train_prior`], starting a new run from Hugging Face GPT-2 weights when `init_hf` is given.
pub fn train_prior_from(
    model_cfg: &GptConfig,
    cfg: &TrainConfig,
    data: &CodeData,
    out: &Path,
    device: Device,
    progress: bool,
    init_hf: Option<&Path>,
) -> Result<TrainSummary> {
    let l = data.latent_shape.iter().product::<i64>();
    if data.n_codes > model_cfg.vocab {
        bail!(
            "the tokenizer has {} codes but the model's vocab is {}",
            data.n_codes,
            model_cfg.vocab
        );
    }
    let [t, h, w] = data.latent_shape;
    if l - 1 > model_cfg.ctx {
        bail!(
            "clips of {l} codes ({t}×{h}×{w}) need ctx ≥ {}, the model has ctx {}: write a model \
             TOML with ctx = {l}{}",
            l - 1,
            model_cfg.ctx,
            if model_cfg.pos == crate::models::gpt::PosEmbedding::Factorized {
                format!(" and latent_shape = [{t}, {h}, {w}]")
            } else {
                String::new()
            }
        );
    }
    // Factorized positions read a token's (t, row, column) from the model's latent_shape: a
    // different row length would silently mislabel every position.
    if let (crate::models::gpt::PosEmbedding::Factorized, Some([mt, mh, mw])) =
        (model_cfg.pos, model_cfg.latent_shape)
    {
        if mh != h || mw != w || mt < t {
            bail!(
                "the model's latent_shape [{mt}, {mh}, {mw}] does not fit the codes' \
                 {t}×{h}×{w} clips (factorized positions need the same h and w and t ≥ {t}): \
                 write a model TOML with latent_shape = [{t}, {h}, {w}] and ctx = {l}"
            );
        }
    }
    model_cfg.validate()?;
    let mut t = Trainer::<Gpt>::open(out, model_cfg, cfg, device, |vs, _| match init_hf {
        Some(p) => crate::models::hf::load_hf(vs, p),
        None => Ok(()),
    })?;
    let opts = FitOptions {
        flops_per_unit: flops::train_flops_per_token(
            model_cfg.param_counts().matmul,
            model_cfg.n_layer as u64,
            (l - 1) as u64,
            model_cfg.d_model as u64,
        ),
        progress,
        label: "steps".into(),
    };
    nn::fit(&mut t, data, out, &opts)
}

/// Loads a trained prior (config and weights) from a pretrain output folder.
pub fn load_prior(dir: &Path, device: Device) -> Result<(tch::nn::VarStore, Gpt)> {
    let (vs, model, _) = nn::load_trained::<Gpt>(dir, device)?;
    Ok((vs, model))
}

/// The pretrain stage's options (`brainscale pretrain`; see the CLI's help for each).
#[derive(Debug, Clone)]
pub struct PretrainOptions {
    /// Code caches (`*.codes.safetensors`) or folders of them.
    pub codes: Vec<PathBuf>,
    /// Model config TOML (models/*.toml).
    pub model: PathBuf,
    /// Output folder (resumes if it holds a checkpoint).
    pub out: PathBuf,
    /// Seed, precision, batch, schedule, evaluation and checkpoint cadence.
    pub train: TrainConfig,
    /// Train on exactly the first N training clips.
    pub train_samples: Option<usize>,
    /// Fraction of each code file's clips (its last ones) held out for evaluation.
    pub eval_fraction: f64,
    /// cpu, cuda, cuda:N or auto.
    pub device: String,
    /// libtorch CPU threads (default: libtorch's).
    pub threads: Option<i32>,
    /// Hugging Face GPT-2 weights to start from.
    pub init_hf: Option<PathBuf>,
    /// Also write the trained weights in Hugging Face GPT-2 naming here.
    pub export_hf: Option<PathBuf>,
    /// Tokenizer folder to bundle (default: the one the code caches name).
    pub tokenizer: Option<PathBuf>,
}

/// Copies the tokenizer folder next to the prior so a pretrain output is self-contained.
pub fn copy_tokenizer(src: &Path, out: &Path) -> Result<()> {
    let dst = out.join("tokenizer");
    std::fs::create_dir_all(&dst)?;
    for name in tokenize::TOKENIZER_FILES {
        let s = src.join(name);
        let bytes =
            std::fs::read(&s).with_context(|| format!("reading tokenizer file {}", s.display()))?;
        io::write_bytes(&dst.join(name), &bytes)?;
    }
    Ok(())
}

/// The pretrain stage: loads the code caches, trains (or resumes) the prior in `o.out`,
/// bundles the tokenizer, exports Hugging Face weights when asked. Returns the training
/// summary. Errors: bad options, a missing tokenizer (checked before training), I/O.
pub fn pretrain(o: &PretrainOptions) -> Result<TrainSummary> {
    let a = o;
    if let Some(n) = a.threads {
        if n < 1 {
            bail!("--threads {n}: must be at least 1");
        }
        tch::set_num_threads(n);
    }
    let model_cfg = GptConfig::load(&a.model)?;
    let device = parse_device(&a.device)?;
    let files = codes::list_code_files(&a.codes)?;
    let mut data = codes::load_code_data(&files, a.eval_fraction)?;
    if let Some(n) = a.train_samples {
        let have = data.train.size()[0] as usize;
        if n == 0 || n > have {
            bail!("--train-samples {n}: the code caches hold {have} training clips");
        }
        data.train = data.train.narrow(0, 0, n as i64);
    }
    let cfg = a.train.clone();
    cfg.validate()?;
    let pc = model_cfg.param_counts();
    eprintln!(
        "pretrain {}: {} params ({} non-embedding), {} training clips × {} codes, {} held out, {} on {:?}",
        if model_cfg.name.is_empty() { a.model.display().to_string() } else { model_cfg.name.clone() },
        pc.total,
        pc.non_embedding,
        data.train.size()[0],
        data.latent_shape.iter().product::<i64>(),
        data.eval.size()[0],
        cfg.precision.name(),
        device
    );
    // The tokenizer goes into the output folder so the extractor finds it; check it first
    // rather than after hours of training.
    let tokenizer = a.tokenizer.clone().or(data.tokenizer.clone());
    match &tokenizer {
        Some(t) if !tokenize::TOKENIZER_FILES.iter().all(|f| t.join(f).exists()) => bail!(
            "tokenizer folder {} (recorded in the code caches) is missing or incomplete; pass --tokenizer DIR",
            t.display()
        ),
        None => bail!("the code caches name no tokenizer; pass --tokenizer DIR"),
        _ => {}
    }
    let s = train_prior_from(
        &model_cfg,
        &cfg,
        &data,
        &a.out,
        device,
        true,
        a.init_hf.as_deref(),
    )?;
    if let Some(tok) = &tokenizer {
        copy_tokenizer(tok, &a.out)?;
    }
    if let Some(path) = &a.export_hf {
        let (vs, _) = load_prior(&a.out, Device::Cpu)?;
        crate::models::hf::save_hf(&vs, &model_cfg, path)?;
    }
    Ok(s)
}

/// Settings of [`train_small_prior`]: a tokenizer and prior small enough to train on CPU in
/// seconds (32×32 frames, 8-frame clips → 2×8×8 codes of 64; a d64 L2 H2 prior).
pub fn small_prior_configs() -> (crate::models::vqvae::VqVaeConfig, GptConfig) {
    let vq = crate::models::vqvae::VqVaeConfig {
        resolution: 32,
        clip_len: 8,
        downsample: [4, 4, 4],
        n_hiddens: 16,
        n_res_layers: 1,
        n_codes: 64,
        embedding_dim: 16,
        attn_heads: 2,
        ema_decay: 0.99,
        commitment: 0.25,
        ..Default::default()
    };
    let lat = vq.latent_shape();
    let gpt = GptConfig {
        name: "small-prior".into(),
        d_model: 64,
        n_layer: 2,
        n_head: 2,
        ctx: lat.iter().product(),
        vocab: vq.n_codes,
        dropout: 0.0,
        attn_dropout: 0.0,
        pos: crate::models::gpt::PosEmbedding::Factorized,
        latent_shape: Some(lat),
        tie_weights: true,
    };
    (vq, gpt)
}

/// Trains a small tokenizer and prior on decoded movies (CPU, seconds); returns the prior's
/// folder (`work/prior`, with its `tokenizer/`), ready for [`crate::fmri::features::gpt::GptExtractor`].
/// A finished folder is reused.
pub fn train_small_prior_frames(
    movies: &[(String, crate::fmri::video::Frames)],
    work: &Path,
    seed: u64,
) -> Result<PathBuf> {
    // Ops this small run fastest on one thread; several threads on a busy machine spend their
    // time waiting for each other (30× slower measured on 2 shared cores).
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let r = small_prior_inner(movies, work, seed);
    tch::set_num_threads(threads);
    r
}

fn small_prior_inner(
    movies: &[(String, crate::fmri::video::Frames)],
    work: &Path,
    seed: u64,
) -> Result<PathBuf> {
    let prior_dir = work.join("prior");
    if prior_dir.join("summary.json").exists()
        && prior_dir.join("tokenizer").join("vqvae.json").exists()
    {
        return Ok(prior_dir);
    }
    let (vq, gpt) = small_prior_configs();
    let tok_dir = work.join("tokenizer");
    let frames: Vec<crate::fmri::video::Frames> = movies.iter().map(|(_, f)| f.clone()).collect();
    let tc = tokenize::TokenizerTrainConfig {
        steps: 40,
        batch_size: 4,
        lr: 3e-3,
        seed,
        frame_stride: 1,
        hop: 4,
        checkpoint_every: 0,
    };
    tokenize::train_tokenizer(&vq, &tc, &frames, &tok_dir, Device::Cpu, false)?;
    let tok = tokenize::Tokenizer::load(&tok_dir, Device::Cpu)?;
    let code_dir = work.join("codes");
    let files = tokenize::tokenize_movies(&tok, movies, &code_dir, 1, 4)?;
    let data = codes::load_code_data(&files, 0.1)?;
    let cfg = TrainConfig {
        seed,
        batch_size: 8,
        max_steps: 60,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 10,
        eval_every: 0,
        checkpoint_every: 0,
        eval_samples: 32,
        ..TrainConfig::default()
    };
    train_prior(&gpt, &cfg, &data, &prior_dir, Device::Cpu, false)?;
    copy_tokenizer(&tok_dir, &prior_dir)?;
    Ok(prior_dir)
}

/// [`train_small_prior_frames`] on movie files, decoded at native rate to 32×32 (frame cache
/// in `work/frames`). For `brainscale demo --extractor gpt`.
pub fn train_small_prior(movies: &[PathBuf], work: &Path, seed: u64) -> Result<PathBuf> {
    let (vq, _) = small_prior_configs();
    let opts = crate::fmri::video::DecodeOptions {
        fps: None,
        size: Some(vq.resolution as u32),
        ..Default::default()
    };
    let decoded = crate::fmri::video::decode_all(movies, &work.join("frames"), &opts)?;
    train_small_prior_frames(&decoded, work, seed)
}
