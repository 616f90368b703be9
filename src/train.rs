//! Pretraining the GPT-2 prior on VQ-VAE codes (`brainscale pretrain`).
//!
//! AdamW with decoupled weight decay, linear warmup then cosine decay, gradient clipping and
//! accumulation, fp32 / tf32 / bf16 / fp16 (dynamic loss scaling), evaluation on held-out clips,
//! checkpoints that resume bit for bit on CPU, a loss CSV, tokens/s and MFU while training.
//!
//! Data unit: a *sample* is one clip's code sequence (t·h·w tokens, 1024 for 16 frames of
//! 64×64 at downsampling 4); `--train-samples N` trains on the first N training clips.
//! Each optimizer step sees `batch_size × grad_accum` samples of (t·h·w − 1) predicted tokens.
use crate::flops;
use crate::io;
use crate::models::codes::{self, CodeData};
use crate::models::gpt::{decays, Gpt, GptConfig, Precision};
use anyhow::{anyhow, bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// Optimisation settings, stored with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub precision: Precision,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub max_steps: u64,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    /// Evaluate every this many steps (0 = only at the end).
    pub eval_every: u64,
    /// Held-out sequences per evaluation (at most).
    pub eval_samples: usize,
    /// Checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
    /// Initial fp16 loss scale, and steps without overflow before it doubles.
    pub loss_scale: f64,
    pub scale_growth_interval: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            precision: Precision::Fp32,
            batch_size: 8,
            grad_accum: 1,
            max_steps: 1000,
            lr: 3e-4,
            min_lr: 3e-5,
            warmup_steps: 100,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            eval_every: 200,
            eval_samples: 256,
            checkpoint_every: 200,
            loss_scale: 65536.0,
            scale_growth_interval: 2000,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.grad_accum == 0 || self.max_steps == 0 {
            bail!("batch size, gradient accumulation and steps must be positive");
        }
        for (n, v) in [
            ("lr", self.lr),
            ("eps", self.eps),
            ("loss scale", self.loss_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{n} must be positive and finite, got {v}");
            }
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            bail!("min lr {} must be in [0, lr = {}]", self.min_lr, self.lr);
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            bail!("betas must be in [0, 1)");
        }
        if self.weight_decay < 0.0 || self.grad_clip < 0.0 {
            bail!("weight decay and gradient clip must be non-negative");
        }
        Ok(())
    }

    /// Linear warmup to `lr`, then cosine decay to `min_lr` at `max_steps`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.max_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let frac = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.min_lr + 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()) * (self.lr - self.min_lr)
    }
}

/// AdamW with decoupled weight decay (Loshchilov & Hutter), written out so its state can be
/// checkpointed: p ← p·(1 − lr·wd·[p decays]) − lr·m̂/(√v̂ + ε).
///
/// All trainable parameters are moved into one flat fp32 buffer (each variable becomes a view
/// of it), so a step is a handful of whole-buffer kernels instead of ~10 per parameter tensor:
/// on a GPU the per-tensor version is launch-bound (GPT-2 small: ~150 tensors).
pub struct AdamW {
    names: Vec<String>,
    /// The model's variables, now views into `flat`.
    params: Vec<Tensor>,
    offsets: Vec<i64>,
    flat: Tensor,
    /// 1 where the parameter takes weight decay (matrices), else 0.
    decay_mask: Tensor,
    m: Tensor,
    v: Tensor,
    /// The flat gradient of the current step, gathered once by `grad_norm`.
    grad: Option<Tensor>,
    /// Updates taken (for bias correction).
    pub t: u64,
}

impl AdamW {
    pub fn new(vs: &nn::VarStore) -> Self {
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let vars: Vec<(String, Tensor)> = vars
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        let device = vs.device();
        let total: i64 = vars.iter().map(|(_, t)| t.numel() as i64).sum();
        let flat = Tensor::zeros([total], (Kind::Float, device));
        let (mut names, mut params, mut offsets, mut mask) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut off = 0;
        tch::no_grad(|| {
            for (name, mut p) in vars {
                assert_eq!(
                    p.kind(),
                    Kind::Float,
                    "parameter {name}: master weights must be fp32"
                );
                let k = p.numel() as i64;
                let mut dst = flat.narrow(0, off, k);
                dst.copy_(&p.reshape([-1]));
                let d = decays(&name, &p);
                p.set_data(&dst.view(p.size().as_slice()));
                mask.push(Tensor::full(
                    [k],
                    if d { 1.0 } else { 0.0 },
                    (Kind::Float, device),
                ));
                names.push(name);
                params.push(p);
                offsets.push(off);
                off += k;
            }
        });
        let decay_mask = if mask.is_empty() {
            flat.zeros_like()
        } else {
            Tensor::cat(&mask, 0)
        };
        let (m, v) = (flat.zeros_like(), flat.zeros_like());
        Self {
            names,
            params,
            offsets,
            flat,
            decay_mask,
            m,
            v,
            grad: None,
            t: 0,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in self.params.iter_mut() {
            p.zero_grad();
        }
        self.grad = None;
    }

    /// All gradients as one flat fp32 tensor (zeros for parameters without one).
    fn gather(&self) -> Tensor {
        let parts: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| {
                let g = p.grad();
                if g.defined() {
                    g.reshape([-1])
                } else {
                    p.zeros_like().reshape([-1])
                }
            })
            .collect();
        if parts.is_empty() {
            return self.flat.zeros_like();
        }
        Tensor::cat(&parts, 0).to_kind(Kind::Float)
    }

