//! BIOT, the Biosignal Transformer (Yang, Westover & Sun, NeurIPS 2023; public code
//! ycq091044/BIOT `model/biot.py`, MIT), re-implemented layer for layer:
//!
//! 1. **Tokens**: per channel, the magnitude STFT with `n_fft` samples (one second at the model
//!    rate: 200 at 200 Hz), hop `hop` (half of it), no centring, one-sided and a **rectangular
//!    window** — BIOT calls `torch.stft(center=False, onesided=True)` without a window, which
//!    torch takes as all ones. Computed here as `unfold` frames + `rfft` + `abs`: the same numbers
//!    (tested against a direct DFT and against `torch.stft` in `bench/biot_torch.py`).
//!    A clip of L samples gives T = ⌊(L − n_fft)/hop⌋ + 1 frames of n_fft/2 + 1 bins per channel.
//! 2. Each frame → Linear(n_fft/2+1 → d) (`patch_embedding`), plus a learned channel embedding
//!    (`channel_tokens`, row `channel_offset + c`), plus sinusoidal positions over the frame index,
//!    restarting for every channel; dropout 0.1 (BIOT's `PositionalEncoding`).
//! 3. All channels' tokens concatenated: one sequence of C·T tokens.
//! 4. `n_layer` pre-LayerNorm blocks of lucidrains' `LinearAttentionTransformer` (non-causal,
//!    global heads only): q, k, v without bias; per head q ← softmax over its d_h features,
//!    k ← softmax over the sequence, q ← q·d_h^(−1/2); out = q·(kᵀv); `to_out` with bias, dropout
//!    `attn_dropout` (BIOT: 0.2); then feed-forward d → 4d → d with exact GELU. No final norm.
//! 5. Mean over the sequence → [B, d] embedding; head ELU → Linear(d, n_classes).
//!
//! The unsupervised pretraining model ([`BiotPretrain`]) adds BIOT's predictor MLP
//! (Linear–GELU–Linear) for the contrastive objective in [`crate::models::objectives`].
//!
//! Variable names (`encoder.layers.0.attn.to_q.weight`, ...) are those of `bench/biot_torch.py`,
//! the independent PyTorch build used to check logits.
use crate::models::config::{divisible, positive, probabilities, ModelConfig};
use crate::models::layers::{sinusoidal_table, LayerNorm, Linear};
use crate::models::objectives::{self, SignalBatch};
use crate::models::signal::{self, Classify, Objective, Pretext, SignalArch};
use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Frames per channel BIOT's position table holds (`PositionalEncoding(max_len=1000)`).
pub const BIOT_MIN_FRAMES: i64 = 1000;

/// BIOT's contrastive temperature (`run_unsupervised_pretrain.py`: `self.T = 0.2`).
pub const BIOT_TEMPERATURE: f64 = 0.2;

/// BIOT size and tokenisation; one TOML file per config in `models/` (`biot-*.toml`). Every
/// field has BIOT's reference value as default (d 256, 8 heads, depth 4, 200/100 STFT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BiotConfig {
    pub name: String,
    /// Model width d.
    pub d_model: i64,
    /// Number of linear-attention blocks.
    pub n_layer: i64,
    pub n_head: i64,
    /// STFT frame length in samples (one second at the model rate).
    pub n_fft: i64,
    /// STFT hop in samples (half a second).
    pub hop: i64,
    /// Rows of the channel-embedding table (≥ channel_offset + channels of any input).
    pub n_channels: i64,
    /// Outputs of the classification head.
    pub n_classes: i64,
    /// Feed-forward expansion factor.
    pub ff_mult: i64,
    /// Dropout after each attention block's output projection (BIOT: 0.2).
    pub attn_dropout: f64,
    /// Dropout after adding positions (BIOT: 0.1).
    pub pos_dropout: f64,
    /// Size of the sinusoidal position table; the table always holds at least
    /// [`BIOT_MIN_FRAMES`] (the reference's `max_len = 1000`), so a smaller value here never
    /// refuses a clip the reference accepts ([`BiotConfig::frame_capacity`]).
    pub max_frames: i64,
}

