//! The bio-signal models on the training engine ([`crate::nn::trainer::Model`]): one adapter per
//! (model, objective), all taking [`SignalBatch`]es, plus [`InMemorySignals`], a [`Data`] source
//! over windows held in memory.
//!
//! | adapter | model | objective | needs labels |
//! |---|---|---|---|
//! | [`BiotSupervised`] | [`Biot`] | cross-entropy of the head | yes |
//! | [`BiotContrastive`] | [`BiotPretrain`] | BIOT's InfoNCE (τ = [`BIOT_TEMPERATURE`]) | no |
//! | [`CitrusMae`] | [`Citrus`] (hybrid) | masked auto-encoding (`cfg.mae_target`, `cfg.mask`) | no |
//! | [`CitrusSupervised`] | [`Citrus`] (hybrid or conv) | cross-entropy of the head | yes |
//!
//! Pretrained weights carry over by name: `encoder.*` of [`BiotContrastive`] into
//! [`BiotSupervised`], `stem.*`, `patch_embedding`, `pos_embedding`, `encoder.*` of
//! [`CitrusMae`] into [`CitrusSupervised`] (e.g. `VarStore::load_partial` in `Trainer::with_init`).
//! Throughput units are samples; FLOPs per sample come from the configs'
//! `train_flops_per_sample(channels, samples, ..)`.
use crate::models::biot::{Biot, BiotConfig, BiotPretrain};
use crate::models::citrus::{Citrus, CitrusConfig};
use crate::models::layers;
use crate::models::objectives::{self, SignalBatch};
use crate::nn::trainer::{Data, Loss, Model};
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// BIOT's contrastive temperature (`run_unsupervised_pretrain.py`: `self.T = 0.2`).
pub const BIOT_TEMPERATURE: f64 = 0.2;

fn labels(b: &SignalBatch) -> Result<&Tensor> {
    b.labels
        .as_ref()
        .context("supervised training needs labelled windows (SignalBatch.labels)")
}

fn units(b: &SignalBatch) -> u64 {
    b.x.size().first().copied().unwrap_or(0) as u64
}

fn write_config(dir: &Path, text: String) -> Result<()> {
    crate::core::io::write_atomic(&dir.join("config.toml"), |tmp| {
        Ok(std::fs::write(tmp, text)?)
    })
}

/// Supervised BIOT (cross-entropy).
pub struct BiotSupervised(pub Biot);

impl Model for BiotSupervised {
    type Config = BiotConfig;
    type Batch = SignalBatch;
    fn build(root: &nn::Path, cfg: &BiotConfig) -> Result<Self> {
        Ok(Self(Biot::new(root, cfg)?))
    }
    fn config(&self) -> &BiotConfig {
        &self.0.cfg
    }
    fn decays(name: &str, p: &Tensor) -> bool {
        layers::decays(name, p)
    }
    fn loss(&self, b: &SignalBatch, train: bool, kind: Kind) -> Result<Loss> {
        let logits = self.0.logits(&b.x, b.channel_offset, train, kind)?;
        Ok(Loss::plain(objectives::cross_entropy(&logits, labels(b)?)?))
    }
    fn units(&self, b: &SignalBatch) -> u64 {
        units(b)
    }
    fn info(&self) -> serde_json::Value {
        serde_json::to_value(self.0.cfg.param_counts()).unwrap_or_default()
    }
    fn save_extra(&self, dir: &Path) -> Result<()> {
        write_config(dir, self.0.cfg.to_toml()?)
    }
}

/// BIOT's unsupervised pretraining: the perturbed view's frame subsets are drawn from the batch
/// seed ([`objectives::biot_keep_frames`]).
pub struct BiotContrastive(pub BiotPretrain);

impl Model for BiotContrastive {
    type Config = BiotConfig;
    type Batch = SignalBatch;
    fn build(root: &nn::Path, cfg: &BiotConfig) -> Result<Self> {
        Ok(Self(BiotPretrain::new(root, cfg)?))
    }
    fn config(&self) -> &BiotConfig {
        &self.0.cfg
    }
    fn decays(name: &str, p: &Tensor) -> bool {
        layers::decays(name, p)
    }
    fn loss(&self, b: &SignalBatch, train: bool, kind: Kind) -> Result<Loss> {
        let size = b.x.size();
        if size.len() != 3 {
            bail!("bio-signal input must be [batch, channels, samples], got {size:?}");
        }
        let frames = self.0.cfg.frames(size[2]);
        let mut rng = ChaCha8Rng::seed_from_u64(b.seed);
        let keep = objectives::biot_keep_frames(size[1] as usize, frames as usize, &mut rng);
        let l = self.0.contrastive_loss(
            &b.x,
            b.channel_offset,
            &keep,
            BIOT_TEMPERATURE,
            train,
            kind,
        )?;
        Ok(Loss::plain(l))
    }
    fn units(&self, b: &SignalBatch) -> u64 {
        units(b)
    }
    fn info(&self) -> serde_json::Value {
        serde_json::to_value(self.0.cfg.param_counts()).unwrap_or_default()
    }
    fn save_extra(&self, dir: &Path) -> Result<()> {
        write_config(dir, self.0.cfg.to_toml()?)
    }
}

