//! Flag groups shared by several subcommands, declared once and flattened where used: the
//! ridge solver's flags ([`SolverArgs`], in `encode`, `bench-ridge` and `bench-whole-brain`),
//! the encode stage's ridge flags ([`RidgeArgs`]), and the byte-size value parser
//! ([`ByteSize`]).
use crate::ridge::{
    check_options, default_alphas, Backend, CvScore, Dtype, Folds, RidgeDevice, RidgeOptions,
};
use anyhow::{bail, Context, Result};
use std::fmt;

/// A byte count given as `8GiB`, `512MiB`, `2GB`, `1e9` or `1.5KiB` (binary and decimal
/// units, case-insensitive); the value parser of every `--max-memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = anyhow::Error;
    /// Errors: no number, an unknown unit, or a size under one byte.
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let x: f64 = num
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("not a size: expected e.g. 8GiB"))?;
        let mult = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "kib" => 1024.0,
            "mib" => 1024f64.powi(2),
            "gib" => 1024f64.powi(3),
            "tib" => 1024f64.powi(4),
            u => bail!("unknown size unit `{u}` (use B, KB, MB, GB, KiB, MiB, GiB...)"),
        };
        let bytes = x * mult;
        if !(bytes.is_finite() && bytes >= 1.0) {
            bail!("size must be positive");
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&crate::core::memory::human_bytes(self.0))
    }
}

/// The ridge solver's flags, shared by `encode`, `bench-ridge` and `bench-whole-brain`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SolverArgs {
    /// Ridge implementation (default: cpu where built with it; torch for bench-ridge
    /// --preset gpu).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Device of the torch backend: cpu, cuda or cuda:N (default cpu; cuda for bench-ridge
    /// --preset gpu).
    #[arg(long)]
    pub device: Option<RidgeDevice>,
    /// Element type of the voxel-sized work (decompositions are always f64).
    #[arg(long, value_enum, default_value_t = Dtype::F32, visible_alias = "precision")]
    pub dtype: Dtype,
    /// Allow TF32 matrix products (torch backend on CUDA with --dtype f32 only).
    #[arg(long)]
    pub tf32: bool,
    /// The ridge's voxel-chunk budget, e.g. 8GiB, 500MB: voxels are fitted in chunks within it,
    /// in every command and mode (default: half the free RAM, or 16GiB on a GPU; in streamed
    /// fits, what --process-memory leaves). The whole process is bounded by --process-memory.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<ByteSize>,
    /// Compute each alpha's validation norms by its own f32 product instead of one f64
    /// partial-fraction product per fold (faster on GPUs with slow f64, e.g. consumer cards).
    #[arg(long)]
    pub no_partial_fractions: bool,
}

impl SolverArgs {
    /// `o` with these flags applied; `backend` and `device` where the flags leave them
    /// unset. Not checked: callers finish the options, then [`check_options`].
    pub fn apply(&self, o: RidgeOptions, backend: Backend, device: RidgeDevice) -> RidgeOptions {
        RidgeOptions {
            backend: self.backend.unwrap_or(backend),
            device: self.device.unwrap_or(device),
            dtype: self.dtype,
            tf32: self.tf32,
            max_memory: self.max_memory.map(|b| b.0),
            partial_fractions: !self.no_partial_fractions,
            ..o
        }
    }
}

/// The encode stage's ridge flags (flattened into `brainscale encode`).
#[derive(clap::Args, Debug, Clone)]
pub struct RidgeArgs {
    /// Candidate ridge penalties, comma-separated, all > 0 (penalty alpha·||W||², not alpha²).
    /// Default: 10 log-spaced values from 1 to 1e6.
    #[arg(
        long,
        value_delimiter = ',',
        allow_negative_numbers = true,
        value_name = "A,B,..."
    )]
    pub alphas: Option<Vec<f64>>,
    /// Score used to choose each voxel's alpha on the held-out runs.
    #[arg(long, value_enum, default_value_t = CvScore::R)]
    pub cv_score: CvScore,
    /// Fit without an intercept (do not centre X and Y on the training rows).
    #[arg(long)]
    pub no_intercept: bool,
    /// Cross-validate over K groups of consecutive runs instead of leaving one run out.
    #[arg(long, value_name = "K")]
    pub cv_run_groups: Option<usize>,
    #[command(flatten)]
    pub solver: SolverArgs,
    /// Save the refit weights (features × voxels).
    #[arg(long)]
    pub save_weights: bool,
    /// With --save-weights: stream the weights to disk block by block (for whole-brain fits
    /// whose features × voxels do not fit in memory).
    #[arg(long, requires = "save_weights")]
    pub stream_weights: bool,
    /// Save the CV score of every alpha for every voxel.
    #[arg(long)]
    pub save_cv_scores: bool,
}

impl RidgeArgs {
    /// The solver options these flags ask for. Errors: fewer than 2 run groups, and those
    /// of [`check_options`].
    pub fn to_options(&self) -> Result<RidgeOptions> {
        let folds = match self.cv_run_groups {
            None => Folds::LeaveOneRunOut,
            Some(k) if k < 2 => bail!("--cv-run-groups must be at least 2, got {k}"),
            Some(k) => Folds::RunGroups(k),
        };
        let o = self.solver.apply(
            RidgeOptions {
                alphas: self.alphas.clone().unwrap_or_else(default_alphas),
                score: self.cv_score,
                intercept: !self.no_intercept,
                keep_cv_scores: self.save_cv_scores,
                keep_weights: self.save_weights,
                stream_weights: self.stream_weights,
                folds,
                progress: true,
                ..RidgeOptions::default()
            },
            Backend::default(),
            RidgeDevice::Cpu,
        );
        check_options(&o).context("ridge options")?;
        Ok(o)
    }
}
