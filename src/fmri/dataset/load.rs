//! A subject's data: its space (mask voxels or atlas parcels) and every run's time series,
//! checked against each other, with confounds regressed out (fMRIPrep) and voxels averaged
//! per parcel when there is an atlas.
use crate::fmri::dataset::atlas::Atlas;
use crate::fmri::dataset::nifti_header::grid_mismatch;
use crate::fmri::dataset::nifti_io::{self, Mask};
use crate::fmri::dataset::scan_fmriprep::fmriprep_mask;
use crate::fmri::dataset::{
    confounds, hdf5, nifti_stream, Layout, RunSource, Space, Subject, SubjectData,
};
use anyhow::{bail, Context, Result};
use ndarray::Array2;
use nifti::NiftiHeader;
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
    let reader = RunReader::open(s)?;
    let mut runs = Vec::with_capacity(s.runs.len());
    let mut empty_labels = Vec::new();
    for i in 0..s.runs.len() {
        let (y, empty) = reader.read(i, false)?;
        empty_labels = empty;
        runs.push(y);
    }
    if !empty_labels.is_empty() {
        eprintln!(
            "warning: sub-{}: {} atlas label(s) have no voxel inside the brain mask (their parcels are constant, r = 0): {:?}",
            s.id,
            empty_labels.len(),
            &empty_labels[..empty_labels.len().min(20)]
        );
    }
    Ok(SubjectData {
        space: reader.space()?,
        runs,
    })
}

/// Reads a subject's runs one at a time (what [`load_subject`] does for all of them, and the
/// voxel-major cache, `dataset::voxcache`, run by run with bounded memory).
pub struct RunReader<'a> {
    s: &'a Subject,
    /// Mask voxels (BIDS, fMRIPrep); `None` for HDF5 parcels.
    mask: Option<Mask>,
    mask_header: Option<NiftiHeader>,
    mask_path: PathBuf,
    atlas: Option<Atlas>,
    /// Header of the first BOLD run (maps are written with it).
    header: Option<NiftiHeader>,
}

impl<'a> RunReader<'a> {
    /// Reads the mask (or the fMRIPrep masks' intersection), the atlas and the first run's
    /// header; the atlas must sit on the BOLD grid.
    pub fn open(s: &'a Subject) -> Result<Self> {
        if s.runs.is_empty() {
            bail!("sub-{}: no runs", s.id);
        }
        if s.layout == Layout::Hdf5 {
            return Ok(Self {
                s,
                mask: None,
                mask_header: None,
                mask_path: PathBuf::new(),
                atlas: None,
                header: None,
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
        let header = nifti_io::read_header(&s.runs[0].bold)?;
        let atlas = match &s.atlas {
            Some(ap) => {
                let a = Atlas::read(ap)?;
                // Same grid is not enough: the atlas must also sit at the same place in the world.
                if let Some(why) = grid_mismatch(&a.header, &header) {
                    bail!(
                        "{}: the atlas is not on the BOLD's grid ({}): {why}; resample the atlas to the BOLD grid",
                        ap.display(),
                        s.runs[0].bold.display()
                    );
                }
                Some(a)
            }
            None => None,
        };
        Ok(Self {
            s,
            mask: Some(mask),
            mask_header,
            mask_path,
            atlas,
            header: Some(header),
        })
    }

    /// The subject's space: mask voxels, or atlas / HDF5 parcels.
    pub fn space(&self) -> Result<Space> {
        if self.mask.is_none() {
            return subject_space(self.s);
        }
        Ok(match (&self.atlas, &self.mask, &self.header) {
            (Some(a), _, _) => Space::Parcels {
                n: a.n_parcels,
                atlas: Some(a.clone()),
            },
            (None, Some(mask), Some(header)) => Space::Voxels {
                mask: mask.clone(),
                header: header.clone(),
            },
            _ => unreachable!("voxel subjects have a mask and a header"),
        })
    }

    /// Run `i`'s time series [TRs, voxels or parcels] with confounds regressed out and
    /// voxels averaged per parcel, and the atlas labels with no voxel in the mask.
    /// `stream`: read the NIfTI volume by volume (gzip decompressed as it is read, never
    /// whole in memory) instead of whole.
    pub fn read(&self, i: usize, stream: bool) -> Result<(Array2<f32>, Vec<u32>)> {
        let s = self.s;
        let run = &s.runs[i];
        let Some(mask) = &self.mask else {
            let n = s
                .n_parcels
                .with_context(|| format!("sub-{}: no runs", s.id))?;
            let RunSource::Hdf5 { dataset } = &run.source else {
                unreachable!("HDF5 subjects have HDF5 runs")
            };
            let a = hdf5::read_run(&run.bold, dataset)?;
            if a.ncols() != n || a.nrows() != run.n_volumes {
                bail!(
                    "{}: dataset '{dataset}' is {:?}, expected ({}, {n})",
                    run.bold.display(),
                    a.dim(),
                    run.n_volumes
                );
            }
            return Ok((a, vec![]));
        };
        let mut y = if stream {
            nifti_stream::read_masked(&run.bold, mask, self.mask_header.as_ref(), &self.mask_path)?
        } else {
            let (h, vol) = nifti_io::read_f32(&run.bold)?;
            if let Some(mh) = &self.mask_header {
                if let Some(why) = grid_mismatch(&h, mh) {
                    bail!(
                        "{}: the BOLD is not on the grid of the brain mask {}: {why}",
                        run.bold.display(),
                        self.mask_path.display()
                    );
                }
            }
            mask.extract(&vol, &run.bold)?
        };
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
        match &self.atlas {
            Some(a) => a.parcel_means(&y, mask, &run.bold.display().to_string()),
            None => Ok((y, vec![])),
        }
    }
}
