//! Fine-tuning a bio-signal model on a labelled set and scoring it on held-out windows, across
//! data regimes and seeds (the CiTrus / BIOT transfer protocol).
//!
//! - **Regimes** ([`Regime`]): a fraction of the labelled training set (`1%`, `10%`, `100%`) or
//!   `k` windows per class (`k5`), drawn per class (stratified, at least one window per class)
//!   with a seeded shuffle, so every seed sees a different subset of the same size.
//! - **Initialisation**: from scratch, or from a pretraining folder ([`crate::biosignal::pretrain`]): every
//!   variable of the fine-tuned model except the classification head (`head.*`) and the MAE
//!   decoder (`decoder.*`) is loaded by name and must exist with the same shape (a hybrid's
//!   `stem.*` also initialises the conv-only variant; BIOT's contrastive `encoder.*` the
//!   supervised BIOT).
//! - **Modes** ([`Mode`]): full fine-tuning, or a linear probe (everything but `head.*` frozen).
//! - Training runs through the engine ([`crate::nn::Trainer`]) with AdamW, linear warm-up over
//!   the first 10% of steps and cosine decay; windows are drawn with replacement.
//! - **Scores** ([`crate::biosignal::metrics::evaluate`]) on the softmax of the logits: balanced accuracy,
//!   AUROC (binary) or macro one-vs-rest AUROC, macro-F1, Cohen's κ; [`summarise`] gives mean
//!   ± sample sd over seeds.
use crate::biosignal::metrics::{self, Scores};
use crate::biosignal::train::InMemorySignals;
use crate::biosignal::Windows;
use crate::models::registry::{ArchVisitor, BioModelConfig};
use crate::models::signal::{Classify, SignalArch, Supervised};
use crate::nn::{TrainConfig, Trainer};
use anyhow::{anyhow, bail, Context, Result};
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// How much of the labelled training set a fine-tuning run sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Regime {
    /// This fraction (0, 1] of each class's windows, rounded, at least one.
    Fraction(f64),
    /// This many windows per class (all of a smaller class).
    PerClass(usize),
}

impl std::str::FromStr for Regime {
    type Err = anyhow::Error;
    /// `10%`, `0.1` (fractions) or `k5` (five per class).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let r = if let Some(k) = s.strip_prefix('k') {
            Regime::PerClass(
                k.parse()
                    .with_context(|| format!("regime '{s}': k must be a whole number"))?,
            )
        } else if let Some(p) = s.strip_suffix('%') {
            Regime::Fraction(
                p.parse::<f64>()
                    .with_context(|| format!("regime '{s}': not a percentage"))?
                    / 100.0,
            )
        } else {
            Regime::Fraction(s.parse().with_context(|| {
                format!("regime '{s}': give a percentage (10%), a fraction (0.1) or kN")
            })?)
        };
        match r {
            Regime::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                bail!("regime '{s}': the fraction must be in (0, 100%]")
            }
            Regime::PerClass(0) => bail!("regime '{s}': k must be positive"),
            _ => Ok(r),
        }
    }
}

impl std::fmt::Display for Regime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Regime::Fraction(x) => write!(f, "{}%", (x * 1e4).round() / 100.0),
            Regime::PerClass(k) => write!(f, "k{k}"),
        }
    }
}

/// Indices of the windows a regime keeps: per class, a seeded shuffle of that class's windows,
/// then the first ⌈…⌉ of them (fraction: round(f·n_c), at least 1; per class: min(k, n_c)).
/// Sorted. Errors if a class in 0..`classes` has no window (a regime could not include it).
pub fn regime_indices(labels: &[i64], classes: usize, r: Regime, seed: u64) -> Result<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keep = Vec::new();
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] == c as i64)
            .collect();
        if idx.is_empty() {
            bail!("class {c} has no labelled training window");
        }
        idx.shuffle(&mut rng);
        let n = match r {
            Regime::Fraction(f) => ((f * idx.len() as f64).round() as usize).max(1),
            Regime::PerClass(k) => k.min(idx.len()),
        };
        keep.extend_from_slice(&idx[..n]);
    }
    keep.sort_unstable();
    Ok(keep)
}

/// Full fine-tuning or a linear probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Full,
    Linear,
}

/// Fine-tuning settings (the seed is per call).
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub mode: Mode,
    /// Optimizer steps.
    pub steps: u64,
    pub batch_size: usize,
    /// Peak learning rate (AdamW; warm-up 10% of steps, cosine to lr/10).
    pub lr: f64,
    pub weight_decay: f64,
    pub device: Device,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Full,
            steps: 100,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 0.01,
            device: Device::Cpu,
        }
    }
}

