//! Encode stage: cross-validated ridge regression with one alpha per voxel.
//!
//! Convention (as scikit-learn and himalaya): minimise ||Y - XW||² + alpha ||W||², i.e. the
//! solution is (X'X + alpha I)⁻¹ X'Y — alpha, not alpha², multiplies the identity. Folds are
//! grouped by run (leave-one-run-out, or K groups of consecutive runs); each alpha is scored
//! per voxel by the mean over folds of r (or R²) on the held-out runs; ties go to the larger
//! alpha. The best alpha of each voxel is then refit on all training runs and scored on the
//! test rows.
//!
//! The algorithm (the same in both backends, see `cpu.rs` and `torch.rs`): per fold, one
//! eigendecomposition of the centred training Gram X'X (or of XX' when p > n) gives an
//! orthonormal basis M and eigenvalues s; the training targets are projected once (B = M'X'Y),
//! and every alpha is a diagonal scaling d = 1/(s + alpha). Validation predictions are never
//! formed: r (and R²) need only, per voxel, <P, Y> (= d'(C∘B), with C = M'X_val'Y_val), the
//! mean of P, and ||P||² = ||A D B||² with A = X_val M. That last norm costs one product per
//! alpha (F·D·B, F a factor of A'A with min(n_val, k) rows), or, with f32 work, one f64
//! product for all alphas by partial fractions over the eigenvalues (see `cpu::Quad`),
//! checked against the direct products and replaced by them when the eigenvalues are too
//! close. X'Y of every fold comes from per-fold products X_f'Y_f computed once; Grams and
//! eigendecompositions are f64. Voxels are processed in chunks sized from a memory budget.
//!
//! FLOPs per fit (reported by `RidgeFit::flops`): X'Y 2npv; per fold 4pkv (B and C) plus
//! either 2·n_alphas·min(n_val,k)·k·v (direct) or 2k²v + 4·n_alphas·k·v (partial fractions);
//! refit 2pkv + 2·n_test·k·v; setup O(np² + folds·p³).
use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array2, ArrayView2};
use std::fmt;

pub mod banded;
#[cfg(feature = "cpu-linalg")]
pub(crate) mod blas;
pub mod blocks;
#[cfg(feature = "cpu-linalg")]
mod cpu;
pub(crate) mod torch;

/// How a validation prediction is scored when choosing alpha.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum CvScore {
    /// Pearson r between prediction and held-out data.
    R,
    /// Coefficient of determination.
    R2,
}

/// Which implementation does the arithmetic.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
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

/// Floating-point type of the voxel-sized work. Gram matrices and eigendecompositions are
/// always computed in f64 (they are small and cheap, and f32 eigenvalues would be too coarse
/// for small alphas).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Precision {
    #[default]
    F32,
    F64,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
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
    /// [`fit_cv_streaming`] instead of holding features × voxels in memory.
    pub stream_weights: bool,
    pub backend: Backend,
    /// Device of the torch backend (the cpu backend accepts only `Cpu`).
    pub device: RidgeDevice,
    pub precision: Precision,
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
            precision: Precision::F32,
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

/// The user-facing options of the encode stage (flattened into `brainscale encode`).
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
    /// Ridge implementation.
    #[arg(long, value_enum, default_value_t = Backend::default())]
    pub backend: Backend,
    /// Device of the torch backend: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of the voxel-sized work (decompositions are always f64).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Allow TF32 matrix products (torch backend on CUDA with f32 only).
    #[arg(long)]
    pub tf32: bool,
    /// Memory budget for voxel chunks, e.g. 8GiB, 500MB (default: half the free RAM, or
    /// 16GiB on a GPU).
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Compute each alpha's validation norms by its own f32 product instead of one f64
    /// partial-fraction product per fold (faster on GPUs with slow f64, e.g. consumer cards).
    #[arg(long)]
    pub no_partial_fractions: bool,
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
    pub fn to_options(&self) -> Result<RidgeOptions> {
        let device: RidgeDevice = self.device.parse().context("--device")?;
        let max_memory = match &self.max_memory {
            Some(s) => Some(parse_bytes(s).with_context(|| format!("--max-memory `{s}`"))?),
            None => None,
        };
        let folds = match self.cv_run_groups {
            None => Folds::LeaveOneRunOut,
            Some(k) if k < 2 => bail!("--cv-run-groups must be at least 2, got {k}"),
            Some(k) => Folds::RunGroups(k),
        };
        let o = RidgeOptions {
            alphas: self.alphas.clone().unwrap_or_else(default_alphas),
            score: self.cv_score,
            intercept: !self.no_intercept,
            keep_cv_scores: self.save_cv_scores,
            keep_weights: self.save_weights,
            stream_weights: self.stream_weights,
            backend: self.backend,
            device,
            precision: self.precision,
            tf32: self.tf32,
            max_memory,
            folds,
            progress: true,
            partial_fractions: !self.no_partial_fractions,
        };
        check_options(&o).context("ridge options")?;
        Ok(o)
    }
}

