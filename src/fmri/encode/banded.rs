//! Encode stage with several feature spaces: banded ridge (`encode --bands
//! motion=baseline,gpt=gpt-L4`). Each band is a feature set already extracted and aligned
//! (WORK/design/FEATURES/); per run the bands' designs are trimmed, z-scored and placed side
//! by side, and [`crate::ridge::banded::fit_banded`] chooses per voxel the band weights and
//! alpha by grouped CV (the same split and folds as `encode`). Results go to
//! WORK/encode/NAMES/sub-XX/ridge.safetensors (NAMES = the band names joined by `+`), with the
//! single-band tensors (best_alpha, test_r, test_r2, alphas, ceiling_r, has_signal) so that
//! `maps --features NAMES` reads them, plus: band_weights and band_alphas (bands × voxels),
//! r2_split (bands × voxels), candidates (candidates × bands), cv_score, true_band (synthetic
//! `--bands` datasets), and with `--partition` loo_r2, unique_r2 (bands × voxels) and
//! shared_r2. Metadata: `bands` (NAME=FEATURES,...), `band_names`.
use crate::core::io::{self, Tensor, TensorFile};
use crate::core::stats;
use crate::fmri::align::design_path;
use crate::fmri::dataset::splits::{Role, SplitPlan};
use crate::fmri::dataset::{self, synth, Dataset, Subject};
use crate::fmri::encode::{encode_path, inputs_key, voxel_index_outputs};
use crate::ridge::banded::{fit_banded, Band, BandedFit, BandedOptions, BandedProblem, Candidates};
use crate::ridge::{RidgeOptions, RidgeProblem};
use anyhow::{bail, Context, Result};
use ndarray::{concatenate, Array1, Array2, Axis};
use std::collections::HashMap;
use std::path::Path;

/// The banded-ridge options of `brainscale encode`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BandArgs {
    /// Banded ridge over several feature sets, already extracted and aligned:
    /// NAME=FEATURES,... (e.g. motion=baseline,gpt=gpt-L4). Replaces --features.
    #[arg(long, value_delimiter = ',', value_name = "NAME=FEATURES,...")]
    pub bands: Vec<String>,
    /// Number of band-weight candidates drawn from the Dirichlet distribution on the simplex
    /// (the first is the uniform weighting); each is tried with every alpha.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub band_candidates: usize,
    /// Dirichlet concentrations, cycled over the candidates (himalaya's default 0.1,1).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,1",
        value_name = "C,..."
    )]
    pub band_concentration: Vec<f64>,
    /// Seed of the candidate draws.
    #[arg(long, default_value_t = 0)]
    pub band_seed: u64,
    /// Explicit band-weight candidates instead of random ones: weights separated by `:`,
    /// candidates by `,`, e.g. 0.5:0.5,0.9:0.1,0.1:0.9.
    #[arg(long, value_delimiter = ',', value_name = "W:W,...")]
    pub band_weights: Vec<String>,
    /// Also fit every leave-one-band-out model: unique and shared variance per voxel.
    #[arg(long)]
    pub partition: bool,
}

/// A parsed band: its name and the feature set it reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BandSpec {
    pub name: String,
    pub features: String,
}

impl BandArgs {
    /// The bands, in order.
    pub fn specs(&self) -> Result<Vec<BandSpec>> {
        let mut out: Vec<BandSpec> = Vec::new();
        for s in &self.bands {
            let (name, feat) = s
                .split_once('=')
                .with_context(|| format!("--bands `{s}`: expected NAME=FEATURES"))?;
            let (name, feat) = (name.trim(), feat.trim());
            if name.is_empty() || feat.is_empty() {
                bail!("--bands `{s}`: empty band name or feature set");
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                bail!("--bands `{s}`: band names may hold only letters, digits, `-`, `_` and `.`");
            }
            if out.iter().any(|b| b.name == name) {
                bail!("--bands: band name `{name}` is given twice");
            }
            out.push(BandSpec {
                name: name.into(),
                features: feat.into(),
            });
        }
        if out.is_empty() {
            bail!("--bands: no bands given");
        }
        Ok(out)
    }

