//! CiTrus-style convolution–transformer hybrid (Geenjaar & Lu, AAAI 2025, arXiv 2412.11695; no
//! public code, so this follows the paper's description plus PatchTST, Nie et al. ICLR 2023):
//!
//! 1. **Channel independence**: x [B, C, L] is folded to B·C single-channel sequences, so one model
//!    takes any channel count and any modality mix (multimodal pretraining) once windows are
//!    resampled to the model rate and a length L that is a multiple of `patch_len` (≤ `max_len`).
//! 2. **Residual 1-D convolutional stem** (`stem`): Conv1d(1 → s, k) then `stem_blocks` residual
//!    blocks [Conv1d(s → s, k) – GroupNorm – GELU – Conv1d – GroupNorm] + skip → GELU; "same"
//!    padding, so the stem keeps L samples.
//! 3. **Patching**: non-overlapping patches of P samples of the s stem channels → Linear(s·P → d),
//!    plus learned positions (`pos_embedding`).
//! 4. **Channel-independent transformer** (`encoder`): pre-LayerNorm softmax-attention blocks
//!    (non-causal), GELU MLP, final LayerNorm.
//! 5. Embedding: mean over patches, then over channels → [B, d]; head Linear(d → n_classes).
//! 6. **Masked auto-encoding** ([`Citrus::mae_loss`]): contiguous runs of patches are masked
//!    ([`crate::models::objectives::span_mask`]); their samples are zeroed before the stem
//!    (so the convolution cannot see them) and their tokens replaced by a learned `mask_token`; a
//!    **light decoder** (Linear d → d_dec, positions, `dec_layers` blocks, LayerNorm, Linear) predicts
//!    the target of every patch, the loss counts masked patches only: time-domain samples or the
//!    patch spectrum ([`crate::models::objectives::MaeTarget`]).
//!
//! `variant = "conv"` is the convolution-only model (stem → mean over time and channels → head,
//! embedding width s), which the paper reports as strong in low-data regimes; its variables are a
//! subset of the hybrid's (`stem.*`, `head.*` when widths match), so a pretrained stem loads into it.
use crate::models::config::{positive, ModelConfig};
use crate::models::layers::{LayerNorm, Linear};
use crate::models::objectives::SignalBatch;
use crate::models::objectives::{self, MaeTarget, MaskConfig};
use crate::models::signal::{self, Classify, Objective, Pretext, SignalArch, Task};
use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Which parts the model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CitrusVariant {
    /// Stem + patching + transformer (+ decoder for MAE).
    #[default]
    Hybrid,
    /// Stem + head only.
    Conv,
}

/// CiTrus sizes; one TOML file per config in `models/` (`citrus-*.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CitrusConfig {
    pub name: String,
    pub variant: CitrusVariant,
    /// Longest window in samples at the model rate (sets the position tables). Required: no
    /// default, it depends on the data.
    pub max_len: i64,
    /// Stem channels s.
    pub stem_channels: i64,
    /// Stem kernel size (odd).
    pub kernel_size: i64,
    /// Residual blocks in the stem.
    pub stem_blocks: i64,
    /// GroupNorm groups in the stem (divides stem_channels).
    pub norm_groups: i64,
    /// Patch length P in samples.
    pub patch_len: i64,
    pub d_model: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub ff_mult: i64,
    /// Dropout on attention and MLP outputs.
    pub dropout: f64,
    /// Decoder width.
    pub dec_d_model: i64,
    /// Decoder blocks (0 = a linear decoder).
    pub dec_layers: i64,
    pub dec_n_head: i64,
    /// Outputs of the classification head.
    pub n_classes: i64,
    /// What MAE reconstructs (sets the decoder's output width).
    pub mae_target: MaeTarget,
    /// MAE masking.
    pub mask: MaskConfig,
}

impl Default for CitrusConfig {
    /// The reference sizes (hybrid, 32-channel stem, 16-sample patches, d 128, 3 layers, a
    /// one-block decoder of width 64); `max_len` 0, which [`ModelConfig::validate`] refuses.
    fn default() -> Self {
        Self {
            name: String::new(),
            variant: CitrusVariant::Hybrid,
            max_len: 0,
            stem_channels: 32,
            kernel_size: 7,
            stem_blocks: 2,
            norm_groups: 8,
            patch_len: 16,
            d_model: 128,
            n_layer: 3,
            n_head: 4,
            ff_mult: 4,
            dropout: 0.0,
            dec_d_model: 64,
            dec_layers: 1,
            dec_n_head: 2,
            n_classes: 2,
            mae_target: MaeTarget::default(),
            mask: MaskConfig::default(),
        }
    }
}

