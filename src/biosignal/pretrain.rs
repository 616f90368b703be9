//! Self-supervised pretraining of a bio-signal model on one or several unlabelled pools, through
//! the training engine ([`crate::nn::fit`]: checkpoints, resume, loss CSV, progress).
//!
//! Objectives ([`Objective`]):
//! - `mae-time` / `mae-freq`: CiTrus-style masked auto-encoding of the hybrid model (contiguous
//!   spans of patches masked; MSE on masked patches only) with the raw patch samples as target,
//!   or ln(1 + |rfft(patch)|/√P) of each masked patch ([`crate::models::objectives::MaeTarget`]);
//! - `contrastive`: BIOT's unsupervised objective (a view with a random subset of STFT frames
//!   per channel, a predictor MLP, InfoNCE against the full view at τ = 0.2).
//!
//! Every pool must already have the model's rate and window length (the pretraining shape,
//! recorded in `pretrain.json` so that fine-tuning aligns downstream sets to it). Several pools
//! make a multimodal mixture ([`MixtureSignals`]): each batch comes whole from one pool, pools
//! equally likely; CiTrus sees every channel as its own sequence, BIOT gives each pool its own
//! rows of the channel table (offsets in pool order). The last ⌈N/10⌉ windows of each pool (at
//! most 64) are held out for the evaluation loss.
use crate::biosignal::train::{InMemorySignals, MixtureSignals};
use crate::biosignal::Windows;
use crate::models::registry::{ArchVisitor, BioModelConfig};
pub use crate::models::signal::Objective;
use crate::models::signal::{Pretraining, SignalArch};
use crate::nn::fit::{fit, FitOptions, TrainSummary};
use crate::nn::{TrainConfig, Trainer};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::Device;

/// What a pretraining folder holds besides the checkpoint (`pretrain.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PretrainInfo {
    /// The architecture's registry name ("biot", "citrus", ...).
    pub arch: String,
    pub objective: Objective,
    /// The pretraining shape: rate (Hz) and window length (samples).
    pub rate: f64,
    pub length: usize,
    /// Each pool's source and window count.
    pub pools: Vec<(String, usize)>,
    pub steps: u64,
    pub final_eval_loss: Option<f64>,
}

/// Settings of one pretraining run.
#[derive(Debug, Clone)]
pub struct PretrainOptions {
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub device: Device,
    pub progress: bool,
}

impl Default for PretrainOptions {
    fn default() -> Self {
        Self {
            steps: 300,
            batch_size: 32,
            lr: 1e-3,
            seed: 0,
            device: Device::Cpu,
            progress: false,
        }
    }
}

/// The model config a pretraining folder was trained with (`config.toml` and `pretrain.json`).
pub fn load_pretrained_model(dir: &Path) -> Result<(BioModelConfig, PretrainInfo)> {
    let info: PretrainInfo =
        crate::core::io::read_json(&dir.join("pretrain.json")).with_context(|| {
            format!(
                "{}: not a `biosignal pretrain` folder (pretrain.json)",
                dir.display()
            )
        })?;
    // Folders written before config files named their model carry it in pretrain.json.
    let path = dir.join("config.toml");
    let mut text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading model config {}", path.display()))?;
    if !text.lines().any(|l| l.trim_start().starts_with("model")) {
        text = format!("model = \"{}\"\n{text}", info.arch);
    }
    let model = BioModelConfig::parse(&text, &path.display().to_string())?;
    if model.arch() != info.arch {
        bail!(
            "{}: config.toml is a {} model but pretrain.json says {}",
            dir.display(),
            model.arch(),
            info.arch
        );
    }
    Ok((model, info))
}

