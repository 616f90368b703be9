//! The model-agnostic trainer: one optimizer step over accumulated micro-batches (mixed
//! precision, loss scaling, clipping), held-out loss, and checkpoints that resume bit for bit.
//!
//! A model plugs in through [`Model`] (build from a config, a loss on a batch) and its data
//! through [`Data`] (seeded training batches, held-out batches in a fixed order). The trainer
//! seeds libtorch's global RNG per step and every batch's RNG per (step, micro-batch) from
//! [`TrainConfig::seed`], so a run stopped after step k and resumed replays steps k+1… exactly
//! on the CPU. libtorch's RNG is process-global, so each seed and the draws that follow it
//! (initial weights, a step's dropout and masks: the forward passes) run under one
//! process-wide lock ([`rng_turn`]): trainers in parallel threads (tests, grid cells) stay
//! reproducible, and their backward passes and updates still run in parallel.
use crate::core::io;
use crate::nn::optim::{mix, AdamW, TrainConfig};
use crate::nn::precision::{configure_precision, LossScaler, Precision};
use anyhow::{anyhow, bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// Guards libtorch's process-global RNG from a `manual_seed` to the last draw that depends
/// on it. Without it, another thread's seed or draws could land in between, and a seeded run
/// would differ from itself (seen: a fine-tune repeated in one test gave other scores while
/// other tests trained in parallel).
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the RNG lock (a panic in another holder does not poison it for the rest).
pub fn rng_turn() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a model returns for one micro-batch.
pub struct Loss {
    /// Scalar objective to minimise (mean over the micro-batch).
    pub total: Tensor,
    /// Named scalar parts to log beside it (e.g. `("recon", …)`); averaged over micro-batches.
    pub parts: Vec<(&'static str, Tensor)>,
}

impl Loss {
    /// A loss without logged parts.
    pub fn plain(total: Tensor) -> Self {
        Self {
            total,
            parts: Vec::new(),
        }
    }
}

/// A model the engine can train: built from a config on a var store, scored on a batch.
pub trait Model: Sized {
    /// Saved in every checkpoint's `state.json`; a resume into another config is refused.
    type Config: Clone + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned;
    /// One micro-batch as the [`Data`] source produces it.
    type Batch;

    /// Creates the model's variables under `root` (validating `cfg`).
    fn build(root: &nn::Path, cfg: &Self::Config) -> Result<Self>;
    fn config(&self) -> &Self::Config;
    /// Whether parameter `name` takes weight decay (default: tensors with ≥ 2 dims).
    fn decays(_name: &str, p: &Tensor) -> bool {
        p.dim() >= 2
    }
    /// Loss of one micro-batch; `train` turns on dropout and other training-only behaviour;
    /// `kind` is the compute dtype of the forward pass ([`Precision::kind`]). Every draw from
    /// libtorch's global RNG (dropout, masks, codebook restarts) must happen here: the trainer
    /// holds [`rng_turn`] only through the forward passes.
    fn loss(&self, batch: &Self::Batch, train: bool, kind: Kind) -> Result<Loss>;
    /// Units counted for throughput in a batch (tokens for a language model, samples else).
    fn units(&self, batch: &Self::Batch) -> u64;
    /// Facts stored in `state.json` beside the config (e.g. parameter counts).
    fn info(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Extra files written into the output folder at each checkpoint (e.g. `config.toml`).
    fn save_extra(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }
}

/// Where batches come from.
pub trait Data<B> {
    /// A training micro-batch of `batch_size` samples drawn with `rng`, which the trainer seeds
    /// per (seed, step, micro-batch) so a resumed run replays the same batches. It must not
    /// draw from libtorch's global RNG (the first micro-batch is fetched outside [`rng_turn`]).
    fn train_batch(&self, rng: &mut ChaCha8Rng, batch_size: usize, device: Device) -> Result<B>;
    /// Number of held-out samples (0: no evaluation).
    fn eval_len(&self) -> usize;
    /// Held-out samples `start .. start + len` as one batch, always in the same order.
    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<B>;
}

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    pub step: u64,
    pub loss: f64,
    /// The model's logged loss parts, averaged over the step's micro-batches.
    pub parts: Vec<(String, f64)>,
    pub lr: f64,
    /// Unscaled global gradient norm before clipping (inf/NaN on an fp16 overflow).
    pub grad_norm: f64,
    /// The update was skipped (fp16 overflow).
    pub skipped: bool,
    pub loss_scale: f64,
    /// Units processed so far (see [`Model::units`]).
    pub tokens: u64,
}

/// Resumable training state besides the tensors (`state.json` of a checkpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "C: Serialize + DeserializeOwned")]
struct TrainState<C> {
    step: u64,
    tokens: u64,
    adam_t: u64,
    scaler: Option<LossScaler>,
    model: C,
    train: TrainConfig,
    #[serde(default)]
    info: serde_json::Value,
}

/// A model, its optimizer and where training stands.
pub struct Trainer<M: Model> {
    pub vs: nn::VarStore,
    pub model: M,
    pub opt: AdamW,
    pub scaler: Option<LossScaler>,
    pub cfg: TrainConfig,
    /// Optimizer steps done (skipped ones included, so the schedule and data order advance).
    pub step: u64,
    /// Units processed (tokens, or samples).
    pub tokens: u64,
    pub device: Device,
}

impl<M: Model> Trainer<M> {
    /// A freshly initialised model (weights drawn from `cfg.seed`).
    pub fn new(model_cfg: &M::Config, cfg: &TrainConfig, device: Device) -> Result<Self> {
        Self::with_init(model_cfg, cfg, device, |_, _| Ok(()))
    }

    /// Like [`Trainer::new`], but `init` runs on the fresh var store and model before the
    /// optimizer takes the parameters: load pretrained weights, or freeze an encoder
    /// (`set_requires_grad(false)`) for a linear probe. Frozen parameters are not optimised.
    pub fn with_init(
        model_cfg: &M::Config,
        cfg: &TrainConfig,
        device: Device,
        init: impl FnOnce(&mut nn::VarStore, &M) -> Result<()>,
    ) -> Result<Self> {
        cfg.validate()?;
        configure_precision(cfg.precision);
        let _rng = rng_turn();
        tch::manual_seed(cfg.seed as i64);
        let mut vs = nn::VarStore::new(device);
        let model = M::build(&vs.root(), model_cfg)?;
        init(&mut vs, &model)?;
        let opt = AdamW::with_decay(&vs, M::decays);
        let scaler = (cfg.precision == Precision::Fp16).then_some(LossScaler {
            scale: cfg.loss_scale,
            good_steps: 0,
            growth_interval: cfg.scale_growth_interval,
        });
        Ok(Self {
            vs,
            model,
            opt,
            scaler,
            cfg: cfg.clone(),
            step: 0,
            tokens: 0,
            device,
        })
    }

    /// One optimizer step over `grad_accum` micro-batches drawn from `data`.
    pub fn train_step(&mut self, data: &dyn Data<M::Batch>) -> Result<StepStats> {
        let kind = self.cfg.precision.kind();
        let lr = self.cfg.lr_at(self.step);
        let scale = self.scaler.map_or(1.0, |s| s.scale);
        // Dropout masks (and any other libtorch draws) depend only on (seed, step). The draws
        // all happen in the forward passes (`Model::loss`), so the lock is let go once the last
        // micro-batch's forward is done: the backward and the update draw nothing, and holding
        // the lock through them serialised the cells a grid trains in parallel threads. The
        // first micro-batch (rendering it can cost as much as the step) is fetched before it.
        let batch_rng =
            |micro: usize| ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, self.step, micro as u64));
        let mut first =
            Some(data.train_batch(&mut batch_rng(0), self.cfg.batch_size, self.device)?);
        let mut rng_lock = Some(rng_turn());
        tch::manual_seed(mix(self.cfg.seed, self.step, u64::MAX) as i64 & i64::MAX);
        self.opt.zero_grad();
        let mut losses = Vec::with_capacity(self.cfg.grad_accum);
        let mut parts: Vec<(&'static str, Vec<Tensor>)> = Vec::new();
        let mut tokens = 0;
        for micro in 0..self.cfg.grad_accum {
            let batch = match first.take() {
                Some(b) => b,
                None => {
                    data.train_batch(&mut batch_rng(micro), self.cfg.batch_size, self.device)?
                }
            };
            tokens += self.model.units(&batch);
            let loss = self.model.loss(&batch, true, kind)?;
            if micro + 1 == self.cfg.grad_accum {
                drop(rng_lock.take());
            }
            losses.push(loss.total.detach());
            for (name, t) in loss.parts {
                match parts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, v)) => v.push(t.detach()),
                    None => parts.push((name, vec![t.detach()])),
                }
            }
            // (×1 skipped: the same gradients, one autograd node fewer.)
            let factor = scale / self.cfg.grad_accum as f64;
            if factor == 1.0 {
                loss.total.backward();
            } else {
                (loss.total * factor).backward();
            }
        }
        // One device sync per step for the loss (and one for the gradient norm below).
        let mean = |v: &[Tensor]| match v {
            [one] => one.double_value(&[]),
            _ => Tensor::stack(v, 0)
                .to_kind(Kind::Double)
                .mean(Kind::Double)
                .double_value(&[]),
        };
        let loss = mean(&losses);
        let parts = parts
            .iter()
            .map(|(n, v)| (n.to_string(), mean(v)))
            .collect();
        let grad_norm = self.opt.grad_norm() / scale;
        let finite = grad_norm.is_finite();
        let apply = match self.scaler.as_mut() {
            Some(s) => s.update(finite),
            None if !finite || !loss.is_finite() => bail!(
                "loss {loss} / gradient norm {grad_norm} became non-finite at step {} (lower the learning rate?)",
                self.step
            ),
            None => true,
        };
        if apply {
            let clip = if self.cfg.grad_clip > 0.0 && grad_norm > self.cfg.grad_clip {
                self.cfg.grad_clip / (grad_norm + 1e-6)
            } else {
                1.0
            };
            self.opt.step(&self.cfg, lr, clip / scale);
        }
        self.opt.zero_grad();
        self.step += 1;
        self.tokens += tokens;
        Ok(StepStats {
            step: self.step,
            loss,
            parts,
            lr,
            grad_norm,
            skipped: !apply,
            loss_scale: self.scaler.map_or(1.0, |s| s.scale),
            tokens: self.tokens,
        })
    }

    /// Mean loss over (up to `eval_samples`) held-out samples, without dropout; `None` when
    /// `data` holds none.
    pub fn eval_loss(&self, data: &dyn Data<M::Batch>) -> Result<Option<f64>> {
        let n = data.eval_len().min(self.cfg.eval_samples);
        if n == 0 {
            return Ok(None);
        }
        let kind = self.cfg.precision.kind();
        tch::no_grad(|| {
            let (mut sum, mut count) = (0.0, 0usize);
            while count < n {
                let b = self.cfg.batch_size.min(n - count);
                let batch = data.eval_batch(count, b, self.device)?;
                let loss = self.model.loss(&batch, false, kind)?;
                sum += loss.total.double_value(&[]) * b as f64;
                count += b;
            }
            Ok(Some(sum / count as f64))
        })
    }

    /// Writes a checkpoint to `dir/step-NNNNNNNN/` (`model.safetensors`, `optim.safetensors`,
    /// `state.json`) then points `dir/latest.json` at it: an interrupted save leaves the
    /// previous checkpoint in force. Older step folders are removed.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let name = format!("step-{:08}", self.step);
        let ck = dir.join(&name);
        std::fs::create_dir_all(&ck).with_context(|| format!("creating {}", ck.display()))?;
        io::write_atomic(&ck.join("model.safetensors"), |tmp| {
            self.vs.save(tmp).map_err(|e| anyhow!("{e}"))
        })?;
        let opt = self.opt.state_tensors();
        io::write_atomic(&ck.join("optim.safetensors"), |tmp| {
            Tensor::write_safetensors(&opt, tmp).map_err(|e| anyhow!("{e}"))
        })?;
        let state = TrainState {
            step: self.step,
            tokens: self.tokens,
            adam_t: self.opt.t,
            scaler: self.scaler,
            model: self.model.config().clone(),
            train: self.cfg.clone(),
            info: self.model.info(),
        };
        io::write_json(&ck.join("state.json"), &state)?;
        self.model.save_extra(dir)?;
        io::write_json(
            &dir.join("latest.json"),
            &serde_json::json!({ "checkpoint": name, "step": self.step }),
        )?;
        for e in std::fs::read_dir(dir)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("step-") && n != name {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(ck)
    }

    /// Resumes from `dir` (written by [`Trainer::save`]); `cfg` may change the schedule length
    /// and evaluation settings but not the model.
    pub fn resume(dir: &Path, cfg: Option<&TrainConfig>, device: Device) -> Result<Self> {
        Self::resume_with(dir, cfg, device, |_, _| Ok(()))
    }

    /// [`Trainer::resume`] with the same `init` hook as [`Trainer::with_init`] (run before the
    /// checkpoint's weights are loaded: a frozen encoder stays frozen).
    pub fn resume_with(
        dir: &Path,
        cfg: Option<&TrainConfig>,
        device: Device,
        init: impl FnOnce(&mut nn::VarStore, &M) -> Result<()>,
    ) -> Result<Self> {
        let ck = latest_checkpoint(dir)?;
        let state: TrainState<M::Config> = io::read_json(&ck.join("state.json"))
            .with_context(|| format!("{}: not a checkpoint of this model", ck.display()))?;
        let cfg = cfg.cloned().unwrap_or(state.train.clone());
        let mut t = Self::with_init(&state.model, &cfg, device, init)?;
        let w = ck.join("model.safetensors");
        t.vs.load(&w)
            .map_err(|e| anyhow!("loading {}: {e}", w.display()))?;
        t.opt.load_state(&ck.join("optim.safetensors"))?;
        t.opt.t = state.adam_t;
        // A run resumed in fp16 keeps its loss scale; switching precision starts a fresh one.
        t.scaler = if cfg.precision == Precision::Fp16 {
            state.scaler.or(t.scaler)
        } else {
            None
        };
        t.step = state.step;
        t.tokens = state.tokens;
        Ok(t)
    }

    /// Resumes `out` if it holds a checkpoint (refusing one of another model config or seed),
    /// else starts afresh with `init`.
    pub fn open(
        out: &Path,
        model_cfg: &M::Config,
        cfg: &TrainConfig,
        device: Device,
        init: impl FnOnce(&mut nn::VarStore, &M) -> Result<()>,
    ) -> Result<Self> {
        if !out.join("latest.json").exists() {
            return Self::with_init(model_cfg, cfg, device, init);
        }
        let ck = latest_checkpoint(out)?;
        let state: TrainState<M::Config> = io::read_json(&ck.join("state.json"))
            .with_context(|| format!("{}: not a checkpoint of this model", ck.display()))?;
        if &state.model != model_cfg || state.train.seed != cfg.seed {
            bail!(
                "{}: holds a checkpoint of a different model config or seed; use another --out",
                out.display()
            );
        }
        Self::resume_with(out, Some(cfg), device, init)
    }
}

