//! The `[cell] kind = "biosignal"` cell: BIOT's unsupervised (contrastive) pretraining of one
//! model of the BIOT ladder (`models/biot-*.toml`) on one synthetic modality for exactly D tokens,
//! for compute-optimal scaling laws of the Biosignal Transformer (after Fortin 2024, who fitted
//! them separately for accelerometer and EEG data, targeting the unsupervised pretraining loss).
//!
//! ```toml
//! [axes]
//! budgets = [2e10, 6e10]                 # FLOPs; D = C / (FLOPs per token), whole steps
//! models = ["../models/biot-d32-l4.toml", ...]   # BIOT model files (not inline tables)
//! precisions = ["fp32"]
//! [cell]
//! kind = "biosignal"
//! modality = "eeg"          # eeg | accel (| ecg | emg): the generator's modality
//! rate = 200.0              # Hz the windows are rendered at (BIOT resamples everything to 200)
//! # samples = 1000          # window length (default: the modality's window duration at `rate`)
//! batch_size = 32           # windows per step, also the number of InfoNCE candidates
//! lr = 1e-3                 # AdamW peak; linear warmup (warmup_fraction) then cosine to lr/10
//! # lr_by_model = { "../models/biot-d8-l1.toml" = 4e-3 }  # per-size peaks from a recorded sweep
//! # min_steps = 100          # cells with fewer optimizer steps are refused when the grid is read
//! eval_windows = 128        # fixed held-out set (generator split "val", never trained on)
//! # pool_windows = 5000     # a finite pool instead of fresh windows (then epochs = D / pool)
//! # device = "cpu"          # cpu | cuda | cuda:N | auto
//! # threads = 1             # libtorch CPU threads (1: fastest for these small ops on shared cores)
//! # cache_mib = 2048        # rendered batches shared by the cells of one process (same numbers)
//! ```
//!
//! Definitions (one place each):
//! - **Token** = one channel × one STFT frame (BIOT's unit: each becomes one transformer token).
//!   A window of C channels and L samples is C·T tokens, T = ⌊(L − n_fft)/hop⌋ + 1. D counts the
//!   tokens of the full view; D is rounded to whole optimizer steps (batch · C · T tokens) when a
//!   cell is made, so the row's `tokens` is exactly what was trained.
//! - **Objective** = BIOT's contrastive pretraining ([`Pretraining`] of [`BiotConfig`]: a random subset of each
//!   channel's frames through the predictor vs the whole window, InfoNCE at τ = 0.2 over the
//!   batch). It is "the unsupervised pretraining loss" of BIOT; its value depends on the batch
//!   (ln B at chance), so one grid keeps one batch size and the held-out loss is computed on a
//!   fixed seeded set in batches of that size (eval_windows must be a multiple of it).
//! - **N** = `n_params` = the encoder parameters applied at every token (frame projection and all
//!   linear-attention blocks, [`BiotParamCounts::per_token`]); the channel table (a lookup) and
//!   the predictor (once per window) are not, but count in `n_params_total`.
//! - **FLOPs** per token = [`crate::core::flops::two_view_train_flops_per_token`] of the encoder's
//!   [`crate::core::flops::linear_attention_train_flops_per_token`] (6·N + 12·L·d·d_h), with the mean
//!   share of tokens BIOT's subset view keeps and the predictor once per window.
//! - **Data**: fresh generator windows (indices drawn from 2⁶³, so no window repeats) normalised per
//!   channel by the 95th percentile of |x| (BIOT's loaders); with `pool_windows` the windows come
//!   from a finite pool and the row records `epochs` = windows trained / pool size. Every cell of
//!   one seed draws the same windows at step s, so the cells a process runs share each rendered
//!   batch ([`BatchCache`]; rows record `batches_rendered`, `train_cpu_s` and `data_cpu_s`).
//!
//! Results-row columns: `ctx` holds the tokens per window (C·T) and `vocab` the frequency bins
//! per token (n_fft/2 + 1), the BIOT counterparts of a GPT's context and vocabulary.
//! The cell trains with the engine ([`crate::nn::fit`]): checkpoints in `cells/ID/train/`, so a
//! killed cell resumes from its last checkpoint; each start appends to `cells/ID/attempts.log`.
use crate::biosignal::synth::{Generator, Modality, SynthSplit};
use crate::biosignal::window::{normalise, Norm};
use crate::models::biot::BiotConfig;
use crate::models::objectives::SignalBatch;
use crate::models::signal::Pretraining;
use crate::models::ModelConfig;
use crate::nn::{Data, FitOptions, Precision, TrainConfig, Trainer};
use crate::study::grids::cell::{Cell, CellEnv, CellOutput, CellWork, ModelSpec, ParamCounts};
use anyhow::{bail, Context, Result};
use ndarray::{Array2, Array3, Axis};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Tensor};

