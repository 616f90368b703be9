//! `dataset check --deep`: reads every run's time series and decodes every movie, reporting
//! what headers cannot show: files cut short, NaN or infinite values inside the mask, voxels
//! (or parcels) constant over a whole run, and movies that do not decode to their end.
use crate::fmri::dataset::nifti_io::{self, Mask};
use crate::fmri::dataset::scan_fmriprep::fmriprep_mask;
use crate::fmri::dataset::{hdf5, Layout, RunSource, Subject};
use anyhow::Result;
use ndarray::Array2;
use std::path::Path;

/// Problems and warnings of one subject's runs (every run is read, one at a time).
pub(super) fn subject(s: &Subject) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mask = match s.layout {
        Layout::Hdf5 => None,
        Layout::Bids => match s.mask.as_deref().map(Mask::read) {
            Some(Ok((_, m))) => Some(m),
            // The plain check already reports a missing or unreadable mask.
            _ => return (problems, warnings),
        },
        Layout::Fmriprep => match fmriprep_mask(s) {
            Ok((m, _)) => Some(m),
            Err(_) => return (problems, warnings),
        },
    };
    for r in &s.runs {
        let what = format!("sub-{} {}", s.id, r.label());
        let series = match (&r.source, &mask) {
            (RunSource::Hdf5 { dataset }, _) => hdf5::read_run(&r.bold, dataset),
            (RunSource::Nifti { .. }, Some(m)) => run_series(&r.bold, m, r.n_volumes),
            (RunSource::Nifti { .. }, None) => continue,
        };
        match series {
            Err(e) => problems.push(format!("{what}: {e:#}")),
            Ok(y) => {
                let constant = constant_columns(&y);
                if constant > 0 {
                    let unit = if mask.is_some() {
                        "voxel(s)"
                    } else {
                        "parcel(s)"
                    };
                    warnings.push(format!(
                        "{what} ({}): {constant} of {} {unit} constant over the whole run (their r will be 0)",
                        r.bold.display(),
                        y.ncols()
                    ));
                }
            }
        }
    }
    (problems, warnings)
}

/// Every volume of a run inside the mask; NaN/inf inside the mask and a file cut short are
/// errors (from [`Mask::extract`] and [`nifti_io::read_f32`]).
fn run_series(bold: &Path, mask: &Mask, n_volumes: usize) -> Result<Array2<f32>> {
    let (_, vol) = nifti_io::read_f32(bold)?;
    let y = mask.extract(&vol, bold)?;
    anyhow::ensure!(
        y.nrows() == n_volumes,
        "{}: {} volumes read, the header says {n_volumes}",
        bold.display(),
        y.nrows()
    );
    Ok(y)
}

fn constant_columns(y: &Array2<f32>) -> usize {
    y.columns()
        .into_iter()
        .filter(|c| c.iter().all(|&v| v == c[0]))
        .count()
}

/// The duration of a movie as decoded to its last frame (seconds), from the decode stage
/// itself so that its checks (e.g. of a stream ending before its declared length) apply.
#[cfg(feature = "video")]
pub(super) fn decoded_duration(movie: &Path) -> Result<f64> {
    use anyhow::Context;
    // Defaults refuse a movie that ends early (the truncation check of the video module).
    let opts = crate::fmri::video::DecodeOptions {
        fps: None,
        size: Some(16),
        ..Default::default()
    };
    let frames = crate::fmri::video::decode(movie, &opts)
        .with_context(|| format!("decoding {}", movie.display()))?;
    anyhow::ensure!(!frames.is_empty(), "{}: no frame decoded", movie.display());
    Ok(frames.duration())
}

#[cfg(not(feature = "video"))]
pub(super) fn decoded_duration(movie: &Path) -> Result<f64> {
    anyhow::bail!(
        "{}: this build has no video support (cargo feature `video`): --deep cannot decode it",
        movie.display()
    )
}
