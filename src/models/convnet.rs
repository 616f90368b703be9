//! A one-layer convolutional classifier, the smallest bio-signal model: it shows what adding an
//! architecture takes (this file and one line in [`crate::models::registry`]) and serves as a
//! floor to compare the others with.
//!
//! Every channel is its own sequence (channel independence, as CiTrus): x [B, C, L] →
//! Conv1d(1 → `width`, `kernel_size`, stride `stride`, no padding) → GELU → mean over time, then
//! over channels → [B, width] → head Linear(width → n_classes). Pretraining is contrastive: the
//! embedding of each window with a contiguous `mask_ratio` of its samples zeroed (the span drawn
//! from the batch seed) is matched to the whole window's by InfoNCE at τ = 0.2.
use crate::models::config::{positive, ModelConfig};
use crate::models::layers::Linear;
use crate::models::objectives::{self, SignalBatch};
use crate::models::signal::{self, Classify, Objective, Pretext, SignalArch};
use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Sizes of the convolutional classifier (`model = "convnet"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConvNetConfig {
    pub name: String,
    /// Output channels of the convolution (the embedding width).
    pub width: i64,
    /// Kernel length in samples.
    pub kernel_size: i64,
    /// Convolution stride in samples.
    pub stride: i64,
    /// Outputs of the classification head.
    pub n_classes: i64,
    /// Fraction of each window zeroed in the contrastive view, in (0, 1).
    pub mask_ratio: f64,
}

impl Default for ConvNetConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            width: 16,
            kernel_size: 9,
            stride: 2,
            n_classes: 2,
            mask_ratio: 0.25,
        }
    }
}

impl ModelConfig for ConvNetConfig {
    const ARCH: &'static str = "convnet";
    fn validate(&self) -> Result<()> {
        positive(&[
            ("width", self.width),
            ("kernel_size", self.kernel_size),
            ("stride", self.stride),
            ("n_classes", self.n_classes),
        ])?;
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            bail!("mask_ratio must be in (0, 1), got {}", self.mask_ratio);
        }
        Ok(())
    }
}

/// The convolution (`encoder.conv`) → pooled embedding [B, width] fp32.
pub struct ConvEncoder {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
}

impl ConvEncoder {
    fn new(p: nn::Path, cfg: &ConvNetConfig) -> Self {
        // PyTorch's Conv1d init: U(±1/√(in·k)).
        let b = 1.0 / (cfg.kernel_size as f64).sqrt();
        let init = nn::Init::Uniform { lo: -b, up: b };
        Self {
            weight: p.var("weight", &[cfg.width, 1, cfg.kernel_size], init),
            bias: p.var("bias", &[cfg.width], init),
            stride: cfg.stride,
        }
    }

    /// x [B, C, L] → [B, width] fp32 (mean over time, then channels).
    pub fn encode(&self, x: &Tensor, kind: Kind) -> Result<Tensor> {
        let (c, l) = signal::signal_shape(x)?;
        let k = self.weight.size()[2];
        if l < k {
            bail!("windows of {l} samples are shorter than the kernel ({k})");
        }
        let b = x.size()[0];
        let h = x
            .to_kind(kind)
            .reshape([b * c, 1, l])
            .conv1d(
                &self.weight.to_kind(kind),
                Some(&self.bias.to_kind(kind)),
                [self.stride],
                [0],
                [1],
                1,
            )
            .to_kind(Kind::Float)
            .gelu("none")
            .mean_dim(2, false, Kind::Float);
        Ok(h.view([b, c, -1]).mean_dim(1, false, Kind::Float))
    }
}

/// Supervised: encoder + head.
pub struct ConvNet {
    pub cfg: ConvNetConfig,
    pub encoder: ConvEncoder,
    head: Linear,
}

impl Classify<ConvNetConfig> for ConvNet {
    fn build(root: &nn::Path, cfg: &ConvNetConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            encoder: ConvEncoder::new(root / "encoder" / "conv", cfg),
            head: Linear::new(root / "head", cfg.width, cfg.n_classes, true),
        })
    }
    fn config(&self) -> &ConvNetConfig {
        &self.cfg
    }
    fn logits(&self, x: &Tensor, _offset: i64, _train: bool, kind: Kind) -> Result<Tensor> {
        let e = self.encoder.encode(x, kind)?;
        Ok(self.head.forward(&e, kind).to_kind(Kind::Float))
    }
}

/// Contrastive pretraining of the encoder (no extra parameters).
pub struct ConvNetPretrain {
    pub cfg: ConvNetConfig,
    pub encoder: ConvEncoder,
}

impl Pretext<ConvNetConfig> for ConvNetPretrain {
    fn build(root: &nn::Path, cfg: &ConvNetConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            encoder: ConvEncoder::new(root / "encoder" / "conv", cfg),
        })
    }
    fn config(&self) -> &ConvNetConfig {
        &self.cfg
    }
    fn pretext_loss(&self, b: &SignalBatch, _train: bool, kind: Kind) -> Result<Tensor> {
        let (c, l) = signal::signal_shape(&b.x)?;
        let n = b.x.size()[0];
        let span = ((self.cfg.mask_ratio * l as f64).round() as i64).clamp(1, l - 1);
        let mut rng = ChaCha8Rng::seed_from_u64(b.seed);
        let mut keep = vec![1f32; (n * c * l) as usize];
        for row in keep.chunks_mut(l as usize) {
            let s = rng.gen_range(0..=l - span) as usize;
            row[s..s + span as usize].fill(0.0);
        }
        let keep = Tensor::from_slice(&keep)
            .view([n, c, l])
            .to_device(b.x.device());
        let whole = self.encoder.encode(&b.x, kind)?;
        let masked = self
            .encoder
            .encode(&(b.x.to_kind(Kind::Float) * keep), kind)?;
        objectives::info_nce(&whole, &masked, 0.2)
    }
}

impl SignalArch for ConvNetConfig {
    type Classifier = ConvNet;
    type Pretext = ConvNetPretrain;
    fn name(&self) -> &str {
        &self.name
    }
    fn n_classes(&self) -> i64 {
        self.n_classes
    }
    fn with_classes(&self, k: i64) -> Self {
        Self {
            n_classes: k,
            ..self.clone()
        }
    }
    fn for_objective(&self, objective: Objective) -> Result<Self> {
        match objective {
            Objective::Contrastive => Ok(self.clone()),
            o => Err(signal::unsupported(o, "convnet trains contrastive only")),
        }
    }
    fn channel_independent(&self) -> bool {
        true
    }
    fn check_input(&self, _channels: i64, samples: i64) -> Result<()> {
        if samples < self.kernel_size {
            bail!(
                "windows of {samples} samples are shorter than the kernel ({})",
                self.kernel_size
            );
        }
        Ok(())
    }
    /// 6 × parameters × output positions per channel (the convolution), + 6 × head parameters.
    fn train_flops_per_sample(&self, channels: i64, samples: i64, _pretext: bool) -> f64 {
        let positions = ((samples - self.kernel_size) / self.stride + 1).max(0);
        let conv = (self.width * self.kernel_size + self.width) as f64;
        let head = (self.width * self.n_classes + self.n_classes) as f64;
        6.0 * conv * (positions * channels) as f64 + 6.0 * head
    }
    fn param_info(&self) -> serde_json::Value {
        serde_json::json!({ "total": self.param_count() })
    }
    fn param_count(&self) -> u64 {
        (self.width * self.kernel_size + self.width + self.width * self.n_classes + self.n_classes)
            as u64
    }
}