/// CiTrus parameter counts, computed here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitrusParamCounts {
    /// Every parameter of the built model (including the decoder for the hybrid).
    pub total: u64,
    /// The convolutional stem.
    pub stem: u64,
    /// Patch projection + transformer blocks + final norm (per-token matmul parameters).
    pub encoder_per_token: u64,
    /// Decoder per-token parameters (0 for the conv variant).
    pub decoder_per_token: u64,
    /// Lookup tables: position embeddings and the mask token.
    pub tables: u64,
    /// Classification head.
    pub head: u64,
}

fn block_params(d: u64, m: u64) -> u64 {
    // ln_1, qkv, proj, ln_2, fc, fc_proj.
    2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (m * d * d + m * d) + (m * d * d + d)
}

impl ModelConfig for CitrusConfig {
    const ARCH: &'static str = "citrus";

    fn validate(&self) -> Result<()> {
        if self.max_len == 0 {
            bail!("max_len is required (the longest window in samples at the model rate)");
        }
        positive(&[
            ("max_len", self.max_len),
            ("stem_channels", self.stem_channels),
            ("kernel_size", self.kernel_size),
            ("norm_groups", self.norm_groups),
            ("patch_len", self.patch_len),
            ("d_model", self.d_model),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("ff_mult", self.ff_mult),
            ("dec_d_model", self.dec_d_model),
            ("dec_n_head", self.dec_n_head),
            ("n_classes", self.n_classes),
        ])?;
        if self.stem_blocks < 0 || self.dec_layers < 0 {
            bail!("stem_blocks and dec_layers must be ≥ 0");
        }
        if self.kernel_size % 2 == 0 {
            bail!(
                "kernel_size {} must be odd (same padding)",
                self.kernel_size
            );
        }
        if self.stem_channels % self.norm_groups != 0 {
            bail!(
                "norm_groups {} does not divide stem_channels {}",
                self.norm_groups,
                self.stem_channels
            );
        }
        if self.max_len % self.patch_len != 0 || self.max_len < 2 * self.patch_len {
            bail!(
                "max_len {} must be a multiple of patch_len {} with ≥ 2 patches",
                self.max_len,
                self.patch_len
            );
        }
        if self.d_model % self.n_head != 0 || self.dec_d_model % self.dec_n_head != 0 {
            bail!("d_model and dec_d_model must be divisible by their head counts");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("dropout must be in [0, 1), got {}", self.dropout);
        }
        self.mask.validate()
    }
}

impl CitrusConfig {
    /// Patches in a window of max_len samples.
    pub fn max_patches(&self) -> i64 {
        self.max_len / self.patch_len
    }

    /// Width of [`Citrus::encode`]'s output: d_model (hybrid) or stem_channels (conv).
    pub fn embed_dim(&self) -> i64 {
        match self.variant {
            CitrusVariant::Hybrid => self.d_model,
            CitrusVariant::Conv => self.stem_channels,
        }
    }

    /// Parameter counts from the config alone (tested against the built model).
    pub fn param_counts(&self) -> CitrusParamCounts {
        let (s, k) = (self.stem_channels as u64, self.kernel_size as u64);
        let stem = (s * k + s) + self.stem_blocks as u64 * (2 * (s * s * k + s) + 4 * s);
        let head = self.embed_dim() as u64 * self.n_classes as u64 + self.n_classes as u64;
        let (d, dd, m) = (
            self.d_model as u64,
            self.dec_d_model as u64,
            self.ff_mult as u64,
        );
        let np = self.max_patches() as u64;
        let (enc, dec, tables) = match self.variant {
            CitrusVariant::Conv => (0, 0, 0),
            CitrusVariant::Hybrid => {
                let p = self.patch_len as u64;
                let enc = (s * p * d + d) + self.n_layer as u64 * block_params(d, m) + 2 * d;
                let kout = self.mae_target.dim(self.patch_len) as u64;
                let dec = (d * dd + dd)
                    + self.dec_layers as u64 * block_params(dd, m)
                    + 2 * dd
                    + (dd * kout + kout);
                (enc, dec, np * d + d + np * dd)
            }
        };
        CitrusParamCounts {
            total: stem + enc + dec + tables + head,
            stem,
            encoder_per_token: enc,
            decoder_per_token: dec,
            tables,
            head,
        }
    }