fn rate200() -> f64 {
    200.0
}
fn b32() -> usize {
    32
}
fn lr() -> f64 {
    1e-3
}
fn wd() -> f64 {
    1e-5
}
fn warm() -> f64 {
    0.05
}
fn ev() -> usize {
    128
}
fn cpu() -> String {
    "cpu".into()
}

/// The cell's settings (the grid's `[cell]` table; see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BiosignalCell {
    pub modality: Modality,
    /// Sampling rate (Hz) the windows are rendered at.
    #[serde(default = "rate200")]
    pub rate: f64,
    /// Samples per window (default: the modality's window duration at `rate`).
    pub samples: Option<usize>,
    #[serde(default = "b32")]
    pub batch_size: usize,
    #[serde(default = "lr")]
    pub lr: f64,
    /// Final learning rate of the cosine (default lr/10).
    pub min_lr: Option<f64>,
    /// AdamW weight decay (BIOT: 1e-5).
    #[serde(default = "wd")]
    pub weight_decay: f64,
    /// Share of the steps spent in linear warmup (at least one step).
    #[serde(default = "warm")]
    pub warmup_fraction: f64,
    /// Held-out windows (a multiple of batch_size).
    #[serde(default = "ev")]
    pub eval_windows: usize,
    /// Generator seed of the windows (the model's seed is the grid's `seeds` axis).
    #[serde(default)]
    pub data_seed: u64,
    /// A finite pool of this many distinct windows instead of fresh ones.
    pub pool_windows: Option<u64>,
    #[serde(default = "cpu")]
    pub device: String,
    /// Checkpoint every this many steps (0: four times per cell).
    #[serde(default)]
    pub checkpoint_every: u64,
    /// libtorch intra-op threads on the CPU. One by default: these models' ops are small, and
    /// on shared cores two spinning OpenMP threads made a cell ~10x slower than one (measured).
    #[serde(default = "one_thread")]
    pub threads: usize,
    /// Peak learning rate per model (keys as in `axes.models`), e.g. the best of a small recorded
    /// sweep at one small budget; models not listed use `lr`. min_lr defaults to a tenth of it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lr_by_model: std::collections::BTreeMap<String, f64>,
    /// Fewest optimizer steps a cell may train (default [`DEFAULT_MIN_STEPS`]): a cell of fewer
    /// is mostly warmup and its loss says more about the schedule than about N and D, so the
    /// grid is refused when it is read, naming the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_steps: Option<u64>,
    /// Memory (MiB) for rendered training batches shared by every cell of this process
    /// ([`BatchCache`]; 0: render every batch). Cells of one seed draw the same windows at the
    /// same step, so a grid renders each step's batch once instead of once per cell; the
    /// batches are bit-identical either way, so this setting changes time, never a number.
    /// Not serialised: it is no part of a cell's identity (config hash).
    #[serde(default = "cache_mib", skip_serializing)]
    pub cache_mib: u64,
}

fn cache_mib() -> u64 {
    2048
}