/// Labels of a labelled set as a vector, and its class count K (metadata, else max label + 1).
fn labels_and_classes(ds: &Windows, role: &str) -> Result<(Vec<i64>, usize)> {
    let Some(y) = &ds.labels else {
        bail!("{}: the {role} set has no labels", ds.source);
    };
    let y = y.to_vec();
    let k = ds
        .classes
        .unwrap_or_else(|| y.iter().max().map_or(0, |m| *m as usize + 1));
    Ok((y, k))
}

/// Copies every variable of `vs` but those under `skip` prefixes from the safetensors file
/// `weights`; all must be present with equal shapes. Returns how many were loaded.
pub fn load_pretrained(vs: &nn::VarStore, weights: &Path, skip: &[&str]) -> Result<usize> {
    let named = Tensor::read_safetensors(weights)
        .with_context(|| format!("reading pretrained weights {}", weights.display()))?;
    let named: std::collections::HashMap<String, Tensor> = named.into_iter().collect();
    let mut missing = Vec::new();
    let mut loaded = 0;
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vs.variables() {
            if skip.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            match named.get(&name) {
                Some(t) if t.size() == var.size() => {
                    var.copy_(t);
                    loaded += 1;
                }
                Some(t) => bail!(
                    "{}: tensor {name} has shape {:?}, the model expects {:?} (pretrained with another config)",
                    weights.display(),
                    t.size(),
                    var.size()
                ),
                None => missing.push(name),
            }
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        missing.sort();
        bail!(
            "{}: no pretrained weights for {} of the model's tensors ({}{}): pretrained with another architecture?",
            weights.display(),
            missing.len(),
            missing[..missing.len().min(4)].join(", "),
            if missing.len() > 4 { ", ..." } else { "" }
        );
    }
    Ok(loaded)
}

/// Class probabilities [N, K] (f64) of `ds` under `logits` (evaluation mode, no gradients).
fn probabilities(
    ds: &Windows,
    device: Device,
    logits: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Array2<f64>> {
    let mut rows: Vec<f64> = Vec::new();
    let mut k = 0;
    for start in (0..ds.len()).step_by(256) {
        let idx: Vec<usize> = (start..(start + 256).min(ds.len())).collect();
        let (x, _) = ds.batch(&idx, device)?;
        let p = tch::no_grad(|| logits(&x))?
            .softmax(-1, Kind::Double)
            .to_device(Device::Cpu);
        k = p.size()[1] as usize;
        rows.extend(Vec::<f64>::try_from(p.flatten(0, -1))?);
    }
    Ok(Array2::from_shape_vec((ds.len(), k), rows)?)
}

/// Trains the classifier of `A` (config `cfg`) from `init` on `data` for `opts.steps` and returns
/// the test probabilities and the last training loss.
struct TrainAndPredict<'a> {
    k: i64,
    channels: i64,
    source: &'a str,
    tc: &'a TrainConfig,
    opts: &'a FinetuneOptions,
    init: Option<&'a Path>,
    data: &'a InMemorySignals,
    test: &'a Windows,
}

impl ArchVisitor for TrainAndPredict<'_> {
    type Out = Result<(Array2<f64>, f64)>;
    fn visit<A: SignalArch>(self, model: &A) -> Self::Out {
        let (opts, init) = (self.opts, self.init);
        let cfg = model.with_classes(self.k);
        // A window shorter than the model takes fails in the first step with the model's message.
        cfg.check_input(self.channels, i64::MAX)
            .map_err(|e| anyhow!("{}: {e}", self.source))?;
        let mut t = Trainer::<Supervised<A>>::with_init(&cfg, self.tc, opts.device, |vs, _| {
            if let Some(w) = init {
                load_pretrained(vs, w, &["head.", "decoder."])?;
            }
            if opts.mode == Mode::Linear {
                for (name, v) in vs.variables() {
                    if !name.starts_with("head.") {
                        let _ = v.set_requires_grad(false);
                    }
                }
            }
            Ok(())
        })?;
        let mut last = f64::NAN;
        for _ in 0..opts.steps {
            last = t.train_step(self.data)?.loss;
        }
        let p = probabilities(self.test, opts.device, |x| {
            t.model.0.logits(x, 0, false, Kind::Float)
        })?;
        Ok((p, last))
    }
}

/// One fine-tuning run's result.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneRun {
    /// Training windows the regime kept.
    pub n_train: usize,
    /// Last training loss.
    pub train_loss: f64,
    pub scores: Scores,
}