impl Default for BiotConfig {
    /// BIOT's reference configuration (18-channel table, 2 classes).
    fn default() -> Self {
        Self {
            name: String::new(),
            d_model: 256,
            n_layer: 4,
            n_head: 8,
            n_fft: 200,
            hop: 100,
            n_channels: 18,
            n_classes: 2,
            ff_mult: 4,
            attn_dropout: 0.2,
            pos_dropout: 0.1,
            max_frames: 1000,
        }
    }
}

/// BIOT parameter counts, computed here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BiotParamCounts {
    /// Every parameter of [`Biot`] (encoder + head).
    pub total: u64,
    /// The encoder alone (what pretraining scales).
    pub encoder: u64,
    /// Parameters applied at every token (the N of [`crate::core::flops`]): the frame projection and all
    /// blocks; the channel table (a lookup) is not.
    pub per_token: u64,
    /// The classification head (applied once per sample).
    pub head: u64,
    /// BIOT's contrastive predictor MLP (only in [`BiotPretrain`]).
    pub predictor: u64,
}

impl ModelConfig for BiotConfig {
    const ARCH: &'static str = "biot";

    fn validate(&self) -> Result<()> {
        positive(&[
            ("d_model", self.d_model),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_fft", self.n_fft),
            ("hop", self.hop),
            ("n_channels", self.n_channels),
            ("n_classes", self.n_classes),
            ("ff_mult", self.ff_mult),
            ("max_frames", self.max_frames),
        ])?;
        divisible("d_model", self.d_model, "n_head", self.n_head)?;
        if self.d_model % 2 != 0 {
            bail!(
                "d_model {} must be even (sinusoidal positions)",
                self.d_model
            );
        }
        probabilities(&[
            ("attn_dropout", self.attn_dropout),
            ("pos_dropout", self.pos_dropout),
        ])
    }
}

impl BiotConfig {
    /// Frames per channel the position table takes: max(`max_frames`, [`BIOT_MIN_FRAMES`]).
    /// The table is computed, not learned, so its size changes no parameter.
    pub fn frame_capacity(&self) -> i64 {
        self.max_frames.max(BIOT_MIN_FRAMES)
    }

    pub fn head_dim(&self) -> i64 {
        self.d_model / self.n_head
    }

    /// Frequency bins per frame: n_fft/2 + 1.
    pub fn n_freq(&self) -> i64 {
        self.n_fft / 2 + 1
    }

    /// Frames per channel for a clip of `samples` samples (0 if shorter than one frame).
    pub fn frames(&self, samples: i64) -> i64 {
        if samples < self.n_fft {
            0
        } else {
            (samples - self.n_fft) / self.hop + 1
        }
    }

    /// Parameter counts from the config alone (tested against the built model).
    pub fn param_counts(&self) -> BiotParamCounts {
        let d = self.d_model as u64;
        let f = self.n_freq() as u64;
        let m = self.ff_mult as u64;
        // attn_norm, to_q/k/v (no bias), to_out, ff_norm, w1, w2.
        let per_layer =
            2 * d + 3 * d * d + (d * d + d) + 2 * d + (d * m * d + m * d) + (m * d * d + d);
        let per_token = (f * d + d) + self.n_layer as u64 * per_layer;
        let encoder = per_token + self.n_channels as u64 * d;
        let head = d * self.n_classes as u64 + self.n_classes as u64;
        BiotParamCounts {
            total: encoder + head,
            encoder,
            per_token,
            head,
            predictor: 2 * (d * d + d),
        }
    }

    /// Training FLOPs per token of the encoder ([`crate::core::flops::linear_attention_train_flops_per_token`]
    /// with N = `param_counts().per_token`).
    pub fn train_flops_per_token(&self) -> f64 {
        crate::core::flops::linear_attention_train_flops_per_token(
            self.param_counts().per_token,
            self.n_layer as u64,
            self.d_model as u64,
            self.head_dim() as u64,
        )
    }

