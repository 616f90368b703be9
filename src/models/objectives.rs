//! Pretraining and fine-tuning objectives of the bio-signal models, as plain functions over
//! tensors (no model inside), so that every model and the engine share one definition:
//!
//! - **Masked auto-encoding** (CiTrus, Geenjaar & Lu, AAAI 2025; PatchTST, Nie et al. ICLR 2023):
//!   [`span_mask`] masks contiguous runs of patches; [`mae_target`] gives what is reconstructed;
//!   [`masked_mse`] counts masked patches only.
//!   * `MaeTarget::Time`: the raw samples of each masked patch (P values).
//!   * `MaeTarget::Freq { log }`: for each masked patch on its own, the magnitude of its
//!     one-sided DFT with orthonormal scaling, |rfft(patch)|/√P (P/2+1 values; Parseval keeps its
//!     energy equal to the patch's), and with `log = true` its ln(1 + ·). Phases are not
//!     reconstructed. (CiTrus's exact target is not public: this is our documented choice.)
//! - **BIOT's contrastive objective** (Yang et al. 2023, `run_unsupervised_pretrain.py`):
//!   [`biot_keep_frames`] draws the token subset of the perturbed view, [`info_nce`] the loss.
//! - **Supervised fine-tuning**: [`cross_entropy`].
//!
//! Randomness comes from a caller's `ChaCha8Rng` (seeded per step by the engine), on the CPU, so
//! masks are identical on every device and reproducible bit for bit.
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// One micro-batch of bio-signal windows as the models' engine adapters take it.
#[derive(Debug)]
pub struct SignalBatch {
    /// Windows [B, C, L] at the model rate, fp32, per-channel normalised.
    pub x: Tensor,
    /// Class labels [B] (int64), for supervised fine-tuning.
    pub labels: Option<Tensor>,
    /// First row of BIOT's channel table used by these channels (0 for other models).
    pub channel_offset: i64,
    /// Seed of this batch's masks / token subsets (drawn from the engine's per-step RNG).
    pub seed: u64,
}

impl SignalBatch {
    /// A batch without labels, offset 0.
    pub fn unlabelled(x: Tensor, seed: u64) -> Self {
        Self {
            x,
            labels: None,
            channel_offset: 0,
            seed,
        }
    }
}

/// What masked auto-encoding reconstructs for each masked patch (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum MaeTarget {
    /// The patch's samples.
    #[default]
    Time,
    /// |rfft(patch)|/√P, optionally ln(1 + ·).
    Freq {
        #[serde(default)]
        log: bool,
    },
}

impl MaeTarget {
    /// Values per patch of the target for patches of `patch_len` samples.
    pub fn dim(self, patch_len: i64) -> i64 {
        match self {
            MaeTarget::Time => patch_len,
            MaeTarget::Freq { .. } => patch_len / 2 + 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MaeTarget::Time => "time",
            MaeTarget::Freq { log: false } => "freq",
            MaeTarget::Freq { log: true } => "logfreq",
        }
    }
}

/// Masking of patches: fraction masked and length of the contiguous runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Fraction of patches masked per sequence, in (0, 1).
    pub ratio: f64,
    /// Length of each masked run in patches (1 = independent patches).
    pub span: usize,
}

impl Default for MaskConfig {
    fn default() -> Self {
        Self {
            ratio: 0.5,
            span: 3,
        }
    }
}

impl MaskConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.ratio > 0.0 && self.ratio < 1.0) {
            bail!("mask ratio must be in (0, 1), got {}", self.ratio);
        }
        if self.span == 0 {
            bail!("mask span must be at least 1 patch");
        }
        Ok(())
    }

    /// Patches masked per sequence of `n` patches: round(ratio·n), at least 1 and at most n − 1.
    pub fn n_masked(&self, n: usize) -> usize {
        ((self.ratio * n as f64).round() as usize).clamp(1, n.saturating_sub(1).max(1))
    }
}

/// Masks of `rows` sequences of `n` patches, bool [rows, n] on `device` (true = masked).
///
/// Each row gets exactly [`MaskConfig::n_masked`] masked patches, in contiguous runs: a run
/// start is drawn uniformly from 0..=n−span and the next `span` unmasked patches from there are
/// masked (fewer for the last run), until the count is reached. Errors if n < 2.
pub fn span_mask(
    rows: usize,
    n: usize,
    cfg: &MaskConfig,
    rng: &mut ChaCha8Rng,
    device: Device,
) -> Result<Tensor> {
    cfg.validate()?;
    if n < 2 {
        bail!("masking needs at least 2 patches per sequence, got {n}");
    }
    let m = cfg.n_masked(n);
    let span = cfg.span.min(n);
    let mut out = vec![false; rows * n];
    for r in 0..rows {
        let row = &mut out[r * n..(r + 1) * n];
        let mut count = 0;
        while count < m {
            let start = rng.gen_range(0..=n - span);
            let mut run = 0;
            let mut j = start;
            // Mark up to `span` patches from `start`, skipping already-masked ones, wrapping
            // around so that the loop always makes progress.
            while run < span && count < m {
                if !row[j] {
                    row[j] = true;
                    count += 1;
                }
                run += 1;
                j = (j + 1) % n;
            }
        }
    }
    Ok(Tensor::from_slice(&out)
        .view([rows as i64, n as i64])
        .to_device(device))
}

