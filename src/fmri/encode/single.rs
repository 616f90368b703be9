//! Encode with one feature set, in memory: the subject's designs and BOLD assembled
//! ([`super::assemble`]), one ridge fit (alpha per voxel by grouped CV), the per-voxel
//! outputs written to WORK/encode/FEAT/sub-XX/ridge.safetensors.
use super::{
    add_perm_metadata, assemble, constant_in_test, encode_path, inputs_key, output_metadata,
    over_subjects, perm_matches, saved_result, test_truth, voxel_ijk, warn_constant, FeatureSet,
    PerVoxel, PermOptions, SplitPlan,
};
use crate::core::io;
use crate::fmri::dataset::{self, Dataset, Subject};
use crate::fmri::maps::VoxelResults;
use crate::ridge::{self, RidgeOptions};
use anyhow::{Context, Result};
use ndarray::{Array1, Array2};
use std::path::Path;

/// Per-voxel results of one subject.
pub struct SubjectFit {
    pub fit: ridge::RidgeFit,
    pub data: dataset::SubjectData,
    /// Ceiling r per voxel (noise-free signal vs data on the test runs), when ground truth exists.
    pub ceiling: Option<Array1<f64>>,
    pub has_signal: Option<Array1<u8>>,
    pub true_weights: Option<Array2<f32>>,
}

/// Encode stage for one subject: reads designs (WORK/design/FEAT) and BOLD, fits, writes
/// WORK/encode/FEAT/sub-XX/ridge.safetensors (and weights.safetensors with
/// `--stream-weights`), with the default permutation null ([`PermOptions::default`]).
/// Errors name the subject, the run and the file at fault.
pub fn encode_subject(
    ds: &Dataset,
    s: &Subject,
    work: &Path,
    feat: &str,
    plan: &SplitPlan,
    ropts: &RidgeOptions,
) -> Result<SubjectFit> {
    encode_subject_with(ds, s, work, feat, plan, ropts, &PermOptions::default())
}

/// [`encode_subject`] with the permutation null's settings (`--permutations`,
/// `--perm-block`, `--perm-seed`): `test_p`, `test_q`, `test_fwe_p` and `null_max_r` are
/// written beside `test_r` (see `fmri::significance`).
pub fn encode_subject_with(
    ds: &Dataset,
    s: &Subject,
    work: &Path,
    feat: &str,
    plan: &SplitPlan,
    ropts: &RidgeOptions,
    perm: &PermOptions,
) -> Result<SubjectFit> {
    let a = assemble(work, s, &[FeatureSet::single(feat)], plan)?;
    let problem = a.problem();
    let fit = if ropts.keep_weights && ropts.stream_weights {
        let wpath = encode_path(work, feat, &s.id).with_file_name("weights.safetensors");
        ridge::fit_cv_streaming(&problem, ropts, &wpath, None)
    } else {
        ridge::fit_cv(&problem, ropts)
    }
    .with_context(|| format!("ridge for sub-{}", s.id))?;
    let test_constant = constant_in_test(&a.y_test, &fit.constant_voxels);
    let n_tc = test_constant.iter().filter(|&&f| f == 1).count();
    warn_constant(
        &s.id,
        fit.constant_voxels.len(),
        n_tc,
        a.y_test.ncols(),
        "ridge.safetensors",
    );

    // Ground truth (synthetic data): ceiling r on the same test runs, same preprocessing.
    let truth = test_truth(ds, s, plan, &a.designs.is_test, &a.data.space)?;
    let ceiling = match &truth {
        Some(t) => Some(t.ceiling(&s.id, a.y_test.view())?),
        None => None,
    };
    let held = super::held_out_stats(s, &a, fit.test_pred.view(), &fit.test_r, plan, perm)?;
    let (has_signal, true_weights) = match truth {
        Some(t) => (Some(t.has_signal), Some(t.weights)),
        None => (None, None),
    };
    let tensors = PerVoxel {
        best_alpha: fit.best_alpha.clone(),
        test_r: fit.test_r.clone(),
        test_r2: fit.test_r2.clone(),
        test_constant: Some(test_constant),
        alphas: fit.alphas.clone(),
        ceiling_r: ceiling.clone(),
        has_signal: has_signal.clone(),
        cv_scores: fit.cv_scores.clone(),
        weights: fit.weights.clone(),
        voxel_ijk: voxel_ijk(&a.data.space),
        held,
    }
    .outputs();
    let mut meta = output_metadata(
        a.designs.test_ids(s),
        feat,
        plan,
        inputs_key(s, work, feat, plan, ropts)?,
    )?;
    add_perm_metadata(&mut meta, perm);
    io::write_tensors(&encode_path(work, feat, &s.id), tensors, meta)?;
    Ok(SubjectFit {
        fit,
        data: a.data,
        ceiling,
        has_signal,
        true_weights,
    })
}

/// Encode stage over `subjects` (all when empty), with a progress bar. A subject whose saved
/// result has the same inputs (split, ridge options, designs, BOLD) is not refitted. Returns
/// each subject's test r, in order. The default permutation null.
pub fn encode_dataset(
    ds: &Dataset,
    work: &Path,
    feat: &str,
    subjects: &[String],
    plan: &SplitPlan,
    ropts: &RidgeOptions,
) -> Result<Vec<Array1<f64>>> {
    encode_dataset_with(
        ds,
        work,
        feat,
        subjects,
        plan,
        ropts,
        &PermOptions::default(),
    )
}

/// [`encode_dataset`] with the permutation null's settings; a saved result made with other
/// settings (or before significance was written) is refitted.
pub fn encode_dataset_with(
    ds: &Dataset,
    work: &Path,
    feat: &str,
    subjects: &[String],
    plan: &SplitPlan,
    ropts: &RidgeOptions,
    perm: &PermOptions,
) -> Result<Vec<Array1<f64>>> {
    let subs = ds.select(subjects)?;
    over_subjects(&subs, "encode", true, |s| {
        let path = encode_path(work, feat, &s.id);
        let key = inputs_key(s, work, feat, plan, ropts)?;
        Ok(
            match saved_result(&path, &key).filter(|f| perm_matches(f, perm)) {
                Some(_) => VoxelResults::load(&path)?.test_r,
                None => {
                    encode_subject_with(ds, s, work, feat, plan, ropts, perm)?
                        .fit
                        .test_r
                }
            },
        )
    })
}
