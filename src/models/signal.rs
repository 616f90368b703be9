//! What a bio-signal architecture provides so that pretraining, fine-tuning, transfer and the
//! throughput bench run it without knowing it (braindecode's `EEGModuleMixin` role): a config
//! implementing [`SignalArch`] with its classifier ([`Classify`]) and self-supervised network
//! ([`Pretext`]). The engine ([`crate::nn::Model`]) trains them through two generic adapters,
//! [`Supervised`] (cross-entropy of the head) and [`Pretraining`] (the pretext loss the config
//! names), so a model file holds its config, its layers and these impls, and nothing else.
//!
//! Pretrained weights carry over by name: everything but `head.*` and `decoder.*` of the pretext
//! network loads into the classifier (e.g. BIOT's `encoder.*`, CiTrus's `stem.*` and encoder).
use crate::models::config::ModelConfig;
use crate::models::layers;
use crate::models::objectives::{self, SignalBatch};
use crate::nn::trainer::{Loss, Model};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// A self-supervised pretraining objective (`biosignal pretrain --objective`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Masked auto-encoding, time-domain target (CiTrus hybrid).
    MaeTime,
    /// Masked auto-encoding, log-magnitude spectrum target (CiTrus hybrid).
    MaeFreq,
    /// Contrastive: InfoNCE between a perturbed and the whole view (BIOT).
    Contrastive,
}

impl Objective {
    /// Every objective, in CLI order.
    pub const ALL: [Objective; 3] = [Self::MaeTime, Self::MaeFreq, Self::Contrastive];

    /// The CLI and `pretrain.json` name.
    pub fn name(self) -> &'static str {
        match self {
            Objective::MaeTime => "mae-time",
            Objective::MaeFreq => "mae-freq",
            Objective::Contrastive => "contrastive",
        }
    }
}

impl std::str::FromStr for Objective {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .with_context(|| format!("unknown objective '{s}' (mae-time, mae-freq, contrastive)"))
    }
}

/// Which loss the throughput bench (`bench-train --preset`) times for an architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// The classifier's cross-entropy on labelled windows.
    Supervised,
    /// The pretext loss on unlabelled windows.
    Pretext,
}

/// A classifier network: x [B, C, L] → logits [B, n_classes] fp32.
pub trait Classify<C>: Sized {
    /// Builds the variables under `root` (heads under `root/head`).
    fn build(root: &nn::Path, cfg: &C) -> Result<Self>;
    fn config(&self) -> &C;
    /// Class logits; `channel_offset` is the first channel-table row of the input's channels
    /// (ignored by models without a channel table).
    fn logits(&self, x: &Tensor, channel_offset: i64, train: bool, kind: Kind) -> Result<Tensor>;
}

/// A self-supervised network and its loss on an unlabelled batch (masks and subsets drawn from
/// `batch.seed`, so runs are reproducible bit for bit).
pub trait Pretext<C>: Sized {
    fn build(root: &nn::Path, cfg: &C) -> Result<Self>;
    fn config(&self) -> &C;
    fn pretext_loss(&self, batch: &SignalBatch, train: bool, kind: Kind) -> Result<Tensor>;
}

/// A bio-signal architecture, implemented by its config type; registered with one line in
/// [`crate::models::registry`].
pub trait SignalArch: ModelConfig + Clone + PartialEq + Debug + Send + Sync + 'static {
    type Classifier: Classify<Self>;
    type Pretext: Pretext<Self>;

    /// The config's `name` field (for messages and result rows).
    fn name(&self) -> &str;
    /// Outputs of the classification head.
    fn n_classes(&self) -> i64;
    /// The same config with a head of `k` classes.
    fn with_classes(&self, k: i64) -> Self;
    /// The config the pretext network trains `objective` with. Errors (without the config name,
    /// which callers add) when the architecture cannot train that objective.
    fn for_objective(&self, objective: Objective) -> Result<Self>;
    /// Whether every channel is its own sequence (windows fed as [N·C, 1, L], any channel mix);
    /// otherwise the pools of a mixture get consecutive channel-table rows.
    fn channel_independent(&self) -> bool;
    /// Whether the model takes `channels` channels (all pools together for a channel table) of
    /// `samples` samples. Errors say why, without the config name.
    fn check_input(&self, channels: i64, samples: i64) -> Result<()>;
    /// Training FLOPs per sample of `channels` × `samples` ([`crate::core::flops`]), of the
    /// pretext network when `pretext`, else the classifier.
    fn train_flops_per_sample(&self, channels: i64, samples: i64, pretext: bool) -> f64;
    /// Parameter counts, stored in checkpoints' `state.json`.
    fn param_info(&self) -> serde_json::Value;
    /// Every parameter of the built classifier (pretext: with its extra parts).
    fn param_count(&self) -> u64;
    /// The loss `bench-train --preset` times (default: the classifier's).
    fn bench_task(&self) -> Task {
        Task::Supervised
    }
}

