//! Scanning an fMRIPrep subject: `*_space-S_desc-preproc_bold.nii.gz` runs (one space, chosen
//! with --space when there are several), each with its own brain mask, sidecar and confounds
//! file; movies found by episode key. Also the subject's voxels: those inside every run's mask.
use crate::fmri::dataset::nifti_header::grid_mismatch;
use crate::fmri::dataset::nifti_io::{self, Mask};
use crate::fmri::dataset::scan::{name_of, nifti_stem, read_sidecar, resolve_tr, Scanner};
use crate::fmri::dataset::{confounds, entity, Run, RunSource, Subject};
use anyhow::{bail, Context, Result};
use nifti::NiftiHeader;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

impl Scanner<'_> {
    pub(super) fn fmriprep_subject(&mut self, files: &[PathBuf], s: &mut Subject) {
        let preproc: Vec<&PathBuf> = files
            .iter()
            .filter(|p| name_of(p).contains("_desc-preproc_bold.nii"))
            .collect();
        let mut spaces: Vec<String> = preproc
            .iter()
            .filter_map(|p| entity(&name_of(p), "space"))
            .collect();
        spaces.sort();
        spaces.dedup();
        let space = match (&self.opts.space, spaces.len()) {
            (Some(sp), _) => {
                if !spaces.contains(sp) {
                    self.problems.push(format!(
                        "sub-{}: no preprocessed BOLD in space '{sp}' (spaces found: {})",
                        s.id,
                        spaces.join(", ")
                    ));
                    return;
                }
                Some(sp.clone())
            }
            (None, 0) => None,
            (None, 1) => Some(spaces[0].clone()),
            (None, _) => {
                self.problems.push(format!(
                    "sub-{}: preprocessed BOLD in several spaces ({}): choose one with --space",
                    s.id,
                    spaces.join(", ")
                ));
                return;
            }
        };
        for bold in preproc {
            let name = name_of(bold);
            if space.is_some() && entity(&name, "space") != space {
                continue;
            }
            match self.fmriprep_run(bold, s) {
                Ok(Some(r)) => s.runs.push(r),
                Ok(None) => {}
                Err(e) => self.problems.push(format!("{e:#}")),
            }
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for r in &s.runs {
            *seen.entry(r.id.clone()).or_default() += 1;
        }
        for r in &mut s.runs {
            if seen[&r.id] > 1 {
                r.id = r.key.clone();
            }
        }
    }

    fn fmriprep_run(&mut self, bold: &Path, s: &Subject) -> Result<Option<Run>> {
        let name = name_of(bold);
        let stem = nifti_stem(&name).to_string();
        let header = nifti_io::read_header(bold)?;
        if header.dim[0] != 4 {
            bail!(
                "{}: BOLD must be 4-D, header says {}-D",
                bold.display(),
                header.dim[0]
            );
        }
        let n_volumes = nifti_io::n_volumes(&header);
        let sidecar_path = bold.with_file_name(format!("{stem}.json"));
        let sidecar = read_sidecar(&sidecar_path)?;
        let tr = resolve_tr(bold, &sidecar, &sidecar_path, &header, self.opts.tr)?;
        // ses-001_task-s01e02a[_run-1]: the entities between sub- and space-/desc-.
        let key: Vec<&str> = stem
            .split('_')
            .filter(|p| !p.starts_with("sub-"))
            .take_while(|p| {
                !p.starts_with("space-") && !p.starts_with("desc-") && !p.starts_with("res-")
            })
            .collect();
        let key = key.join("_");
        let task = entity(&stem, "task").unwrap_or_else(|| key.clone());
        let id = match entity(&stem, "run") {
            Some(r) => format!("{task}_run-{r}"),
            None => task.clone(),
        };
        let mask = bold.with_file_name(name.replace("_desc-preproc_bold", "_desc-brain_mask"));
        if !mask.exists() {
            bail!(
                "{}: no brain mask {} beside it",
                bold.display(),
                mask.display()
            );
        }
        if let Some(why) = grid_mismatch(&header, &nifti_io::read_header(&mask)?) {
            bail!(
                "{}: the BOLD is not on the grid of its brain mask {}: {why}",
                bold.display(),
                mask.display()
            );
        }
        let prefix = stem
            .split("_space-")
            .next()
            .unwrap()
            .split("_desc-")
            .next()
            .unwrap()
            .to_string();
        let confounds = ["timeseries", "regressors"]
            .iter()
            .map(|k| bold.with_file_name(format!("{prefix}_desc-confounds_{k}.tsv")))
            .find(|p| p.exists());
        if !s.confound_columns.is_empty() {
            match &confounds {
                None => bail!(
                    "{}: confounds were asked for but {} does not exist",
                    bold.display(),
                    bold.with_file_name(format!("{prefix}_desc-confounds_timeseries.tsv"))
                        .display()
                ),
                Some(c) => {
                    let missing = confounds::missing_columns(c, &s.confound_columns)?;
                    if !missing.is_empty() {
                        bail!("{}", confounds::missing_message(c, &missing));
                    }
                    let rows = confounds::n_rows(c)?;
                    if rows != n_volumes {
                        bail!("{}: {rows} rows but the BOLD run {} has {n_volumes} volumes (TR count mismatch)", c.display(), bold.display());
                    }
                }
            }
        }
        let what = format!("sub-{} {key} ({})", s.id, bold.display());
        let Some(movie) = self.movie_for(&task, &what, &sidecar) else {
            return Ok(None);
        };
        Ok(Some(Run {
            id,
            task: task.clone(),
            bold: bold.to_path_buf(),
            movie,
            tr,
            n_volumes,
            key,
            episode: task,
            source: RunSource::Nifti {
                mask: Some(mask),
                confounds,
            },
        }))
    }
}

/// The voxels used for an fMRIPrep subject: inside every run's mask.
pub(super) fn fmriprep_mask(s: &Subject) -> Result<(Mask, NiftiHeader)> {
    let mut inter: Option<(Mask, PathBuf)> = None;
    let mut first_header: Option<NiftiHeader> = None;
    for r in &s.runs {
        let RunSource::Nifti { mask: Some(mp), .. } = &r.source else {
            bail!("{}: no brain mask", r.bold.display())
        };
        let (h, m) = Mask::read(mp)?;
        match &first_header {
            None => first_header = Some(h),
            Some(h0) => {
                if let Some(why) = grid_mismatch(h0, &h) {
                    bail!(
                        "sub-{}: the brain masks are not on one grid ({} vs {}): {why}",
                        s.id,
                        mp.display(),
                        inter
                            .as_ref()
                            .map_or(String::new(), |(_, p)| p.display().to_string())
                    );
                }
            }
        }
        inter = Some(match inter {
            None => (m, mp.clone()),
            Some((a, ap)) => {
                if a.dims != m.dims {
                    bail!(
                        "{}: mask is {:?} but {} is {:?}",
                        mp.display(),
                        m.dims,
                        ap.display(),
                        a.dims
                    );
                }
                let keep: std::collections::HashSet<usize> = m.linear.iter().copied().collect();
                let linear: Vec<usize> =
                    a.linear.into_iter().filter(|l| keep.contains(l)).collect();
                if linear.is_empty() {
                    bail!(
                        "sub-{}: the runs' brain masks have no voxel in common (last: {})",
                        s.id,
                        mp.display()
                    );
                }
                (
                    Mask {
                        dims: a.dims,
                        linear,
                    },
                    ap,
                )
            }
        });
    }
    let (mask, _) = inter.with_context(|| format!("sub-{}: no runs", s.id))?;
    Ok((mask, nifti_io::read_header(&s.runs[0].bold)?))
}