    /// Global L2 norm of the gradients (one device sync); keeps the gathered gradient for `step`.
    pub fn grad_norm(&mut self) -> f64 {
        tch::no_grad(|| {
            let g = self.gather();
            let n = g.square().sum(Kind::Float).sqrt().double_value(&[]);
            self.grad = Some(g);
            n
        })
    }

    /// One update with gradients multiplied by `grad_mul` (unscaling and clipping).
    pub fn step(&mut self, cfg: &TrainConfig, lr: f64, grad_mul: f64) {
        self.t += 1;
        let bc1 = 1.0 - cfg.beta1.powi(self.t as i32);
        let bc2 = 1.0 - cfg.beta2.powi(self.t as i32);
        tch::no_grad(|| {
            let g = self.grad.take().unwrap_or_else(|| self.gather()) * grad_mul;
            if cfg.weight_decay > 0.0 {
                let _ = self
                    .flat
                    .g_mul_(&(&self.decay_mask * (-lr * cfg.weight_decay) + 1.0));
            }
            let _ = self.m.lerp_(&g, 1.0 - cfg.beta1);
            let _ = self
                .v
                .g_mul_scalar_(cfg.beta2)
                .g_add_(&(g.square() * (1.0 - cfg.beta2)));
            let denom = (&self.v / bc2).sqrt() + cfg.eps;
            let _ = self.flat.g_sub_(&(&self.m / denom * (lr / bc1)));
        });
    }

    fn slot(&self, buf: &Tensor, i: usize) -> Tensor {
        let p = &self.params[i];
        buf.narrow(0, self.offsets[i], p.numel() as i64)
            .view(p.size().as_slice())
    }

    pub(crate) fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            out.push((
                format!("m.{n}"),
                self.slot(&self.m, i).to_device(Device::Cpu),
            ));
            out.push((
                format!("v.{n}"),
                self.slot(&self.v, i).to_device(Device::Cpu),
            ));
        }
        out
    }

    pub(crate) fn load_state(&mut self, path: &Path) -> Result<()> {
        let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| anyhow!("reading optimizer state {}: {e}", path.display()))?
            .into_iter()
            .collect();
        tch::no_grad(|| -> Result<()> {
            for (i, n) in self.names.iter().enumerate() {
                for (key, buf) in [(format!("m.{n}"), &self.m), (format!("v.{n}"), &self.v)] {
                    let src = saved.get(&key).ok_or_else(|| {
                        anyhow!("{}: no optimizer tensor '{key}'", path.display())
                    })?;
                    let mut dst = self.slot(buf, i);
                    if src.size() != dst.size() {
                        bail!(
                            "{}: '{key}' has shape {:?}, expected {:?}",
                            path.display(),
                            src.size(),
                            dst.size()
                        );
                    }
                    dst.copy_(src);
                }
            }
            Ok(())
        })
    }
}

/// Dynamic loss scaling for fp16: multiply the loss by `scale` so small gradients survive in
/// fp16; a step whose gradients overflow is skipped and the scale halved; after
/// `growth_interval` clean steps the scale doubles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    pub good_steps: u64,
    pub growth_interval: u64,
}