/// Fine-tunes `model` (its head resized to the train set's K classes) on the `regime` subset of
/// `train` (drawn with `seed`), from scratch or from `init` (a `model.safetensors`), and scores it
/// on `test`. Both sets must already have the model's rate and window length (see
/// [`crate::biosignal::resample::align`]). Errors: unlabelled sets, labels outside 0..K, a class with no
/// training window, shapes the model cannot take, pretrained weights of another architecture.
pub fn finetune(
    model: &BioModelConfig,
    init: Option<&Path>,
    train: &Windows,
    test: &Windows,
    regime: Regime,
    opts: &FinetuneOptions,
    seed: u64,
) -> Result<FinetuneRun> {
    let (y, k) = labels_and_classes(train, "training")?;
    let (y_test, _) = labels_and_classes(test, "test")?;
    if k < 2 {
        bail!("{}: fine-tuning needs at least 2 classes", train.source);
    }
    if train.samples.dim().1 != test.samples.dim().1 || train.window_len() != test.window_len() {
        bail!(
            "{} [C {}, L {}] and {} [C {}, L {}]: training and test windows differ in shape",
            train.source,
            train.n_channels(),
            train.window_len(),
            test.source,
            test.n_channels(),
            test.window_len()
        );
    }
    let keep = regime_indices(&y, k, regime, seed)?;
    let sub = train.subset(&keep);
    let (x, yt) = sub.to_tensors(Device::Cpu)?;
    let (xe, ye) = test.to_tensors(Device::Cpu)?;
    let data = InMemorySignals::new(x, yt, xe, ye)?;
    let tc = TrainConfig {
        seed,
        batch_size: opts.batch_size,
        max_steps: opts.steps,
        lr: opts.lr,
        min_lr: opts.lr / 10.0,
        warmup_steps: opts.steps / 10,
        weight_decay: opts.weight_decay,
        eval_every: 0,
        checkpoint_every: 0,
        ..TrainConfig::default()
    };
    let (p, loss) = model.visit(TrainAndPredict {
        k: k as i64,
        channels: train.n_channels() as i64,
        source: &train.source,
        tc: &tc,
        opts,
        init,
        data: &data,
        test,
    })?;
    let scores = metrics::evaluate(&y_test, p.view())
        .with_context(|| format!("scoring on {}", test.source))?;
    Ok(FinetuneRun {
        n_train: keep.len(),
        train_loss: loss,
        scores,
    })
}

/// Mean and sample standard deviation (0 for one value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanSd {
    pub mean: f64,
    pub sd: f64,
}

impl MeanSd {
    pub fn of(v: &[f64]) -> Self {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Self { mean, sd }
    }
}

impl std::fmt::Display for MeanSd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} ± {:.3}", self.mean, self.sd)
    }
}

/// Scores of several seeds summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoreSummary {
    pub seeds: usize,
    pub balanced_accuracy: MeanSd,
    pub auroc: MeanSd,
    pub macro_f1: MeanSd,
    pub kappa: MeanSd,
}

/// Mean ± sd over runs of each score. Errors on no runs.
pub fn summarise(runs: &[&Scores]) -> Result<ScoreSummary> {
    if runs.is_empty() {
        bail!("no runs to summarise");
    }
    let col = |f: fn(&Scores) -> f64| MeanSd::of(&runs.iter().map(|s| f(s)).collect::<Vec<_>>());
    Ok(ScoreSummary {
        seeds: runs.len(),
        balanced_accuracy: col(|s| s.balanced_accuracy),
        auroc: col(|s| s.auroc),
        macro_f1: col(|s| s.macro_f1),
        kappa: col(|s| s.kappa),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regimes_parse_print_and_stratify() {
        assert_eq!("10%".parse::<Regime>().unwrap(), Regime::Fraction(0.1));
        assert_eq!("0.5".parse::<Regime>().unwrap(), Regime::Fraction(0.5));
        assert_eq!("k5".parse::<Regime>().unwrap(), Regime::PerClass(5));
        for bad in ["0%", "150%", "k0", "kx", "ten"] {
            assert!(bad.parse::<Regime>().is_err(), "{bad}");
        }
        assert_eq!(Regime::Fraction(0.01).to_string(), "1%");
        assert_eq!(Regime::PerClass(3).to_string(), "k3");
        // 10 windows of class 0, 30 of class 1.
        let y: Vec<i64> = (0..40).map(|i| (i >= 10) as i64).collect();
        let k = regime_indices(&y, 2, Regime::Fraction(0.1), 1).unwrap();
        assert_eq!(k.iter().filter(|&&i| y[i] == 0).count(), 1);
        assert_eq!(k.iter().filter(|&&i| y[i] == 1).count(), 3);
        let k = regime_indices(&y, 2, Regime::PerClass(12), 1).unwrap();
        assert_eq!(k.len(), 10 + 12);
        assert_ne!(
            regime_indices(&y, 2, Regime::PerClass(2), 1).unwrap(),
            regime_indices(&y, 2, Regime::PerClass(2), 2).unwrap()
        );
        assert!(regime_indices(&y, 3, Regime::PerClass(2), 1).is_err());
        let m = MeanSd::of(&[1.0, 2.0, 3.0]);
        assert_eq!((m.mean, m.sd), (2.0, 1.0));
    }
}