/// CiTrus masked auto-encoding (masks drawn from the batch seed).
pub struct CitrusMae(pub Citrus);

impl Model for CitrusMae {
    type Config = CitrusConfig;
    type Batch = SignalBatch;
    fn build(root: &nn::Path, cfg: &CitrusConfig) -> Result<Self> {
        Ok(Self(Citrus::new(root, cfg)?))
    }
    fn config(&self) -> &CitrusConfig {
        &self.0.cfg
    }
    fn decays(name: &str, p: &Tensor) -> bool {
        layers::decays(name, p)
    }
    fn loss(&self, b: &SignalBatch, train: bool, kind: Kind) -> Result<Loss> {
        Ok(Loss::plain(self.0.mae_loss(&b.x, b.seed, train, kind)?))
    }
    fn units(&self, b: &SignalBatch) -> u64 {
        units(b)
    }
    fn info(&self) -> serde_json::Value {
        serde_json::to_value(self.0.cfg.param_counts()).unwrap_or_default()
    }
    fn save_extra(&self, dir: &Path) -> Result<()> {
        write_config(dir, self.0.cfg.to_toml()?)
    }
}

/// Supervised CiTrus (hybrid or conv-only; cross-entropy).
pub struct CitrusSupervised(pub Citrus);

impl Model for CitrusSupervised {
    type Config = CitrusConfig;
    type Batch = SignalBatch;
    fn build(root: &nn::Path, cfg: &CitrusConfig) -> Result<Self> {
        Ok(Self(Citrus::new(root, cfg)?))
    }
    fn config(&self) -> &CitrusConfig {
        &self.0.cfg
    }
    fn decays(name: &str, p: &Tensor) -> bool {
        layers::decays(name, p)
    }
    fn loss(&self, b: &SignalBatch, train: bool, kind: Kind) -> Result<Loss> {
        Ok(Loss::plain(self.0.loss(&b.x, labels(b)?, train, kind)?))
    }
    fn units(&self, b: &SignalBatch) -> u64 {
        units(b)
    }
    fn info(&self) -> serde_json::Value {
        serde_json::to_value(self.0.cfg.param_counts()).unwrap_or_default()
    }
    fn save_extra(&self, dir: &Path) -> Result<()> {
        write_config(dir, self.0.cfg.to_toml()?)
    }
}

/// Windows held in memory (CPU): train x [N, C, L] (+ labels [N]) and held-out ones.
/// Training batches draw `batch_size` windows uniformly with replacement and a mask seed from the
/// engine's RNG; evaluation batches are the held-out windows in order with seed = their start
/// index (fixed masks, so eval losses are comparable across steps).
pub struct InMemorySignals {
    pub train_x: Tensor,
    pub train_y: Option<Tensor>,
    pub eval_x: Tensor,
    pub eval_y: Option<Tensor>,
    /// BIOT channel-table offset of these windows.
    pub channel_offset: i64,
}

impl InMemorySignals {
    /// Checks shapes: x [N, C, L] float, y [N] int64 when given, train non-empty.
    pub fn new(
        train_x: Tensor,
        train_y: Option<Tensor>,
        eval_x: Tensor,
        eval_y: Option<Tensor>,
    ) -> Result<Self> {
        for (name, x, y) in [("train", &train_x, &train_y), ("eval", &eval_x, &eval_y)] {
            if x.dim() != 3 {
                bail!("{name} windows must be [N, C, L], got {:?}", x.size());
            }
            if let Some(y) = y {
                if y.size() != [x.size()[0]] || y.kind() != Kind::Int64 {
                    bail!(
                        "{name} labels must be int64 [{}], got {:?} {:?}",
                        x.size()[0],
                        y.kind(),
                        y.size()
                    );
                }
            }
        }
        if train_x.size()[0] == 0 {
            bail!("no training windows");
        }
        Ok(Self {
            train_x,
            train_y,
            eval_x,
            eval_y,
            channel_offset: 0,
        })
    }
}

impl InMemorySignals {
    /// Every channel as its own window: x [N, C, L] → [N·C, 1, L] (labels repeated per channel),
    /// for channel-independent models and mixtures of channel counts.
    pub fn into_single_channel(self) -> Self {
        let flat = |x: Tensor| {
            let (n, c, l) = x.size3().expect("checked in new");
            x.reshape([n * c, 1, l])
        };
        let rep =
            |y: Option<Tensor>, c: i64| y.map(|y| y.repeat_interleave_self_int(c, Some(0), None));
        let (ct, ce) = (self.train_x.size()[1], self.eval_x.size()[1]);
        Self {
            train_y: rep(self.train_y, ct),
            eval_y: rep(self.eval_y, ce),
            train_x: flat(self.train_x),
            eval_x: flat(self.eval_x),
            channel_offset: 0,
        }
    }
}