/// Parses a byte size such as `8GiB`, `512MiB`, `2GB`, `1e9` (binary and decimal units).
pub fn parse_bytes(s: &str) -> Result<u64> {
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
    Ok(bytes as u64)
}

/// A ridge problem: training rows with their run (group) ids, and held-out test rows.
pub struct RidgeProblem<'a> {
    pub x_train: ArrayView2<'a, f32>,
    pub y_train: ArrayView2<'a, f32>,
    /// Run id of each training row; CV leaves one run (or one group of runs) out at a time.
    pub groups: &'a [usize],
    pub x_test: ArrayView2<'a, f32>,
    pub y_test: ArrayView2<'a, f32>,
}

/// What a fit returns, per voxel.
#[derive(Debug, Clone)]
pub struct RidgeFit {
    /// The candidate alphas, sorted ascending and deduplicated (rows of `cv_scores`).
    pub alphas: Vec<f64>,
    pub best_alpha: Array1<f64>,
    pub test_r: Array1<f64>,
    pub test_r2: Array1<f64>,
    /// alphas × voxels, when asked for.
    pub cv_scores: Option<Array2<f64>>,
    /// features × voxels, when asked for.
    pub weights: Option<Array2<f32>>,
    /// Voxels whose training data are constant: they get r = 0.
    pub constant_voxels: Vec<usize>,
    /// Test predictions (test rows × voxels).
    pub test_pred: Array2<f32>,
    /// Floating-point operations of the fit (matrix products 2mnk, eigendecompositions 4p³;
    /// elementwise work not counted).
    pub flops: f64,
    /// Number of CV folds used.
    pub n_folds: usize,
}