    /// Training FLOPs per sample of `channels` × `samples`: tokens (C·T) × per-token FLOPs, plus
    /// 6 × head parameters once per sample. The STFT (an FFT, no parameters, ~1 % of the total
    /// at the reference size) is not counted.
    pub fn train_flops_per_sample(&self, channels: i64, samples: i64) -> f64 {
        let tokens = (channels * self.frames(samples)) as f64;
        tokens * self.train_flops_per_token() + 6.0 * self.param_counts().head as f64
    }
}

/// Magnitude STFT tokens of every channel: x [B, C, L] (any float) → [B, C, T, n_fft/2+1] fp32,
/// rectangular window, no centring, one-sided (BIOT's `torch.stft` call). Errors if L < n_fft.
pub fn stft_tokens(x: &Tensor, n_fft: i64, hop: i64) -> Result<Tensor> {
    let size = x.size();
    if size.len() != 3 {
        bail!("bio-signal input must be [batch, channels, samples], got shape {size:?}");
    }
    if size[2] < n_fft {
        bail!(
            "clip of {} samples is shorter than one STFT frame (n_fft = {n_fft})",
            size[2]
        );
    }
    Ok(x.to_kind(Kind::Float)
        .unfold(2, n_fft, hop)
        .fft_rfft(None, -1, "backward")
        .abs())
}

struct Block {
    attn_norm: LayerNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    ff_norm: LayerNorm,
    w1: Linear,
    w2: Linear,
}

/// Non-causal linear attention of lucidrains' `linear_attn`, q, k, v [B, H, N, d_h] in `kind`:
/// softmax(q) over features · d_h^(−1/2) times (softmax(k) over the sequence)ᵀ·v. Softmaxes in fp32.
pub fn linear_attention(q: &Tensor, k: &Tensor, v: &Tensor, kind: Kind) -> Tensor {
    let dh = *q.size().last().expect("q has a feature axis");
    let q = q.softmax(-1, Kind::Float) * (dh as f64).powf(-0.5);
    let k = k.softmax(-2, Kind::Float);
    let context = k.to_kind(kind).transpose(-2, -1).matmul(&v.to_kind(kind)); // [B, H, d_h, d_h]
    q.to_kind(kind).matmul(&context)
}

impl Block {
    fn new(p: nn::Path, cfg: &BiotConfig) -> Self {
        let (d, m) = (cfg.d_model, cfg.ff_mult);
        Self {
            attn_norm: LayerNorm::new(&p / "attn_norm", d),
            to_q: Linear::new(&p / "attn" / "to_q", d, d, false),
            to_k: Linear::new(&p / "attn" / "to_k", d, d, false),
            to_v: Linear::new(&p / "attn" / "to_v", d, d, false),
            to_out: Linear::new(&p / "attn" / "to_out", d, d, true),
            ff_norm: LayerNorm::new(&p / "ff_norm", d),
            w1: Linear::new(&p / "ff" / "w1", d, m * d, true),
            w2: Linear::new(&p / "ff" / "w2", m * d, d, true),
        }
    }

    /// x [B, N, d] fp32 residual stream.
    fn forward(&self, x: &Tensor, cfg: &BiotConfig, train: bool, kind: Kind) -> Tensor {
        let (b, n, d) = x.size3().expect("[B, N, d]");
        let (h, dh) = (cfg.n_head, cfg.head_dim());
        let hx = self.attn_norm.forward(x);
        let heads = |t: Tensor| t.view([b, n, h, dh]).transpose(1, 2);
        let q = heads(self.to_q.forward(&hx, kind));
        let k = heads(self.to_k.forward(&hx, kind));
        let v = heads(self.to_v.forward(&hx, kind));
        let a = linear_attention(&q, &k, &v, kind)
            .transpose(1, 2)
            .reshape([b, n, d]);
        let a = self
            .to_out
            .forward(&a, kind)
            .dropout(cfg.attn_dropout, train);
        let x = x + a.to_kind(Kind::Float);
        let f = self
            .w1
            .forward(&self.ff_norm.forward(&x), kind)
            .gelu("none");
        &x + self.w2.forward(&f, kind).to_kind(Kind::Float)
    }
}

