//! Banded ridge: several feature spaces ("bands"), one regularisation per band per voxel, and
//! the split of each voxel's explained variance among the bands.
//!
//! Model (Nunez-Elizalde et al. 2019; Dupré la Tour et al. 2022, NeuroImage 264, himalaya's
//! `BandedRidgeCV`): minimise ||Y - Σ_b X_b W_b||² + Σ_b (alpha/γ_b) ||W_b||² per voxel, with
//! band weights γ on the simplex. With Z_b = sqrt(γ_b) X_b this is ordinary ridge on the
//! band-scaled design Z with penalty alpha, so each candidate γ is one single-band problem:
//! per fold one decomposition of Z (primal or kernel form, whichever is smaller) and every
//! alpha a diagonal scaling, exactly as [`crate::ridge::fit_cv`] does — which is what runs here, on
//! either backend, in the same memory-bounded voxel chunks. Candidates are a seeded Dirichlet
//! random search over the simplex (the first one uniform, concentrations cycled, as himalaya's
//! `generate_dirichlet_samples`) or an explicit list. Each voxel keeps the (γ, alpha) with the
//! best mean CV score (the first candidate on exact ties, as himalaya; within a candidate the
//! larger alpha, as the single-band engine), and that candidate's refit on all training runs.
//!
//! Per voxel, the refit weights on the unscaled features are W_b = sqrt(γ_b)·W_Z,b, and the
//! test prediction splits into band predictions P_b = (X_b,test - x̄_b,train) W_b (plus the
//! intercept). The R² split is the product measure of himalaya's `r2_score_split`:
//! R²_b = Σ_t (2 y_t P_b,t - P_b,t Σ_c P_c,t) / Σ_t y_t², which sums over bands to the R² of
//! Σ_b P_b when y is zero-mean over the test rows (encode z-scores every run). With
//! partitioning, each band is also left out in turn (the other bands refit with the same
//! candidates, projected onto their simplex): unique_b = R²_joint - R²_without b and
//! shared = R²_joint - Σ_b unique_b (for two bands, R²_A + R²_B - R²_AB).
use crate::ridge::{fit_cv, memory_budget, validate, RidgeOptions, RidgeProblem};
use anyhow::{bail, Context, Result};
use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

/// One feature space: its name and how many consecutive columns of X it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub name: String,
    pub features: usize,
}

/// Where the band-weight candidates come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidates {
    /// `n` Dirichlet samples on the simplex from a seeded stream, concentration
    /// `concentrations[i % len]` for candidate i; candidate 0 is the uniform weighting.
    Random {
        n: usize,
        concentrations: Vec<f64>,
        seed: u64,
    },
    /// Given weights, one row per candidate, used as they are (non-negative, not all zero;
    /// weights not summing to one rescale the alpha grid, as in himalaya).
    Explicit(Vec<Vec<f64>>),
}

impl Default for Candidates {
    /// himalaya's defaults, with 20 candidates.
    fn default() -> Self {
        Candidates::Random {
            n: 20,
            concentrations: vec![0.1, 1.0],
            seed: 0,
        }
    }
}

impl Candidates {
    /// The candidate matrix (candidates × bands); exact duplicate rows are dropped (first kept).
    pub fn resolve(&self, n_bands: usize) -> Result<Array2<f64>> {
        if n_bands == 0 {
            bail!("banded ridge needs at least one band");
        }
        let rows: Vec<Vec<f64>> = match self {
            Candidates::Random {
                n,
                concentrations,
                seed,
            } => {
                if *n == 0 {
                    bail!("the number of band-weight candidates must be at least 1");
                }
                if concentrations.is_empty()
                    || concentrations.iter().any(|c| !(*c > 0.0 && c.is_finite()))
                {
                    bail!("Dirichlet concentrations must be positive finite numbers, got {concentrations:?}");
                }
                let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                (0..*n)
                    .map(|i| {
                        if i == 0 || n_bands == 1 {
                            return vec![1.0 / n_bands as f64; n_bands];
                        }
                        dirichlet(&mut rng, concentrations[i % concentrations.len()], n_bands)
                    })
                    .collect()
            }
            Candidates::Explicit(rows) => {
                if rows.is_empty() {
                    bail!("no band-weight candidates given");
                }
                for (i, r) in rows.iter().enumerate() {
                    if r.len() != n_bands {
                        bail!(
                            "band-weight candidate {} has {} weights for {n_bands} bands",
                            i + 1,
                            r.len()
                        );
                    }
                    if r.iter().any(|w| !(*w >= 0.0 && w.is_finite()))
                        || r.iter().sum::<f64>() <= 0.0
                    {
                        bail!(
                            "band-weight candidate {} ({r:?}): weights must be finite, non-negative and not all zero",
                            i + 1
                        );
                    }
                }
                rows.clone()
            }
        };
        let mut kept: Vec<Vec<f64>> = Vec::new();
        for r in rows {
            if !kept.contains(&r) {
                kept.push(r);
            }
        }
        let c = kept.len();
        Ok(Array2::from_shape_vec((c, n_bands), kept.concat())?)
    }
}

