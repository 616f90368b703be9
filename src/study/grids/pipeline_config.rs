//! The `[cell]` table of a pipeline grid: settings with their defaults, validation, and the
//! align and VQ-VAE options they imply (see [`crate::study::grids::pipeline_cell`] for what a cell does).
use crate::fmri::align::{AlignOptions, Lag};
use crate::fmri::dataset::splits::SplitPlan;
use crate::fmri::tokenize as vqvae;
use crate::models::vqvae::VqVaeConfig;
use crate::models::ModelConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which hidden states become features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Layers {
    /// "last", "middle" (block ⌈L/2⌉) or "all" (blocks 1..=L, concatenated).
    Named(String),
    /// 0 = embeddings, l = output of block l.
    List(Vec<usize>),
}

impl Layers {
    pub fn resolve(&self, n_layer: usize) -> Result<Vec<usize>> {
        let v = match self {
            Layers::Named(s) => match s.as_str() {
                "last" => vec![n_layer],
                "middle" => vec![n_layer.div_ceil(2)],
                "all" => (1..=n_layer).collect(),
                _ => bail!("[cell] layers = \"{s}\": expected \"last\", \"middle\", \"all\" or a list of layer numbers"),
            },
            Layers::List(v) => v.clone(),
        };
        if v.is_empty() {
            bail!("[cell] layers: choose at least one layer");
        }
        if let Some(l) = v.iter().find(|&&l| l > n_layer) {
            bail!("[cell] layers: layer {l} does not exist in a {n_layer}-layer model (0 = embeddings, 1..={n_layer} = blocks)");
        }
        Ok(v)
    }
}

pub(super) fn d<T: Default>() -> T {
    T::default()
}
pub(super) fn tokenizer_steps() -> u64 {
    2000
}
pub(super) fn tokenizer_batch() -> usize {
    16
}
pub(super) fn lr() -> f64 {
    3e-4
}
pub(super) fn tokenizer_hop() -> usize {
    4
}
pub(super) fn one() -> usize {
    1
}
pub(super) fn eval_fraction() -> f64 {
    0.05
}
pub(super) fn batch_size() -> usize {
    8
}
pub(super) fn weight_decay() -> f64 {
    0.1
}
pub(super) fn grad_clip() -> f64 {
    1.0
}
pub(super) fn eval_samples() -> usize {
    256
}
pub(super) fn checkpoint_every() -> u64 {
    200
}
pub(super) fn layers() -> Layers {
    Layers::Named("last".into())
}
pub(super) fn fir_delays() -> Vec<usize> {
    vec![1, 2, 3, 4]
}
pub(super) fn device() -> String {
    "auto".into()
}

/// The `[cell]` table of a pipeline cell (see the module docs). Relative paths are relative
/// to the folder `bench` runs in (as the grid's `out`; SLURM tasks run there too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub dataset: PathBuf,
    /// A trained tokenizer folder; when absent one is trained into OUT/shared.
    pub tokenizer: Option<PathBuf>,
    /// VQ-VAE config of the tokenizer to train: a TOML file or an inline table.
    pub vqvae: Option<toml::Value>,
    #[serde(default = "tokenizer_steps")]
    pub tokenizer_steps: u64,
    #[serde(default = "tokenizer_batch")]
    pub tokenizer_batch: usize,
    #[serde(default = "lr")]
    pub tokenizer_lr: f64,
    /// Frames between training clips of the tokenizer.
    #[serde(default = "tokenizer_hop")]
    pub tokenizer_hop: usize,
    #[serde(default = "d")]
    pub tokenizer_seed: u64,
    /// Movie files, folders of movies, or code caches to pretrain on (default: the dataset's
    /// movies).
    #[serde(default = "d")]
    pub pretrain_movies: Vec<PathBuf>,
    /// Frames between pretraining clips (default: the clip span, i.e. no overlap).
    pub pretrain_hop: Option<usize>,
    /// Frame stride inside a clip, for the pretraining codes and the features.
    #[serde(default = "one")]
    pub clip_stride: usize,
    /// Decode frame rate (default: the movie's own).
    pub fps: Option<f64>,
    #[serde(default = "eval_fraction")]
    pub eval_fraction: f64,
    #[serde(default = "batch_size")]
    pub batch_size: usize,
    #[serde(default = "one")]
    pub grad_accum: usize,
    #[serde(default = "lr")]
    pub lr: f64,
    /// Default lr / 10.
    pub min_lr: Option<f64>,
    /// Default: 5% of the cell's steps (at least 1).
    pub warmup_steps: Option<u64>,
    #[serde(default = "weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "grad_clip")]
    pub grad_clip: f64,
    #[serde(default = "eval_samples")]
    pub eval_samples: usize,
    #[serde(default = "checkpoint_every")]
    pub checkpoint_every: u64,
    #[serde(default = "layers")]
    pub layers: Layers,
    /// Also encode each layer's features alone (0 = embeddings … L), for per-layer r curves;
    /// the row gets `r_layer:L` (mean over subjects of each subject's mean r).
    #[serde(default)]
    pub layer_scores: bool,
    /// Precisions whose cells compute `layer_scores` (default: every cell).
    pub layer_scores_precisions: Option<Vec<String>>,
    /// Frames between feature clips (default: the clip span).
    pub extract_hop: Option<usize>,
    /// PCA components of the features (default: none).
    pub pca: Option<usize>,
    #[serde(default = "fir_delays")]
    pub fir_delays: Vec<usize>,
    /// "fir" (default, with `fir_delays`) or "hrf".
    pub lag: Option<String>,
    pub max_mismatch_s: Option<f64>,
    pub alphas: Option<Vec<f64>>,
    /// Where the ridge runs: "cpu" (default: the CPU backend of this build) or "cuda",
    /// "cuda:N", "auto" (the torch backend on that GPU; CPU when none is available with auto).
    pub ridge_device: Option<String>,
    #[serde(default = "d")]
    pub split: SplitPlan,
    #[serde(default = "device")]
    pub device: String,
    pub threads: Option<usize>,
}