/// Fewest optimizer steps per cell unless a grid's `min_steps` says otherwise.
pub const DEFAULT_MIN_STEPS: u64 = 100;

fn one_thread() -> usize {
    1
}

/// What one model costs in a cell of this kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    pub counts: ParamCounts,
    /// Training FLOPs per token (see the module docs).
    pub flops_per_token: f64,
    /// Tokens per optimizer step: batch · C · T (D is a multiple of it).
    pub tokens_per_step: u64,
}

/// Mean share of frames BIOT's subset view keeps per channel
/// ([`crate::models::objectives::biot_keep_frames`]: k uniform in [⌊T/2⌋, T−1], at least 1).
pub fn biot_kept_fraction(frames: usize) -> f64 {
    if frames == 0 {
        return 0.0;
    }
    let lo = frames / 2;
    let hi = frames.max(lo + 1);
    let sum: usize = (lo..hi).map(|k| k.clamp(1, frames)).sum();
    sum as f64 / (hi - lo) as f64 / frames as f64
}

/// A BIOT model file as the grid's model spec: d_model, n_layer, n_head as they are, `ctx` = the
/// tokens per window of this cell, `vocab` = frequency bins per token; every BIOT field is kept
/// in `extra` (so the cell's config hash covers it) and read back by [`biot_config`].
pub fn biot_spec(cfg: &BiotConfig, tokens_per_window: u64) -> Result<ModelSpec> {
    let t: toml::Table = toml::Value::try_from(cfg)?
        .try_into()
        .context("BIOT config as a table")?;
    let mut extra: std::collections::BTreeMap<String, toml::Value> = t.into_iter().collect();
    for k in ["d_model", "n_layer", "n_head"] {
        extra.remove(k);
    }
    Ok(ModelSpec {
        n_layer: cfg.n_layer as u64,
        n_head: cfg.n_head as u64,
        d_model: cfg.d_model as u64,
        ctx: tokens_per_window,
        vocab: cfg.n_freq() as u64,
        extra,
    })
}

/// The BIOT config a spec made by [`biot_spec`] holds.
pub fn biot_config(spec: &ModelSpec, name: &str) -> Result<BiotConfig> {
    let mut t = toml::Table::new();
    for (k, v) in &spec.extra {
        t.insert(k.clone(), v.clone());
    }
    for (k, v) in [
        ("d_model", spec.d_model),
        ("n_layer", spec.n_layer),
        ("n_head", spec.n_head),
    ] {
        t.insert(k.into(), toml::Value::Integer(v as i64));
    }
    let cfg: BiotConfig = toml::Value::Table(t)
        .try_into()
        .with_context(|| format!("model '{name}' is not a BIOT config"))?;
    cfg.validate().with_context(|| format!("model '{name}'"))?;
    Ok(cfg)
}

impl BiosignalCell {
    /// Checks the settings; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = self.modality.rate_range();
        if !(self.rate >= lo && self.rate <= hi) {
            bail!(
                "[cell] rate = {} Hz is outside the {} generator's range {lo}-{hi} Hz",
                self.rate,
                self.modality.name()
            );
        }
        if self.batch_size < 2 {
            bail!(
                "[cell] batch_size = {} must be at least 2 (InfoNCE needs negatives)",
                self.batch_size
            );
        }
        if self.eval_windows == 0 || self.eval_windows % self.batch_size != 0 {
            bail!(
                "[cell] eval_windows = {} must be a positive multiple of batch_size = {} (the held-out InfoNCE is computed in batches of that size)",
                self.eval_windows,
                self.batch_size
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("[cell] lr = {} must be positive", self.lr);
        }
        for (m, &v) in &self.lr_by_model {
            if !(v.is_finite() && v > 0.0) {
                bail!("[cell] lr_by_model.\"{m}\" = {v} must be positive");
            }
        }
        if let Some(m) = self.min_lr {
            let lo = self.lr_by_model.values().fold(self.lr, |a, &b| a.min(b));
            if !(m >= 0.0 && m <= lo) {
                bail!("[cell] min_lr = {m} must be in [0, lr] for every model's lr");
            }
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            bail!(
                "[cell] warmup_fraction = {} must be in [0, 1)",
                self.warmup_fraction
            );
        }
        if self.weight_decay < 0.0 {
            bail!("[cell] weight_decay must be non-negative");
        }
        if self.pool_windows == Some(0) {
            bail!("[cell] pool_windows must be positive (omit it to stream fresh windows)");
        }
        crate::nn::parse_device(&self.device).context("[cell] device")?;
        if self.threads == 0 {
            bail!("[cell] threads must be at least 1");
        }
        self.generator()?;
        Ok(())
    }