/// Splits the last axis into non-overlapping patches: [..., L] → [..., L/P, P]. Errors unless
/// L is a positive multiple of P.
pub fn patchify(x: &Tensor, patch_len: i64) -> Result<Tensor> {
    let l = *x.size().last().unwrap_or(&0);
    if patch_len <= 0 || l == 0 || l % patch_len != 0 {
        bail!("length {l} is not a positive multiple of the patch length {patch_len}");
    }
    let mut shape = x.size();
    shape.pop();
    shape.extend([l / patch_len, patch_len]);
    Ok(x.reshape(shape))
}

/// Magnitude spectrum of each patch: [..., P] → [..., P/2+1] fp32, |rfft|/√P (orthonormal), then
/// ln(1 + ·) if `log`.
pub fn patch_spectrum(patches: &Tensor, log: bool) -> Tensor {
    let s = patches
        .to_kind(Kind::Float)
        .fft_rfft(None, -1, "ortho")
        .abs();
    if log {
        s.log1p()
    } else {
        s
    }
}

/// The reconstruction target of patches [..., P] (fp32, no gradient).
pub fn mae_target(patches: &Tensor, target: MaeTarget) -> Tensor {
    tch::no_grad(|| match target {
        MaeTarget::Time => patches.to_kind(Kind::Float),
        MaeTarget::Freq { log } => patch_spectrum(patches, log),
    })
}

/// Mean squared error over masked patches only: pred, target [S, N, K], mask bool [S, N];
/// = Σ_masked mean_k (pred − target)² / #masked (PatchTST's masked loss). Errors on shape
/// mismatch or an empty mask.
pub fn masked_mse(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if pred.size() != target.size() {
        bail!(
            "prediction {:?} and target {:?} differ in shape",
            pred.size(),
            target.size()
        );
    }
    let ps = pred.size();
    if ps.len() != 3 || mask.size() != ps[..2] {
        bail!(
            "mask {:?} must be [S, N] of prediction {:?} [S, N, K]",
            mask.size(),
            ps
        );
    }
    let w = mask.to_kind(Kind::Float);
    let per_patch = (pred.to_kind(Kind::Float) - target.to_kind(Kind::Float))
        .square()
        .mean_dim(-1, false, Kind::Float);
    let n = w.sum(Kind::Float);
    // An all-false mask would divide by zero: refuse it rather than return NaN.
    if mask.device() == Device::Cpu && n.double_value(&[]) == 0.0 {
        bail!("the mask masks no patch");
    }
    Ok((per_patch * &w).sum(Kind::Float) / n.clamp_min(1.0))
}

/// InfoNCE with cosine similarities (SimCLR / BIOT): rows of `anchor` [B, d] and `positive`
/// [B, d] are L2-normalised, logits = anchor·positiveᵀ / temperature, cross-entropy against the
/// diagonal (mean over B). BIOT: anchor = full view, positive = predicted perturbed view, τ = 0.2.
pub fn info_nce(anchor: &Tensor, positive: &Tensor, temperature: f64) -> Result<Tensor> {
    if anchor.size() != positive.size() || anchor.dim() != 2 {
        bail!(
            "InfoNCE views must both be [B, d], got {:?} and {:?}",
            anchor.size(),
            positive.size()
        );
    }
    if temperature <= 0.0 {
        bail!("temperature must be positive, got {temperature}");
    }
    let norm = |t: &Tensor| {
        let t = t.to_kind(Kind::Float);
        let n = t
            .norm_scalaropt_dim(2.0, [1i64].as_slice(), true)
            .clamp_min(1e-12);
        t / n
    };
    let logits = norm(anchor).matmul(&norm(positive).transpose(0, 1)) / temperature;
    let b = anchor.size()[0];
    let labels = Tensor::arange(b, (Kind::Int64, anchor.device()));
    Ok(logits.cross_entropy_for_logits(&labels))
}

/// BIOT's token subset for the perturbed view: for each of `channels` channels independently,
/// k frames out of `frames`, k uniform in [⌊T/2⌋, T−1] (numpy's `randint(ts // 2, ts)`; at least
/// 1), chosen without replacement in random order. The same subset serves the whole batch.
pub fn biot_keep_frames(channels: usize, frames: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<i64>> {
    (0..channels)
        .map(|_| {
            let lo = frames / 2;
            let k = rng.gen_range(lo..frames.max(lo + 1)).max(1).min(frames);
            let mut all: Vec<i64> = (0..frames as i64).collect();
            all.shuffle(rng);
            all.truncate(k);
            all
        })
        .collect()
}

/// Mean cross-entropy of logits [B, K] against int64 labels [B] in 0..K (fp32). Errors on shape
/// or (on CPU) label-range faults.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let ls = logits.size();
    if ls.len() != 2 || labels.size() != [ls[0]] {
        bail!(
            "logits {:?} must be [B, K] and labels {:?} [B]",
            ls,
            labels.size()
        );
    }
    if labels.kind() != Kind::Int64 {
        bail!("labels must be int64, got {:?}", labels.kind());
    }
    if labels.device() == Device::Cpu && ls[0] > 0 {
        let (lo, hi) = (labels.min().int64_value(&[]), labels.max().int64_value(&[]));
        if lo < 0 || hi >= ls[1] {
            bail!("labels must be in 0..{}, found {lo}..={hi}", ls[1]);
        }
    }
    Ok(logits.to_kind(Kind::Float).cross_entropy_for_logits(labels))
}
