//! Optimisation: AdamW over one flat buffer, the learning-rate schedule (linear warmup then
//! cosine decay, as nanoGPT and GPT-3), and the settings stored with every checkpoint.
use crate::nn::precision::Precision;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
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
    /// Once every parameter has a gradient, one flat buffer that the parameters' `.grad`
    /// tensors are views of: autograd accumulates into it in place, so a step neither gathers
    /// the gradients nor zeroes them one tensor at a time (2 + 6 ops per parameter tensor,
    /// which for the grids' tiny models was a large share of a step's fixed cost).
    flat_grad: Option<Tensor>,
    /// Updates taken (for bias correction).
    pub t: u64,
}

impl AdamW {
    /// Takes every trainable variable of `vs`; matrices (≥ 2 dims) take weight decay.
    pub fn new(vs: &nn::VarStore) -> Self {
        Self::with_decay(vs, |_, t| t.dim() >= 2)
    }

    /// Takes every trainable variable of `vs` (frozen ones, `requires_grad` false, are left
    /// alone); `decays(name, tensor)` says which take weight decay.
    pub fn with_decay(vs: &nn::VarStore, decays: impl Fn(&str, &Tensor) -> bool) -> Self {
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
            flat_grad: None,
            t: 0,
        }
    }

    pub fn zero_grad(&mut self) {
        match &mut self.flat_grad {
            Some(g) => {
                tch::no_grad(|| {
                    let _ = g.zero_();
                });
            }
            None => {
                for p in self.params.iter_mut() {
                    p.zero_grad();
                }
            }
        }
        self.grad = None;
    }

    /// All gradients as one flat fp32 tensor (zeros for parameters without one). The first
    /// time every parameter has an fp32 gradient, the gradients become views of that tensor
    /// (`flat_grad`), which later calls return as it is: the same values in the same order.
    fn gather(&mut self) -> Tensor {
        if let Some(g) = &self.flat_grad {
            return g.shallow_clone();
        }
        let flat = self.gather_parts();
        let bindable = !self.params.is_empty()
            && self.params.iter().all(|p| {
                let g = p.grad();
                g.defined() && g.kind() == Kind::Float && g.device() == flat.device()
            });
        if bindable {
            tch::no_grad(|| {
                for (p, &off) in self.params.iter().zip(&self.offsets) {
                    let view = flat
                        .narrow(0, off, p.numel() as i64)
                        .view(p.size().as_slice());
                    p.grad().set_data(&view);
                }
            });
            self.flat_grad = Some(flat.shallow_clone());
        }
        flat
    }

    /// The gradients copied into one new flat fp32 tensor.
    fn gather_parts(&self) -> Tensor {
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

    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
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

    pub fn load_state(&mut self, path: &Path) -> Result<()> {
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

/// A 64-bit seed for stream `(a, b)` of a run seeded `seed` (e.g. step and micro-batch).
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // SplitMix64-style mixing so neighbouring (step, micro) pairs get unrelated streams.
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