    /// The peak learning rate of model `name` (an `axes.models` entry).
    pub fn lr_for(&self, name: &str) -> f64 {
        self.lr_by_model.get(name).copied().unwrap_or(self.lr)
    }

    /// The fewest optimizer steps a cell may train.
    pub fn min_steps(&self) -> u64 {
        self.min_steps.unwrap_or(DEFAULT_MIN_STEPS)
    }

    /// (channels, samples per window).
    pub fn window(&self) -> (usize, usize) {
        let spec = self.modality.spec();
        let samples = self
            .samples
            .unwrap_or((spec.seconds() * self.rate).round() as usize);
        (spec.channels.len(), samples)
    }

    /// The cell's window generator (seed `data_seed`, the modality at `rate` × `samples`).
    pub fn generator(&self) -> Result<Generator> {
        let (_, l) = self.window();
        Generator::new(self.data_seed)
            .with_shape(self.modality, self.rate, l)
            .context("[cell] rate/samples")
    }

    /// Frames per channel and tokens per window of model `cfg`; errors if a window is shorter
    /// than one STFT frame.
    pub fn tokens_per_window(&self, cfg: &BiotConfig) -> Result<(u64, u64)> {
        let (c, l) = self.window();
        let t = cfg.frames(l as i64);
        if t < 1 {
            bail!(
                "{} windows of {l} samples are shorter than one STFT frame of model '{}' (n_fft = {})",
                self.modality.name(),
                cfg.name,
                cfg.n_fft
            );
        }
        if t > cfg.frame_capacity() {
            bail!(
                "{t} frames per channel exceed model '{}''s position table ({} frames)",
                cfg.name,
                cfg.frame_capacity()
            );
        }
        if c as i64 > cfg.n_channels {
            bail!(
                "{} has {c} channels but model '{}''s channel table has {} rows",
                self.modality.name(),
                cfg.name,
                cfg.n_channels
            );
        }
        Ok((t as u64, c as u64 * t as u64))
    }

    /// A model file read for this cell, as the grid's spec.
    pub fn load_model(&self, path: &Path) -> Result<ModelSpec> {
        let cfg = BiotConfig::load(path)?;
        let (_, tpw) = self
            .tokens_per_window(&cfg)
            .with_context(|| format!("model file {}", path.display()))?;
        biot_spec(&cfg, tpw)
    }

    /// Parameter counts, FLOPs per token and tokens per step of a model in this cell.
    pub fn costs(&self, spec: &ModelSpec, name: &str) -> Result<Costs> {
        let cfg = biot_config(spec, name)?;
        let (frames, tpw) = self.tokens_per_window(&cfg)?;
        let p = cfg.param_counts();
        let flops_per_token = crate::core::flops::two_view_train_flops_per_token(
            cfg.train_flops_per_token(),
            biot_kept_fraction(frames as usize),
            p.predictor,
            tpw,
        );
        Ok(Costs {
            counts: ParamCounts {
                total: p.encoder + p.predictor,
                non_embedding: p.per_token,
                matmul: p.per_token,
            },
            flops_per_token,
            tokens_per_step: tpw * self.batch_size as u64,
        })
    }