/// BIOT's encoder: STFT tokens → linear-attention transformer → mean-pooled embedding [B, d].
pub struct BiotEncoder {
    pub cfg: BiotConfig,
    patch_embedding: Linear,
    channel_tokens: Tensor,
    pe: Tensor,
    blocks: Vec<Block>,
}

impl BiotEncoder {
    /// Builds the encoder under `p` (seed with `tch::manual_seed` first for reproducible weights).
    pub fn new(p: &nn::Path, cfg: &BiotConfig) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.d_model;
        Ok(Self {
            cfg: cfg.clone(),
            patch_embedding: Linear::new(p / "patch_embedding", cfg.n_freq(), d, true),
            channel_tokens: (p / "channel_tokens").var(
                "weight",
                &[cfg.n_channels, d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            ),
            pe: sinusoidal_table(cfg.frame_capacity(), d, p.device()),
            blocks: (0..cfg.n_layer)
                .map(|i| Block::new(p / "layers" / i, cfg))
                .collect(),
        })
    }

    /// Token embeddings before the transformer, [B, C, T, d] fp32: frame projection + channel
    /// embedding (rows `channel_offset..channel_offset+C`) + positions, then position dropout.
    pub fn embed(
        &self,
        x: &Tensor,
        channel_offset: i64,
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        let spec = stft_tokens(x, self.cfg.n_fft, self.cfg.hop)?;
        self.embed_spec(&spec, channel_offset, train, kind)
    }

    /// [`BiotEncoder::embed`] of the STFT tokens `spec` [B, C, T, n_fft/2+1] ([`stft_tokens`]).
    fn embed_spec(
        &self,
        spec: &Tensor,
        channel_offset: i64,
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        let (c, t) = (spec.size()[1], spec.size()[2]);
        if channel_offset < 0 || channel_offset + c > self.cfg.n_channels {
            bail!(
                "channels {channel_offset}..{} exceed the channel table of {} rows (n_channels)",
                channel_offset + c,
                self.cfg.n_channels
            );
        }
        if t > self.cfg.frame_capacity() {
            bail!(
                "{t} frames per channel exceed the position table ({} frames: max_frames or \
                 BIOT's 1000)",
                self.cfg.frame_capacity()
            );
        }
        let tok = self
            .patch_embedding
            .forward(spec, kind)
            .to_kind(Kind::Float);
        let ch = self
            .channel_tokens
            .narrow(0, channel_offset, c)
            .view([1, c, 1, -1]);
        let pos = self.pe.narrow(0, 0, t).view([1, 1, t, -1]);
        Ok((tok + ch + pos).dropout(self.cfg.pos_dropout, train))
    }

    /// Runs the blocks on a token sequence [B, N, d] and mean-pools → [B, d] fp32.
    pub fn transform(&self, tokens: &Tensor, train: bool, kind: Kind) -> Tensor {
        let mut h = tokens.shallow_clone();
        for b in &self.blocks {
            h = b.forward(&h, &self.cfg, train, kind);
        }
        h.mean_dim(1, false, Kind::Float)
    }

    /// Pooled embedding [B, d] fp32 of x [B, C, L] (channels at rows `channel_offset..`).
    pub fn encode(
        &self,
        x: &Tensor,
        channel_offset: i64,
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        let spec = stft_tokens(x, self.cfg.n_fft, self.cfg.hop)?;
        self.encode_spec(&spec, channel_offset, train, kind)
    }

    /// [`BiotEncoder::encode`] of the STFT tokens `spec` ([`stft_tokens`]).
    fn encode_spec(
        &self,
        spec: &Tensor,
        channel_offset: i64,
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        let e = self.embed_spec(spec, channel_offset, train, kind)?;
        let (b, c, t, d) = e.size4()?;
        Ok(self.transform(&e.reshape([b, c * t, d]), train, kind))
    }

