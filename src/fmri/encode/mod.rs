//! Encode stage over a dataset: per subject, the align stage's design matrices (WORK/design/)
//! and the BOLD runs, z-scored per run, leave-run-out ridge with one alpha per voxel, and
//! held-out test r (written under WORK/encode/).

pub mod banded;
pub mod stream;
use crate::core::io::{self, Tensor, TensorFile};
use crate::core::stats;
use crate::fmri::align::design_path;
pub use crate::fmri::dataset::splits::{Role, SplitPlan};
use crate::fmri::dataset::{self, synth, Dataset, Subject};
use crate::ridge::{self, RidgeOptions, RidgeProblem};
use anyhow::{bail, Context, Result};
use ndarray::{concatenate, Array1, Array2, Axis};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn encode_path(work: &Path, feat: &str, subject: &str) -> PathBuf {
    work.join("encode")
        .join(feat)
        .join(format!("sub-{subject}"))
        .join("ridge.safetensors")
}

/// Which runs are held out for testing (the simple form; [`SplitPlan`] has seasons, explicit
/// lists, GroupKFold and trimming). Converts into a `SplitPlan`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Split {
    /// Run ids (e.g. "06") used only for the final test; the rest are cross-validated.
    pub test_runs: Vec<String>,
}

impl From<&Split> for SplitPlan {
    fn from(s: &Split) -> Self {
        SplitPlan {
            test_runs: s.test_runs.clone(),
            ..Default::default()
        }
    }
}

impl From<&SplitPlan> for SplitPlan {
    fn from(s: &SplitPlan) -> Self {
        s.clone()
    }
}

impl Split {
    /// Test-run flags per run (see [`SplitPlan::resolve`]).
    pub fn resolve(&self, s: &Subject) -> Result<Vec<bool>> {
        Ok(SplitPlan::from(self)
            .resolve(s)?
            .roles
            .iter()
            .map(|r| *r == Role::Test)
            .collect())
    }
}

/// Rows `trim_start .. n - trim_end` of a run, or an error naming the run.
pub(crate) fn trim_rows(a: &Array2<f32>, plan: &SplitPlan, what: &str) -> Result<Array2<f32>> {
    let n = a.nrows();
    if plan.trim_start + plan.trim_end + 2 > n {
        bail!(
            "{what}: {n} TRs cannot lose {} at the start and {} at the end",
            plan.trim_start,
            plan.trim_end
        );
    }
    Ok(a.slice(ndarray::s![plan.trim_start..n - plan.trim_end, ..])
        .to_owned())
}

/// A run's design matrix (WORK/design/...), checked against the run's `n_volumes`, trimmed
/// as the plan says and z-scored per column: [kept TRs, features]. Errors name the file.
pub(crate) fn load_design(
    work: &Path,
    feat: &str,
    s: &Subject,
    r: &dataset::Run,
    n_volumes: usize,
    plan: &SplitPlan,
) -> Result<Array2<f32>> {
    let dp = design_path(work, feat, &s.id, &r.label());
    let x = io::into_2d(
        TensorFile::open(&dp)
            .with_context(|| {
                format!(
                    "no design for sub-{} {} (run the align stage first)",
                    s.id,
                    r.label()
                )
            })?
            .f32("design")?,
        &dp.display().to_string(),
    )?;
    if x.nrows() != n_volumes {
        bail!(
            "{}: design has {} rows but the BOLD run has {} volumes (re-run align)",
            dp.display(),
            x.nrows(),
            n_volumes
        );
    }
    let mut x = trim_rows(&x, plan, &format!("sub-{} {}", s.id, r.label()))?;
    stats::zscore_columns(&mut x);
    Ok(x)
}

/// What an encode result depends on: the split, the ridge options, the subject as opened
/// (runs, mask, atlas, confound columns, TRs), and the design and BOLD files (by modification
/// time). A saved result with the same key is reused.
pub fn inputs_key(
    s: &Subject,
    work: &Path,
    feat: &str,
    plan: &SplitPlan,
    ropts: &RidgeOptions,
) -> Result<String> {
    let mtime = io::mtime_ns;
    // The voxel order is part of the key: results saved in another order are refitted.
    let mut key = format!(
        "{}|{ropts:?}|{s:?}|voxel order {VOXEL_ORDER}",
        serde_json::to_string(plan)?
    );
    for r in &s.runs {
        key += &format!(
            "|{}:{}:{}",
            r.label(),
            mtime(&design_path(work, feat, &s.id, &r.label())),
            mtime(&r.bold)
        );
    }
    Ok(key)
}

