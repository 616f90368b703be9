//! Scanning a BIDS-like subject (what `dataset synth` writes): `func/*_bold.nii.gz` runs with
//! JSON sidecars, one brain mask per subject, the movie named by the sidecar's `StimulusFile`
//! or `stimuli/task-T_run-YY.*`.
use super::nifti_io;
use super::scan::{name_of, nifti_stem, read_sidecar, resolve_tr, sorted_dir, Scanner};
use super::{entity, Run, RunSource, Subject};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

impl Scanner<'_> {
    pub(super) fn bids_subject(&mut self, dir: &Path, s: &mut Subject) {
        let func = dir.join("func");
        let files = match sorted_dir(&func) {
            Ok(f) => f,
            Err(e) => {
                self.problems.push(format!("{e:#}"));
                return;
            }
        };
        s.mask = files
            .iter()
            .find(|p| name_of(p).ends_with("_mask.nii.gz") || name_of(p).ends_with("_mask.nii"))
            .cloned();
        if s.mask.is_none() {
            self.problems.push(format!(
                "{}: no brain mask (*_desc-brain_mask.nii.gz)",
                func.display()
            ));
        }
        let bolds: Vec<&PathBuf> = files
            .iter()
            .filter(|p| name_of(p).ends_with("_bold.nii.gz") || name_of(p).ends_with("_bold.nii"))
            .collect();
        if bolds.is_empty() {
            self.problems
                .push(format!("{}: no BOLD runs (*_bold.nii.gz)", func.display()));
        }
        for bold in bolds {
            match self.bids_run(bold) {
                Ok(r) => s.runs.push(r),
                Err(e) => self.problems.push(format!("{e:#}")),
            }
        }
    }

    fn bids_run(&mut self, bold: &Path) -> Result<Run> {
        let name = name_of(bold);
        let stem = nifti_stem(&name);
        let task = entity(stem, "task").unwrap_or_else(|| "movie".into());
        let id = entity(stem, "run").unwrap_or_else(|| "01".into());
        let header = nifti_io::read_header(bold)?;
        if header.dim[0] != 4 {
            bail!(
                "{}: BOLD must be 4-D, header says {}-D",
                bold.display(),
                header.dim[0]
            );
        }
        let sidecar_path = bold.with_file_name(format!("{stem}.json"));
        let sidecar = read_sidecar(&sidecar_path)?;
        let tr = resolve_tr(bold, &sidecar, &sidecar_path, &header, self.opts.tr)?;
        let key = format!("task-{task}_run-{id}");
        let movie = match sidecar.get("StimulusFile").and_then(|v| v.as_str()) {
            Some(rel) => self.root.join(rel),
            None => {
                let stim = self.root.join("stimuli");
                sorted_dir(&stim)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|p| p.file_stem().is_some_and(|s| s.to_string_lossy() == key))
                    .unwrap_or_else(|| stim.join(format!("{key}.mp4")))
            }
        };
        if !movie.exists() {
            bail!(
                "{}: its movie {} does not exist",
                bold.display(),
                movie.display()
            );
        }
        Ok(Run {
            id,
            task,
            bold: bold.to_path_buf(),
            movie,
            tr,
            n_volumes: nifti_io::n_volumes(&header),
            episode: key.clone(),
            key,
            source: RunSource::Nifti {
                mask: None,
                confounds: None,
            },
        })
    }
}
