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
use super::{
    add_perm_metadata, assemble, encode_path, inputs_key, output_metadata, over_subjects,
    perm_matches, saved_result, test_truth, voxel_ijk, FeatureSet, PerVoxel, PermOptions,
};
use crate::core::io::{self, Tensor};
use crate::fmri::dataset::splits::SplitPlan;
use crate::fmri::dataset::{Dataset, Subject};
use crate::ridge::banded::{fit_banded, Band, BandedFit, BandedOptions, BandedProblem, Candidates};
use crate::ridge::RidgeOptions;
use anyhow::{bail, Context, Result};
use ndarray::Array1;
use std::path::Path;

/// The banded-ridge request of `brainscale encode --bands` (plain options; the CLI flags are
/// `cli::fmri::BandFlags`): the bands as `NAME=FEATURES` and how band-weight candidates are made.
#[derive(Debug, Clone)]
pub struct BandRequest {
    /// NAME=FEATURES per band, e.g. motion=baseline, gpt=gpt-L4.
    pub bands: Vec<String>,
    /// Number of band-weight candidates drawn from the Dirichlet distribution on the simplex
    /// (the first is the uniform weighting); each is tried with every alpha.
    pub band_candidates: usize,
    /// Dirichlet concentrations, cycled over the candidates (himalaya's default 0.1,1).
    pub band_concentration: Vec<f64>,
    /// Seed of the candidate draws.
    pub band_seed: u64,
    /// Explicit candidates instead of random ones: weights separated by `:`, one string per
    /// candidate, e.g. "0.5:0.5".
    pub band_weights: Vec<String>,
    /// Also fit every leave-one-band-out model: unique and shared variance per voxel.
    pub partition: bool,
    /// The permutation null of the joint model's test r.
    pub perm: PermOptions,
}

/// A parsed band: its name and the feature set it reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BandSpec {
    pub name: String,
    pub features: String,
}

impl Default for BandRequest {
    /// No bands; the candidate settings of the CLI defaults (20 candidates, concentrations
    /// 0.1 and 1, seed 0).
    fn default() -> Self {
        Self {
            bands: vec![],
            band_candidates: 20,
            band_concentration: vec![0.1, 1.0],
            band_seed: 0,
            band_weights: vec![],
            partition: false,
            perm: PermOptions::default(),
        }
    }
}