    /// BIOT's perturbed view: channel `c` keeps only the frames `keep[c]` (in that order), then the
    /// kept tokens of all channels are concatenated. `keep.len()` must equal C; indices < T.
    /// Draw `keep` with [`crate::models::objectives::biot_keep_frames`].
    pub fn encode_subset(
        &self,
        x: &Tensor,
        channel_offset: i64,
        keep: &[Vec<i64>],
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        let spec = stft_tokens(x, self.cfg.n_fft, self.cfg.hop)?;
        self.encode_subset_spec(&spec, channel_offset, keep, train, kind)
    }

    /// [`BiotEncoder::encode_subset`] of the STFT tokens `spec` ([`stft_tokens`]).
    fn encode_subset_spec(
        &self,
        spec: &Tensor,
        channel_offset: i64,
        keep: &[Vec<i64>],
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        let e = self.embed_spec(spec, channel_offset, train, kind)?;
        let (b, c, t, d) = e.size4()?;
        if keep.len() as i64 != c {
            bail!("keep lists {} channels, input has {c}", keep.len());
        }
        let mut flat = Vec::new();
        for (ci, k) in keep.iter().enumerate() {
            if k.is_empty() {
                bail!("channel {ci} keeps no frame");
            }
            for &j in k {
                if !(0..t).contains(&j) {
                    bail!("frame index {j} of channel {ci} is outside 0..{t}");
                }
                flat.push(ci as i64 * t + j);
            }
        }
        let idx = Tensor::from_slice(&flat).to_device(e.device());
        let tokens = e.reshape([b, c * t, d]).index_select(1, &idx);
        Ok(self.transform(&tokens, train, kind))
    }
}

/// Supervised BIOT: encoder + ELU → Linear head (`head`).
pub struct Biot {
    pub cfg: BiotConfig,
    pub encoder: BiotEncoder,
    head: Linear,
}

impl Biot {
    /// Encoder under `root/encoder`, head under `root/head`.
    pub fn new(root: &nn::Path, cfg: &BiotConfig) -> Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            encoder: BiotEncoder::new(&(root / "encoder"), cfg)?,
            head: Linear::new(root / "head", cfg.d_model, cfg.n_classes, true),
        })
    }

    /// Pooled embedding [B, d] fp32 of x [B, C, L] (channel embedding rows 0..C).
    pub fn encode(&self, x: &Tensor, train: bool, kind: Kind) -> Result<Tensor> {
        self.encoder.encode(x, 0, train, kind)
    }

    /// Head on an embedding: [B, d] → [B, n_classes] fp32.
    pub fn head(&self, emb: &Tensor, kind: Kind) -> Tensor {
        self.head.forward(&emb.elu(), kind).to_kind(Kind::Float)
    }

    /// Class logits [B, n_classes] fp32 of x [B, C, L], channels at table rows
    /// `channel_offset..` (BIOT's per-dataset offset).
    pub fn logits(
        &self,
        x: &Tensor,
        channel_offset: i64,
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        Ok(self.head(&self.encoder.encode(x, channel_offset, train, kind)?, kind))
    }

    /// Logits with channel offset 0.
    pub fn forward(&self, x: &Tensor, train: bool, kind: Kind) -> Result<Tensor> {
        self.logits(x, 0, train, kind)
    }

    /// Mean cross-entropy of `labels` (int64 [B], 0..n_classes).
    pub fn loss(&self, x: &Tensor, labels: &Tensor, train: bool, kind: Kind) -> Result<Tensor> {
        let logits = self.forward(x, train, kind)?;
        crate::models::objectives::cross_entropy(&logits, labels)
    }
}

/// BIOT's unsupervised pretraining model: encoder (`root/encoder`, the same names as [`Biot`]'s,
/// so a pretrained encoder loads into a classifier) + predictor MLP (`root/predictor`).
pub struct BiotPretrain {
    pub cfg: BiotConfig,
    pub encoder: BiotEncoder,
    pred1: Linear,
    pred2: Linear,
}

impl BiotPretrain {
    pub fn new(root: &nn::Path, cfg: &BiotConfig) -> Result<Self> {
        let d = cfg.d_model;
        Ok(Self {
            cfg: cfg.clone(),
            encoder: BiotEncoder::new(&(root / "encoder"), cfg)?,
            pred1: Linear::new(root / "predictor" / "0", d, d, true),
            pred2: Linear::new(root / "predictor" / "2", d, d, true),
        })
    }