/// Pretrains `model` with `objective` on `pools` into `out` (resuming a checkpoint there; a
/// finished run returns at once) and writes `out/pretrain.json`. The model config is adapted to
/// the objective: MAE sets the hybrid's `mae_target` (a frequency target keeps the config's `log`
/// flag, default log). Errors: objective and architecture mismatched, pools of different rates
/// or lengths (named), unlabelled-pool shapes the model cannot take, too few windows.
pub fn pretrain(
    model: &BioModelConfig,
    objective: Objective,
    pools: &[Windows],
    opts: &PretrainOptions,
    out: &Path,
) -> Result<TrainSummary> {
    let Some(first) = pools.first() else {
        bail!("no pretraining pool given");
    };
    let Some(rate) = first.rate else {
        bail!("{}: sampling rate unknown", first.source);
    };
    let length = first.window_len();
    for p in pools {
        if p.rate != Some(rate) || p.window_len() != length {
            bail!(
                "{}: {} × {} samples, but {} has {} × {}: align every pool to one rate and length \
                 (biosignal resample)",
                p.source,
                crate::biosignal::fmt_rate(p.rate),
                p.window_len(),
                first.source,
                crate::biosignal::fmt_rate(Some(rate)),
                length
            );
        }
        if p.len() < 2 {
            bail!("{}: a pool needs at least 2 windows", p.source);
        }
    }
    let tc = TrainConfig {
        seed: opts.seed,
        batch_size: opts.batch_size,
        max_steps: opts.steps,
        lr: opts.lr,
        min_lr: opts.lr / 10.0,
        warmup_steps: (opts.steps / 10).max(1),
        weight_decay: 0.01,
        eval_every: (opts.steps / 5).max(1),
        checkpoint_every: (opts.steps / 4).max(1),
        ..TrainConfig::default()
    };
    let (arch, summary) = model.visit(Run {
        objective,
        pools,
        opts,
        tc: &tc,
        out,
    })?;
    let info = PretrainInfo {
        arch: arch.into(),
        objective,
        rate,
        length,
        pools: pools.iter().map(|p| (p.source.clone(), p.len())).collect(),
        steps: summary.steps,
        final_eval_loss: summary.final_eval_loss,
    };
    crate::core::io::write_json(&out.join("pretrain.json"), &info)?;
    Ok(summary)
}

/// The generic body of [`pretrain`] once the architecture is known.
struct Run<'a> {
    objective: Objective,
    pools: &'a [Windows],
    opts: &'a PretrainOptions,
    tc: &'a TrainConfig,
    out: &'a Path,
}

impl ArchVisitor for Run<'_> {
    type Out = Result<(&'static str, TrainSummary)>;
    fn visit<A: SignalArch>(self, model: &A) -> Self::Out {
        let (pools, opts) = (self.pools, self.opts);
        let c = model
            .for_objective(self.objective)
            .map_err(|e| anyhow!("{}: {e}", model.name()))?;
        // Channel-independent models see every channel as its own sequence; the others give each
        // pool its own rows of the channel table (offsets in pool order).
        let mut offset = 0;
        let mut sources = Vec::new();
        for p in pools {
            let held = (p.len() / 10).clamp(1, 64);
            let train: Vec<usize> = (0..p.len() - held).collect();
            let eval: Vec<usize> = (p.len() - held..p.len()).collect();
            let (x, _) = p.batch(&train, Device::Cpu)?;
            let (xe, _) = p.batch(&eval, Device::Cpu)?;
            let mut s = InMemorySignals::new(x, None, xe, None)?;
            if c.channel_independent() {
                s = s.into_single_channel();
            } else {
                s.channel_offset = offset;
                offset += p.n_channels() as i64;
            }
            sources.push(s);
        }
        let length = pools[0].window_len() as i64;
        let channels = if c.channel_independent() { 1 } else { offset };
        c.check_input(channels, length)
            .map_err(|e| anyhow!("{}: {e}", c.name()))?;
        let n = sources.len();
        let data = MixtureSignals::new(sources, vec![1.0; n])?;
        let per_sample = if c.channel_independent() {
            1
        } else {
            pools[0].n_channels() as i64
        };
        let fo = FitOptions {
            flops_per_unit: c.train_flops_per_sample(per_sample, length, true),
            progress: opts.progress,
            label: format!("{} steps", self.objective.name()),
        };
        let mut t =
            Trainer::<Pretraining<A>>::open(self.out, &c, self.tc, opts.device, |_, _| Ok(()))?;
        Ok((A::ARCH, fit(&mut t, &data, self.out, &fo)?))
    }
}