/// One Dirichlet(conc, ..., conc) sample from normalised Gamma(conc, 1) draws; redrawn in the
/// (astronomically rare) case that every draw underflows to zero.
fn dirichlet(rng: &mut ChaCha8Rng, conc: f64, k: usize) -> Vec<f64> {
    let g = Gamma::new(conc, 1.0).expect("positive concentration");
    loop {
        let x: Vec<f64> = (0..k).map(|_| g.sample(rng)).collect();
        let sum: f64 = x.iter().sum();
        if sum > 0.0 && sum.is_finite() {
            return x.iter().map(|v| v / sum).collect();
        }
    }
}

/// What to fit.
#[derive(Debug, Clone)]
pub struct BandedOptions {
    /// Alphas, score, intercept, folds, backend, device, precision, memory budget (as
    /// single-band ridge). `keep_weights` returns the unscaled refit weights;
    /// `keep_cv_scores` the best CV score of every candidate.
    pub ridge: RidgeOptions,
    pub candidates: Candidates,
    /// Also fit every leave-one-band-out model (unique and shared variance).
    pub partition: bool,
}

/// A banded problem: X holds the bands side by side, in the order of `bands`.
pub struct BandedProblem<'a> {
    pub ridge: RidgeProblem<'a>,
    pub bands: &'a [Band],
}

/// Unique and shared variance (test R²) from the joint and leave-one-band-out fits.
#[derive(Debug, Clone)]
pub struct Partition {
    /// Test R² of the model without band b (bands × voxels).
    pub loo_r2: Array2<f64>,
    /// R²_joint - R²_without b (bands × voxels).
    pub unique_r2: Array2<f64>,
    /// R²_joint - Σ_b unique_b (voxels).
    pub shared_r2: Array1<f64>,
}

/// What a banded fit returns, per voxel.
#[derive(Debug, Clone)]
pub struct BandedFit {
    pub band_names: Vec<String>,
    /// The candidate band weights (candidates × bands), duplicates removed.
    pub candidates: Array2<f64>,
    /// The alphas, sorted ascending and deduplicated.
    pub alphas: Vec<f64>,
    /// Index into `candidates` of each voxel's chosen band weights.
    pub best_candidate: Vec<usize>,
    /// Chosen band weights γ (bands × voxels).
    pub band_weights: Array2<f64>,
    pub best_alpha: Array1<f64>,
    /// Mean CV score of the chosen (γ, alpha).
    pub cv_score: Array1<f64>,
    /// Best mean CV score over alphas of every candidate (candidates × voxels), when asked.
    pub cv_scores: Option<Array2<f64>>,
    pub test_r: Array1<f64>,
    pub test_r2: Array1<f64>,
    /// Product-measure split of the test R² per band (bands × voxels).
    pub r2_split: Array2<f64>,
    /// Test predictions (test rows × voxels), intercept included.
    pub test_pred: Array2<f32>,
    /// Refit weights on the unscaled features (features × voxels), when asked.
    pub weights: Option<Array2<f32>>,
    pub constant_voxels: Vec<usize>,
    pub partition: Option<Partition>,
    /// Floating-point operations of all fits (as `RidgeFit::flops`).
    pub flops: f64,
    pub n_folds: usize,
}

impl BandedFit {
    /// Per-band regularisation alpha/γ_b of each voxel (bands × voxels; infinite where γ_b = 0).
    pub fn band_alphas(&self) -> Array2<f64> {
        let mut a = self.band_weights.mapv(|g| 1.0 / g);
        for mut row in a.rows_mut() {
            row.zip_mut_with(&self.best_alpha, |x, &al| *x *= al);
        }
        a
    }

    /// Index of the band with the largest R² split of each voxel.
    pub fn top_band(&self) -> Vec<usize> {
        top_rows(self.r2_split.view())
    }
}

