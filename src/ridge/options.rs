//! What a ridge fit is asked to do: the score, the backend and its device, the work dtype,
//! the memory budget, the folds, and their validation. Plain values: the flags that fill
//! them are declared once in `cli::args`.
use anyhow::{bail, Result};
use std::fmt;

/// How a validation prediction is scored when choosing alpha.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CvScore {
    /// Pearson r between prediction and held-out data.
    R,
    /// Coefficient of determination.
    R2,
}

/// Which implementation does the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Backend {
    /// ndarray + OpenBLAS/LAPACK (needs the `cpu-linalg` feature).
    Cpu,
    /// libtorch through tch, on the CPU or a CUDA GPU.
    Torch,
}

impl Default for Backend {
    fn default() -> Self {
        if cfg!(feature = "cpu-linalg") {
            Backend::Cpu
        } else {
            Backend::Torch
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Torch => "torch",
        })
    }
}

/// Floating-point type of the voxel-sized work (`--dtype`). Gram matrices and
/// eigendecompositions are always computed in f64 (they are small and cheap, and f32
/// eigenvalues would be too coarse for small alphas). Not to be confused with
/// `nn::precision::Precision`, the training precision of the models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Dtype {
    #[default]
    F32,
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        })
    }
}

/// Where the torch backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RidgeDevice {
    #[default]
    Cpu,
    Cuda(usize),
}

impl fmt::Display for RidgeDevice {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            RidgeDevice::Cpu => f.write_str("cpu"),
            RidgeDevice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl std::str::FromStr for RidgeDevice {
    type Err = anyhow::Error;
    /// `cpu`, `cuda` (= `cuda:0`), `gpu` or `cuda:N`, case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cpu" => Ok(RidgeDevice::Cpu),
            "cuda" | "gpu" => Ok(RidgeDevice::Cuda(0)),
            _ => match t.strip_prefix("cuda:") {
                Some(i) => i
                    .parse()
                    .map(RidgeDevice::Cuda)
                    .map_err(|_| anyhow::anyhow!("device `{s}`: expected cpu, cuda or cuda:N")),
                None => bail!("device `{s}`: expected cpu, cuda or cuda:N"),
            },
        }
    }
}

/// How training runs are grouped into CV folds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Folds {
    /// One fold per run.
    #[default]
    LeaveOneRunOut,
    /// K folds of consecutive runs (sorted by run id), as equal in run count as possible.
    RunGroups(usize),
}

/// What the solver should fit and keep.
#[derive(Debug, Clone)]
pub struct RidgeOptions {
    /// Candidate alphas, all > 0.
    pub alphas: Vec<f64>,
    pub score: CvScore,
    /// Fit an intercept (centre X and Y on the training rows).
    pub intercept: bool,
    /// Keep the CV score of every alpha for every voxel.
    pub keep_cv_scores: bool,
    /// Keep the refit weights (features × voxels).
    pub keep_weights: bool,
    /// With `keep_weights`, callers that save weights write them block by block with
    /// [`crate::ridge::fit_cv_streaming`] instead of holding features × voxels in memory.
    pub stream_weights: bool,
    pub backend: Backend,
    /// Device of the torch backend (the cpu backend accepts only `Cpu`).
    pub device: RidgeDevice,
    /// Element type of the voxel-sized work.
    pub dtype: Dtype,
    /// Allow TF32 matrix products (torch backend on CUDA, f32 only).
    pub tf32: bool,
    /// Memory budget in bytes for the voxel-chunked work; `None`: half the available RAM
    /// (CPU) or 16 GiB (CUDA).
    pub max_memory: Option<u64>,
    pub folds: Folds,
    /// Show a progress bar (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// With f32 work, compute the validation norms of all alphas from one f64 product per
    /// fold (partial fractions, checked against direct products) instead of one f32 product
    /// per alpha. Turn off on GPUs with slow f64 (consumer cards).
    pub partial_fractions: bool,
}

impl Default for RidgeOptions {
    fn default() -> Self {
        Self {
            alphas: default_alphas(),
            score: CvScore::R,
            intercept: true,
            keep_cv_scores: false,
            keep_weights: false,
            stream_weights: false,
            backend: Backend::default(),
            device: RidgeDevice::Cpu,
            dtype: Dtype::F32,
            tf32: false,
            max_memory: None,
            folds: Folds::LeaveOneRunOut,
            progress: true,
            partial_fractions: true,
        }
    }
}

/// 10 log-spaced alphas, 1e0 … 1e6 (features and voxels are z-scored, so this spans
/// from almost no shrinkage to almost full shrinkage for a few thousand TRs).
pub fn default_alphas() -> Vec<f64> {
    (0..10).map(|i| 10f64.powf(i as f64 * 6.0 / 9.0)).collect()
}

/// `n` alphas log-spaced from 0.1 to 1e6 (the benchmarks' grid).
pub fn bench_alphas(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 10f64.powf(-1.0 + 7.0 * i as f64 / (n.max(2) - 1) as f64))
        .collect()
}

/// Checks the options alone (shared by the CLI and the solver). Errors: no or non-positive
/// alphas, a device the backend cannot use, TF32 outside torch/CUDA/f32, a zero budget,
/// fewer than 2 run groups, the cpu backend in a build without it.
pub fn check_options(o: &RidgeOptions) -> Result<()> {
    if o.alphas.is_empty() {
        bail!("no alphas given");
    }
    if let Some(a) = o.alphas.iter().find(|a| !(**a > 0.0) || !a.is_finite()) {
        bail!("alpha must be a positive finite number, got {a}");
    }
    if o.backend == Backend::Cpu && o.device != RidgeDevice::Cpu {
        bail!(
            "the cpu backend runs on the CPU only; use --backend torch for device {}",
            o.device
        );
    }
    if o.tf32
        && (o.dtype != Dtype::F32 || o.backend != Backend::Torch || o.device == RidgeDevice::Cpu)
    {
        bail!("--tf32 applies only to --backend torch on a CUDA device with --dtype f32");
    }
    if o.max_memory == Some(0) {
        bail!("max memory must be positive");
    }
    if let Folds::RunGroups(k) = o.folds {
        if k < 2 {
            bail!("run groups must be at least 2, got {k}");
        }
    }
    #[cfg(not(feature = "cpu-linalg"))]
    if o.backend == Backend::Cpu {
        bail!("this build has no cpu ridge backend (built without the `cpu-linalg` feature); use --backend torch");
    }
    Ok(())
}
