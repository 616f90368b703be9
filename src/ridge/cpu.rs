//! CPU backend (ndarray + LAPACK through ndarray-linalg), f64.
//!
//! For each fold, one eigendecomposition gives the validation predictions of every alpha:
//! pred(alpha) = A · diag(1 / (s + alpha)) · B, with A = X_val U, B = U' X_tr' Y_tr (primal, when
//! n ≥ p), or A = X_val X_tr' V, B = V' Y_tr (kernel form, when p > n).
use super::{validate, CvScore, RidgeFit, RidgeOptions, RidgeProblem};
use crate::stats::{pearson_columns, r2_columns};
use anyhow::{Context, Result};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use ndarray_linalg::{Eigh, UPLO};

struct Decomp {
    /// Maps rows of some X to the eigenbasis (X · proj gives A).
    proj: Array2<f64>,
    s: Array1<f64>,
    /// Training targets in the eigenbasis.
    b: Array2<f64>,
    x_mean: Array1<f64>,
    y_mean: Array1<f64>,
}

fn decompose(x: ArrayView2<f64>, y: ArrayView2<f64>, intercept: bool) -> Result<Decomp> {
    let (n, p) = x.dim();
    let (x_mean, y_mean) = if intercept {
        (x.mean_axis(Axis(0)).unwrap(), y.mean_axis(Axis(0)).unwrap())
    } else {
        (Array1::zeros(p), Array1::zeros(y.ncols()))
    };
    let xc = &x - &x_mean;
    let yc = &y - &y_mean;
    if n >= p {
        let (s, u) = xc
            .t()
            .dot(&xc)
            .eigh(UPLO::Lower)
            .context("eigendecomposition of X'X")?;
        let b = u.t().dot(&xc.t().dot(&yc));
        Ok(Decomp {
            proj: u,
            s: s.mapv(|v| v.max(0.0)),
            b,
            x_mean,
            y_mean,
        })
    } else {
        let (s, v) = xc
            .dot(&xc.t())
            .eigh(UPLO::Lower)
            .context("eigendecomposition of XX'")?;
        let b = v.t().dot(&yc);
        Ok(Decomp {
            proj: xc.t().dot(&v),
            s: s.mapv(|v| v.max(0.0)),
            b,
            x_mean,
            y_mean,
        })
    }
}

impl Decomp {
    /// Predictions for rows `x` with one alpha for every voxel in `cols`.
    fn predict(&self, x: ArrayView2<f64>, alpha: f64, cols: &[usize]) -> Array2<f64> {
        let a = (&x - &self.x_mean).dot(&self.proj);
        let scale = self.s.mapv(|s| 1.0 / (s + alpha));
        let b = self.b.select(Axis(1), cols);
        let mut pred = (a * &scale).dot(&b);
        let ym = self.y_mean.select(Axis(0), cols);
        pred += &ym;
        pred
    }
}

fn score(kind: CvScore, truth: ArrayView2<f64>, pred: ArrayView2<f64>) -> Array1<f64> {
    let (t, p) = (truth.mapv(|v| v as f32), pred.mapv(|v| v as f32));
    match kind {
        CvScore::R => pearson_columns(t.view(), p.view()),
        CvScore::R2 => r2_columns(t.view(), p.view()),
    }
}

/// Cross-validated ridge with one alpha per voxel, then refit on all training rows.
pub fn fit_cv(p: &RidgeProblem, o: &RidgeOptions) -> Result<RidgeFit> {
    validate(p, o)?;
    let mut alphas = o.alphas.clone();
    alphas.sort_by(f64::total_cmp);
    alphas.dedup();
    let x = p.x_train.mapv(|v| v as f64);
    let y = p.y_train.mapv(|v| v as f64);
    let v = y.ncols();
    let all: Vec<usize> = (0..v).collect();
    let mut runs: Vec<usize> = p.groups.to_vec();
    runs.sort_unstable();
    runs.dedup();

    let mut scores = Array2::<f64>::zeros((alphas.len(), v));
    for &run in &runs {
        let tr: Vec<usize> = (0..p.groups.len())
            .filter(|&i| p.groups[i] != run)
            .collect();
        let va: Vec<usize> = (0..p.groups.len())
            .filter(|&i| p.groups[i] == run)
            .collect();
        let d = decompose(
            x.select(Axis(0), &tr).view(),
            y.select(Axis(0), &tr).view(),
            o.intercept,
        )?;
        let (xv, yv) = (x.select(Axis(0), &va), y.select(Axis(0), &va));
        for (k, &alpha) in alphas.iter().enumerate() {
            let pred = d.predict(xv.view(), alpha, &all);
            scores.row_mut(k).scaled_add(
                1.0 / runs.len() as f64,
                &score(o.score, yv.view(), pred.view()),
            );
        }
    }

    // Best alpha per voxel; iterating from the largest alpha down with a strict comparison
    // sends ties to the larger alpha.
    let mut best = vec![alphas.len() - 1; v];
    for j in 0..v {
        for k in (0..alphas.len()).rev() {
            if scores[[k, j]] > scores[[best[j], j]] {
                best[j] = k;
            }
        }
    }

    let d = decompose(x.view(), y.view(), o.intercept)?;
    let xt = p.x_test.mapv(|v| v as f64);
    let mut pred = Array2::<f64>::zeros((xt.nrows(), v));
    let mut weights = o.keep_weights.then(|| Array2::<f32>::zeros((x.ncols(), v)));
    for (k, &alpha) in alphas.iter().enumerate() {
        let cols: Vec<usize> = (0..v).filter(|&j| best[j] == k).collect();
        if cols.is_empty() {
            continue;
        }
        let pk = d.predict(xt.view(), alpha, &cols);
        for (c, &j) in cols.iter().enumerate() {
            pred.column_mut(j).assign(&pk.column(c));
        }
        // W = proj · diag(1/(s+alpha)) · B in both forms (primal: proj = U; kernel: proj = X'V).
        if let Some(w) = weights.as_mut() {
            let wk = (&d.proj * &d.s.mapv(|s| 1.0 / (s + alpha))).dot(&d.b.select(Axis(1), &cols));
            for (c, &j) in cols.iter().enumerate() {
                w.column_mut(j).assign(&wk.column(c).mapv(|v| v as f32));
            }
        }
    }
    let constant_voxels: Vec<usize> = (0..v)
        .filter(|&j| {
            let c = y.column(j);
            let m = c.mean().unwrap_or(0.0);
            c.iter().all(|&t| (t - m).abs() <= 1e-12 * (1.0 + m.abs()))
        })
        .collect();
    let yt = p.y_test.mapv(|v| v as f64);
    let test_pred = pred.mapv(|v| v as f32);
    let mut test_r = pearson_columns(p.y_test, test_pred.view());
    let test_r2 = score(CvScore::R2, yt.view(), pred.view());
    for &j in &constant_voxels {
        test_r[j] = 0.0;
    }
    Ok(RidgeFit {
        best_alpha: best.iter().map(|&k| alphas[k]).collect(),
        alphas,
        test_r,
        test_r2,
        cv_scores: o.keep_cv_scores.then_some(scores),
        weights,
        constant_voxels,
        test_pred,
    })
}