/// Per column, the row with the largest value (the first on ties).
pub fn top_rows(a: ArrayView2<f64>) -> Vec<usize> {
    a.columns()
        .into_iter()
        .map(|c| {
            let mut best = 0;
            for (i, &x) in c.iter().enumerate() {
                if x > c[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// Checks the bands against the problem's columns.
fn check_bands(p: &BandedProblem) -> Result<()> {
    if p.bands.is_empty() {
        bail!("banded ridge needs at least one band");
    }
    for (i, b) in p.bands.iter().enumerate() {
        if b.name.trim().is_empty() {
            bail!("band {} has an empty name", i + 1);
        }
        if b.features == 0 {
            bail!("band `{}` has no features", b.name);
        }
        if p.bands[..i].iter().any(|o| o.name == b.name) {
            bail!("band name `{}` is given twice", b.name);
        }
    }
    let total: usize = p.bands.iter().map(|b| b.features).sum();
    if total != p.ridge.x_train.ncols() {
        bail!(
            "the bands have {total} features in all but X has {} columns",
            p.ridge.x_train.ncols()
        );
    }
    Ok(())
}

/// Cross-validated banded ridge: per voxel the best band weights and alpha, the refit, test
/// r and R², and the R² split per band (and unique/shared variance with `partition`).
pub fn fit_banded(p: &BandedProblem, o: &BandedOptions) -> Result<BandedFit> {
    validate(&p.ridge, &o.ridge)?;
    check_bands(p)?;
    let widths: Vec<usize> = p.bands.iter().map(|b| b.features).collect();
    let cands = o.candidates.resolve(widths.len())?;
    let joint = search(&p.ridge, &widths, &cands, &o.ridge)?;
    let mut flops = joint.flops;
    let v = p.ridge.y_train.ncols();
    let constant_voxels: Vec<usize> = (0..v)
        .filter(|&j| {
            let c = p.ridge.y_train.column(j);
            c.iter().all(|&t| t == c[0])
        })
        .collect();
    let (test_r, test_r2) = test_scores(&p.ridge, &joint.test_pred, &constant_voxels);

    let partition = if o.partition && widths.len() >= 2 {
        let nb = widths.len();
        let mut loo_r2 = Array2::<f64>::zeros((nb, v));
        for b in 0..nb {
            let keep: Vec<usize> = (0..nb).filter(|&c| c != b).collect();
            let cols: Vec<usize> = keep.iter().flat_map(|&c| band_cols(&widths, c)).collect();
            let (xtr, xte) = (
                p.ridge.x_train.select(Axis(1), &cols),
                p.ridge.x_test.select(Axis(1), &cols),
            );
            let sub = RidgeProblem {
                x_train: xtr.view(),
                x_test: xte.view(),
                y_train: p.ridge.y_train.view(),
                y_test: p.ridge.y_test.view(),
                groups: p.ridge.groups,
            };
            let sub_cands = project_candidates(&cands, &keep);
            let sub_widths: Vec<usize> = keep.iter().map(|&c| widths[c]).collect();
            let opts = RidgeOptions {
                keep_weights: false,
                keep_cv_scores: false,
                ..o.ridge.clone()
            };
            let fit = search(&sub, &sub_widths, &sub_cands, &opts)
                .with_context(|| format!("fit without band `{}`", p.bands[b].name))?;
            flops += fit.flops;
            loo_r2
                .row_mut(b)
                .assign(&test_scores(&sub, &fit.test_pred, &constant_voxels).1);
        }
        let unique_r2 = Array2::from_shape_fn((nb, v), |(b, j)| test_r2[j] - loo_r2[[b, j]]);
        let shared_r2 = Array1::from_shape_fn(v, |j| test_r2[j] - unique_r2.column(j).sum());
        Some(Partition {
            loo_r2,
            unique_r2,
            shared_r2,
        })
    } else {
        None
    };

    let band_weights = Array2::from_shape_fn((widths.len(), v), |(b, j)| {
        cands[[joint.best_candidate[j], b]]
    });
    Ok(BandedFit {
        band_names: p.bands.iter().map(|b| b.name.clone()).collect(),
        alphas: joint.alphas,
        best_candidate: joint.best_candidate,
        band_weights,
        best_alpha: joint.best_alpha,
        cv_score: joint.best_score,
        cv_scores: o.ridge.keep_cv_scores.then_some(joint.cand_scores),
        test_r,
        test_r2,
        r2_split: joint.r2_split,
        test_pred: joint.test_pred,
        weights: joint.weights,
        constant_voxels,
        partition,
        flops,
        n_folds: joint.n_folds,
        candidates: cands,
    })
}

/// Test r and R² of a prediction; constant training voxels get r = 0 (as `fit_cv`).
fn test_scores(
    p: &RidgeProblem,
    pred: &Array2<f32>,
    constant: &[usize],
) -> (Array1<f64>, Array1<f64>) {
    let mut r = crate::core::stats::pearson_columns(p.y_test, pred.view());
    let r2 = crate::core::stats::r2_columns(p.y_test, pred.view());
    for &j in constant {
        r[j] = 0.0;
    }
    (r, r2)
}

/// Column indices of band `b`.
fn band_cols(widths: &[usize], b: usize) -> std::ops::Range<usize> {
    let start: usize = widths[..b].iter().sum();
    start..start + widths[b]
}

/// Candidates restricted to the bands `keep`, renormalised to the simplex, duplicates and
/// all-zero rows dropped.
fn project_candidates(cands: &Array2<f64>, keep: &[usize]) -> Array2<f64> {
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for row in cands.rows() {
        let r: Vec<f64> = keep.iter().map(|&b| row[b]).collect();
        let sum: f64 = r.iter().sum();
        if sum <= 0.0 {
            continue;
        }
        let r: Vec<f64> = r.iter().map(|w| w / sum).collect();
        if !rows.contains(&r) {
            rows.push(r);
        }
    }
    if rows.is_empty() {
        rows.push(vec![1.0 / keep.len() as f64; keep.len()]);
    }
    let n = rows.len();
    Array2::from_shape_vec((n, keep.len()), rows.concat()).expect("candidate shape")
}

/// The random search over candidates for all voxels.
struct Search {
    alphas: Vec<f64>,
    best_candidate: Vec<usize>,
    best_alpha: Array1<f64>,
    best_score: Array1<f64>,
    cand_scores: Array2<f64>,
    test_pred: Array2<f32>,
    weights: Option<Array2<f32>>,
    r2_split: Array2<f64>,
    flops: f64,
    n_folds: usize,
}

/// Runs every candidate as a single-band ridge on the band-scaled design and keeps, per
/// voxel, the best. Voxels are processed in blocks whose refit weights (features × block,
/// f32, twice: the candidate's and the best so far) take at most a quarter of the memory
/// budget; the single-band fits get the rest. Voxels are independent, so blocks do not
/// change the results.
fn search(
    p: &RidgeProblem,
    widths: &[usize],
    cands: &Array2<f64>,
    o: &RidgeOptions,
) -> Result<Search> {
    let (n_test, nf) = (p.x_test.nrows(), p.x_train.ncols());
    let v = p.y_train.ncols();
    let nb = widths.len();
    let nc = cands.nrows();
    let budget = memory_budget(o);
    let per_voxel = (4 * (2 * nf + (nb + 2) * n_test) + 8 * (nc + nb + 4)) as u64;
    let block = ((budget / 4) / per_voxel).clamp(1, v.max(1) as u64) as usize;
    let fit_opts = RidgeOptions {
        keep_weights: true,
        keep_cv_scores: true,
        stream_weights: false,
        progress: false,
        max_memory: Some(budget - (budget / 4).min(block as u64 * per_voxel)),
        ..o.clone()
    };
    // Training column means: the refit centres the test rows on them (intercept only).
    let mean = if o.intercept {
        let m = p
            .x_train
            .mapv(|t| t as f64)
            .mean_axis(Axis(0))
            .expect("training rows");
        m
    } else {
        Array1::zeros(nf)
    };
    let xtc: Array2<f32> = Array2::from_shape_fn((n_test, nf), |(i, k)| {
        (p.x_test[[i, k]] as f64 - mean[k]) as f32
    });
    // sqrt(γ_b) per column, per candidate; the scaled designs are formed per block (cheap
    // next to the fits) rather than all held at once.
    let scales: Vec<Array1<f32>> = cands
        .rows()
        .into_iter()
        .map(|g| {
            Array1::from_iter(
                (0..nb).flat_map(|b| std::iter::repeat(g[b].sqrt() as f32).take(widths[b])),
            )
        })
        .collect();
    let mut out = Search {
        alphas: Vec::new(),
        best_candidate: vec![0; v],
        best_alpha: Array1::zeros(v),
        best_score: Array1::from_elem(v, f64::NEG_INFINITY),
        cand_scores: Array2::zeros((nc, v)),
        test_pred: Array2::zeros((n_test, v)),
        weights: o.keep_weights.then(|| Array2::zeros((nf, v))),
        r2_split: Array2::zeros((nb, v)),
        flops: 0.0,
        n_folds: 0,
    };
    let bar = crate::ridge::progress(o.progress, (v.div_ceil(block) * nc) as u64);
    for j0 in (0..v).step_by(block) {
        let j1 = (j0 + block).min(v);
        let c = j1 - j0;
        let mut w_best = Array2::<f32>::zeros((nf, c));
        let mut set = vec![false; c];
        for (ci, sq) in scales.iter().enumerate() {
            let (xtr, xte) = (&p.x_train * sq, &p.x_test * sq);
            let sub = RidgeProblem {
                x_train: xtr.view(),
                x_test: xte.view(),
                y_train: p.y_train.slice(s![.., j0..j1]),
                y_test: p.y_test.slice(s![.., j0..j1]),
                groups: p.groups,
            };
            let fit = fit_cv(&sub, &fit_opts).with_context(|| {
                format!(
                    "band-weight candidate {} of {nc} {:?}",
                    ci + 1,
                    cands.row(ci).to_vec()
                )
            })?;
            out.flops += fit.flops;
            out.n_folds = fit.n_folds;
            let cv = fit.cv_scores.as_ref().expect("cv scores were asked for");
            let w = fit.weights.as_ref().expect("weights were asked for");
            for jj in 0..c {
                let j = j0 + jj;
                let a = fit
                    .alphas
                    .iter()
                    .position(|&x| x == fit.best_alpha[jj])
                    .expect("best alpha is a candidate");
                let score = cv[[a, jj]];
                out.cand_scores[[ci, j]] = score;
                // Strictly better only: the first candidate keeps exact ties (as himalaya).
                if score > out.best_score[j] || !set[jj] {
                    set[jj] = true;
                    out.best_score[j] = score;
                    out.best_candidate[j] = ci;
                    out.best_alpha[j] = fit.best_alpha[jj];
                    out.test_pred
                        .column_mut(j)
                        .assign(&fit.test_pred.column(jj));
                    // Weights of the unscaled features: W_b = sqrt(γ_b) W_Z,b.
                    w_best.column_mut(jj).assign(&(&w.column(jj) * sq));
                }
            }
            if out.alphas.is_empty() {
                out.alphas = fit.alphas.clone();
            }
            bar.inc(1);
        }
        // Band predictions and the product-measure split of R².
        let yt = p.y_test.slice(s![.., j0..j1]);
        let preds: Vec<Array2<f32>> = (0..nb)
            .map(|b| {
                let cols = band_cols(widths, b);
                xtc.slice(s![.., cols.clone()])
                    .dot(&w_best.slice(s![cols, ..]))
            })
            .collect();
        let split = r2_split(yt, &preds);
        out.r2_split.slice_mut(s![.., j0..j1]).assign(&split);
        if let Some(w) = out.weights.as_mut() {
            w.slice_mut(s![.., j0..j1]).assign(&w_best);
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

/// himalaya's `r2_score_split` (product measure): R²_b = Σ_t (2 y P_b - P_b Σ_c P_c) / Σ y²
/// per column, for y (rows × voxels) and band predictions P_b (rows × voxels, intercept not
/// included). Columns with Σ y² = 0 get 0. Returns bands × voxels.
pub fn r2_split(y: ArrayView2<f32>, preds: &[Array2<f32>]) -> Array2<f64> {
    let (n, v) = y.dim();
    let nb = preds.len();
    let mut out = Array2::<f64>::zeros((nb, v));
    for j in 0..v {
        let sst: f64 = y.column(j).iter().map(|&t| (t as f64).powi(2)).sum();
        if sst <= 0.0 {
            continue;
        }
        for t in 0..n {
            let yt = y[[t, j]] as f64;
            let total: f64 = preds.iter().map(|p| p[[t, j]] as f64).sum();
            for b in 0..nb {
                let pb = preds[b][[t, j]] as f64;
                out[[b, j]] += 2.0 * yt * pb - pb * total;
            }
        }
        out.column_mut(j).mapv_inplace(|x| x / sst);
    }
    out
}