impl Data<SignalBatch> for InMemorySignals {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<SignalBatch> {
        let n = self.train_x.size()[0];
        let idx: Vec<i64> = (0..batch_size).map(|_| rng.gen_range(0..n)).collect();
        let idx = Tensor::from_slice(&idx);
        Ok(SignalBatch {
            x: self.train_x.index_select(0, &idx).to_device(device),
            labels: self
                .train_y
                .as_ref()
                .map(|y| y.index_select(0, &idx).to_device(device)),
            channel_offset: self.channel_offset,
            seed: rng.gen(),
        })
    }
    fn eval_len(&self) -> usize {
        self.eval_x.size()[0] as usize
    }
    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<SignalBatch> {
        if start + len > self.eval_len() {
            bail!(
                "eval windows {start}..{} beyond {}",
                start + len,
                self.eval_len()
            );
        }
        let (s, l) = (start as i64, len as i64);
        Ok(SignalBatch {
            x: self.eval_x.narrow(0, s, l).to_device(device),
            labels: self
                .eval_y
                .as_ref()
                .map(|y| y.narrow(0, s, l).to_device(device)),
            channel_offset: self.channel_offset,
            seed: start as u64,
        })
    }
}

/// Multimodal pretraining pool: several sources (modalities or datasets, each already resampled
/// to the model rate and window length, each with its own channel count and BIOT channel offset).
/// Each micro-batch comes whole from one source, drawn with probability ∝ `weights`, so channel
/// counts may differ between sources; the channel-independent CiTrus model treats every channel
/// as its own sequence either way. Evaluation runs over the sources' held-out windows in order.
pub struct MixtureSignals {
    pub sources: Vec<InMemorySignals>,
    pub weights: Vec<f64>,
}

impl MixtureSignals {
    pub fn new(sources: Vec<InMemorySignals>, weights: Vec<f64>) -> Result<Self> {
        if sources.is_empty() || sources.len() != weights.len() {
            bail!("{} sources with {} weights", sources.len(), weights.len());
        }
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || weights.iter().sum::<f64>() <= 0.0
        {
            bail!("mixture weights must be non-negative with a positive sum, got {weights:?}");
        }
        Ok(Self { sources, weights })
    }

    /// Source and local index of held-out window `i`.
    fn locate(&self, mut i: usize) -> Result<(&InMemorySignals, usize)> {
        for s in &self.sources {
            if i < s.eval_len() {
                return Ok((s, i));
            }
            i -= s.eval_len();
        }
        bail!(
            "held-out window {i} beyond the mixture's {}",
            self.eval_len()
        )
    }
}

impl Data<SignalBatch> for MixtureSignals {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<SignalBatch> {
        let total: f64 = self.weights.iter().sum();
        let mut u = rng.gen::<f64>() * total;
        let mut pick = self.sources.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            if u < *w {
                pick = i;
                break;
            }
            u -= w;
        }
        self.sources[pick].train_batch(rng, batch_size, device)
    }
    fn eval_len(&self) -> usize {
        self.sources.iter().map(|s| s.eval_len()).sum()
    }
    /// Held-out windows `start..start+len` in source order; a range across sources is joined,
    /// which needs equal channel counts (flatten with [`InMemorySignals::into_single_channel`]
    /// for a channel-independent model).
    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<SignalBatch> {
        let mut parts = Vec::new();
        let mut at = start;
        while at < start + len {
            let (s, i) = self.locate(at)?;
            let take = (s.eval_len() - i).min(start + len - at);
            parts.push(s.eval_batch(i, take, device)?);
            at += take;
        }
        let c = parts[0].x.size()[1];
        if parts
            .iter()
            .any(|p| p.x.size()[1] != c || p.channel_offset != parts[0].channel_offset)
        {
            bail!("held-out windows {start}..{} join sources with different channel counts or offsets: \
                   flatten them to single channels (into_single_channel) or evaluate sources separately", start + len);
        }
        let xs: Vec<&Tensor> = parts.iter().map(|p| &p.x).collect();
        let labels = match parts
            .iter()
            .map(|p| p.labels.as_ref())
            .collect::<Option<Vec<_>>>()
        {
            Some(ys) => Some(Tensor::cat(&ys, 0)),
            None => None,
        };
        Ok(SignalBatch {
            x: Tensor::cat(&xs, 0),
            labels,
            channel_offset: parts[0].channel_offset,
            seed: start as u64,
        })
    }
}

/// A bio-signal model config: BIOT or the CiTrus-style hybrid (or its conv-only variant).
#[derive(Debug, Clone)]
pub enum BioModelConfig {
    Biot(BiotConfig),
    Citrus(CitrusConfig),
}

impl BioModelConfig {
    /// Reads `biot-*` or `citrus-*` TOMLs (by the file name's prefix).
    pub fn load(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.starts_with("citrus") {
            Ok(Self::Citrus(CitrusConfig::load(path)?))
        } else if name.starts_with("biot") {
            Ok(Self::Biot(BiotConfig::load(path)?))
        } else {
            bail!(
                "{}: bio-signal model configs are named biot-*.toml or citrus-*.toml",
                path.display()
            )
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Biot(c) => &c.name,
            Self::Citrus(c) => &c.name,
        }
    }
}