    /// Training FLOPs per sample of `channels` × `samples` ([`crate::core::flops`]): per channel, the
    /// stem convolutions ([`crate::core::flops::conv1d_train_flops`] at every sample) plus, for the
    /// hybrid, the encoder over L/P tokens (6·N + 12·layers·T·d per token,
    /// [`crate::core::flops::train_flops_per_token`]) and, with `mae`, the decoder likewise; plus
    /// 6 × head parameters once per sample when not `mae`.
    pub fn train_flops_per_sample(&self, channels: i64, samples: i64, mae: bool) -> f64 {
        let (s, k, l) = (
            self.stem_channels as u64,
            self.kernel_size as u64,
            samples as u64,
        );
        let mut per_channel = crate::core::flops::conv1d_train_flops(1, s, k, l)
            + 2.0 * self.stem_blocks as f64 * crate::core::flops::conv1d_train_flops(s, s, k, l);
        if self.variant == CitrusVariant::Hybrid {
            let t = (samples / self.patch_len) as u64;
            let pc = self.param_counts();
            per_channel += t as f64
                * crate::core::flops::train_flops_per_token(
                    pc.encoder_per_token,
                    self.n_layer as u64,
                    t,
                    self.d_model as u64,
                );
            if mae {
                per_channel += t as f64
                    * crate::core::flops::train_flops_per_token(
                        pc.decoder_per_token,
                        self.dec_layers as u64,
                        t,
                        self.dec_d_model as u64,
                    );
            }
        }
        let head = if mae {
            0.0
        } else {
            6.0 * self.param_counts().head as f64
        };
        channels as f64 * per_channel + head
    }
}

/// `torch.nn.Conv1d` (PyTorch default init), "same" padding for odd kernels.
struct Conv1d {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1d {
    fn new(p: nn::Path, c_in: i64, c_out: i64, k: i64) -> Self {
        let b = 1.0 / ((c_in * k) as f64).sqrt();
        let init = nn::Init::Uniform { lo: -b, up: b };
        Self {
            weight: p.var("weight", &[c_out, c_in, k], init),
            bias: p.var("bias", &[c_out], init),
        }
    }

    fn forward(&self, x: &Tensor, kind: Kind) -> Tensor {
        let k = self.weight.size()[2];
        x.to_kind(kind).conv1d(
            &self.weight.to_kind(kind),
            Some(self.bias.to_kind(kind)),
            [1],
            [k / 2],
            [1],
            1,
        )
    }
}

struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: i64,
}

impl GroupNorm {
    fn new(p: nn::Path, c: i64, groups: i64) -> Self {
        Self {
            weight: p.ones("weight", &[c]),
            bias: p.zeros("bias", &[c]),
            groups,
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.to_kind(Kind::Float).group_norm(
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            1e-5,
            true,
        )
    }
}

struct ResBlock {
    conv1: Conv1d,
    norm1: GroupNorm,
    conv2: Conv1d,
    norm2: GroupNorm,
}

impl ResBlock {
    fn forward(&self, x: &Tensor, kind: Kind) -> Tensor {
        let h = self
            .norm1
            .forward(&self.conv1.forward(x, kind))
            .gelu("none");
        let h = self.norm2.forward(&self.conv2.forward(&h, kind));
        (x + h).gelu("none")
    }
}

/// Pre-LayerNorm softmax-attention block (non-causal).
struct Block {
    ln_1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln_2: LayerNorm,
    fc: Linear,
    fc_proj: Linear,
    n_head: i64,
}

impl Block {
    fn new(p: nn::Path, d: i64, n_head: i64, m: i64) -> Self {
        Self {
            ln_1: LayerNorm::new(&p / "ln_1", d),
            qkv: Linear::new(&p / "attn" / "qkv", d, 3 * d, true),
            proj: Linear::new(&p / "attn" / "proj", d, d, true),
            ln_2: LayerNorm::new(&p / "ln_2", d),
            fc: Linear::new(&p / "mlp" / "fc", d, m * d, true),
            fc_proj: Linear::new(&p / "mlp" / "proj", m * d, d, true),
            n_head,
        }
    }