pub use crate::fmri::dataset::nifti_io::VOXEL_ORDER;

/// What every per-voxel output file carries beside its per-voxel vectors (the ridge fit here,
/// the banded ridge's too): `voxel_ijk`, int32 [voxels, 3], the (i, j, k) voxel indices of
/// each row, for voxel data (nothing for parcels), and the metadata entry `voxel_order`.
/// Per-voxel vectors are already in that order: it is the mask's ([`dataset::nifti_io::Mask`]).
pub fn voxel_index_outputs(
    space: &dataset::Space,
) -> (Vec<(&'static str, Tensor)>, (String, String)) {
    let tensors = match space {
        dataset::Space::Voxels { mask, .. } => {
            vec![("voxel_ijk", Tensor::I32(mask.voxel_ijk().into_dyn()))]
        }
        dataset::Space::Parcels { .. } => vec![],
    };
    (
        tensors,
        ("voxel_order".to_string(), VOXEL_ORDER.to_string()),
    )
}

/// Voxels whose data are constant over every test run (all zero after z-scoring per run) but
/// not over the training runs: their test r is 0, and they count in the mean r.
pub(crate) fn constant_in_test(y_test: &Array2<f32>, constant_train: &[usize]) -> Array1<u8> {
    let mut flag = Array1::<u8>::zeros(y_test.ncols());
    if y_test.nrows() == 0 {
        return flag;
    }
    for (j, col) in y_test.axis_iter(Axis(1)).enumerate() {
        if col.iter().all(|&v| v == 0.0) {
            flag[j] = 1;
        }
    }
    for &j in constant_train {
        flag[j] = 0;
    }
    flag
}

/// Ground truth of a synthetic subject, when there is one: the noise-free signal of the test
/// runs (trimmed and z-scored per run as the data, [test TRs, voxels]), which voxels have
/// signal, and the true weights [voxels, features].
pub(crate) fn test_truth(
    ds: &Dataset,
    s: &Subject,
    plan: &SplitPlan,
    is_test: &[bool],
    space: &dataset::Space,
) -> Result<Option<(Array2<f32>, Array1<u8>, Array2<f32>)>> {
    let labels: Vec<String> = s.runs.iter().map(|r| r.label()).collect();
    let truth = match (synth::load_truth(&ds.root, &s.id, &labels)?, space) {
        (Some(t), dataset::Space::Voxels { mask, .. }) => Some(t.in_mask_order(&mask.linear)?),
        (t, _) => t,
    };
    let Some(t) = truth else { return Ok(None) };
    let mut sig = vec![];
    for (i, r) in s.runs.iter().enumerate() {
        if is_test[i] {
            let mut a = trim_rows(&t.signal[&r.label()], plan, &r.label())?;
            stats::zscore_columns(&mut a);
            sig.push(a);
        }
    }
    let sig = concatenate(Axis(0), &sig.iter().map(|a| a.view()).collect::<Vec<_>>())?;
    Ok(Some((sig, t.has_signal, t.weights)))
}

/// Per-voxel results of one subject.
pub struct SubjectFit {
    pub fit: ridge::RidgeFit,
    pub data: dataset::SubjectData,
    /// Ceiling r per voxel (noise-free signal vs data on the test runs), when ground truth exists.
    pub ceiling: Option<Array1<f64>>,
    pub has_signal: Option<Array1<u8>>,
    pub true_weights: Option<Array2<f32>>,
}

/// Encode stage for one subject: reads designs and BOLD, fits, writes WORK/encode/...
/// `split` is a [`Split`] or a [`SplitPlan`].
pub fn encode_subject(
    ds: &Dataset,
    s: &Subject,
    work: &Path,
    feat: &str,
    split: impl Into<SplitPlan>,
    ropts: &RidgeOptions,
) -> Result<SubjectFit> {
    let plan: SplitPlan = split.into();
    let resolved = plan.resolve(s)?;
    let is_test: Vec<bool> = resolved.roles.iter().map(|r| *r == Role::Test).collect();
    let data = dataset::load_subject(s)?;
    let (mut xs_tr, mut ys_tr, mut groups, mut xs_te, mut ys_te) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (i, (r, y)) in s.runs.iter().zip(&data.runs).enumerate() {
        if resolved.roles[i] == Role::Unused {
            continue;
        }
        let x = load_design(work, feat, s, r, y.nrows(), &plan)?;
        let what = format!("sub-{} {}", s.id, r.label());
        let mut y = trim_rows(y, &plan, &what)?;
        stats::zscore_columns(&mut y);
        if is_test[i] {
            xs_te.push(x);
            ys_te.push(y);
        } else {
            groups.extend(std::iter::repeat(resolved.cv_group[i]).take(x.nrows()));
            xs_tr.push(x);
            ys_tr.push(y);
        }
    }
    let cat = |v: &[Array2<f32>]| {
        concatenate(Axis(0), &v.iter().map(|a| a.view()).collect::<Vec<_>>())
            .map_err(anyhow::Error::from)
    };
    let (x_train, y_train, x_test, y_test) =
        (cat(&xs_tr)?, cat(&ys_tr)?, cat(&xs_te)?, cat(&ys_te)?);
    let problem = RidgeProblem {
        x_train: x_train.view(),
        y_train: y_train.view(),
        groups: &groups,
        x_test: x_test.view(),
        y_test: y_test.view(),
    };
    let fit = if ropts.keep_weights && ropts.stream_weights {
        let wpath = encode_path(work, feat, &s.id).with_file_name("weights.safetensors");
        ridge::fit_cv_streaming(&problem, ropts, &wpath, None)
    } else {
        ridge::fit_cv(&problem, ropts)
    }
    .with_context(|| format!("ridge for sub-{}", s.id))?;
    if !fit.constant_voxels.is_empty() {
        eprintln!(
            "warning: sub-{}: {} voxel(s) are constant over the training runs; their r is 0",
            s.id,
            fit.constant_voxels.len()
        );
    }
    let test_constant = constant_in_test(&y_test, &fit.constant_voxels);
    let n_tc = test_constant.iter().filter(|&&f| f == 1).count();
    if n_tc > 0 {
        eprintln!(
            "warning: sub-{}: {n_tc} voxel(s) are constant over the test run(s) (but not over \
             the training runs); their test r is 0 and they are counted in the mean r over all \
             {} voxels (`test_constant` in ridge.safetensors lists them)",
            s.id,
            y_test.ncols()
        );
    }

    // Ground truth (synthetic data): ceiling r on the same test runs, same preprocessing.
    let (ceiling, has_signal, true_weights) = match test_truth(ds, s, &plan, &is_test, &data.space)?
    {
        Some((sig, hs, w)) => {
            if sig.ncols() != y_test.ncols() {
                bail!(
                    "ground truth of sub-{} has {} voxels, the mask {}",
                    s.id,
                    sig.ncols(),
                    y_test.ncols()
                );
            }
            (
                Some(stats::pearson_columns(sig.view(), y_test.view())),
                Some(hs),
                Some(w),
            )
        }
        None => (None, None, None),
    };

    let mut tensors = vec![
        ("best_alpha", Tensor::F64(fit.best_alpha.clone().into_dyn())),
        ("test_r", Tensor::F64(fit.test_r.clone().into_dyn())),
        ("test_r2", Tensor::F64(fit.test_r2.clone().into_dyn())),
        ("test_constant", Tensor::U8(test_constant.into_dyn())),
        (
            "alphas",
            Tensor::F64(Array1::from_vec(fit.alphas.clone()).into_dyn()),
        ),
    ];
    if let Some(c) = &ceiling {
        tensors.push(("ceiling_r", Tensor::F64(c.clone().into_dyn())));
    }
    if let Some(h) = &has_signal {
        tensors.push(("has_signal", Tensor::U8(h.clone().into_dyn())));
    }
    if let Some(cv) = &fit.cv_scores {
        tensors.push(("cv_scores", Tensor::F64(cv.clone().into_dyn())));
    }
    if let Some(w) = &fit.weights {
        tensors.push(("weights", Tensor::F32(w.clone().into_dyn())));
    }
    let test_ids: Vec<&str> = s
        .runs
        .iter()
        .zip(&is_test)
        .filter(|(_, &t)| t)
        .map(|(r, _)| r.id.as_str())
        .collect();
    let (index_tensors, order) = voxel_index_outputs(&data.space);
    tensors.extend(index_tensors);
    let meta = HashMap::from([
        order,
        ("test_runs".to_string(), test_ids.join(",")),
        ("features".to_string(), feat.to_string()),
        ("split".to_string(), serde_json::to_string(&plan)?),
        (
            "inputs".to_string(),
            inputs_key(s, work, feat, &plan, ropts)?,
        ),
    ]);
    io::write_tensors(&encode_path(work, feat, &s.id), tensors, meta)?;
    Ok(SubjectFit {
        fit,
        data,
        ceiling,
        has_signal,
        true_weights,
    })
}