    /// The held-out windows: `eval_windows` of the generator's "val" split from index 0.
    fn eval_set(&self, gen: &Generator) -> Result<Tensor> {
        let idx: Vec<u64> = (0..self.eval_windows as u64).collect();
        BatchCache::get(
            gen,
            self.modality,
            SynthSplit::Val,
            &idx,
            self.cache_bytes(),
        )
    }

    /// The batch cache's byte budget ([`BiosignalCell::cache_mib`]).
    pub fn cache_bytes(&self) -> usize {
        (self.cache_mib as usize).saturating_mul(1 << 20)
    }
}

/// Windows [B, C, L] normalised per channel (BIOT's p95) as a CPU fp32 tensor.
fn to_tensor(mut x: Array3<f32>) -> Result<Tensor> {
    normalise(&mut x, Norm::P95);
    let (b, c, l) = x.dim();
    let flat: Vec<f32> = x.iter().copied().collect();
    Ok(Tensor::from_slice(&flat).view([b as i64, c as i64, l as i64]))
}

/// Pretraining windows streamed from the generator (fresh, or from a finite pool) with a fixed
/// held-out set. With `cache` (a byte budget), rendered batches are shared through the
/// process-wide [`BatchCache`]; the batches and the RNG draws are the same as without it.
pub struct StreamingSignals {
    pub gen: Generator,
    pub modality: Modality,
    pub pool: Option<u64>,
    pub eval_x: Tensor,
    /// Bytes the process-wide batch cache may hold (0: no cache).
    pub cache: usize,
    /// Training batches this source rendered (the others came from the store).
    pub rendered: std::sync::atomic::AtomicU64,
    /// Thread CPU nanoseconds spent on training batches (rendering or copying from the store).
    pub data_cpu_ns: std::sync::atomic::AtomicU64,
}

/// The window indices [`Generator::sample`] draws from `rng` for one batch (same draws, same
/// order: from 0..pool, or fresh from 0..2⁶³). A test holds the two equal.
pub fn sample_indices(rng: &mut ChaCha8Rng, batch: usize, pool: Option<u64>) -> Vec<u64> {
    (0..batch)
        .map(|_| match pool {
            Some(d) => rng.gen_range(0..d.max(1)),
            None => rng.gen::<u64>() >> 1,
        })
        .collect()
}

/// CPU seconds the calling thread has used (CLOCK_THREAD_CPUTIME_ID): a cell's own cost on a
/// shared machine, where wall time also counts the other processes' share of the cores.
pub fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Windows `idx` of `split`, rendered in the calling thread (a grid already runs one cell per
/// core; this keeps the rendering in the cell's CPU time) and normalised (BIOT's p95):
/// [B, C, L] fp32.
pub fn render(gen: &Generator, m: Modality, split: SynthSplit, idx: &[u64]) -> Result<Tensor> {
    let spec = gen.spec(m);
    let windows: Vec<Array2<f32>> = idx.iter().map(|&i| gen.window_in(m, split, i).0).collect();
    let mut x = Array3::zeros((idx.len(), spec.channels.len(), spec.length));
    for (i, w) in windows.into_iter().enumerate() {
        x.index_axis_mut(Axis(0), i).assign(&w);
    }
    to_tensor(x)
}

/// What identifies a rendered batch: the generator (seed, modality, rate, length), the split and
/// the window indices. Equal keys render bit-identical windows (a window is a pure function of
/// them, `synth.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BatchKey {
    seed: u64,
    modality: Modality,
    rate_bits: u64,
    length: usize,
    split: u8,
    idx: Vec<u64>,
}

/// Process-wide store of rendered, normalised batches (CPU tensors), shared by the cells a grid
/// runs in this process (the local executor runs cells as threads). The trainer seeds each
/// step's batch RNG from (seed, step) alone, so every cell of one seed and shape draws the same
/// windows at step s: with the store, a grid renders each step once per seed, not once per cell.
/// Batches are stored until `cap` bytes are held, then no more (the earliest steps are the ones
/// every cell trains, so they are the ones worth keeping); a miss renders, as without a store.
pub struct BatchCache {
    map: std::collections::HashMap<BatchKey, Tensor>,
    bytes: usize,
    /// Lookups answered from the store, and renders.
    pub hits: u64,
    pub misses: u64,
}