    /// Predictor MLP: [B, d] → [B, d] fp32.
    pub fn predict(&self, emb: &Tensor, kind: Kind) -> Tensor {
        let h = self.pred1.forward(emb, kind).gelu("none");
        self.pred2.forward(&h, kind).to_kind(Kind::Float)
    }

    /// BIOT's contrastive loss of x [B, C, L]: view A keeps `keep[c]` frames of each channel and
    /// goes through the predictor, view B is the whole sample; InfoNCE at `temperature`
    /// ([`crate::models::objectives::info_nce`], anchors = view B as in BIOT's training step).
    pub fn contrastive_loss(
        &self,
        x: &Tensor,
        channel_offset: i64,
        keep: &[Vec<i64>],
        temperature: f64,
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        // Both views tokenise the same clip: one STFT (it takes no gradient and draws nothing,
        // so the views' dropout draws keep their order).
        let spec = stft_tokens(x, self.cfg.n_fft, self.cfg.hop)?;
        let a = self.predict(
            &self
                .encoder
                .encode_subset_spec(&spec, channel_offset, keep, train, kind)?,
            kind,
        );
        let b = self
            .encoder
            .encode_spec(&spec, channel_offset, train, kind)?;
        crate::models::objectives::info_nce(&b, &a, temperature)
    }
}

impl SignalArch for BiotConfig {
    type Classifier = Biot;
    type Pretext = BiotPretrain;
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
            o => Err(signal::unsupported(
                o,
                "mae-* trains the CiTrus hybrid, contrastive trains BIOT",
            )),
        }
    }
    fn channel_independent(&self) -> bool {
        false
    }
    fn check_input(&self, channels: i64, samples: i64) -> Result<()> {
        if channels > self.n_channels {
            bail!(
                "{channels} channels but the BIOT channel table has {} rows (n_channels)",
                self.n_channels
            );
        }
        if samples < self.n_fft {
            bail!(
                "windows of {samples} samples are shorter than one STFT frame (n_fft {})",
                self.n_fft
            );
        }
        Ok(())
    }
    fn train_flops_per_sample(&self, channels: i64, samples: i64, _pretext: bool) -> f64 {
        BiotConfig::train_flops_per_sample(self, channels, samples)
    }
    fn param_info(&self) -> serde_json::Value {
        serde_json::to_value(self.param_counts()).unwrap_or_default()
    }
    fn param_count(&self) -> u64 {
        self.param_counts().total
    }
}

impl Classify<BiotConfig> for Biot {
    fn build(root: &nn::Path, cfg: &BiotConfig) -> Result<Self> {
        Biot::new(root, cfg)
    }
    fn config(&self) -> &BiotConfig {
        &self.cfg
    }
    fn logits(&self, x: &Tensor, channel_offset: i64, train: bool, kind: Kind) -> Result<Tensor> {
        Biot::logits(self, x, channel_offset, train, kind)
    }
}

/// BIOT's unsupervised pretraining: the perturbed view's frame subsets are drawn from the batch
/// seed ([`objectives::biot_keep_frames`]), τ = [`BIOT_TEMPERATURE`].
impl Pretext<BiotConfig> for BiotPretrain {
    fn build(root: &nn::Path, cfg: &BiotConfig) -> Result<Self> {
        BiotPretrain::new(root, cfg)
    }
    fn config(&self) -> &BiotConfig {
        &self.cfg
    }
    fn pretext_loss(&self, b: &SignalBatch, train: bool, kind: Kind) -> Result<Tensor> {
        let (c, l) = signal::signal_shape(&b.x)?;
        let frames = self.cfg.frames(l);
        let mut rng = ChaCha8Rng::seed_from_u64(b.seed);
        let keep = objectives::biot_keep_frames(c as usize, frames as usize, &mut rng);
        self.contrastive_loss(&b.x, b.channel_offset, &keep, BIOT_TEMPERATURE, train, kind)
    }
}
