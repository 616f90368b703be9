//! The shared ridge solver: cross-validated ridge regression with one alpha per voxel, its
//! options (`options.rs`), its plan (`plan.rs`) and two mirror backends (`cpu.rs`, `torch.rs`).
//!
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
use anyhow::{bail, Result};
use ndarray::{Array1, Array2, ArrayView2};

pub mod banded;
#[cfg(feature = "cpu-linalg")]
pub(crate) mod blas;
pub mod blocks;
#[cfg(feature = "cpu-linalg")]
mod cpu;
pub mod options;
pub(crate) mod plan;
pub(crate) mod torch;

pub use options::{
    bench_alphas, check_options, default_alphas, Backend, CvScore, Dtype, Folds, RidgeDevice,
    RidgeOptions,
};
pub use plan::{best_alpha_index, fold_rows};
pub(crate) use plan::{memory_budget, Plan};

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
    let runs = plan::sorted_runs(p.groups);
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

/// What a backend computes; the rest (scores on the test rows, constant voxels) is shared.
pub(crate) struct RawFit {
    pub cv_scores: Array2<f64>,
    pub best: Vec<usize>,
    pub test_pred: Array2<f32>,
    pub weights: Option<Array2<f32>>,
    pub flops: f64,
}

/// Cross-validated ridge with one alpha per voxel, then refit on all training rows.
pub fn fit_cv(p: &RidgeProblem, o: &RidgeOptions) -> Result<RidgeFit> {
    validate(p, o)?;
    let plan = Plan::new(p.groups, o);
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
    let mut w = crate::core::io::RowWriter::create(
        path,
        "weights",
        v,
        nf,
        &[("layout", "voxels x features")],
    )?;
    for j0 in (0..v).step_by(block) {
        let cols = ndarray::s![.., j0..(j0 + block).min(v)];
        let sub = RidgeProblem {
            y_train: p.y_train.slice_move(cols),
            y_test: p.y_test.slice_move(cols),
            ..*p
        };
        let mut fit = fit_cv(&sub, &opts)?;
        let wb = fit.weights.take().expect("weights were asked for");
        w.rows(wb.t())?;
        parts.push(fit);
    }
    w.finish()?;
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

/// A progress bar over fold steps in the program's one style (hidden when not asked for).
pub(crate) fn progress(show: bool, len: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    crate::core::progress::progress(len, "ridge fold steps")
}