/// Checks the options alone (shared by the CLI and the solver).
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
        && (o.precision != Precision::F32
            || o.backend != Backend::Torch
            || o.device == RidgeDevice::Cpu)
    {
        bail!("--tf32 applies only to --backend torch on a CUDA device with --precision f32");
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

/// Checks shapes, values and options; every problem is reported before any work starts.
pub fn validate(p: &RidgeProblem, o: &RidgeOptions) -> Result<()> {
    check_options(o)?;
    let (n, f) = p.x_train.dim();
    if n == 0 || f == 0 {
        bail!("training X is empty ({n} rows × {f} features)");
    }
    if p.y_train.nrows() != n {
        bail!("X has {n} training rows but Y has {}", p.y_train.nrows());
    }
    if p.y_train.ncols() == 0 {
        bail!("Y has no voxels");
    }
    if p.groups.len() != n {
        bail!("{} run labels for {n} training rows", p.groups.len());
    }
    if p.x_test.ncols() != f {
        bail!(
            "test X has {} features, training X has {f}",
            p.x_test.ncols()
        );
    }
    if p.x_test.nrows() != p.y_test.nrows() {
        bail!(
            "test X has {} rows but test Y has {}",
            p.x_test.nrows(),
            p.y_test.nrows()
        );
    }
    if p.y_test.ncols() != p.y_train.ncols() {
        bail!(
            "test Y has {} voxels, training Y has {}",
            p.y_test.ncols(),
            p.y_train.ncols()
        );
    }
    let runs = sorted_runs(p.groups);
    if runs.len() < 2 {
        bail!(
            "cross-validation needs at least 2 training runs, got {} (every training row has run id {})",
            runs.len(),
            runs[0]
        );
    }
    if let Folds::RunGroups(k) = o.folds {
        if k > runs.len() {
            bail!(
                "{k} run groups asked for but there are only {} training runs",
                runs.len()
            );
        }
    }
    for (name, a) in [
        ("training X", &p.x_train),
        ("training Y", &p.y_train),
        ("test X", &p.x_test),
        ("test Y", &p.y_test),
    ] {
        // Fast scan first; locate the culprit only when there is one.
        if a.iter().all(|v| v.is_finite()) {
            continue;
        }
        if let Some((pos, _)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
            bail!(
                "{name} has a non-finite value (NaN or infinity) at row {}, column {}",
                pos.0,
                pos.1
            );
        }
    }
    Ok(())
}

fn sorted_runs(groups: &[usize]) -> Vec<usize> {
    let mut runs = groups.to_vec();
    runs.sort_unstable();
    runs.dedup();
    runs
}

/// The validation rows of each fold (every training row is in exactly one fold).
pub fn fold_rows(groups: &[usize], folds: Folds) -> Vec<Vec<usize>> {
    let runs = sorted_runs(groups);
    let k = match folds {
        Folds::LeaveOneRunOut => runs.len(),
        Folds::RunGroups(k) => k.min(runs.len()),
    };
    // Run i (in sorted order) goes to fold floor(i·k / n_runs): consecutive, balanced groups.
    let fold_of = |run: usize| -> usize {
        let i = runs.binary_search(&run).expect("run id listed");
        i * k / runs.len()
    };
    let mut out = vec![Vec::new(); k];
    for (row, &g) in groups.iter().enumerate() {
        out[fold_of(g)].push(row);
    }
    out
}

/// Sorted, deduplicated alphas.
fn sorted_alphas(alphas: &[f64]) -> Vec<f64> {
    let mut a = alphas.to_vec();
    a.sort_by(f64::total_cmp);
    a.dedup();
    a
}

/// Index of the best alpha of each voxel (columns of `scores`, alphas ascending). Scanning
/// from the largest alpha down with a strict comparison sends exact ties to the larger alpha.
pub fn best_alpha_index(scores: ArrayView2<f64>) -> Vec<usize> {
    let na = scores.nrows();
    (0..scores.ncols())
        .map(|j| {
            let mut best = na - 1;
            for k in (0..na).rev() {
                if scores[[k, j]] > scores[[best, j]] {
                    best = k;
                }
            }
            best
        })
        .collect()
}

/// What a backend computes; the rest (scores on the test rows, constant voxels) is shared.
pub(crate) struct RawFit {
    pub cv_scores: Array2<f64>,
    pub best: Vec<usize>,
    pub test_pred: Array2<f32>,
    pub weights: Option<Array2<f32>>,
    pub flops: f64,
}

/// Everything a backend needs besides the data.
pub(crate) struct Plan {
    pub alphas: Vec<f64>,
    pub folds: Vec<Vec<usize>>,
}

/// Cross-validated ridge with one alpha per voxel, then refit on all training rows.
pub fn fit_cv(p: &RidgeProblem, o: &RidgeOptions) -> Result<RidgeFit> {
    validate(p, o)?;
    let plan = Plan {
        alphas: sorted_alphas(&o.alphas),
        folds: fold_rows(p.groups, o.folds),
    };
    let raw = match o.backend {
        #[cfg(feature = "cpu-linalg")]
        Backend::Cpu => cpu::fit(p, o, &plan)?,
        #[cfg(not(feature = "cpu-linalg"))]
        Backend::Cpu => unreachable!("rejected by check_options"),
        Backend::Torch => torch::fit(p, o, &plan)?,
    };
    let fit = finish(p, raw, plan, o);
    if let Some(&first) = fit.constant_voxels.first() {
        eprintln!(
            "warning: {} voxel(s) have constant training data (first: voxel {first}); their r is set to 0",
            fit.constant_voxels.len()
        );
    }
    Ok(fit)
}

/// What [`fit_cv`] returns from a backend's raw fit: the test scores (r = 0 for voxels whose
/// training data are constant) and the best alphas; shared with [`blocks::fit_cv_blocks`].
pub(crate) fn finish(p: &RidgeProblem, raw: RawFit, plan: Plan, o: &RidgeOptions) -> RidgeFit {
    let v = p.y_train.ncols();
    let constant_voxels: Vec<usize> = (0..v)
        .filter(|&j| {
            let c = p.y_train.column(j);
            let first = c[0];
            c.iter().all(|&t| t == first)
        })
        .collect();
    let mut test_r = crate::core::stats::pearson_columns(p.y_test, raw.test_pred.view());
    let test_r2 = crate::core::stats::r2_columns(p.y_test, raw.test_pred.view());
    for &j in &constant_voxels {
        test_r[j] = 0.0;
    }
    RidgeFit {
        best_alpha: raw.best.iter().map(|&k| plan.alphas[k]).collect(),
        test_r,
        test_r2,
        cv_scores: o.keep_cv_scores.then_some(raw.cv_scores),
        weights: raw.weights,
        constant_voxels,
        test_pred: raw.test_pred,
        flops: raw.flops,
        n_folds: plan.folds.len(),
        alphas: plan.alphas,
    }
}

/// [`fit_cv`] with the refit weights written to `path` as they are computed instead of kept
/// in memory: safetensors with one tensor `weights`, f32 [voxels, features] (row j = voxel j),
/// written to a temporary file and renamed when complete. Voxels are fitted in blocks of
/// `block` voxels (default: weights of at most a quarter of the memory budget); voxels are
/// independent, so the results are those of one fit. The returned fit has `weights: None`.
pub fn fit_cv_streaming(
    p: &RidgeProblem,
    o: &RidgeOptions,
    path: &std::path::Path,
    block: Option<usize>,
) -> Result<RidgeFit> {
    use std::io::Write;
    validate(p, o)?;
    let (nf, v) = (p.x_train.ncols(), p.y_train.ncols());
    let default_block = (memory_budget(o) / 4) / (4 * nf.max(1) as u64);
    let block = block
        .map_or(default_block, |b| b as u64)
        .clamp(1, v.max(1) as u64) as usize;
    let opts = RidgeOptions {
        keep_weights: true,
        ..o.clone()
    };
    let mut parts: Vec<RidgeFit> = Vec::new();
    crate::core::io::write_atomic(path, |tmp| {
        let header = serde_json::json!({
            "weights": {"dtype": "F32", "shape": [v, nf], "data_offsets": [0, v * nf * 4]},
            "__metadata__": {"layout": "voxels x features"},
        });
        let mut h = serde_json::to_vec(&header)?;
        h.resize(h.len().div_ceil(8) * 8, b' ');
        let mut w = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for j0 in (0..v).step_by(block) {
            let cols = ndarray::s![.., j0..(j0 + block).min(v)];
            let sub = RidgeProblem {
                y_train: p.y_train.slice_move(cols),
                y_test: p.y_test.slice_move(cols),
                ..*p
            };
            let mut fit = fit_cv(&sub, &opts)?;
            let wb = fit.weights.take().expect("weights were asked for");
            for row in wb.t().rows() {
                for x in row {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
            parts.push(fit);
        }
        w.flush()?;
        Ok(())
    })?;
    let cat1 = |f: fn(&RidgeFit) -> &Array1<f64>| {
        ndarray::concatenate(
            ndarray::Axis(0),
            &parts.iter().map(|x| f(x).view()).collect::<Vec<_>>(),
        )
    };
    let mut offset = 0;
    let mut constant_voxels = Vec::new();
    for part in &parts {
        constant_voxels.extend(part.constant_voxels.iter().map(|j| j + offset));
        offset += part.test_r.len();
    }
    let cv_scores = match o.keep_cv_scores {
        true => Some(ndarray::concatenate(
            ndarray::Axis(1),
            &parts
                .iter()
                .map(|x| x.cv_scores.as_ref().unwrap().view())
                .collect::<Vec<_>>(),
        )?),
        false => None,
    };
    Ok(RidgeFit {
        alphas: parts[0].alphas.clone(),
        best_alpha: cat1(|x| &x.best_alpha)?,
        test_r: cat1(|x| &x.test_r)?,
        test_r2: cat1(|x| &x.test_r2)?,
        cv_scores,
        weights: None,
        constant_voxels,
        test_pred: ndarray::concatenate(
            ndarray::Axis(1),
            &parts.iter().map(|x| x.test_pred.view()).collect::<Vec<_>>(),
        )?,
        flops: parts.iter().map(|x| x.flops).sum(),
        n_folds: parts[0].n_folds,
    })
}

/// Bytes of memory the voxel chunks may use.
pub(crate) fn memory_budget(o: &RidgeOptions) -> u64 {
    if let Some(m) = o.max_memory {
        return m;
    }
    match o.device {
        RidgeDevice::Cuda(_) => 16 << 30,
        RidgeDevice::Cpu => available_ram().map(|a| a / 2).unwrap_or(4 << 30),
    }
}

fn available_ram() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Shapes that decide the voxel chunk size; shared by both backends so they chunk alike.
pub(crate) struct ChunkShape {
    pub n: usize,
    pub p: usize,
    /// Largest basis size over folds and the refit.
    pub k: usize,
    /// Largest validation-factor row count over folds.
    pub r: usize,
    pub n_test: usize,
    pub n_folds: usize,
    pub n_alphas: usize,
    pub elem: usize,
}

/// Voxels per chunk such that the chunk's buffers fit `budget` after `fixed` bytes.
pub(crate) fn chunk_voxels(s: &ChunkShape, fixed: u64, budget: u64, v: usize) -> Result<usize> {
    let e = s.elem as u64;
    // Y rows and their per-fold copies (2n), per-fold X'Y (folds·p), their sum and two centred copies (3p), B, C, C∘B
    // (3k), the per-alpha validation product (r), weights (p), test predictions (n_test),
    // plus f64 score accumulators.
    let per_voxel = e * (2 * s.n + (s.n_folds + 4) * s.p + 3 * s.k + s.r + s.n_test) as u64
        + 8 * (3 * s.n_alphas + 4 * s.n_folds) as u64;
    let min_chunk = v.min(64) as u64;
    if budget < fixed + min_chunk * per_voxel {
        bail!(
            "memory budget {} is too small: this problem needs at least {} (raise --max-memory)",
            human_bytes(budget),
            human_bytes(fixed + min_chunk * per_voxel)
        );
    }
    Ok((((budget - fixed) / per_voxel) as usize).clamp(1, v))
}

/// 1.50 GiB, 12.0 MiB, 800 KiB, 12 B.
pub fn human_bytes(b: u64) -> String {
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in units {
        if b >= size {
            return format!("{:.2} {name}", b as f64 / size as f64);
        }
    }
    format!("{b} B")
}

/// Eigendecomposition FLOP estimate (tridiagonal reduction 4/3·p³ plus eigenvector
/// back-transformation ~2·p³, rounded up), used for reporting only.
pub(crate) fn eigh_flops(p: usize) -> f64 {
    4.0 * (p as f64).powi(3)
}

pub(crate) fn gemm_flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

/// Score of a voxel from the sufficient statistics of its validation prediction.
/// `lin` = <P_c, Y> (P centred on the validation mean), `q` = ||P_c||², `yy` = ||Y_c||²,
/// `m` = mean offset of P from the training target mean ν, `dy` = ȳ_val - ν, `n` rows.
#[inline]
#[cfg_attr(not(feature = "cpu-linalg"), allow(dead_code))]
pub(crate) fn fold_score(kind: CvScore, lin: f64, q: f64, yy: f64, m: f64, dy: f64, n: f64) -> f64 {
    match kind {
        CvScore::R => {
            // A constant prediction or a constant voxel scores 0 (as in stats::pearson_columns).
            if q <= 0.0 || yy <= f64::EPSILON * n {
                0.0
            } else {
                lin / (q * yy).sqrt()
            }
        }
        CvScore::R2 => {
            if yy <= f64::EPSILON {
                return 0.0;
            }
            // SSE = ||Y - ν - P||² with P = P_c + m: expands into the statistics above.
            let ee = yy + n * dy * dy;
            let sse = ee - 2.0 * (lin + n * m * dy) + q + n * m * m;
            1.0 - sse / yy
        }
    }
}

/// A progress bar over fold steps (hidden when not asked for or not on a terminal).
pub(crate) fn progress(show: bool, len: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "ridge {bar:30} {pos}/{len} fold steps, {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