static CACHE: std::sync::OnceLock<std::sync::Mutex<BatchCache>> = std::sync::OnceLock::new();

impl BatchCache {
    fn global() -> std::sync::MutexGuard<'static, BatchCache> {
        CACHE
            .get_or_init(|| {
                std::sync::Mutex::new(BatchCache {
                    map: Default::default(),
                    bytes: 0,
                    hits: 0,
                    misses: 0,
                })
            })
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// (hits, misses, bytes held) of the process-wide store.
    pub fn stats() -> (u64, u64, usize) {
        let c = Self::global();
        (c.hits, c.misses, c.bytes)
    }

    /// The batch `idx` of `split`, from the store or rendered (and stored while under `cap`
    /// bytes). Rendering runs outside the lock, so cells render in parallel.
    pub fn get(
        gen: &Generator,
        m: Modality,
        split: SynthSplit,
        idx: &[u64],
        cap: usize,
    ) -> Result<Tensor> {
        Ok(Self::fetch(gen, m, split, idx, cap)?.0)
    }

    /// [`BatchCache::get`], and whether the batch was rendered now (a miss).
    pub fn fetch(
        gen: &Generator,
        m: Modality,
        split: SynthSplit,
        idx: &[u64],
        cap: usize,
    ) -> Result<(Tensor, bool)> {
        if cap == 0 {
            return Ok((render(gen, m, split, idx)?, true));
        }
        let spec = gen.spec(m);
        let key = BatchKey {
            seed: gen.seed,
            modality: m,
            rate_bits: spec.rate.to_bits(),
            length: spec.length,
            split: split as u8,
            idx: idx.to_vec(),
        };
        {
            let mut c = Self::global();
            if let Some(t) = c.map.get(&key) {
                // A copy (~0.1 ms for an EEG batch): the store's tensor is never shared.
                let t = t.copy();
                c.hits += 1;
                return Ok((t, false));
            }
            c.misses += 1;
        }
        let t = render(gen, m, split, idx)?;
        let size = t.numel() * 4;
        let mut c = Self::global();
        if c.bytes + size <= cap && !c.map.contains_key(&key) {
            c.bytes += size;
            // A deep copy: the caller may move or alter its tensor.
            c.map.insert(key, t.copy());
        }
        Ok((t, true))
    }
}

