//! The encode stage: per subject, the align stage's design matrices (WORK/design/) and the
//! BOLD runs, trimmed and z-scored per run, ridge with runs as CV groups, held-out test r.
//! This file owns what every variant shares: [`assemble`] (runs → training/test rows, CV
//! groups, designs side by side, BOLD), ground truth ([`test_truth`]), the per-voxel output
//! tensors ([`PerVoxel::outputs`], [`output_metadata`]), the constant-voxel warnings, the
//! inputs key of a saved result and the loop over subjects ([`over_subjects`]). The variants:
//! [`single`] (one feature set in memory), [`banded`] (several feature sets, banded ridge),
//! [`stream`] (BOLD streamed from the voxel-major cache; voxel shards and their merge).

pub mod banded;
pub mod single;
pub mod stream;
use crate::core::io::{self, Tensor, TensorFile};
use crate::core::stats;
use crate::fmri::align::design_path;
pub use crate::fmri::dataset::splits::{Role, SplitPlan};
use crate::fmri::dataset::{self, synth, Dataset, Subject};
pub use crate::fmri::significance::{PermOptions, Significance};
use crate::ridge::{RidgeOptions, RidgeProblem};
use anyhow::{bail, Context, Result};
use ndarray::{concatenate, Array1, Array2, Axis};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use single::{
    encode_dataset, encode_dataset_with, encode_subject, encode_subject_with, SubjectFit,
};

/// WORK/encode/FEAT/sub-XX/ridge.safetensors: the per-voxel results of a subject.
pub fn encode_path(work: &Path, feat: &str, subject: &str) -> PathBuf {
    work.join("encode")
        .join(feat)
        .join(format!("sub-{subject}"))
        .join("ridge.safetensors")
}

/// Rows `trim_start .. n - trim_end` of a run, or an error naming the run (`what`) when the
/// run is too short to lose them and keep two rows.
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

/// Trimmed as the plan says, then z-scored per column: how every run's design, BOLD and
/// ground-truth signal are prepared (so that they line up row for row).
pub(crate) fn prepare_run(a: &Array2<f32>, plan: &SplitPlan, what: &str) -> Result<Array2<f32>> {
    let mut a = trim_rows(a, plan, what)?;
    stats::zscore_columns(&mut a);
    Ok(a)
}

/// One feature set read into the design: the aligned features (a folder under WORK/design)
/// and, for banded ridge, the band's name (used in error messages).
#[derive(Debug, Clone, Copy)]
pub struct FeatureSet<'a> {
    pub band: Option<&'a str>,
    pub features: &'a str,
}

impl<'a> FeatureSet<'a> {
    /// A single feature set (no band).
    pub fn single(features: &'a str) -> Self {
        Self {
            band: None,
            features,
        }
    }
}

/// A subject's designs as a split sorts them: the training rows (runs in the subject's
/// order, with their CV group) and the test rows, each run trimmed and z-scored per column,
/// the feature sets side by side.
#[derive(Debug, Clone)]
pub struct Designs {
    /// [training TRs, features].
    pub x_train: Array2<f32>,
    /// CV group of each training row.
    pub groups: Vec<usize>,
    /// [test TRs, features].
    pub x_test: Array2<f32>,
    /// Indices (in the subject's run order) of the training runs and of the test runs.
    pub train_runs: Vec<usize>,
    pub test_runs: Vec<usize>,
    /// Per run of the subject: held out for testing.
    pub is_test: Vec<bool>,
    /// Columns of each feature set, in order.
    pub widths: Vec<usize>,
    /// Rows of each test run after trimming, in the order of `x_test` (the permutation
    /// null's blocks never cross a run's end).
    pub test_lengths: Vec<usize>,
}

