//! Encode stage: cross-validated ridge regression with one alpha per voxel.
//!
//! Convention (as scikit-learn and himalaya): minimise ||Y - XW||² + alpha ||W||², i.e. the
//! solution is (X'X + alpha I)⁻¹ X'Y. Folds are grouped by run (leave-one-run-out); each alpha is
//! scored per voxel by the mean over folds; ties go to the larger alpha.
use anyhow::{bail, Result};
use ndarray::{Array1, Array2, ArrayView2};

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
}

impl Default for RidgeOptions {
    fn default() -> Self {
        Self {
            alphas: default_alphas(),
            score: CvScore::R,
            intercept: true,
            keep_cv_scores: false,
            keep_weights: false,
        }
    }
}

/// 10 log-spaced alphas, 1e0 … 1e6 (features and voxels are z-scored, so this spans
/// from almost no shrinkage to almost full shrinkage for a few thousand TRs).
pub fn default_alphas() -> Vec<f64> {
    (0..10).map(|i| 10f64.powf(i as f64 * 6.0 / 9.0)).collect()
}

/// A ridge problem: training rows with their run (group) ids, and held-out test rows.
pub struct RidgeProblem<'a> {
    pub x_train: ArrayView2<'a, f32>,
    pub y_train: ArrayView2<'a, f32>,
    /// Run id of each training row; CV leaves one run out at a time.
    pub groups: &'a [usize],
    pub x_test: ArrayView2<'a, f32>,
    pub y_test: ArrayView2<'a, f32>,
}

/// What a fit returns, per voxel.
#[derive(Debug, Clone)]
pub struct RidgeFit {
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
}

/// Checks shapes, values and options; every problem is reported before any work starts.
pub fn validate(p: &RidgeProblem, o: &RidgeOptions) -> Result<()> {
    let (n, f) = p.x_train.dim();
    if p.y_train.nrows() != n {
        bail!("X has {n} training rows but Y has {}", p.y_train.nrows());
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
    if o.alphas.is_empty() {
        bail!("no alphas given");
    }
    if let Some(a) = o.alphas.iter().find(|a| !(**a > 0.0) || !a.is_finite()) {
        bail!("alpha must be a positive finite number, got {a}");
    }
    let mut runs: Vec<usize> = p.groups.to_vec();
    runs.sort_unstable();
    runs.dedup();
    if runs.len() < 2 {
        bail!(
            "cross-validation needs at least 2 training runs, got {}",
            runs.len()
        );
    }
    for (name, a) in [
        ("training X", &p.x_train),
        ("training Y", &p.y_train),
        ("test X", &p.x_test),
        ("test Y", &p.y_test),
    ] {
        if let Some(pos) = a.iter().position(|v| !v.is_finite()) {
            let (r, c) = (pos / a.ncols().max(1), pos % a.ncols().max(1));
            bail!("{name} has a non-finite value at row {r}, column {c}");
        }
    }
    Ok(())
}

#[cfg(feature = "cpu-linalg")]
mod cpu;
#[cfg(feature = "cpu-linalg")]
pub use cpu::fit_cv;

#[cfg(not(feature = "cpu-linalg"))]
pub fn fit_cv(_p: &RidgeProblem, _o: &RidgeOptions) -> Result<RidgeFit> {
    bail!("this build has no CPU ridge backend (built without the `cpu-linalg` feature)")
}