impl PipelineConfig {
    /// Parses and checks the grid's `[cell]` table (without its `kind`).
    pub fn from_table(t: &BTreeMap<String, toml::Value>) -> Result<Self> {
        let table: toml::Table = t.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let c: PipelineConfig = toml::Value::Table(table)
            .try_into()
            .context("[cell] kind = \"pipeline\"")?;
        c.validate()?;
        Ok(c)
    }

    pub(super) fn validate(&self) -> Result<()> {
        let pos = |k: &str, v: u64| -> Result<()> {
            if v == 0 {
                bail!("[cell] {k} must be positive");
            }
            Ok(())
        };
        pos("tokenizer_steps", self.tokenizer_steps)?;
        pos("tokenizer_batch", self.tokenizer_batch as u64)?;
        pos("tokenizer_hop", self.tokenizer_hop as u64)?;
        pos("clip_stride", self.clip_stride as u64)?;
        pos("batch_size", self.batch_size as u64)?;
        pos("grad_accum", self.grad_accum as u64)?;
        for (k, v) in [
            ("pretrain_hop", self.pretrain_hop),
            ("extract_hop", self.extract_hop),
            ("pca", self.pca),
            ("threads", self.threads),
        ] {
            if v == Some(0) {
                bail!("[cell] {k} must be positive");
            }
        }
        for (k, v) in [("lr", self.lr), ("tokenizer_lr", self.tokenizer_lr)] {
            if !(v.is_finite() && v > 0.0) {
                bail!("[cell] {k} must be positive, got {v}");
            }
        }
        if !(0.0..1.0).contains(&self.eval_fraction) {
            bail!(
                "[cell] eval_fraction must be in [0, 1), got {}",
                self.eval_fraction
            );
        }
        if let Some(f) = self.fps {
            if !(f.is_finite() && f > 0.0) {
                bail!("[cell] fps must be positive, got {f}");
            }
        }
        if let Some(a) = &self.alphas {
            if a.is_empty() || a.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                bail!("[cell] alphas must be a non-empty list of positive numbers");
            }
        }
        self.align_options()?;
        if let Layers::Named(_) = &self.layers {
            self.layers.resolve(1)?;
        }
        if self.tokenizer.is_some() && self.vqvae.is_some() {
            bail!("[cell] give either tokenizer (a trained one) or vqvae (a config to train), not both");
        }
        Ok(())
    }

    pub(super) fn align_options(&self) -> Result<AlignOptions> {
        let lag = match self.lag.as_deref() {
            None | Some("fir") => {
                if self.fir_delays.is_empty() {
                    bail!("[cell] fir_delays must list at least one delay (in TRs)");
                }
                Lag::Fir(self.fir_delays.clone())
            }
            Some("hrf") => Lag::Hrf,
            Some(o) => bail!("[cell] lag = \"{o}\": expected \"fir\" or \"hrf\""),
        };
        Ok(AlignOptions {
            lag,
            max_mismatch_s: self.max_mismatch_s,
        })
    }

    pub(super) fn vqvae_config(&self) -> Result<VqVaeConfig> {
        let cfg = match &self.vqvae {
            None => VqVaeConfig::default(),
            Some(toml::Value::String(p)) => vqvae::load_config(Some(Path::new(p)))?,
            Some(v @ toml::Value::Table(_)) => v
                .clone()
                .try_into()
                .context("[cell.vqvae]: not a VQ-VAE config")?,
            Some(_) => bail!("[cell] vqvae must be a TOML file path or a table"),
        };
        cfg.validate().context("[cell] vqvae")?;
        Ok(cfg)
    }
}