impl Designs {
    /// Ids (e.g. "06") of the test runs, as the `test_runs` metadata lists them.
    pub fn test_ids(&self, s: &Subject) -> String {
        self.test_runs
            .iter()
            .map(|&i| s.runs[i].id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn cat_rows(v: &[Array2<f32>]) -> Result<Array2<f32>> {
    Ok(concatenate(
        Axis(0),
        &v.iter().map(|a| a.view()).collect::<Vec<_>>(),
    )?)
}

/// Reads the designs of `sets` for every used run of `s` (WORK/design/FEATURES/...), checks
/// each against the run's volume count (`n_volumes(run index)`) and each set's width against
/// its other runs, and sorts the runs into training (with CV groups) and test as `plan` says.
/// Errors name the design file, the subject, the run and the band.
pub fn assemble_designs(
    work: &Path,
    s: &Subject,
    sets: &[FeatureSet],
    plan: &SplitPlan,
    n_volumes: &dyn Fn(usize) -> usize,
) -> Result<Designs> {
    let resolved = plan.resolve(s)?;
    let is_test: Vec<bool> = resolved.roles.iter().map(|r| *r == Role::Test).collect();
    let (mut xs_tr, mut xs_te, mut groups, mut train_runs, mut test_runs) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut test_lengths = vec![];
    let mut widths: Vec<Option<usize>> = vec![None; sets.len()];
    for (i, r) in s.runs.iter().enumerate() {
        if resolved.roles[i] == Role::Unused {
            continue;
        }
        let what = format!("sub-{} {}", s.id, r.label());
        let mut parts = Vec::with_capacity(sets.len());
        for (bi, set) in sets.iter().enumerate() {
            let dp = design_path(work, set.features, &s.id, &r.label());
            let missing = || match set.band {
                Some(b) => format!(
                    "band `{b}`: no design for {what} (align the features `{}` first)",
                    set.features
                ),
                None => format!("no design for {what} (run the align stage first)"),
            };
            let x = io::into_2d(
                TensorFile::open(&dp).with_context(missing)?.f32("design")?,
                &dp.display().to_string(),
            )?;
            let nv = n_volumes(i);
            if x.nrows() != nv {
                bail!(
                    "{}: design has {} rows but the BOLD run has {nv} volumes (re-run align)",
                    dp.display(),
                    x.nrows(),
                );
            }
            match widths[bi] {
                Some(w) if w != x.ncols() => bail!(
                    "{}: {} features, but other runs of `{}` have {w}",
                    dp.display(),
                    x.ncols(),
                    set.band.unwrap_or(set.features)
                ),
                _ => widths[bi] = Some(x.ncols()),
            }
            parts.push(prepare_run(&x, plan, &what)?);
        }
        // One set: its design as is (no copy); several: side by side.
        let x = match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => concatenate(Axis(1), &parts.iter().map(|a| a.view()).collect::<Vec<_>>())?,
        };
        if is_test[i] {
            test_lengths.push(x.nrows());
            xs_te.push(x);
            test_runs.push(i);
        } else {
            groups.extend(std::iter::repeat(resolved.cv_group[i]).take(x.nrows()));
            xs_tr.push(x);
            train_runs.push(i);
        }
    }
    Ok(Designs {
        x_train: cat_rows(&xs_tr)?,
        groups,
        x_test: cat_rows(&xs_te)?,
        train_runs,
        test_runs,
        is_test,
        widths: widths.into_iter().map(|w| w.unwrap_or(0)).collect(),
        test_lengths,
    })
}

/// A subject's ridge problem in memory: the designs, the BOLD rows that match them
/// (trimmed and z-scored per run) and the BOLD as loaded (its space: mask or parcels).
pub struct Assembled {
    pub designs: Designs,
    /// [training TRs, voxels].
    pub y_train: Array2<f32>,
    /// [test TRs, voxels].
    pub y_test: Array2<f32>,
    pub data: dataset::SubjectData,
}

impl Assembled {
    /// The arrays as the ridge solver takes them.
    pub fn problem(&self) -> RidgeProblem<'_> {
        RidgeProblem {
            x_train: self.designs.x_train.view(),
            y_train: self.y_train.view(),
            groups: &self.designs.groups,
            x_test: self.designs.x_test.view(),
            y_test: self.y_test.view(),
        }
    }
}

/// Loads the BOLD of `s` and the designs of `sets` (see [`assemble_designs`]) and lines
/// them up: what the in-memory variants (single, banded) fit. Errors: those of
/// [`assemble_designs`], of loading the BOLD and of trimming a run too short.
pub fn assemble(
    work: &Path,
    s: &Subject,
    sets: &[FeatureSet],
    plan: &SplitPlan,
) -> Result<Assembled> {
    let data = dataset::load_subject(s)?;
    let designs = assemble_designs(work, s, sets, plan, &|i| data.runs[i].nrows())?;
    let ys = |runs: &[usize]| -> Result<Array2<f32>> {
        let v = runs
            .iter()
            .map(|&i| {
                prepare_run(
                    &data.runs[i],
                    plan,
                    &format!("sub-{} {}", s.id, s.runs[i].label()),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        cat_rows(&v)
    };
    let (y_train, y_test) = (ys(&designs.train_runs)?, ys(&designs.test_runs)?);
    Ok(Assembled {
        designs,
        y_train,
        y_test,
        data,
    })
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
    // Runs sharing a movie across episodes are held out together since the split learnt to
    // group them: results saved before (other test runs under the same plan) are refitted.
    // Other datasets keep their key, and their saved results.
    let groups = crate::fmri::dataset::splits::stimulus_groups(&s.runs);
    if s.runs
        .iter()
        .zip(&groups)
        .any(|(r, g)| r.episode_group() != *g)
    {
        key += "|runs of one movie grouped";
    }
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

/// The saved result at `path` when its `inputs` metadata is `key` (so it need not be refitted).
pub fn saved_result(path: &Path, key: &str) -> Option<TensorFile> {
    TensorFile::open(path)
        .ok()
        .filter(|f| f.metadata().get("inputs").map(String::as_str) == Some(key))
}

pub use crate::fmri::dataset::nifti_io::VOXEL_ORDER;

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

/// The warnings about constant voxels (every variant prints these, in these words):
/// `n_train` voxels constant over the training runs, `n_test` constant over the test runs
/// only, out of `n_voxels` fitted, listed in `file`.
pub(crate) fn warn_constant(
    subject: &str,
    n_train: usize,
    n_test: usize,
    n_voxels: usize,
    file: &str,
) {
    if n_train > 0 {
        eprintln!(
            "warning: sub-{subject}: {n_train} voxel(s) are constant over the training runs; their r is 0"
        );
    }
    if n_test > 0 {
        eprintln!(
            "warning: sub-{subject}: {n_test} voxel(s) are constant over the test run(s) (but not over \
             the training runs); their test r is 0 and they are counted in the mean r over all \
             {n_voxels} voxels (`test_constant` in {file} lists them)"
        );
    }
}

/// A synthetic subject's ground truth on the test runs.
pub struct TestTruth {
    /// Noise-free signal of the test runs, trimmed and z-scored per run as the data:
    /// [test TRs, voxels].
    pub signal: Array2<f32>,
    /// Per voxel: 1 when it has signal.
    pub has_signal: Array1<u8>,
    /// True weights [voxels, features].
    pub weights: Array2<f32>,
    /// Per voxel: the band that drives it (datasets made with `dataset synth --bands`).
    pub true_band: Option<Array1<u8>>,
}

impl TestTruth {
    /// Ceiling r per voxel: the noise-free signal against the data `y_test` [test TRs,
    /// voxels]; an error when their voxel counts differ.
    pub fn ceiling(&self, subject: &str, y_test: ndarray::ArrayView2<f32>) -> Result<Array1<f64>> {
        if self.signal.ncols() != y_test.ncols() {
            bail!(
                "ground truth of sub-{subject} has {} voxels, the mask {}",
                self.signal.ncols(),
                y_test.ncols()
            );
        }
        Ok(stats::pearson_columns(self.signal.view(), y_test))
    }
}

/// Ground truth of a synthetic subject, when there is one, in the mask's voxel order (it is
/// stored in NIfTI order), its signal prepared as the data of the test runs.
pub(crate) fn test_truth(
    ds: &Dataset,
    s: &Subject,
    plan: &SplitPlan,
    is_test: &[bool],
    space: &dataset::Space,
) -> Result<Option<TestTruth>> {
    let labels: Vec<String> = s.runs.iter().map(|r| r.label()).collect();
    let truth = match (synth::load_truth(&ds.root, &s.id, &labels)?, space) {
        (Some(t), dataset::Space::Voxels { mask, .. }) => Some(t.in_mask_order(&mask.linear)?),
        (t, _) => t,
    };
    let Some(t) = truth else { return Ok(None) };
    let sig = s
        .runs
        .iter()
        .zip(is_test)
        .filter(|(_, &t)| t)
        .map(|(r, _)| prepare_run(&t.signal[&r.label()], plan, &r.label()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(TestTruth {
        signal: cat_rows(&sig)?,
        has_signal: t.has_signal,
        weights: t.weights,
        true_band: t.true_band,
    }))
}

/// The per-voxel vectors every encode output holds (ridge.safetensors of each variant, and
/// a shard's part), for the voxels fitted.
pub struct PerVoxel {
    pub best_alpha: Array1<f64>,
    pub test_r: Array1<f64>,
    pub test_r2: Array1<f64>,
    /// Voxels constant over the test runs only (single and streamed fits).
    pub test_constant: Option<Array1<u8>>,
    /// The alpha grid.
    pub alphas: Vec<f64>,
    pub ceiling_r: Option<Array1<f64>>,
    pub has_signal: Option<Array1<u8>>,
    /// CV score per alpha and voxel, [alphas, voxels] (`--save-cv-scores`).
    pub cv_scores: Option<Array2<f64>>,
    /// [voxels, features] (`--save-weights` kept in memory).
    pub weights: Option<Array2<f32>>,
    /// (i, j, k) per voxel, for voxel data.
    pub voxel_ijk: Option<Array2<i32>>,
    /// The statistics of `test_r` on the held-out runs.
    pub held: HeldOut,
}

/// The statistics written beside the held-out r (every variant; see [`held_out_stats`]).
pub struct HeldOut {
    /// Block-permutation p, BH q and FWE p of `test_r` (`--permutations` > 0).
    pub significance: Option<Significance>,
    /// Noise ceiling from repeated viewings of the test movie, and test r / that ceiling
    /// (see `fmri::ceiling`), when runs repeat it.
    pub repeat_ceiling_r: Option<Array1<f64>>,
    pub normalised_r: Option<Array1<f64>>,
    /// Block-bootstrap resamples of the subject's summaries (whole subjects only: a shard's
    /// part writes `boot_part_r` and `null_top_r` instead, which the merge summarises).
    pub bootstrap: Option<crate::fmri::bootstrap::BootSummaries>,
}

impl HeldOut {
    /// The statistics of `test_r` [voxels], its normalised r (`fmri::ceiling::normalised`)
    /// computed from the repeat ceiling when there is one.
    pub fn new(
        test_r: &Array1<f64>,
        significance: Option<Significance>,
        repeat_ceiling_r: Option<Array1<f64>>,
        bootstrap: Option<crate::fmri::bootstrap::BootSummaries>,
    ) -> Self {
        Self {
            significance,
            normalised_r: repeat_ceiling_r
                .as_ref()
                .map(|c| crate::fmri::ceiling::normalised(test_r, c)),
            repeat_ceiling_r,
            bootstrap,
        }
    }
}

/// The held-out statistics of a whole subject fitted in memory (single-band and banded):
/// the permutation null and bootstrap of the test predictions `pred` [test rows, voxels]
/// against `a.y_test` ([`significance_and_bootstrap`]), and the noise ceiling from the runs
/// that repeat a test movie ([`repeat_groups`], [`repeat_ceiling`]; runs prepared as the
/// fit's). Errors: those of the three, naming the subject.
pub(crate) fn held_out_stats(
    s: &Subject,
    a: &Assembled,
    pred: ndarray::ArrayView2<f32>,
    test_r: &Array1<f64>,
    plan: &SplitPlan,
    perm: &PermOptions,
) -> Result<HeldOut> {
    let (sig, boot) =
        significance_and_bootstrap(&s.id, pred, a.y_test.view(), &a.designs.test_lengths, perm)?;
    let groups = repeat_groups(s, &a.designs);
    let ceiling = repeat_ceiling(&s.id, &groups, &mut |i| {
        prepare_run(&a.data.runs[i], plan, &s.runs[i].label())
    })?;
    Ok(HeldOut::new(test_r, sig, ceiling, boot))
}

impl PerVoxel {
    /// The tensors of the output file (the file's tensor order is its own: safetensors sorts).
    pub fn outputs(self) -> Vec<(&'static str, Tensor)> {
        let mut t = vec![
            ("best_alpha", Tensor::F64(self.best_alpha.into_dyn())),
            ("test_r", Tensor::F64(self.test_r.into_dyn())),
            ("test_r2", Tensor::F64(self.test_r2.into_dyn())),
            (
                "alphas",
                Tensor::F64(Array1::from_vec(self.alphas).into_dyn()),
            ),
        ];
        let mut opt = |name, v: Option<Tensor>| {
            if let Some(v) = v {
                t.push((name, v));
            }
        };
        opt(
            "test_constant",
            self.test_constant.map(|a| Tensor::U8(a.into_dyn())),
        );
        opt(
            "ceiling_r",
            self.ceiling_r.map(|a| Tensor::F64(a.into_dyn())),
        );
        opt(
            "has_signal",
            self.has_signal.map(|a| Tensor::U8(a.into_dyn())),
        );
        opt(
            "cv_scores",
            self.cv_scores.map(|a| Tensor::F64(a.into_dyn())),
        );
        opt("weights", self.weights.map(|a| Tensor::F32(a.into_dyn())));
        opt(
            "voxel_ijk",
            self.voxel_ijk.map(|a| Tensor::I32(a.into_dyn())),
        );
        let held = self.held;
        opt(
            "repeat_ceiling_r",
            held.repeat_ceiling_r.map(|a| Tensor::F64(a.into_dyn())),
        );
        opt(
            "normalised_r",
            held.normalised_r.map(|a| Tensor::F64(a.into_dyn())),
        );
        if let Some(sig) = held.significance {
            t.extend(sig.tensors());
        }
        if let Some(b) = held.bootstrap {
            t.extend(b.tensors());
        }
        t
    }
}

/// The metadata every encode output holds: `voxel_order`, `test_runs` (ids), `features`,
/// `split` (the plan as JSON) and `inputs` (what the result depends on; see [`inputs_key`]).
pub fn output_metadata(
    test_runs: String,
    features: &str,
    plan: &SplitPlan,
    inputs: String,
) -> Result<HashMap<String, String>> {
    Ok(HashMap::from([
        ("voxel_order".to_string(), VOXEL_ORDER.to_string()),
        ("test_runs".to_string(), test_runs),
        ("features".to_string(), features.to_string()),
        ("split".to_string(), serde_json::to_string(plan)?),
        ("inputs".to_string(), inputs),
    ]))
}

/// The (i, j, k) of each voxel of `space` (none for parcels).
pub(crate) fn voxel_ijk(space: &dataset::Space) -> Option<Array2<i32>> {
    match space {
        dataset::Space::Voxels { mask, .. } => Some(mask.voxel_ijk()),
        dataset::Space::Parcels { .. } => None,
    }
}

/// Runs `f` on each subject in order, with a progress bar labelled `what` (hidden when
/// `progress` is false): the one loop over subjects of every encode variant.
pub fn over_subjects<'a, T>(
    subjects: &[&'a Subject],
    what: &str,
    progress: bool,
    mut f: impl FnMut(&'a Subject) -> Result<T>,
) -> Result<Vec<T>> {
    let bar = match progress {
        true => crate::core::progress::progress(subjects.len() as u64, what),
        false => indicatif::ProgressBar::hidden(),
    };
    let mut out = Vec::with_capacity(subjects.len());
    for s in subjects {
        bar.set_message(format!("sub-{}", s.id));
        out.push(f(s)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// The warning when the default null does not apply: the test runs are too short for it.
pub(crate) fn skipped_note(subject: &str, test_lengths: &[usize], perm: &PermOptions) -> String {
    format!(
        "warning: sub-{subject}: no p/q/FWE p or bootstrap intervals: the test runs ({} TRs in runs \
         of {test_lengths:?}) hold fewer than {} blocks of {} TRs (give a shorter --perm-block, \
         or --permutations to make this an error)",
        test_lengths.iter().sum::<usize>(),
        crate::fmri::significance::MIN_BLOCKS,
        perm.block
    )
}

/// Adds the permutation settings to an output's metadata (`permutations`, `perm_block`,
/// `perm_seed`).
pub(crate) fn add_perm_metadata(meta: &mut HashMap<String, String>, perm: &PermOptions) {
    meta.extend(crate::fmri::significance::metadata(perm));
}

/// Whether a saved output was made with these permutation settings (outputs from before
/// significance existed, or with other settings, are refitted).
pub fn perm_matches(f: &TensorFile, perm: &PermOptions) -> bool {
    crate::fmri::significance::metadata(perm)
        .iter()
        .all(|(k, v)| f.metadata().get(k) == Some(v))
}

/// The runs that show a test run's movie again, one group per such movie (each ≥ 2 runs,
/// training or test, in run order): what [`repeat_ceiling`] reads. Empty when no test movie
/// is repeated.
pub fn repeat_groups(s: &Subject, d: &Designs) -> Vec<Vec<usize>> {
    let used: Vec<usize> = {
        let mut u: Vec<usize> = d.train_runs.iter().chain(&d.test_runs).copied().collect();
        u.sort_unstable();
        u
    };
    let mut groups: Vec<Vec<usize>> = vec![];
    for &t in &d.test_runs {
        let movie = &s.runs[t].movie;
        if groups.iter().any(|g| &s.runs[g[0]].movie == movie) {
            continue;
        }
        let g: Vec<usize> = used
            .iter()
            .copied()
            .filter(|&i| &s.runs[i].movie == movie)
            .collect();
        if g.len() >= 2 {
            groups.push(g);
        }
    }
    groups
}

/// The noise ceiling from the repeats of `groups` (runs read and prepared by `read`), the
/// signal power and total variance of each group weighted by its TRs; None without groups.
/// Errors: repeats of one movie with different TR counts (naming the subject).
pub fn repeat_ceiling(
    subject: &str,
    groups: &[Vec<usize>],
    read: &mut dyn FnMut(usize) -> Result<Array2<f32>>,
) -> Result<Option<Array1<f64>>> {
    let mut acc: Option<(Array1<f64>, Array1<f64>)> = None;
    for g in groups {
        let reps = g.iter().map(|&i| read(i)).collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = reps.iter().map(|a| a.view()).collect();
        let (sp, tot) = crate::fmri::ceiling::signal_power(&views)
            .with_context(|| format!("sub-{subject}: noise ceiling from repeated runs"))?;
        let w = reps[0].nrows() as f64;
        acc = Some(match acc {
            None => (sp * w, tot * w),
            Some((a, b)) => (a + sp * w, b + tot * w),
        });
    }
    Ok(acc.map(|(sp, tot)| crate::fmri::ceiling::ceiling_from(&sp, &tot)))
}

/// The permutation statistics and the block-bootstrap summaries of a whole subject's test
/// predictions `pred` against `y_test` [test rows, voxels] (the bootstrap with the
/// permutations' blocks and seed, its fraction significant with the null's per-voxel q < 0.05
/// thresholds); (None, None) when `perm.n_perm` is 0. Errors name the subject.
pub(crate) fn significance_and_bootstrap(
    subject: &str,
    pred: ndarray::ArrayView2<f32>,
    y_test: ndarray::ArrayView2<f32>,
    test_lengths: &[usize],
    perm: &PermOptions,
) -> Result<(
    Option<Significance>,
    Option<crate::fmri::bootstrap::BootSummaries>,
)> {
    use crate::fmri::bootstrap as boot;
    use crate::fmri::significance as sig;
    if perm.n_perm == 0 {
        return Ok((None, None));
    }
    if !perm.required && !sig::applicable(test_lengths, perm) {
        eprintln!("{}", skipped_note(subject, test_lengths, perm));
        return Ok((None, None));
    }
    let counts = sig::Permutations::new(test_lengths, perm)
        .and_then(|p| sig::block_null(pred, y_test, &p))
        .with_context(|| format!("sub-{subject}: permutation null of the test r"))?;
    let s = Significance::from_counts(&counts, perm.n_perm);
    let thr = sig::q05_thresholds(&counts, &s.q, perm.n_perm);
    let r = boot::resampled_r(pred, y_test, test_lengths, boot::DEFAULT_RESAMPLES, perm)
        .with_context(|| format!("sub-{subject}: block bootstrap of the test r"))?;
    Ok((Some(s), Some(boot::summaries(&r, Some(&thr)))))
}
