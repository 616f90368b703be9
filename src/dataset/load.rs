//! A subject's data: its space (mask voxels or atlas parcels) and every run's time series,
//! checked against each other, with confounds regressed out (fMRIPrep) and voxels averaged
//! per parcel when there is an atlas.
use super::atlas::Atlas;
use super::nifti_header::grid_mismatch;
use super::nifti_io::{self, Mask};
use super::scan_fmriprep::fmriprep_mask;
use super::{confounds, hdf5, Layout, RunSource, Space, Subject, SubjectData};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// The subject's space without reading time series (what the maps stage needs).
pub fn subject_space(s: &Subject) -> Result<Space> {
    let atlas = s.atlas.as_deref().map(Atlas::read).transpose()?;
    match s.layout {
        Layout::Hdf5 => {
            let n = s
                .n_parcels
                .with_context(|| format!("sub-{}: no runs", s.id))?;
            if let Some(a) = &atlas {
                a.check_parcels(n, &format!("sub-{} (HDF5 runs)", s.id))?;
            }
            Ok(Space::Parcels { n, atlas })
        }
        _ if atlas.is_some() => {
            let a = atlas.unwrap();
            Ok(Space::Parcels {
                n: a.n_parcels,
                atlas: Some(a),
            })
        }
        Layout::Bids => {
            let mp = s
                .mask
                .as_ref()
                .with_context(|| format!("sub-{}: no brain mask", s.id))?;
            let (_, mask) = Mask::read(mp)?;
            Ok(Space::Voxels {
                mask,
                header: nifti_io::read_header(&s.runs[0].bold)?,
            })
        }
        Layout::Fmriprep => {
            let (mask, header) = fmriprep_mask(s)?;
            Ok(Space::Voxels { mask, header })
        }
    }
}

/// Reads every run's time series, checking geometry and values; regresses confounds
/// (fMRIPrep) and averages voxels per parcel when the subject has an atlas.
pub fn load_subject(s: &Subject) -> Result<SubjectData> {
    if s.layout == Layout::Hdf5 {
        let n = s
            .n_parcels
            .with_context(|| format!("sub-{}: no runs", s.id))?;
        let mut runs = Vec::with_capacity(s.runs.len());
        for r in &s.runs {
            let RunSource::Hdf5 { dataset } = &r.source else {
                unreachable!("HDF5 subjects have HDF5 runs")
            };
            let a = hdf5::read_run(&r.bold, dataset)?;
            if a.ncols() != n || a.nrows() != r.n_volumes {
                bail!(
                    "{}: dataset '{dataset}' is {:?}, expected ({}, {n})",
                    r.bold.display(),
                    a.dim(),
                    r.n_volumes
                );
            }
            runs.push(a);
        }
        return Ok(SubjectData {
            space: subject_space(s)?,
            runs,
        });
    }
    let (mask, mask_header, mask_path) = match s.layout {
        Layout::Bids => {
            let mp = s
                .mask
                .as_ref()
                .with_context(|| format!("sub-{}: no brain mask", s.id))?;
            let (h, m) = Mask::read(mp)?;
            (m, Some(h), mp.clone())
        }
        _ => {
            let (m, _) = fmriprep_mask(s)?;
            (m, None, PathBuf::new())
        }
    };
    let mut runs = Vec::with_capacity(s.runs.len());
    let mut header = None;
    for run in &s.runs {
        let (h, vol) = nifti_io::read_f32(&run.bold)?;
        if let Some(mh) = &mask_header {
            if let Some(why) = grid_mismatch(&h, mh) {
                bail!(
                    "{}: the BOLD is not on the grid of the brain mask {}: {why}",
                    run.bold.display(),
                    mask_path.display()
                );
            }
        }
        let mut y = mask.extract(&vol, &run.bold)?;
        if !s.confound_columns.is_empty() {
            let RunSource::Nifti {
                confounds: Some(c), ..
            } = &run.source
            else {
                bail!(
                    "{}: confounds were asked for but the run has no confounds file",
                    run.bold.display()
                )
            };
            let cm = confounds::read(c, &s.confound_columns)?;
            if cm.nrows() != y.nrows() {
                bail!(
                    "{}: {} rows but the BOLD run {} has {} volumes (TR count mismatch)",
                    c.display(),
                    cm.nrows(),
                    run.bold.display(),
                    y.nrows()
                );
            }
            confounds::regress_out(&mut y, &cm)
                .with_context(|| format!("regressing confounds of {}", c.display()))?;
        }
        runs.push(y);
        header.get_or_insert(h);
    }
    if let Some(ap) = &s.atlas {
        let a = Atlas::read(ap)?;
        // Same grid is not enough: the atlas must also sit at the same place in the world.
        let bold_header = header.as_ref().expect("a subject has runs");
        if let Some(why) = grid_mismatch(&a.header, bold_header) {
            bail!(
                "{}: the atlas is not on the BOLD's grid ({}): {why}; resample the atlas to the BOLD grid",
                ap.display(),
                s.runs[0].bold.display()
            );
        }
        let mut parcels = Vec::with_capacity(runs.len());
        let mut empty_labels = Vec::new();
        for (r, y) in s.runs.iter().zip(&runs) {
            let (p, empty) = a.parcel_means(y, &mask, &r.bold.display().to_string())?;
            empty_labels = empty;
            parcels.push(p);
        }
        if !empty_labels.is_empty() {
            eprintln!(
                "warning: sub-{}: {} atlas label(s) have no voxel inside the brain mask (their parcels are constant, r = 0): {:?}",
                s.id,
                empty_labels.len(),
                &empty_labels[..empty_labels.len().min(20)]
            );
        }
        return Ok(SubjectData {
            space: Space::Parcels {
                n: a.n_parcels,
                atlas: Some(a),
            },
            runs: parcels,
        });
    }
    Ok(SubjectData {
        space: Space::Voxels {
            mask,
            header: header.expect("a subject has runs"),
        },
        runs,
    })
}