impl BandRequest {
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
/// Errors: those of [`super::assemble`] (naming the band), of the fit, and a ground truth
/// whose voxels are not the mask's.
pub fn encode_subject(
    ds: &Dataset,
    s: &Subject,
    work: &Path,
    bands: &[BandSpec],
    plan: &SplitPlan,
    o: &BandedOptions,
    perm: &PermOptions,
) -> Result<BandedFit> {
    let sets: Vec<FeatureSet> = bands
        .iter()
        .map(|b| FeatureSet {
            band: Some(&b.name),
            features: &b.features,
        })
        .collect();
    let a = assemble(work, s, &sets, plan)?;
    let band_list: Vec<Band> = bands
        .iter()
        .zip(&a.designs.widths)
        .map(|(b, &w)| Band {
            name: b.name.clone(),
            features: w,
        })
        .collect();
    let problem = BandedProblem {
        ridge: a.problem(),
        bands: &band_list,
    };
    let fit = fit_banded(&problem, o).with_context(|| format!("banded ridge for sub-{}", s.id))?;

    // Ground truth (synthetic data): ceiling r on the test runs, and the true bands.
    let truth = test_truth(ds, s, plan, &a.designs.is_test, &a.data.space)?;
    let ceiling = match &truth {
        Some(t) => Some(t.ceiling(&s.id, a.y_test.view())?),
        None => None,
    };
    let held = super::held_out_stats(s, &a, fit.test_pred.view(), &fit.test_r, plan, perm)?;
    let (has_signal, true_band) = match truth {
        Some(t) => (Some(t.has_signal), t.true_band),
        None => (None, None),
    };
    let mut tensors = PerVoxel {
        best_alpha: fit.best_alpha.clone(),
        test_r: fit.test_r.clone(),
        test_r2: fit.test_r2.clone(),
        test_constant: None,
        alphas: fit.alphas.clone(),
        ceiling_r: ceiling,
        has_signal,
        cv_scores: fit.cv_scores.clone(),
        weights: fit.weights.clone(),
        voxel_ijk: voxel_ijk(&a.data.space),
        held,
    }
    .outputs();
    tensors.extend([
        ("cv_score", Tensor::F64(fit.cv_score.clone().into_dyn())),
        (
            "band_weights",
            Tensor::F64(fit.band_weights.clone().into_dyn()),
        ),
        ("band_alphas", Tensor::F64(fit.band_alphas().into_dyn())),
        ("r2_split", Tensor::F64(fit.r2_split.clone().into_dyn())),
        ("candidates", Tensor::F64(fit.candidates.clone().into_dyn())),
    ]);
    if let Some(tb) = true_band {
        tensors.push(("true_band", Tensor::U8(tb.into_dyn())));
    }
    if let Some(p) = &fit.partition {
        tensors.push(("loo_r2", Tensor::F64(p.loo_r2.clone().into_dyn())));
        tensors.push(("unique_r2", Tensor::F64(p.unique_r2.clone().into_dyn())));
        tensors.push(("shared_r2", Tensor::F64(p.shared_r2.clone().into_dyn())));
    }
    let spec: Vec<String> = bands
        .iter()
        .map(|b| format!("{}={}", b.name, b.features))
        .collect();
    let mut meta = output_metadata(
        a.designs.test_ids(s),
        &bands_name(bands),
        plan,
        bands_key(s, work, bands, plan, o)?,
    )?;
    meta.insert("bands".to_string(), spec.join(","));
    meta.insert("band_names".to_string(), fit.band_names.join(","));
    add_perm_metadata(&mut meta, perm);
    io::write_tensors(&encode_path(work, &bands_name(bands), &s.id), tensors, meta)?;
    Ok(fit)
}

/// One subject's banded result: its id, test r per voxel, and the mean R² split per band.
#[derive(Debug, Clone)]
pub struct BandedSummary {
    pub subject: String,
    pub test_r: Array1<f64>,
    pub mean_r2_split: Vec<f64>,
}

/// Banded encode over `subjects` (all when empty); a subject whose saved result has the same
/// inputs is not refitted. `--stream-weights` is refused (the banded fit holds its weights).
pub fn encode_dataset(
    ds: &Dataset,
    work: &Path,
    bands: &[BandSpec],
    subjects: &[String],
    plan: &SplitPlan,
    o: &BandedOptions,
    perm: &PermOptions,
) -> Result<Vec<BandedSummary>> {
    if o.ridge.stream_weights {
        bail!("--stream-weights is not available with --bands (--save-weights alone keeps the weights in ridge.safetensors)");
    }
    let subs = ds.select(subjects)?;
    over_subjects(&subs, "encode (bands)", true, |s| {
        let path = encode_path(work, &bands_name(bands), &s.id);
        let key = bands_key(s, work, bands, plan, o)?;
        let (r, split) = match saved_result(&path, &key).filter(|f| perm_matches(f, perm)) {
            Some(f) => (
                io::into_1d(f.f64("test_r")?, "test_r")?,
                io::into_2d(f.f64("r2_split")?, "r2_split")?,
            ),
            None => {
                let fit = encode_subject(ds, s, work, bands, plan, o, perm)?;
                (fit.test_r, fit.r2_split)
            }
        };
        Ok(BandedSummary {
            subject: s.id.clone(),
            test_r: r,
            mean_r2_split: split
                .rows()
                .into_iter()
                .map(|r| r.mean().unwrap_or(0.0))
                .collect(),
        })
    })
}
