//! Compute precision of training: fp32, TF32, bf16 and fp16 with dynamic loss scaling, and the
//! measured matmul peak that MFU is reported against.
//!
//! Mixed precision follows PyTorch's AMP recipe (Micikevicius et al. 2018, "Mixed Precision
//! Training"): master weights and the optimizer stay fp32; a model computes its forward pass in
//! [`Precision::kind`]; fp16 multiplies the loss by a dynamic scale so small gradients survive.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Compute precision of a forward/backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 matmuls (TF32 off).
    Fp32,
    /// fp32 storage, TF32 tensor-core matmuls on NVIDIA GPUs (same as fp32 on CPU).
    Tf32,
    /// bfloat16 matmuls, fp32 master weights.
    Bf16,
    /// float16 matmuls, fp32 master weights, dynamic loss scaling.
    Fp16,
}

impl Precision {
    /// The tensor kind a model computes its forward pass in.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 | Precision::Tf32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp16 => Kind::Half,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }
}

/// Dynamic loss scaling for fp16: multiply the loss by `scale` so small gradients survive in
/// fp16; a step whose gradients overflow is skipped and the scale halved; after
/// `growth_interval` clean steps the scale doubles (as `torch.cuda.amp.GradScaler`).
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

/// Peak dense matmul throughput (FLOP/s) of `device` in `kind`, measured now: the best of a
/// few n×n products (n = 8192 on GPU, 512 on CPU), after a warm-up. MFU is reported against
/// this measured figure, not a datasheet number.
pub fn measure_peak_matmul(device: Device, kind: Kind) -> f64 {
    let n: i64 = if device.is_cuda() { 8192 } else { 512 };
    let reps = if device.is_cuda() { 20 } else { 5 };
    tch::no_grad(|| {
        // Constant operands, not randn: a draw from libtorch's process-global RNG here (run
        // at the start of every fit) would land inside another thread's seeded section and
        // make that seeded run differ from itself. A GEMM's speed does not depend on values.
        let a = Tensor::full([n, n], 0.5, (kind, device));
        let b = Tensor::full([n, n], 0.25, (kind, device));
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