/// The checkpoint folder `dir/latest.json` points at.
pub fn latest_checkpoint(dir: &Path) -> Result<PathBuf> {
    let latest = dir.join("latest.json");
    if !latest.exists() {
        bail!(
            "{}: no checkpoint (latest.json missing): not a training output folder",
            dir.display()
        );
    }
    let v: serde_json::Value = io::read_json(&latest)?;
    let name = v["checkpoint"]
        .as_str()
        .with_context(|| format!("{}: no 'checkpoint' field", latest.display()))?;
    Ok(dir.join(name))
}

/// Loads the weights of the latest checkpoint in `dir` into a fresh, frozen model for
/// inference. Returns the var store (keep it alive) and the model.
pub fn load_trained<M: Model>(dir: &Path, device: Device) -> Result<(nn::VarStore, M, M::Config)> {
    let ck = latest_checkpoint(dir)?;
    let state: TrainState<M::Config> = io::read_json(&ck.join("state.json"))
        .with_context(|| format!("{}: not a checkpoint of this model", ck.display()))?;
    let mut vs = nn::VarStore::new(device);
    let model = M::build(&vs.root(), &state.model)?;
    let w = ck.join("model.safetensors");
    vs.load(&w)
        .map_err(|e| anyhow!("loading {}: {e}", w.display()))?;
    vs.freeze();
    Ok((vs, model, state.model))
}