impl LossScaler {
    /// Records the outcome of a step; returns whether the update may be applied.
    pub fn update(&mut self, grads_finite: bool) -> bool {
        if !grads_finite {
            self.scale /= 2.0;
            self.good_steps = 0;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps >= self.growth_interval {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    /// Unscaled global gradient norm before clipping (inf/NaN on an fp16 overflow).
    pub grad_norm: f64,
    /// The update was skipped (fp16 overflow).
    pub skipped: bool,
    pub loss_scale: f64,
    pub tokens: u64,
}

/// Resumable training state besides the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    step: u64,
    tokens: u64,
    adam_t: u64,
    scaler: Option<LossScaler>,
    model: GptConfig,
    train: TrainConfig,
    params: crate::models::gpt::ParamCounts,
}

/// A model, its optimizer and where training stands. libtorch's RNG (init, dropout) is
/// process-global: bit-exact resumes assume one trainer per process at a time.
pub struct Trainer {
    pub vs: nn::VarStore,
    pub model: Gpt,
    pub opt: AdamW,
    pub scaler: Option<LossScaler>,
    pub cfg: TrainConfig,
    /// Optimizer steps done (skipped ones included, so the schedule and data order advance).
    pub step: u64,
    /// Tokens processed (predicted positions).
    pub tokens: u64,
    pub device: Device,
}

pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // SplitMix64-style mixing so neighbouring (step, micro) pairs get unrelated streams.
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// PyTorch reads this variable once, when its global context is created, to allow TF32
/// cuBLAS matmuls for fp32 tensors; tch has no other switch for it.
pub const TF32_ENV: &str = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE";

/// Best effort for library callers: sets [`TF32_ENV`] for `tf32` (effective only if libtorch
/// has not created its context yet). The CLI uses [`reexec_for_precision`], which is certain.
pub fn configure_precision(p: Precision) {
    if p == Precision::Tf32 {
        std::env::set_var(TF32_ENV, "1");
    }
}

/// Makes the TF32 setting of this process match `p`: for `tf32` without [`TF32_ENV`] the
/// program re-runs itself with it set (returns true: the child did the work and succeeded);
/// `fp32` with the variable set is an error, since matmuls would silently use TF32.
pub fn reexec_for_precision(p: Precision) -> Result<bool> {
    let set = std::env::var(TF32_ENV).is_ok_and(|v| v == "1");
    match (p, set) {
        (Precision::Tf32, false) => {
            let exe = std::env::current_exe().context("locating the brainscale executable")?;
            let status = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env(TF32_ENV, "1")
                .status()
                .context("re-running with TF32 enabled")?;
            if !status.success() {
                bail!("the TF32 run failed ({status})");
            }
            Ok(true)
        }
        (Precision::Fp32, true) => bail!(
            "--precision fp32 with {TF32_ENV}=1 in the environment would run TF32 matmuls; unset it"
        ),
        _ => Ok(false),
    }
}

impl Trainer {
    /// A freshly initialised model (weights from `cfg.seed`).
    pub fn new(model_cfg: &GptConfig, cfg: &TrainConfig, device: Device) -> Result<Self> {
        model_cfg.validate()?;
        cfg.validate()?;
        configure_precision(cfg.precision);
        tch::manual_seed(cfg.seed as i64);
        let vs = nn::VarStore::new(device);
        let model = Gpt::new(&vs.root(), model_cfg)?;
        let opt = AdamW::new(&vs);
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

    /// Inputs and next-token targets for micro-batch `micro` of the current step.
    fn batch(&self, data: &Tensor, micro: usize) -> Result<(Tensor, Tensor)> {
        let (n, l) = data
            .size2()
            .context("training data must be [sequences, tokens]")?;
        if n == 0 {
            bail!("no training sequences");
        }
        if l < 2 || l - 1 > self.model.cfg.ctx {
            bail!(
                "sequences of {l} tokens need 2 ≤ length ≤ ctx + 1 = {}",
                self.model.cfg.ctx + 1
            );
        }
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, self.step, micro as u64));
        let rows: Vec<i64> = (0..self.cfg.batch_size)
            .map(|_| rng.gen_range(0..n))
            .collect();
        let seqs = data.index_select(0, &Tensor::from_slice(&rows));
        if seqs.device() == Device::Cpu {
            let (lo, hi) = (seqs.min().int64_value(&[]), seqs.max().int64_value(&[]));
            if lo < 0 || hi >= self.model.cfg.vocab {
                bail!(
                    "token ids must be in 0..{}, found {lo}..={hi}",
                    self.model.cfg.vocab
                );
            }
        }
        let seqs = seqs.to_device(self.device);
        Ok((seqs.narrow(1, 0, l - 1), seqs.narrow(1, 1, l - 1)))
    }

    /// One optimizer step over `grad_accum` micro-batches sampled from `data` [n, L].
    pub fn train_step(&mut self, data: &Tensor) -> Result<StepStats> {
        let kind = self.cfg.precision.kind();
        let lr = self.cfg.lr_at(self.step);
        let scale = self.scaler.map_or(1.0, |s| s.scale);
        // Dropout masks depend only on (seed, step): resuming replays them exactly.
        tch::manual_seed(mix(self.cfg.seed, self.step, u64::MAX) as i64 & i64::MAX);
        self.opt.zero_grad();
        let mut losses = Vec::with_capacity(self.cfg.grad_accum);
        let mut tokens = 0;
        for micro in 0..self.cfg.grad_accum {
            let (x, y) = self.batch(data, micro)?;
            tokens += y.numel() as u64;
            let loss = self.model.loss(&x, &y, true, kind)?;
            losses.push(loss.detach());
            (loss * (scale / self.cfg.grad_accum as f64)).backward();
        }
        // One device sync per step for the loss (and one for the gradient norm below).
        let loss = Tensor::stack(&losses, 0)
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
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
            lr,
            grad_norm,
            skipped: !apply,
            loss_scale: self.scaler.map_or(1.0, |s| s.scale),
            tokens: self.tokens,
        })
    }

    /// Mean next-token loss over (up to `eval_samples`) held-out sequences, without dropout.
    pub fn eval_loss(&self, data: &Tensor) -> Result<Option<f64>> {
        let (n, l) = data
            .size2()
            .context("held-out data must be [sequences, tokens]")?;
        let n = n.min(self.cfg.eval_samples as i64);
        if n == 0 || l < 2 {
            return Ok(None);
        }
        let kind = self.cfg.precision.kind();
        tch::no_grad(|| {
            let (mut sum, mut count) = (0.0, 0i64);
            let mut i = 0;
            while i < n {
                let b = (self.cfg.batch_size as i64).min(n - i);
                let seqs = data.narrow(0, i, b).to_device(self.device);
                let loss = self.model.loss(
                    &seqs.narrow(1, 0, l - 1),
                    &seqs.narrow(1, 1, l - 1),
                    false,
                    kind,
                )?;
                sum += loss.double_value(&[]) * b as f64;
                count += b;
                i += b;
            }
            Ok(Some(sum / count as f64))
        })
    }

    /// Writes a checkpoint to `dir/step-NNNNNNNN/` then points `dir/latest.json` at it (an
    /// interrupted save leaves the previous checkpoint in force); older step folders are removed.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let name = format!("step-{:08}", self.step);
        let ck = dir.join(&name);
        std::fs::create_dir_all(&ck).with_context(|| format!("creating {}", ck.display()))?;
        let model_file = ck.join("model.safetensors");
        io::write_atomic(&model_file, |tmp| {
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
            model: self.model.cfg.clone(),
            train: self.cfg.clone(),
            params: self.model.cfg.param_counts(),
        };
        io::write_json(&ck.join("state.json"), &state)?;
        io::write_bytes(
            &dir.join("config.toml"),
            self.model.cfg.to_toml()?.as_bytes(),
        )?;
        io::write_json(
            &dir.join("latest.json"),
            &serde_json::json!({ "checkpoint": name, "step": self.step }),
        )?;
        // Keep only the checkpoint just written.
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
        let ck = latest_checkpoint(dir)?;
        let state: TrainState = io::read_json(&ck.join("state.json"))?;
        let cfg = cfg.cloned().unwrap_or(state.train.clone());
        let mut t = Trainer::new(&state.model, &cfg, device)?;
        t.vs.load(ck.join("model.safetensors"))
            .map_err(|e| anyhow!("loading {}: {e}", ck.join("model.safetensors").display()))?;
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
}