    fn forward(&self, x: &Tensor, dropout: f64, train: bool, kind: Kind) -> Tensor {
        let (b, t, d) = x.size3().expect("[S, N, d]");
        let h = self.n_head;
        let qkv = self
            .qkv
            .forward(&self.ln_1.forward(x), kind)
            .view([b, t, 3, h, d / h])
            .permute([2, 0, 3, 1, 4]);
        let y = Tensor::scaled_dot_product_attention(
            &qkv.get(0),
            &qkv.get(1),
            &qkv.get(2),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let y = y.transpose(1, 2).reshape([b, t, d]);
        let x = x + self
            .proj
            .forward(&y, kind)
            .dropout(dropout, train)
            .to_kind(Kind::Float);
        let f = self.fc.forward(&self.ln_2.forward(&x), kind).gelu("none");
        &x + self
            .fc_proj
            .forward(&f, kind)
            .dropout(dropout, train)
            .to_kind(Kind::Float)
    }
}

struct Transformer {
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl Transformer {
    fn new(p: nn::Path, d: i64, n_layer: i64, n_head: i64, m: i64) -> Self {
        Self {
            blocks: (0..n_layer)
                .map(|i| Block::new(&p / "blocks" / i, d, n_head, m))
                .collect(),
            norm: LayerNorm::new(&p / "norm", d),
        }
    }
    fn forward(&self, x: &Tensor, dropout: f64, train: bool, kind: Kind) -> Tensor {
        let mut h = x.shallow_clone();
        for b in &self.blocks {
            h = b.forward(&h, dropout, train, kind);
        }
        self.norm.forward(&h)
    }
}

struct Decoder {
    embed: Linear,
    pos_embedding: Tensor,
    body: Transformer,
    out: Linear,
}

/// The CiTrus model (hybrid or conv-only); its parameters live in the `VarStore` it was built in.
pub struct Citrus {
    pub cfg: CitrusConfig,
    stem_in: Conv1d,
    stem: Vec<ResBlock>,
    patch_embedding: Option<Linear>,
    pos_embedding: Option<Tensor>,
    mask_token: Option<Tensor>,
    encoder: Option<Transformer>,
    decoder: Option<Decoder>,
    head: Linear,
}

impl Citrus {
    /// Builds a freshly initialised model under `root` (seed with `tch::manual_seed` first).
    pub fn new(root: &nn::Path, cfg: &CitrusConfig) -> Result<Self> {
        cfg.validate()?;
        let (s, k) = (cfg.stem_channels, cfg.kernel_size);
        let st = root / "stem";
        let stem_in = Conv1d::new(&st / "conv_in", 1, s, k);
        let stem = (0..cfg.stem_blocks)
            .map(|i| {
                let p = &st / "blocks" / i;
                ResBlock {
                    conv1: Conv1d::new(&p / "conv1", s, s, k),
                    norm1: GroupNorm::new(&p / "norm1", s, cfg.norm_groups),
                    conv2: Conv1d::new(&p / "conv2", s, s, k),
                    norm2: GroupNorm::new(&p / "norm2", s, cfg.norm_groups),
                }
            })
            .collect();
        let small = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let np = cfg.max_patches();
        let hybrid = cfg.variant == CitrusVariant::Hybrid;
        let (d, dd) = (cfg.d_model, cfg.dec_d_model);
        Ok(Self {
            cfg: cfg.clone(),
            stem_in,
            stem,
            patch_embedding: hybrid
                .then(|| Linear::new(root / "patch_embedding", s * cfg.patch_len, d, true)),
            pos_embedding: hybrid.then(|| root.var("pos_embedding", &[np, d], small)),
            mask_token: hybrid.then(|| root.var("mask_token", &[d], small)),
            encoder: hybrid.then(|| {
                Transformer::new(root / "encoder", d, cfg.n_layer, cfg.n_head, cfg.ff_mult)
            }),
            decoder: hybrid.then(|| {
                let p = root / "decoder";
                Decoder {
                    embed: Linear::new(&p / "embed", d, dd, true),
                    pos_embedding: p.var("pos_embedding", &[np, dd], small),
                    body: Transformer::new(
                        &p / "body",
                        dd,
                        cfg.dec_layers,
                        cfg.dec_n_head,
                        cfg.ff_mult,
                    ),
                    out: Linear::new(&p / "out", dd, cfg.mae_target.dim(cfg.patch_len), true),
                }
            }),
            head: Linear::new(root / "head", cfg.embed_dim(), cfg.n_classes, true),
        })
    }

