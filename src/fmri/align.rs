//! Align stage: features at frame (or clip) times → a design matrix on the TR grid.
//!
//! Each TR window [k·TR, (k+1)·TR) gets the mean of the feature samples whose time falls in
//! it; then either FIR delays (copies shifted by d TRs, d in `delays`, as in Huth-lab encoding
//! models) or convolution with the canonical (SPM) HRF model the haemodynamic lag.
//! [`align_dataset`] writes one design matrix per subject and run under WORK/design/.
use crate::core::io::{self, Tensor, TensorFile};
use crate::fmri::coverage::coverage_problem;
use crate::fmri::dataset::Dataset;
use crate::fmri::features;
use crate::fmri::features::format::FrameFeatures;
pub use crate::fmri::hrf::canonical_hrf;
use anyhow::{bail, Result};
use ndarray::{s, Array1, Array2};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How the haemodynamic delay is modelled.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Lag {
    /// Shifted copies of the features, by these many TRs (default 1, 2, 3, 4).
    Fir(Vec<usize>),
    /// Convolution with the canonical double-gamma HRF.
    Hrf,
}

/// Alignment options.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlignOptions {
    pub lag: Lag,
    /// Largest tolerated difference between movie and BOLD durations, in seconds
    /// (None: one TR).
    pub max_mismatch_s: Option<f64>,
}

impl Lag {
    /// The Algonauts 2025 baseline's alignment: the features of a stimulus window of `window`
    /// TRs ending `hrf_delay` TRs before each fMRI sample, concatenated; i.e. FIR delays
    /// hrf_delay, …, hrf_delay + window − 1 (zeros before the run's start).
    pub fn window(hrf_delay: usize, window: usize) -> Result<Self> {
        if window == 0 {
            bail!("the stimulus window must be at least 1 TR");
        }
        Ok(Lag::Fir((hrf_delay..hrf_delay + window).collect()))
    }
}

impl Default for AlignOptions {
    fn default() -> Self {
        Self {
            lag: Lag::Fir(vec![1, 2, 3, 4]),
            max_mismatch_s: None,
        }
    }
}

/// Checks that the movie covers the BOLD run (and is not much longer), saying by how much
/// when it does not. `what` names the run in the message.
pub fn check_coverage(
    feat: &FrameFeatures,
    movie_duration: f64,
    tr: f64,
    n_trs: usize,
    max_mismatch_s: Option<f64>,
    what: &str,
) -> Result<()> {
    if feat.times.is_empty() {
        bail!("{what}: the movie has no feature samples");
    }
    match coverage_problem(movie_duration, tr, n_trs, max_mismatch_s, what) {
        Some(p) => bail!("{p}"),
        None => Ok(()),
    }
}

/// Mean of the samples in each TR window. A window with no sample (features sparser than
/// the TR) takes the sample nearest to its centre.
pub fn window_average(feat: &FrameFeatures, tr: f64, n_trs: usize) -> Array2<f32> {
    let f = feat.values.ncols();
    let mut out = Array2::<f32>::zeros((n_trs, f));
    let mut sums = Array2::<f64>::zeros((n_trs, f));
    let mut counts = vec![0usize; n_trs];
    for (i, &t) in feat.times.iter().enumerate() {
        let k = (t / tr + 1e-9).floor();
        if k < 0.0 || k as usize >= n_trs {
            continue;
        }
        let k = k as usize;
        counts[k] += 1;
        sums.row_mut(k)
            .zip_mut_with(&feat.values.row(i), |s, &v| *s += v as f64);
    }
    for k in 0..n_trs {
        if counts[k] > 0 {
            out.row_mut(k)
                .assign(&sums.row(k).mapv(|v| (v / counts[k] as f64) as f32));
        } else {
            let centre = (k as f64 + 0.5) * tr;
            let nearest = feat
                .times
                .iter()
                .enumerate()
                .min_by(|a, b| (a.1 - centre).abs().total_cmp(&(b.1 - centre).abs()))
                .map(|(i, _)| i)
                .unwrap_or(0);
            out.row_mut(k).assign(&feat.values.row(nearest));
        }
    }
    out
}

/// FIR design: for each delay d, the features shifted down by d rows (zeros before the start).
pub fn fir(x: &Array2<f32>, delays: &[usize]) -> Array2<f32> {
    let (n, f) = x.dim();
    let mut out = Array2::<f32>::zeros((n, f * delays.len()));
    for (j, &d) in delays.iter().enumerate() {
        if d < n {
            out.slice_mut(s![d.., j * f..(j + 1) * f])
                .assign(&x.slice(s![..n - d, ..]));
        }
    }
    out
}