/// The checkpoint folder `dir/latest.json` points at.
pub fn latest_checkpoint(dir: &Path) -> Result<PathBuf> {
    let latest = dir.join("latest.json");
    if !latest.exists() {
        bail!(
            "{}: no checkpoint (latest.json missing): not a pretrain output folder",
            dir.display()
        );
    }
    let v: serde_json::Value = io::read_json(&latest)?;
    let name = v["checkpoint"]
        .as_str()
        .with_context(|| format!("{}: no 'checkpoint' field", latest.display()))?;
    Ok(dir.join(name))
}

/// Loads a trained prior (config and weights) from a pretrain output folder.
pub fn load_prior(dir: &Path, device: Device) -> Result<(nn::VarStore, Gpt)> {
    let ck = latest_checkpoint(dir)?;
    let cfg = GptConfig::load(&dir.join("config.toml"))?;
    let mut vs = nn::VarStore::new(device);
    let model = Gpt::new(&vs.root(), &cfg)?;
    vs.load(ck.join("model.safetensors"))
        .map_err(|e| anyhow!("loading {}: {e}", ck.join("model.safetensors").display()))?;
    vs.freeze();
    Ok((vs, model))
}

/// Peak dense matmul throughput (FLOP/s) of `device` in `kind`, measured now: the best of a
/// few n×n products (n = 4096 on GPU, 512 on CPU), after a warm-up.
pub fn measure_peak_matmul(device: Device, kind: Kind) -> f64 {
    let n: i64 = if device.is_cuda() { 8192 } else { 512 };
    let reps = if device.is_cuda() { 20 } else { 5 };
    tch::no_grad(|| {
        let a = Tensor::randn([n, n], (kind, device));
        let b = Tensor::randn([n, n], (kind, device));
        let sync = |t: &Tensor| {
            let _ = t.get(0).get(0).double_value(&[]);
        };
        sync(&a.matmul(&b));
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t0 = Instant::now();
            let mut c = a.matmul(&b);
            for _ in 1..reps {
                c = a.matmul(&b);
            }
            sync(&c);
            best = best.min(t0.elapsed().as_secs_f64() / reps as f64);
        }
        2.0 * (n as f64).powi(3) / best
    })
}

/// One row of the loss CSV.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossRow {
    pub step: u64,
    pub tokens: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub eval_loss: Option<f64>,
    pub loss_scale: f64,
    pub skipped: bool,
    pub tokens_per_s: f64,
    pub mfu: f64,
}

fn read_loss_csv(path: &Path, upto: u64) -> Result<Vec<LossRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<LossRow> = r
        .deserialize()
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(rows.into_iter().filter(|r| r.step <= upto).collect())
}

fn write_loss_csv(path: &Path, rows: &[LossRow]) -> Result<()> {
    io::write_atomic(path, |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        for r in rows {
            w.serialize(r)?;
        }
        w.flush()?;
        Ok(())
    })
}

/// Summary of a finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub tokens: u64,
    pub final_train_loss: f64,
    pub final_eval_loss: Option<f64>,
    pub tokens_per_s: f64,
    pub mfu: f64,
    pub checkpoint: PathBuf,
}

/// Trains (or resumes, if `out` holds a checkpoint) until `cfg.max_steps`; writes checkpoints,
/// `loss.csv` and `summary.json` into `out`.
pub fn train_prior(
    model_cfg: &GptConfig,
    cfg: &TrainConfig,
    data: &CodeData,
    out: &Path,
    device: Device,
    progress: bool,
) -> Result<TrainSummary> {
    train_prior_from(model_cfg, cfg, data, out, device, progress, None)
}