    /// Checks x [B, C, L] and returns (B, C, L).
    fn check(&self, x: &Tensor) -> Result<(i64, i64, i64)> {
        let size = x.size();
        if size.len() != 3 {
            bail!("bio-signal input must be [batch, channels, samples], got shape {size:?}");
        }
        let (b, c, l) = (size[0], size[1], size[2]);
        if self.cfg.variant == CitrusVariant::Hybrid
            && (l % self.cfg.patch_len != 0 || l > self.cfg.max_len || l < 2 * self.cfg.patch_len)
        {
            bail!(
                "window of {l} samples must be a multiple of patch_len {} between {} and max_len {} (resample / crop to the model's length)",
                self.cfg.patch_len, 2 * self.cfg.patch_len, self.cfg.max_len
            );
        }
        if b == 0 || c == 0 || l == 0 {
            bail!("empty input of shape {size:?}");
        }
        Ok((b, c, l))
    }

    /// Stem output [B·C, s, L] fp32 of single-channel sequences [B·C, L].
    fn stem_forward(&self, seqs: &Tensor, kind: Kind) -> Tensor {
        let mut h = self
            .stem_in
            .forward(&seqs.unsqueeze(1), kind)
            .to_kind(Kind::Float);
        for b in &self.stem {
            h = b.forward(&h, kind);
        }
        h
    }

    /// Hybrid trunk: sequences [S, L] (masked samples already zeroed) and optional patch mask
    /// [S, N] → encoder output [S, N, d] fp32.
    fn trunk(
        &self,
        seqs: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        let (Some(pe), Some(pos), Some(mt), Some(enc)) = (
            &self.patch_embedding,
            &self.pos_embedding,
            &self.mask_token,
            &self.encoder,
        ) else {
            bail!("the conv-only variant has no transformer");
        };
        let h = self.stem_forward(seqs, kind); // [S, s, L]
        let (sq, s, l) = h.size3()?;
        let (p, n) = (self.cfg.patch_len, l / self.cfg.patch_len);
        let patches = h
            .view([sq, s, n, p])
            .permute([0, 2, 1, 3])
            .reshape([sq, n, s * p]);
        let mut tok = pe.forward(&patches, kind).to_kind(Kind::Float);
        if let Some(m) = mask {
            tok = tok.where_self(&m.logical_not().unsqueeze(-1), &mt.view([1, 1, -1]));
        }
        let tok = (tok + pos.narrow(0, 0, n).unsqueeze(0)).dropout(self.cfg.dropout, train);
        Ok(enc.forward(&tok, self.cfg.dropout, train, kind))
    }

    /// Pooled embedding [B, embed_dim] fp32 of x [B, C, L]: mean over patches (hybrid) or samples
    /// (conv), then over channels.
    pub fn encode(&self, x: &Tensor, train: bool, kind: Kind) -> Result<Tensor> {
        let (b, c, l) = self.check(x)?;
        let seqs = x.to_kind(Kind::Float).reshape([b * c, l]);
        let per_seq = match self.cfg.variant {
            CitrusVariant::Conv => self
                .stem_forward(&seqs, kind)
                .mean_dim(2, false, Kind::Float),
            CitrusVariant::Hybrid => {
                self.trunk(&seqs, None, train, kind)?
                    .mean_dim(1, false, Kind::Float)
            }
        };
        Ok(per_seq.view([b, c, -1]).mean_dim(1, false, Kind::Float))
    }

    /// Class logits [B, n_classes] fp32.
    pub fn logits(&self, x: &Tensor, train: bool, kind: Kind) -> Result<Tensor> {
        Ok(self
            .head
            .forward(&self.encode(x, train, kind)?, kind)
            .to_kind(Kind::Float))
    }

    /// Same as [`Self::logits`].
    pub fn forward(&self, x: &Tensor, train: bool, kind: Kind) -> Result<Tensor> {
        self.logits(x, train, kind)
    }

    /// Mean cross-entropy of `labels` (int64 [B]).
    pub fn loss(&self, x: &Tensor, labels: &Tensor, train: bool, kind: Kind) -> Result<Tensor> {
        objectives::cross_entropy(&self.logits(x, train, kind)?, labels)
    }