impl Data<SignalBatch> for StreamingSignals {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<SignalBatch> {
        let c0 = thread_cpu_s();
        let idx = sample_indices(rng, batch_size, self.pool);
        let (x, rendered) = BatchCache::fetch(
            &self.gen,
            self.modality,
            SynthSplit::Pretrain,
            &idx,
            self.cache,
        )?;
        if rendered {
            self.rendered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.data_cpu_ns.fetch_add(
            ((thread_cpu_s() - c0) * 1e9) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(SignalBatch {
            x: x.to_device(device),
            labels: None,
            channel_offset: 0,
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
        Ok(SignalBatch {
            x: self
                .eval_x
                .narrow(0, start as i64, len as i64)
                .to_device(device),
            labels: None,
            channel_offset: 0,
            seed: start as u64,
        })
    }
}

/// The 1-minute load average (/proc/loadavg), recorded because cells share the machine.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl CellWork for BiosignalCell {
    fn run(&self, env: &CellEnv) -> Result<CellOutput> {
        let cell: &Cell = env.cell;
        let cfg = biot_config(&cell.model, &cell.model_name)?;
        let costs = self.costs(&cell.model, &cell.model_name)?;
        if cell.tokens % costs.tokens_per_step != 0 {
            bail!(
                "cell {}: D = {} tokens is not a whole number of steps of {} tokens",
                cell.id,
                cell.tokens,
                costs.tokens_per_step
            );
        }
        let steps = cell.tokens / costs.tokens_per_step;
        let precision: Precision = serde_json::from_value(serde_json::json!(cell.precision))
            .with_context(|| format!("precision '{}'", cell.precision))?;
        let device = crate::nn::parse_device(&self.device).context("[cell] device")?;
        tch::set_num_threads(self.threads as i32);
        let tc = TrainConfig {
            seed: cell.seed,
            precision,
            batch_size: self.batch_size,
            grad_accum: 1,
            max_steps: steps,
            lr: self.lr_for(&cell.model_name),
            min_lr: self.min_lr.unwrap_or(self.lr_for(&cell.model_name) / 10.0),
            warmup_steps: ((steps as f64 * self.warmup_fraction).round() as u64).max(1),
            weight_decay: self.weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            grad_clip: 1.0,
            eval_every: 0,
            eval_samples: self.eval_windows,
            checkpoint_every: if self.checkpoint_every > 0 {
                self.checkpoint_every
            } else {
                steps.div_ceil(4).max(1)
            },
            loss_scale: 65536.0,
            scale_growth_interval: 2000,
        };
        let gen = self.generator()?;
        let data = StreamingSignals {
            eval_x: self.eval_set(&gen)?,
            gen,
            modality: self.modality,
            pool: self.pool_windows,
            cache: self.cache_bytes(),
            rendered: Default::default(),
            data_cpu_ns: Default::default(),
        };
        let train_dir = env.dir.join("train");
        let load_start = load_average();
        let t0 = std::time::Instant::now();
        let cpu0 = thread_cpu_s();
        let mut t =
            Trainer::<Pretraining<BiotConfig>>::open(&train_dir, &cfg, &tc, device, |_, _| Ok(()))?;
        let resumed_from = t.step;
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(env.dir.join("attempts.log"))
                .context("opening attempts.log")?;
            writeln!(f, "start step {resumed_from} of {steps}")?;
        }
        // No MFU: measuring the peak would cost seconds per cell (the row has FLOPs and time).
        let opts = FitOptions {
            flops_per_unit: 0.0,
            progress: false,
            label: "steps".into(),
        };
        let summary = crate::nn::fit(&mut t, &data, &train_dir, &opts)?;
        let train_s = t0.elapsed().as_secs_f64();
        let train_cpu_s = thread_cpu_s() - cpu0;
        // The last step's loss is one batch: average the last tenth of the run instead.
        let rows = crate::nn::read_loss_csv(&train_dir.join("loss.csv"), steps)?;
        let tail = rows.len().div_ceil(10).max(1).min(rows.len());
        let train_loss = (!rows.is_empty()).then(|| {
            rows[rows.len() - tail..]
                .iter()
                .map(|r| r.train_loss)
                .sum::<f64>()
                / tail as f64
        });
        let windows = steps * self.batch_size as u64;
        let (frames, tpw) = self.tokens_per_window(&cfg)?;
        let mut extra = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: serde_json::Value| {
            extra.insert(k.to_string(), v);
        };
        put("modality", self.modality.name().into());
        put("objective", "biot_contrastive".into());
        put("steps", steps.into());
        put("windows", windows.into());
        put("tokens_per_window", tpw.into());
        put("frames_per_channel", frames.into());
        put("flops_per_token", costs.flops_per_token.into());
        put("final_step_train_loss", summary.final_train_loss.into());
        put("train_s", train_s.into());
        // CPU seconds of the cell's thread (libtorch runs `threads` = 1 in it) and the part spent
        // getting training batches: the cost on a shared machine, where wall time is not.
        put("train_cpu_s", train_cpu_s.into());
        put(
            "data_cpu_s",
            (data.data_cpu_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9).into(),
        );
        // Batches this cell rendered (the rest came from the shared store; a resumed cell counts
        // this attempt only): the cost accounting of results/biosignal-scaling.md.
        put(
            "batches_rendered",
            data.rendered
                .load(std::sync::atomic::Ordering::Relaxed)
                .into(),
        );
        put("resumed_from_step", resumed_from.into());
        put("tokens_trained", cell.tokens.into());
        put(
            "epochs",
            match self.pool_windows {
                Some(p) => (windows as f64 / p as f64).into(),
                None => serde_json::Value::Null,
            },
        );
        put(
            "load_avg_start",
            load_start.map_or(serde_json::Value::Null, Into::into),
        );
        put(
            "load_avg_end",
            load_average().map_or(serde_json::Value::Null, Into::into),
        );
        Ok(CellOutput {
            train_loss,
            eval_loss: summary.final_eval_loss,
            device: Some(format!("{device:?}").to_lowercase()),
            n_params: None,
            n_params_total: None,
            n_params_matmul: None,
            subjects: Default::default(),
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_fraction_matches_the_sampler() {
        // T = 9: k uniform in 4..=8, mean 6 → 6/9.
        assert!((biot_kept_fraction(9) - 6.0 / 9.0).abs() < 1e-12);
        // T = 1: k = max(0, 1) = 1 → all kept.
        assert_eq!(biot_kept_fraction(1), 1.0);
        // Against the sampler itself.
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (mut kept, n) = (0usize, 20000);
        for _ in 0..n {
            kept += crate::models::objectives::biot_keep_frames(1, 4, &mut rng)[0].len();
        }
        let emp = kept as f64 / (4 * n) as f64;
        assert!((emp - biot_kept_fraction(4)).abs() < 0.01, "{emp}");
    }

    #[test]
    fn spec_round_trip_and_costs() {
        let cfg: BiotConfig = toml::from_str(
            "name = \"t\"\nd_model = 32\nn_layer = 2\nn_head = 2\nn_classes = 2\nn_channels = 18\n",
        )
        .unwrap();
        let cell: BiosignalCell =
            toml::from_str("modality = \"eeg\"\nbatch_size = 8\neval_windows = 16\n").unwrap();
        cell.validate().unwrap();
        assert_eq!(cell.window(), (4, 1000));
        let (frames, tpw) = cell.tokens_per_window(&cfg).unwrap();
        assert_eq!((frames, tpw), (9, 36));
        let spec = biot_spec(&cfg, tpw).unwrap();
        assert_eq!(biot_config(&spec, "t").unwrap(), cfg);
        let c = cell.costs(&spec, "t").unwrap();
        let p = cfg.param_counts();
        assert_eq!(c.counts.non_embedding, p.per_token);
        assert_eq!(c.tokens_per_step, 36 * 8);
        let f_tok = 6.0 * p.per_token as f64 + 12.0 * 2.0 * 32.0 * 16.0;
        let want = f_tok * (1.0 + 6.0 / 9.0) + 6.0 * p.predictor as f64 / 36.0;
        assert!((c.flops_per_token - want).abs() < 1e-6 * want);
        // Accelerometer at 200 Hz: 2.56 s → 512 samples, 4 frames × 3 axes.
        let acc: BiosignalCell =
            toml::from_str("modality = \"accel\"\nbatch_size = 8\neval_windows = 16\n").unwrap();
        assert_eq!(acc.tokens_per_window(&cfg).unwrap(), (4, 12));
        let bad: BiosignalCell = toml::from_str(
            "modality = \"accel\"\nrate = 50.0\nbatch_size = 8\neval_windows = 16\n",
        )
        .unwrap();
        let e = bad.tokens_per_window(&cfg).unwrap_err().to_string();
        assert!(e.contains("shorter than one STFT frame"), "{e}");
        let e: BiosignalCell =
            toml::from_str("modality = \"eeg\"\nbatch_size = 8\neval_windows = 12\n").unwrap();
        assert!(e
            .validate()
            .unwrap_err()
            .to_string()
            .contains("multiple of batch_size"));
    }
}