    /// The candidates: explicit (`--band-weights`) or the seeded random search.
    pub fn candidates(&self) -> Result<Candidates> {
        if self.band_weights.is_empty() {
            return Ok(Candidates::Random {
                n: self.band_candidates,
                concentrations: self.band_concentration.clone(),
                seed: self.band_seed,
            });
        }
        let rows = self
            .band_weights
            .iter()
            .map(|c| {
                c.split(':')
                    .map(|w| w.trim().parse::<f64>())
                    .collect::<std::result::Result<Vec<f64>, _>>()
                    .with_context(|| {
                        format!("--band-weights `{c}`: expected numbers separated by `:`")
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Candidates::Explicit(rows))
    }

    pub fn to_options(&self, ridge: &RidgeOptions) -> Result<BandedOptions> {
        let o = BandedOptions {
            ridge: ridge.clone(),
            candidates: self.candidates()?,
            partition: self.partition,
        };
        o.candidates
            .resolve(self.bands.len())
            .context("band-weight candidates")?;
        Ok(o)
    }
}

/// Folder name of a banded fit under WORK/encode and WORK/maps: the band names joined by `+`.
pub fn bands_name(bands: &[BandSpec]) -> String {
    bands
        .iter()
        .map(|b| b.name.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// Rows `trim_start .. n - trim_end` of a run (as the single-band encode stage).
fn trim(a: &Array2<f32>, plan: &SplitPlan, what: &str) -> Result<Array2<f32>> {
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

/// What a banded fit depends on: each band's single-band inputs key, the bands and the
/// banded options.
fn bands_key(
    s: &Subject,
    work: &Path,
    bands: &[BandSpec],
    plan: &SplitPlan,
    o: &BandedOptions,
) -> Result<String> {
    let mut key = format!("{bands:?}|{:?}|{}", o.candidates, o.partition);
    for b in bands {
        key += &inputs_key(s, work, &b.features, plan, &o.ridge)?;
    }
    Ok(key)
}

/// Banded encode of one subject; writes WORK/encode/NAMES/sub-XX/ridge.safetensors.
pub fn encode_subject(
    ds: &Dataset,
    s: &Subject,
    work: &Path,
    bands: &[BandSpec],
    plan: &SplitPlan,
    o: &BandedOptions,
) -> Result<BandedFit> {
    let resolved = plan.resolve(s)?;
    let data = dataset::load_subject(s)?;
    let (mut xs_tr, mut ys_tr, mut groups, mut xs_te, mut ys_te) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut widths: Vec<Option<usize>> = vec![None; bands.len()];
    let mut test_labels = vec![];
    for (i, (r, y)) in s.runs.iter().zip(&data.runs).enumerate() {
        if resolved.roles[i] == Role::Unused {
            continue;
        }
        let what = format!("sub-{} {}", s.id, r.label());
        let mut parts = Vec::with_capacity(bands.len());
        for (bi, b) in bands.iter().enumerate() {
            let dp = design_path(work, &b.features, &s.id, &r.label());
            let x = io::into_2d(
                TensorFile::open(&dp)
                    .with_context(|| {
                        format!(
                            "band `{}`: no design for {what} (align the features `{}` first)",
                            b.name, b.features
                        )
                    })?
                    .f32("design")?,
                &dp.display().to_string(),
            )?;
            if x.nrows() != y.nrows() {
                bail!(
                    "{}: design has {} rows but the BOLD run has {} volumes (re-run align)",
                    dp.display(),
                    x.nrows(),
                    y.nrows()
                );
            }
            match widths[bi] {
                Some(w) if w != x.ncols() => bail!(
                    "{}: {} features, but other runs of band `{}` have {w}",
                    dp.display(),
                    x.ncols(),
                    b.name
                ),
                _ => widths[bi] = Some(x.ncols()),
            }
            let mut x = trim(&x, plan, &what)?;
            stats::zscore_columns(&mut x);
            parts.push(x);
        }
        let x = concatenate(Axis(1), &parts.iter().map(|a| a.view()).collect::<Vec<_>>())?;
        let mut y = trim(y, plan, &what)?;
        stats::zscore_columns(&mut y);
        if resolved.roles[i] == Role::Test {
            test_labels.push(r.label());
            xs_te.push(x);
            ys_te.push(y);
        } else {
            groups.extend(std::iter::repeat(resolved.cv_group[i]).take(x.nrows()));
            xs_tr.push(x);
            ys_tr.push(y);
        }
    }
    let cat = |v: &[Array2<f32>]| -> Result<Array2<f32>> {
        Ok(concatenate(
            Axis(0),
            &v.iter().map(|a| a.view()).collect::<Vec<_>>(),
        )?)
    };
    let (x_train, y_train, x_test, y_test) =
        (cat(&xs_tr)?, cat(&ys_tr)?, cat(&xs_te)?, cat(&ys_te)?);
    let band_list: Vec<Band> = bands
        .iter()
        .zip(&widths)
        .map(|(b, w)| Band {
            name: b.name.clone(),
            features: w.unwrap_or(0),
        })
        .collect();
    let problem = BandedProblem {
        ridge: RidgeProblem {
            x_train: x_train.view(),
            y_train: y_train.view(),
            groups: &groups,
            x_test: x_test.view(),
            y_test: y_test.view(),
        },
        bands: &band_list,
    };
    let fit = fit_banded(&problem, o).with_context(|| format!("banded ridge for sub-{}", s.id))?;

    // Ground truth (synthetic data): ceiling r on the test runs, and the true bands.
    let labels: Vec<String> = s.runs.iter().map(|r| r.label()).collect();
    let mut tensors = vec![
        ("best_alpha", Tensor::F64(fit.best_alpha.clone().into_dyn())),
        ("test_r", Tensor::F64(fit.test_r.clone().into_dyn())),
        ("test_r2", Tensor::F64(fit.test_r2.clone().into_dyn())),
        (
            "alphas",
            Tensor::F64(Array1::from_vec(fit.alphas.clone()).into_dyn()),
        ),
        ("cv_score", Tensor::F64(fit.cv_score.clone().into_dyn())),
        (
            "band_weights",
            Tensor::F64(fit.band_weights.clone().into_dyn()),
        ),
        ("band_alphas", Tensor::F64(fit.band_alphas().into_dyn())),
        ("r2_split", Tensor::F64(fit.r2_split.clone().into_dyn())),
        ("candidates", Tensor::F64(fit.candidates.clone().into_dyn())),
    ];
    // Ground truth is stored in NIfTI order: put it in the mask's (C) order first.
    let truth = match (synth::load_truth(&ds.root, &s.id, &labels)?, &data.space) {
        (Some(t), dataset::Space::Voxels { mask, .. }) => Some(t.in_mask_order(&mask.linear)?),
        (t, _) => t,
    };
    if let Some(t) = truth {
        let sig = test_labels
            .iter()
            .map(|l| {
                let mut a = trim(&t.signal[l], plan, l)?;
                stats::zscore_columns(&mut a);
                Ok(a)
            })
            .collect::<Result<Vec<_>>>()?;
        let sig = cat(&sig)?;
        if sig.ncols() != y_test.ncols() {
            bail!(
                "ground truth of sub-{} has {} voxels, the mask {}",
                s.id,
                sig.ncols(),
                y_test.ncols()
            );
        }
        let ceiling = stats::pearson_columns(sig.view(), y_test.view());
        tensors.push(("ceiling_r", Tensor::F64(ceiling.into_dyn())));
        tensors.push(("has_signal", Tensor::U8(t.has_signal.into_dyn())));
        if let Some(tb) = t.true_band {
            tensors.push(("true_band", Tensor::U8(tb.into_dyn())));
        }
    }
    if let Some(p) = &fit.partition {
        tensors.push(("loo_r2", Tensor::F64(p.loo_r2.clone().into_dyn())));
        tensors.push(("unique_r2", Tensor::F64(p.unique_r2.clone().into_dyn())));
        tensors.push(("shared_r2", Tensor::F64(p.shared_r2.clone().into_dyn())));
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
        .zip(&resolved.roles)
        .filter(|(_, r)| **r == Role::Test)
        .map(|(r, _)| r.id.as_str())
        .collect();
    let spec: Vec<String> = bands
        .iter()
        .map(|b| format!("{}={}", b.name, b.features))
        .collect();
    // Per-voxel vectors are in the mask's (numpy/nilearn C) order; say so, with voxel_ijk.
    let (ijk, order) = voxel_index_outputs(&data.space);
    tensors.extend(ijk);
    let meta = HashMap::from([
        order,
        ("test_runs".to_string(), test_ids.join(",")),
        ("features".to_string(), bands_name(bands)),
        ("bands".to_string(), spec.join(",")),
        ("band_names".to_string(), fit.band_names.join(",")),
        ("split".to_string(), serde_json::to_string(plan)?),
        ("inputs".to_string(), bands_key(s, work, bands, plan, o)?),
    ]);
    io::write_tensors(&encode_path(work, &bands_name(bands), &s.id), tensors, meta)?;
    Ok(fit)
}

/// Banded encode over subjects; a subject whose saved result has the same inputs is not
/// refitted. Returns (subject id, test r, mean R² split per band) per subject.
pub fn encode_dataset(
    ds: &Dataset,
    work: &Path,
    bands: &[BandSpec],
    subjects: &[String],
    plan: &SplitPlan,
    o: &BandedOptions,
) -> Result<Vec<(String, Array1<f64>, Vec<f64>)>> {
    let subs = crate::fmri::demo::select_subjects(ds, subjects)?;
    let bar = crate::core::progress::progress(subs.len() as u64, "encode (bands)");
    let mut out = Vec::new();
    for s in subs {
        bar.set_message(format!("sub-{}", s.id));
        let path = encode_path(work, &bands_name(bands), &s.id);
        let key = bands_key(s, work, bands, plan, o)?;
        let saved = TensorFile::open(&path)
            .ok()
            .filter(|f| f.metadata().get("inputs") == Some(&key));
        let (r, split) = match saved {
            Some(f) => (
                io::into_1d(f.f64("test_r")?, "test_r")?,
                io::into_2d(f.f64("r2_split")?, "r2_split")?,
            ),
            None => {
                let fit = encode_subject(ds, s, work, bands, plan, o)?;
                (fit.test_r, fit.r2_split)
            }
        };
        let means = split
            .rows()
            .into_iter()
            .map(|r| r.mean().unwrap_or(0.0))
            .collect();
        out.push((s.id.clone(), r, means));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// `brainscale encode --bands ...`: fits, saves and prints one line per subject.
pub fn run(
    ds: &Dataset,
    work: &Path,
    args: &BandArgs,
    subjects: &[String],
    plan: &SplitPlan,
    ridge: &RidgeOptions,
) -> Result<()> {
    let bands = args.specs()?;
    if ridge.stream_weights {
        bail!("--stream-weights is not available with --bands (--save-weights alone keeps the weights in ridge.safetensors)");
    }
    let o = args.to_options(ridge)?;
    let rows = encode_dataset(ds, work, &bands, subjects, plan, &o)?;
    for (id, r, split) in rows {
        let sm = stats::summarize_r(r.view());
        let parts: Vec<String> = bands
            .iter()
            .zip(&split)
            .map(|(b, x)| format!("{} {x:.4}", b.name))
            .collect();
        println!(
            "sub-{id}: {} voxels, test mean r {:.3}, top-10% r {:.3}, mean R² split: {}",
            r.len(),
            sm.mean_r,
            sm.top10_mean_r,
            parts.join(", ")
        );
    }
    println!(
        "results in {}",
        work.join("encode").join(bands_name(&bands)).display()
    );
    Ok(())
}