    /// MAE reconstruction of x [B, C, L] under a patch mask [B·C, N] (bool, true = masked;
    /// row b·C + c is channel c of sample b): predicted targets of every patch [B·C, N, K] fp32
    /// (K = `mae_target.dim(patch_len)`). Masked samples are zeroed before the stem.
    pub fn reconstruct(
        &self,
        x: &Tensor,
        mask: &Tensor,
        train: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        let (b, c, l) = self.check(x)?;
        let n = l / self.cfg.patch_len;
        if mask.size() != [b * c, n] || mask.kind() != Kind::Bool {
            bail!(
                "mask must be bool [{}, {n}], got {:?} {:?}",
                b * c,
                mask.kind(),
                mask.size()
            );
        }
        let Some(dec) = &self.decoder else {
            bail!("the conv-only variant has no decoder")
        };
        let seqs = x.to_kind(Kind::Float).reshape([b * c, l]);
        let keep = mask
            .logical_not()
            .repeat_interleave_self_int(self.cfg.patch_len, Some(1), None);
        let z = self.trunk(&(seqs * keep), Some(mask), train, kind)?;
        let h = dec.embed.forward(&z, kind).to_kind(Kind::Float)
            + dec.pos_embedding.narrow(0, 0, n).unsqueeze(0);
        let h = dec.body.forward(&h, self.cfg.dropout, train, kind);
        Ok(dec.out.forward(&h, kind).to_kind(Kind::Float))
    }

    /// Masked auto-encoding loss of x [B, C, L] with masks drawn from `seed`
    /// ([`objectives::span_mask`] with `cfg.mask`): MSE on masked patches of `cfg.mae_target`.
    pub fn mae_loss(&self, x: &Tensor, seed: u64, train: bool, kind: Kind) -> Result<Tensor> {
        let (b, c, l) = self.check(x)?;
        let n = l / self.cfg.patch_len;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mask = objectives::span_mask(
            (b * c) as usize,
            n as usize,
            &self.cfg.mask,
            &mut rng,
            x.device(),
        )?;
        let pred = self.reconstruct(x, &mask, train, kind)?;
        let patches = objectives::patchify(
            &x.to_kind(Kind::Float).reshape([b * c, l]),
            self.cfg.patch_len,
        )?;
        let target = objectives::mae_target(&patches, self.cfg.mae_target);
        objectives::masked_mse(&pred, &target, &mask)
    }
}

impl SignalArch for CitrusConfig {
    type Classifier = Citrus;
    type Pretext = Citrus;
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
    /// Masked auto-encoding of the hybrid; a frequency target keeps the config's `log` flag
    /// (default log).
    fn for_objective(&self, objective: Objective) -> Result<Self> {
        let trains = "mae-* trains the CiTrus hybrid, contrastive trains BIOT";
        let mae_target = match (objective, self.mae_target) {
            (Objective::Contrastive, _) => return Err(signal::unsupported(objective, trains)),
            (Objective::MaeTime, _) => MaeTarget::Time,
            (_, MaeTarget::Freq { log }) => MaeTarget::Freq { log },
            _ => MaeTarget::Freq { log: true },
        };
        if self.variant != CitrusVariant::Hybrid {
            bail!("masked auto-encoding needs the hybrid variant (the conv-only model has no decoder)");
        }
        Ok(Self {
            mae_target,
            ..self.clone()
        })
    }
    fn channel_independent(&self) -> bool {
        true
    }
    fn check_input(&self, _channels: i64, _samples: i64) -> Result<()> {
        Ok(())
    }
    fn train_flops_per_sample(&self, channels: i64, samples: i64, pretext: bool) -> f64 {
        CitrusConfig::train_flops_per_sample(self, channels, samples, pretext)
    }
    fn param_info(&self) -> serde_json::Value {
        serde_json::to_value(self.param_counts()).unwrap_or_default()
    }
    fn param_count(&self) -> u64 {
        self.param_counts().total
    }
    fn bench_task(&self) -> Task {
        Task::Pretext
    }
}

/// Supervised CiTrus (hybrid or conv-only).
impl Classify<CitrusConfig> for Citrus {
    fn build(root: &nn::Path, cfg: &CitrusConfig) -> Result<Self> {
        Citrus::new(root, cfg)
    }
    fn config(&self) -> &CitrusConfig {
        &self.cfg
    }
    fn logits(&self, x: &Tensor, _offset: i64, train: bool, kind: Kind) -> Result<Tensor> {
        Citrus::logits(self, x, train, kind)
    }
}

/// CiTrus masked auto-encoding (masks drawn from the batch seed).
impl Pretext<CitrusConfig> for Citrus {
    fn build(root: &nn::Path, cfg: &CitrusConfig) -> Result<Self> {
        Citrus::new(root, cfg)
    }
    fn config(&self) -> &CitrusConfig {
        &self.cfg
    }
    fn pretext_loss(&self, b: &SignalBatch, train: bool, kind: Kind) -> Result<Tensor> {
        self.mae_loss(&b.x, b.seed, train, kind)
    }
}