/// Causal convolution of every column with the canonical HRF.
pub fn hrf_convolve(x: &Array2<f32>, tr: f64) -> Array2<f32> {
    let h = canonical_hrf(tr);
    let (n, _) = x.dim();
    let mut out = Array2::<f32>::zeros(x.raw_dim());
    for t in 0..n {
        let mut row = Array1::<f64>::zeros(x.ncols());
        for (lag, &w) in h.iter().enumerate().take(t + 1) {
            row.zip_mut_with(&x.row(t - lag), |r, &v| *r += w * v as f64);
        }
        out.row_mut(t).assign(&row.mapv(|v| v as f32));
    }
    out
}

/// The design matrix of one run: window averages on the TR grid, then the lag model.
pub fn design(
    feat: &FrameFeatures,
    movie_duration: f64,
    tr: f64,
    n_trs: usize,
    opts: &AlignOptions,
    what: &str,
) -> Result<Array2<f32>> {
    check_coverage(feat, movie_duration, tr, n_trs, opts.max_mismatch_s, what)?;
    let avg = window_average(feat, tr, n_trs);
    Ok(match &opts.lag {
        Lag::Fir(d) => {
            if d.is_empty() {
                bail!("FIR alignment needs at least one delay");
            }
            fir(&avg, d)
        }
        Lag::Hrf => hrf_convolve(&avg, tr),
    })
}

/// The design matrix file of one subject's run for features `feat`.
pub fn design_path(work: &Path, feat: &str, subject: &str, label: &str) -> PathBuf {
    work.join("design")
        .join(feat)
        .join(format!("sub-{subject}"))
        .join(format!("{label}.safetensors"))
}

/// Align stage: writes one design matrix per subject and run. Returns how many were written
/// (finished ones with the same options are skipped).
pub fn align_dataset(ds: &Dataset, work: &Path, feat: &str, opts: &AlignOptions) -> Result<usize> {
    let config = serde_json::to_string(opts)?;
    let mut written = 0;
    let mut cache: HashMap<PathBuf, (FrameFeatures, f64)> = HashMap::new();
    for s in &ds.subjects {
        for r in &s.runs {
            let out = design_path(work, feat, &s.id, &r.label());
            let fp = features::features_path(work, feat, &r.movie);
            // A design is redone when the options, the features file or the run's grid change.
            let key = format!("{config}|{}|{}|{}", io::mtime_ns(&fp), r.tr, r.n_volumes);
            if TensorFile::open(&out)
                .map(|f| f.metadata().get("align") == Some(&key))
                .unwrap_or(false)
            {
                continue;
            }
            if !cache.contains_key(&fp) {
                if !fp.exists() {
                    bail!(
                        "{}: no features for movie {} (run the features stage first)",
                        fp.display(),
                        r.movie.display()
                    );
                }
                cache.insert(fp.clone(), features::load_with_duration(&fp)?);
            }
            let (f, dur) = &cache[&fp];
            let what = format!("sub-{} {} ({})", s.id, r.label(), r.bold.display());
            let x = design(f, *dur, r.tr, r.n_volumes, opts, &what)?;
            let meta = HashMap::from([("align".to_string(), key)]);
            io::write_tensors(&out, vec![("design", Tensor::F32(x.into_dyn()))], meta)?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn windows_average_frames_and_fir_shifts() {
        // 4 samples per TR of 1 s; values = sample index.
        let times = Array1::from_iter((0..12).map(|i| i as f64 * 0.25));
        let values = Array2::from_shape_fn((12, 1), |(i, _)| i as f32);
        let f = FrameFeatures { values, times };
        let w = window_average(&f, 1.0, 3);
        assert_eq!(w, array![[1.5], [5.5], [9.5]]);
        let d = fir(&w, &[1, 2]);
        assert_eq!(d, array![[0.0, 0.0], [1.5, 0.0], [5.5, 1.5]]);
    }

    #[test]
    fn algonauts_window_is_a_block_of_fir_delays() {
        assert_eq!(Lag::window(3, 5).unwrap(), Lag::Fir(vec![3, 4, 5, 6, 7]));
        assert_eq!(Lag::window(0, 1).unwrap(), Lag::Fir(vec![0]));
        assert!(Lag::window(3, 0).is_err());
    }

    #[test]
    fn coverage_errors_say_by_how_much() {
        let times = Array1::from_iter((0..40).map(|i| i as f64 * 0.25));
        let f = FrameFeatures {
            values: Array2::zeros((40, 1)),
            times,
        };
        assert!(check_coverage(&f, 10.0, 1.0, 10, None, "r").is_ok());
        let e = check_coverage(&f, 10.0, 1.0, 12, None, "run-01")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("longer than the movie") && e.contains("2.00 s"),
            "{e}"
        );
        let e = check_coverage(&f, 10.0, 1.0, 7, None, "run-01")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("movie (10.00 s) is longer") && e.contains("3.00 s"),
            "{e}"
        );
    }
}