/// [`train_prior`], starting a new run from Hugging Face GPT-2 weights when `init_hf` is given.
pub fn train_prior_from(
    model_cfg: &GptConfig,
    cfg: &TrainConfig,
    data: &CodeData,
    out: &Path,
    device: Device,
    progress: bool,
    init_hf: Option<&Path>,
) -> Result<TrainSummary> {
    let l = data.latent_shape.iter().product::<i64>();
    if data.n_codes > model_cfg.vocab {
        bail!(
            "the tokenizer has {} codes but the model's vocab is {}",
            data.n_codes,
            model_cfg.vocab
        );
    }
    if l - 1 > model_cfg.ctx {
        bail!(
            "clips of {l} codes need ctx ≥ {}, the model has ctx {}",
            l - 1,
            model_cfg.ctx
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut t = if out.join("latest.json").exists() {
        let t = Trainer::resume(out, Some(cfg), device)?;
        if &t.model.cfg != model_cfg {
            bail!(
                "{}: holds a checkpoint of a different model config; use another --out",
                out.display()
            );
        }
        t
    } else {
        let mut t = Trainer::new(model_cfg, cfg, device)?;
        if let Some(p) = init_hf {
            crate::models::hf::load_hf(&mut t.vs, p)?;
        }
        t
    };
    let csv_path = out.join("loss.csv");
    let mut rows = read_loss_csv(&csv_path, t.step)?;
    let kind = cfg.precision.kind();
    let peak = measure_peak_matmul(device, kind);
    let flops_per_token = flops::train_flops_per_token(
        model_cfg.param_counts().matmul,
        model_cfg.n_layer as u64,
        (l - 1) as u64,
        model_cfg.d_model as u64,
    );
    let bar = if progress {
        indicatif::ProgressBar::new(cfg.max_steps)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap(),
    );
    bar.set_position(t.step);
    let (mut tok_s, mut mfu, mut last) = (0.0, 0.0, None);
    let run_start = Instant::now();
    let tokens_at_start = t.tokens;
    while t.step < cfg.max_steps {
        let t0 = Instant::now();
        let s = t.train_step(&data.train)?;
        let dt = t0.elapsed().as_secs_f64();
        let step_tokens = (cfg.batch_size * cfg.grad_accum) as f64 * (l - 1) as f64;
        tok_s = step_tokens / dt;
        mfu = tok_s * flops_per_token / peak;
        let last_step = t.step == cfg.max_steps;
        let eval = if (cfg.eval_every > 0 && t.step % cfg.eval_every == 0) || last_step {
            t.eval_loss(&data.eval)?
        } else {
            None
        };
        rows.push(LossRow {
            step: s.step,
            tokens: s.tokens,
            lr: s.lr,
            train_loss: s.loss,
            eval_loss: eval,
            loss_scale: s.loss_scale,
            skipped: s.skipped,
            tokens_per_s: tok_s,
            mfu,
        });
        bar.set_message(format!(
            "loss {:.4}{} | {:.0} tok/s | MFU {:.1}%{}",
            s.loss,
            eval.map_or(String::new(), |e| format!(" eval {e:.4}")),
            tok_s,
            100.0 * mfu,
            if s.skipped {
                " | overflow: step skipped"
            } else {
                ""
            }
        ));
        bar.set_position(t.step);
        last = Some(s);
        if (cfg.checkpoint_every > 0 && t.step % cfg.checkpoint_every == 0) || last_step {
            t.save(out)?;
            write_loss_csv(&csv_path, &rows)?;
        }
    }
    bar.finish_and_clear();
    let ck = if last.is_none() {
        latest_checkpoint(out)?
    } else {
        t.save(out)?
    };
    write_loss_csv(&csv_path, &rows)?;
    let elapsed = run_start.elapsed().as_secs_f64();
    if last.is_some() && elapsed > 0.0 {
        tok_s = (t.tokens - tokens_at_start) as f64 / elapsed;
        mfu = tok_s * flops_per_token / peak;
    }
    let final_train = rows.last().map_or(f64::NAN, |r| r.train_loss);
    let final_eval = rows.iter().rev().find_map(|r| r.eval_loss);
    let summary = TrainSummary {
        steps: t.step,
        tokens: t.tokens,
        final_train_loss: final_train,
        final_eval_loss: final_eval,
        tokens_per_s: tok_s,
        mfu,
        checkpoint: ck,
    };
    io::write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Parses `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available).
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" | "gpu" => {
            if !tch::Cuda::is_available() {
                bail!("--device cuda: no CUDA device is available to libtorch");
            }
            Ok(Device::Cuda(0))
        }
        _ => match s
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) if tch::Cuda::is_available() && (i as i64) < tch::Cuda::device_count() => {
                Ok(Device::Cuda(i))
            }
            Some(i) => bail!("--device cuda:{i}: no such CUDA device"),
            None => bail!("--device {s}: expected cpu, cuda, cuda:N or auto"),
        },
    }
}

/// `brainscale pretrain`.
#[derive(clap::Args, Debug)]
pub struct PretrainArgs {
    /// Code caches (`*.codes.safetensors`) or folders of them, from `brainscale tokenize`.
    #[arg(long, required = true, num_args = 1..)]
    pub codes: Vec<PathBuf>,
    /// Model config TOML (models/*.toml); its vocab must cover the codebook and ctx the clip.
    #[arg(long)]
    pub model: PathBuf,
    /// Output folder: checkpoints, loss.csv, summary.json, tokenizer/ (resumes if it holds a checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    /// Train on exactly the first N training clips (one clip = one sequence of t·h·w codes).
    #[arg(long)]
    pub train_samples: Option<usize>,
    #[arg(long, default_value_t = 1000)]
    pub max_steps: u64,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 3e-5)]
    pub min_lr: f64,
    #[arg(long, default_value_t = 100)]
    pub warmup_steps: u64,
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// Fraction of each code file's clips (its last ones) held out for evaluation.
    #[arg(long, default_value_t = 0.05)]
    pub eval_fraction: f64,
    #[arg(long, default_value_t = 200)]
    pub eval_every: u64,
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Start from Hugging Face GPT-2 weights (model.safetensors) whose shapes match --model.
    #[arg(long)]
    pub init_hf: Option<PathBuf>,
    /// Also write the trained weights in Hugging Face GPT-2 naming to this file (learned
    /// positions and tied head only).
    #[arg(long)]
    pub export_hf: Option<PathBuf>,
    /// Tokenizer folder to bundle with the prior (default: the one the code caches name).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// Copies the tokenizer folder next to the prior so a pretrain output is self-contained.
pub fn copy_tokenizer(src: &Path, out: &Path) -> Result<()> {
    let dst = out.join("tokenizer");
    std::fs::create_dir_all(&dst)?;
    for name in crate::models::vqvae::TOKENIZER_FILES {
        let s = src.join(name);
        let bytes =
            std::fs::read(&s).with_context(|| format!("reading tokenizer file {}", s.display()))?;
        io::write_bytes(&dst.join(name), &bytes)?;
    }
    Ok(())
}

pub fn run_pretrain(a: &PretrainArgs) -> Result<()> {
    if reexec_for_precision(a.precision)? {
        return Ok(());
    }
    let model_cfg = GptConfig::load(&a.model)?;
    let device = parse_device(&a.device)?;
    let files = codes::list_code_files(&a.codes)?;
    let mut data = codes::load_code_data(&files, a.eval_fraction)?;
    if let Some(n) = a.train_samples {
        let have = data.train.size()[0] as usize;
        if n == 0 || n > have {
            bail!("--train-samples {n}: the code caches hold {have} training clips");
        }
        data.train = data.train.narrow(0, 0, n as i64);
    }
    let cfg = TrainConfig {
        seed: a.seed,
        precision: a.precision,
        batch_size: a.batch_size,
        grad_accum: a.grad_accum,
        max_steps: a.max_steps,
        lr: a.lr,
        min_lr: a.min_lr,
        warmup_steps: a.warmup_steps,
        weight_decay: a.weight_decay,
        grad_clip: a.grad_clip,
        eval_every: a.eval_every,
        checkpoint_every: a.checkpoint_every,
        ..TrainConfig::default()
    };
    cfg.validate()?;
    let pc = model_cfg.param_counts();
    eprintln!(
        "pretrain {}: {} params ({} non-embedding), {} training clips × {} codes, {} held out, {} on {:?}",
        if model_cfg.name.is_empty() { a.model.display().to_string() } else { model_cfg.name.clone() },
        pc.total,
        pc.non_embedding,
        data.train.size()[0],
        data.latent_shape.iter().product::<i64>(),
        data.eval.size()[0],
        cfg.precision.name(),
        device
    );
    // The tokenizer goes into the output folder so the extractor finds it; check it first
    // rather than after hours of training.
    let tokenizer = a.tokenizer.clone().or(data.tokenizer.clone());
    match &tokenizer {
        Some(t) if !crate::models::vqvae::TOKENIZER_FILES.iter().all(|f| t.join(f).exists()) => bail!(
            "tokenizer folder {} (recorded in the code caches) is missing or incomplete; pass --tokenizer DIR",
            t.display()
        ),
        None => bail!("the code caches name no tokenizer; pass --tokenizer DIR"),
        _ => {}
    }
    let s = train_prior_from(
        &model_cfg,
        &cfg,
        &data,
        &a.out,
        device,
        true,
        a.init_hf.as_deref(),
    )?;
    if let Some(tok) = &tokenizer {
        copy_tokenizer(tok, &a.out)?;
    }
    if let Some(path) = &a.export_hf {
        let (vs, _) = load_prior(&a.out, Device::Cpu)?;
        crate::models::hf::save_hf(&vs, &model_cfg, path)?;
        println!("wrote Hugging Face GPT-2 weights to {}", path.display());
    }
    println!(
        "done: {} steps, {} tokens, train loss {:.4}, eval loss {}, {:.0} tokens/s, MFU {:.1}%; checkpoint {}",
        s.steps,
        s.tokens,
        s.final_train_loss,
        s.final_eval_loss.map_or("n/a".into(), |e| format!("{e:.4}")),
        s.tokens_per_s,
        100.0 * s.mfu,
        s.checkpoint.display()
    );
    Ok(())
}

/// Named `bench-train` cases: the H100 targets and a CPU smoke size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPreset {
    /// GPT-2 small (d768 L12 H12), ctx 1024, batch 16, vocab 2048, bf16 (H100 target ≥ 410k tok/s).
    Gpt2Bf16,
    /// VideoGPT prior (d576 L8 H4), ctx 1024, batch 32, vocab 2048, fp32 with TF32 off.
    VideogptFp32,
    /// Same with TF32 matmuls.
    VideogptTf32,
    VideogptBf16,
    VideogptFp16,
    /// A small model for a CPU run: d128 L4 H4, ctx 256, batch 4, vocab 2048, fp32.
    CpuSmall,
}

impl BenchPreset {
    /// Model, precision and batch size of the preset.
    pub fn case(self) -> (GptConfig, Precision, usize) {
        let videogpt = GptConfig {
            name: "videogpt-prior".into(),
            d_model: 576,
            n_layer: 8,
            n_head: 4,
            ctx: 1024,
            vocab: 2048,
            dropout: 0.2,
            attn_dropout: 0.3,
            pos: crate::models::gpt::PosEmbedding::Factorized,
            latent_shape: Some([4, 16, 16]),
            tie_weights: true,
        };
        match self {
            BenchPreset::Gpt2Bf16 => (
                GptConfig {
                    name: "gpt2-small-v2048".into(),
                    d_model: 768,
                    n_layer: 12,
                    n_head: 12,
                    dropout: 0.0,
                    attn_dropout: 0.0,
                    pos: crate::models::gpt::PosEmbedding::Learned,
                    latent_shape: None,
                    ..videogpt
                },
                Precision::Bf16,
                16,
            ),
            BenchPreset::VideogptFp32 => (videogpt, Precision::Fp32, 32),
            BenchPreset::VideogptTf32 => (videogpt, Precision::Tf32, 32),
            BenchPreset::VideogptBf16 => (videogpt, Precision::Bf16, 32),
            BenchPreset::VideogptFp16 => (videogpt, Precision::Fp16, 32),
            BenchPreset::CpuSmall => (
                GptConfig {
                    name: "cpu-small".into(),
                    d_model: 128,
                    n_layer: 4,
                    n_head: 4,
                    ctx: 256,
                    dropout: 0.0,
                    attn_dropout: 0.0,
                    pos: crate::models::gpt::PosEmbedding::Learned,
                    latent_shape: None,
                    ..videogpt
                },
                Precision::Fp32,
                4,
            ),
        }
    }
}

/// `brainscale bench-train`: training throughput of one model / precision / batch / device.
#[derive(clap::Args, Debug)]
pub struct BenchTrainArgs {
    /// A named case (model, precision, batch); explicit flags below override it.
    #[arg(long, value_enum)]
    pub preset: Option<BenchPreset>,
    /// Model config TOML instead of a preset.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Sequence length (default: the model's ctx).
    #[arg(long)]
    pub ctx: Option<i64>,
    /// Timed optimizer steps (after the warm-up ones).
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Append the result row to this CSV (created with a header).
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// One bench-train measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchTrainRow {
    pub model: String,
    pub device: String,
    pub precision: String,
    pub d_model: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub ctx: i64,
    pub vocab: i64,
    pub batch_size: usize,
    pub params_total: u64,
    pub params_matmul: u64,
    pub steps: u64,
    pub tokens_per_s: f64,
    pub tflops: f64,
    pub peak_matmul_tflops: f64,
    pub mfu: f64,
}

/// Measures training tokens/s of `model_cfg` at sequence length `ctx` on random tokens.
pub fn bench_train(
    model_cfg: &GptConfig,
    precision: Precision,
    batch: usize,
    ctx: i64,
    steps: u64,
    warmup: u64,
    device: Device,
) -> Result<BenchTrainRow> {
    if ctx <= 0 || ctx > model_cfg.ctx {
        bail!("--ctx {ctx} must be in 1..={}", model_cfg.ctx);
    }
    if steps == 0 {
        bail!("--steps must be positive");
    }
    let cfg = TrainConfig {
        precision,
        batch_size: batch,
        max_steps: steps + warmup,
        warmup_steps: 1,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(model_cfg, &cfg, device)?;
    tch::manual_seed(1);
    let data = Tensor::randint(
        model_cfg.vocab,
        [(4 * batch).max(64) as i64, ctx + 1],
        (Kind::Int64, Device::Cpu),
    );
    for _ in 0..warmup {
        t.train_step(&data)?;
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        t.train_step(&data)?; // each step reads its loss back: a device sync
    }
    let dt = t0.elapsed().as_secs_f64();
    let tokens = (steps as usize * batch) as f64 * ctx as f64;
    let tok_s = tokens / dt;
    let pc = model_cfg.param_counts();
    let fpt = flops::train_flops_per_token(
        pc.matmul,
        model_cfg.n_layer as u64,
        ctx as u64,
        model_cfg.d_model as u64,
    );
    let peak = measure_peak_matmul(device, precision.kind());
    Ok(BenchTrainRow {
        model: model_cfg.name.clone(),
        device: format!("{device:?}"),
        precision: precision.name().into(),
        d_model: model_cfg.d_model,
        n_layer: model_cfg.n_layer,
        n_head: model_cfg.n_head,
        ctx,
        vocab: model_cfg.vocab,
        batch_size: batch,
        params_total: pc.total,
        params_matmul: pc.matmul,
        steps,
        tokens_per_s: tok_s,
        tflops: tok_s * fpt / 1e12,
        peak_matmul_tflops: peak / 1e12,
        mfu: tok_s * fpt / peak,
    })
}

pub fn run_bench_train(a: &BenchTrainArgs) -> Result<()> {
    let (mut cfg, mut precision, mut batch) = a.preset.unwrap_or(BenchPreset::CpuSmall).case();
    if let Some(m) = &a.model {
        cfg = GptConfig::load(m)?;
    } else if a.preset.is_none() {
        bail!("give --preset or --model");
    }
    precision = a.precision.unwrap_or(precision);
    batch = a.batch_size.unwrap_or(batch);
    let ctx = a.ctx.unwrap_or(cfg.ctx);
    if reexec_for_precision(precision)? {
        return Ok(());
    }
    let device = parse_device(&a.device)?;
    let r = bench_train(&cfg, precision, batch, ctx, a.steps, a.warmup, device)?;
    println!(
        "{} ({} params, {} in matmuls) d{} L{} H{} ctx {} batch {} vocab {} {} on {}:\n  {:.0} tokens/s, {:.4} TFLOP/s achieved, peak matmul {:.4} TFLOP/s (measured now), MFU {:.1}%",
        r.model, r.params_total, r.params_matmul, r.d_model, r.n_layer, r.n_head, r.ctx, r.batch_size, r.vocab, r.precision, r.device,
        r.tokens_per_s, r.tflops, r.peak_matmul_tflops, 100.0 * r.mfu
    );
    if let Some(path) = &a.csv {
        let mut rows: Vec<BenchTrainRow> = if path.exists() {
            csv::Reader::from_path(path)?
                .deserialize()
                .collect::<Result<_, _>>()
                .with_context(|| format!("parsing {}", path.display()))?
        } else {
            Vec::new()
        };
        rows.push(r);
        io::write_atomic(path, |tmp| {
            let mut w = csv::Writer::from_path(tmp)?;
            for r in &rows {
                w.serialize(r)?;
            }
            w.flush()?;
            Ok(())
        })?;
    }
    Ok(())
}

/// Settings of [`train_small_prior`]: a tokenizer and prior small enough to train on CPU in
/// seconds (32×32 frames, 8-frame clips → 2×8×8 codes of 64; a d64 L2 H2 prior).
pub fn small_prior_configs() -> (crate::models::vqvae::VqVaeConfig, GptConfig) {
    let vq = crate::models::vqvae::VqVaeConfig {
        resolution: 32,
        clip_len: 8,
        downsample: [4, 4, 4],
        n_hiddens: 16,
        n_res_layers: 1,
        n_codes: 64,
        embedding_dim: 16,
        attn_heads: 2,
        ema_decay: 0.99,
        commitment: 0.25,
    };
    let lat = vq.latent_shape();
    let gpt = GptConfig {
        name: "small-prior".into(),
        d_model: 64,
        n_layer: 2,
        n_head: 2,
        ctx: lat.iter().product(),
        vocab: vq.n_codes,
        dropout: 0.0,
        attn_dropout: 0.0,
        pos: crate::models::gpt::PosEmbedding::Factorized,
        latent_shape: Some(lat),
        tie_weights: true,
    };
    (vq, gpt)
}

/// Trains a small tokenizer and prior on decoded movies (CPU, seconds); returns the prior's
/// folder (`work/prior`, with its `tokenizer/`), ready for [`crate::models::extract::GptExtractor`].
/// A finished folder is reused.
pub fn train_small_prior_frames(
    movies: &[(String, crate::video::Frames)],
    work: &Path,
    seed: u64,
) -> Result<PathBuf> {
    // Ops this small run fastest on one thread; several threads on a busy machine spend their
    // time waiting for each other (30× slower measured on 2 shared cores).
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let r = small_prior_inner(movies, work, seed);
    tch::set_num_threads(threads);
    r
}

fn small_prior_inner(
    movies: &[(String, crate::video::Frames)],
    work: &Path,
    seed: u64,
) -> Result<PathBuf> {
    use crate::models::vqvae;
    let prior_dir = work.join("prior");
    if prior_dir.join("summary.json").exists()
        && prior_dir.join("tokenizer").join("vqvae.json").exists()
    {
        return Ok(prior_dir);
    }
    let (vq, gpt) = small_prior_configs();
    let tok_dir = work.join("tokenizer");
    let frames: Vec<crate::video::Frames> = movies.iter().map(|(_, f)| f.clone()).collect();
    let tc = vqvae::TokenizerTrainConfig {
        steps: 40,
        batch_size: 4,
        lr: 3e-3,
        seed,
        frame_stride: 1,
        hop: 4,
        checkpoint_every: 0,
    };
    vqvae::train_tokenizer(&vq, &tc, &frames, &tok_dir, Device::Cpu, false)?;
    let tok = vqvae::Tokenizer::load(&tok_dir, Device::Cpu)?;
    let code_dir = work.join("codes");
    let files = vqvae::tokenize_movies(&tok, movies, &code_dir, 1, 4)?;
    let data = codes::load_code_data(&files, 0.1)?;
    let cfg = TrainConfig {
        seed,
        batch_size: 8,
        max_steps: 60,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 10,
        eval_every: 0,
        checkpoint_every: 0,
        eval_samples: 32,
        ..TrainConfig::default()
    };
    train_prior(&gpt, &cfg, &data, &prior_dir, Device::Cpu, false)?;
    copy_tokenizer(&tok_dir, &prior_dir)?;
    Ok(prior_dir)
}

/// [`train_small_prior_frames`] on movie files, decoded at native rate to 32×32 (frame cache
/// in `work/frames`). For `brainscale demo --extractor gpt`.
pub fn train_small_prior(movies: &[PathBuf], work: &Path, seed: u64) -> Result<PathBuf> {
    let (vq, _) = small_prior_configs();
    let opts = crate::video::DecodeOptions {
        fps: None,
        size: Some(vq.resolution as u32),
    };
    let decoded = movies
        .iter()
        .map(|m| {
            let stem = m
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((
                stem,
                crate::video::decode_cached(m, &work.join("frames"), &opts)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    train_small_prior_frames(&decoded, work, seed)
}