fn units(b: &SignalBatch) -> u64 {
    b.x.size().first().copied().unwrap_or(0) as u64
}

fn write_config<A: SignalArch>(dir: &Path, cfg: &A) -> Result<()> {
    let text = cfg.to_toml()?;
    crate::core::io::write_atomic(&dir.join("config.toml"), |tmp| {
        Ok(std::fs::write(tmp, text)?)
    })
}

/// The classifier of `A` on the engine: mean cross-entropy of `batch.labels`.
pub struct Supervised<A: SignalArch>(pub A::Classifier);

impl<A: SignalArch> Model for Supervised<A> {
    type Config = A;
    type Batch = SignalBatch;
    fn build(root: &nn::Path, cfg: &A) -> Result<Self> {
        Ok(Self(A::Classifier::build(root, cfg)?))
    }
    fn config(&self) -> &A {
        self.0.config()
    }
    fn decays(name: &str, p: &Tensor) -> bool {
        layers::decays(name, p)
    }
    fn loss(&self, b: &SignalBatch, train: bool, kind: Kind) -> Result<Loss> {
        let labels = b
            .labels
            .as_ref()
            .context("supervised training needs labelled windows (SignalBatch.labels)")?;
        let logits = self.0.logits(&b.x, b.channel_offset, train, kind)?;
        Ok(Loss::plain(objectives::cross_entropy(&logits, labels)?))
    }
    fn units(&self, b: &SignalBatch) -> u64 {
        units(b)
    }
    fn info(&self) -> serde_json::Value {
        self.config().param_info()
    }
    fn save_extra(&self, dir: &Path) -> Result<()> {
        write_config(dir, self.config())
    }
}

/// The pretext network of `A` on the engine (its loss as its config sets it, see
/// [`SignalArch::for_objective`]).
pub struct Pretraining<A: SignalArch>(pub A::Pretext);

impl<A: SignalArch> Model for Pretraining<A> {
    type Config = A;
    type Batch = SignalBatch;
    fn build(root: &nn::Path, cfg: &A) -> Result<Self> {
        Ok(Self(A::Pretext::build(root, cfg)?))
    }
    fn config(&self) -> &A {
        self.0.config()
    }
    fn decays(name: &str, p: &Tensor) -> bool {
        layers::decays(name, p)
    }
    fn loss(&self, b: &SignalBatch, train: bool, kind: Kind) -> Result<Loss> {
        Ok(Loss::plain(self.0.pretext_loss(b, train, kind)?))
    }
    fn units(&self, b: &SignalBatch) -> u64 {
        units(b)
    }
    fn info(&self) -> serde_json::Value {
        self.config().param_info()
    }
    fn save_extra(&self, dir: &Path) -> Result<()> {
        write_config(dir, self.config())
    }
}

/// The error of an objective an architecture does not train.
pub fn unsupported(objective: Objective, trains: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "objective {} does not fit this model ({trains})",
        objective.name()
    )
}

/// Checks a pretext batch is [B, C, L] and returns (C, L).
pub fn signal_shape(x: &Tensor) -> Result<(i64, i64)> {
    let size = x.size();
    if size.len() != 3 {
        bail!("bio-signal input must be [batch, channels, samples], got {size:?}");
    }
    Ok((size[1], size[2]))
}
