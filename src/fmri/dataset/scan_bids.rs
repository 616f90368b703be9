//! Scanning a BIDS-like subject (what `dataset synth` writes): `func/*_bold.nii.gz` runs with
//! JSON sidecars (or `ses-YY/func/` session folders), one brain mask per subject, the movie
//! named by the sidecar's `StimulusFile` or `stimuli/<key>.*` (`task-T_run-YY`, with sessions
//! `ses-YY_task-T_run-ZZ`). Runs are ordered by session, then by integer run index.
use crate::fmri::dataset::nifti_header::grid_mismatch;
use crate::fmri::dataset::nifti_io;
use crate::fmri::dataset::scan::{
    name_of, nifti_stem, read_sidecar, resolve_tr, sorted_dir, Scanner,
};
use crate::fmri::dataset::{entity, Run, RunSource, Subject};
use anyhow::{bail, Result};
use nifti::NiftiHeader;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Sort key of a BIDS label (`run-10`, `ses-02`): integers by value (run-2 before run-10),
/// then anything else as text.
fn label_order(label: Option<&str>) -> (u64, String) {
    match label {
        None => (0, String::new()),
        Some(l) => match l.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (u64::MAX, l.to_string()),
        },
    }
}

/// What a subject folder holds, for the error when it is in no layout brainscale reads.
fn describe_folder(dir: &Path) -> String {
    let mut parts = Vec::new();
    for p in sorted_dir(dir).unwrap_or_default() {
        let n = name_of(&p);
        if n.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            let inner: Vec<String> = sorted_dir(&p)
                .unwrap_or_default()
                .iter()
                .filter(|q| q.is_dir())
                .map(|q| format!("{}/", name_of(q)))
                .collect();
            if inner.is_empty() {
                parts.push(format!("{n}/"));
            } else {
                parts.push(format!("{n}/ (holding {})", inner.join(", ")));
            }
        } else {
            parts.push(n);
        }
        if parts.len() >= 8 {
            parts.push("...".into());
            break;
        }
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

impl Scanner<'_> {
    /// A BIDS-like subject: `sub-XX/func/` or sessions `sub-XX/ses-YY/func/` (not both), one
    /// brain mask (the first `*_mask.nii[.gz]` found, sessions in order), runs ordered by
    /// session then integer run index.
    pub(super) fn bids_subject(&mut self, dir: &Path, s: &mut Subject) {
        let direct = dir.join("func");
        let sessions: Vec<PathBuf> = sorted_dir(dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.is_dir() && name_of(p).starts_with("ses-"))
            .collect();
        let session_funcs: Vec<(String, PathBuf)> = sessions
            .iter()
            .filter(|p| p.join("func").is_dir())
            .map(|p| {
                (
                    name_of(p).trim_start_matches("ses-").to_string(),
                    p.join("func"),
                )
            })
            .collect();
        let expected =
            "brainscale reads sub-XX/func/*_bold.nii[.gz] or sub-XX/ses-YY/func/*_bold.nii[.gz] \
             (BIDS), fMRIPrep derivatives (*_desc-preproc_bold.nii.gz) or parcellated HDF5 (*.h5)";
        let funcs: Vec<(Option<String>, PathBuf)> = match (
            direct.is_dir(),
            session_funcs.is_empty(),
        ) {
            (true, true) => vec![(None, direct.clone())],
            (false, false) => session_funcs
                .into_iter()
                .map(|(l, p)| (Some(l), p))
                .collect(),
            (true, false) => {
                self.problems.push(format!(
                    "sub-{}: unsupported layout in {}: runs both in func/ and in session folders ({}); {expected}",
                    s.id,
                    dir.display(),
                    session_funcs.iter().map(|(l, _)| format!("ses-{l}/func/")).collect::<Vec<_>>().join(", ")
                ));
                return;
            }
            (false, true) => {
                self.problems.push(format!(
                    "sub-{}: unsupported layout in {}: found {}; {expected}",
                    s.id,
                    dir.display(),
                    describe_folder(dir)
                ));
                return;
            }
        };
        let mut files: Vec<(Option<String>, PathBuf)> = Vec::new();
        for (ses, func) in &funcs {
            match sorted_dir(func) {
                Ok(f) => files.extend(f.into_iter().map(|p| (ses.clone(), p))),
                Err(e) => self.problems.push(format!("{e:#}")),
            }
        }
        let masks: Vec<&PathBuf> = files
            .iter()
            .map(|(_, p)| p)
            .filter(|p| name_of(p).ends_with("_mask.nii.gz") || name_of(p).ends_with("_mask.nii"))
            .collect();
        s.mask = masks.first().map(|p| (*p).clone());
        if masks.len() > 1 {
            self.notes.push(format!(
                "sub-{}: several brain masks; using {} for every run ({} other(s) ignored)",
                s.id,
                masks[0].display(),
                masks.len() - 1
            ));
        }
        let where_ = funcs
            .iter()
            .map(|(_, f)| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mask_header = match &s.mask {
            None => {
                self.problems.push(format!(
                    "{where_}: no brain mask (*_desc-brain_mask.nii.gz)"
                ));
                None
            }
            Some(m) => match nifti_io::read_header(m) {
                Ok(h) => Some(h),
                Err(e) => {
                    self.problems.push(format!("{e:#}"));
                    None
                }
            },
        };
        let bolds: Vec<&(Option<String>, PathBuf)> = files
            .iter()
            .filter(|(_, p)| {
                name_of(p).ends_with("_bold.nii.gz") || name_of(p).ends_with("_bold.nii")
            })
            .collect();
        if bolds.is_empty() {
            self.problems
                .push(format!("{where_}: no BOLD runs (*_bold.nii.gz)"));
        }
        let mut runs: Vec<((u64, String), (u64, String), Run)> = Vec::new();
        for (ses, bold) in bolds {
            match self.bids_run(
                bold,
                ses.as_deref(),
                mask_header.as_ref(),
                s.mask.as_deref(),
            ) {
                Ok((run_label, r)) => runs.push((
                    label_order(ses.as_deref()),
                    label_order(run_label.as_deref()),
                    r,
                )),
                Err(e) => self.problems.push(format!("{e:#}")),
            }
        }
        runs.sort_by(|a, b| {
            (&a.0, &a.1, &a.2.task, &a.2.key).cmp(&(&b.0, &b.1, &b.2.task, &b.2.key))
        });
        s.runs = runs.into_iter().map(|(_, _, r)| r).collect();
        // Several tasks with the same run label: their ids fall back to the unique keys.
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

    /// One run; returns its run label (the `run` entity) for ordering.
    fn bids_run(
        &mut self,
        bold: &Path,
        session: Option<&str>,
        mask_header: Option<&NiftiHeader>,
        mask: Option<&Path>,
    ) -> Result<(Option<String>, Run)> {
        let name = name_of(bold);
        let stem = nifti_stem(&name);
        let task = entity(stem, "task").unwrap_or_else(|| "movie".into());
        let run_label = entity(stem, "run");
        let run = run_label.clone().unwrap_or_else(|| "01".into());
        let header = nifti_io::read_header(bold)?;
        if header.dim[0] != 4 {
            bail!(
                "{}: BOLD must be 4-D, header says {}-D",
                bold.display(),
                header.dim[0]
            );
        }
        if let (Some(mh), Some(mp)) = (mask_header, mask) {
            if let Some(why) = grid_mismatch(&header, mh) {
                bail!(
                    "{}: the BOLD is not on the grid of the brain mask {}: {why}",
                    bold.display(),
                    mp.display()
                );
            }
        }
        let sidecar_path = bold.with_file_name(format!("{stem}.json"));
        let sidecar = read_sidecar(&sidecar_path)?;
        let tr = resolve_tr(bold, &sidecar, &sidecar_path, &header, self.opts.tr)?;
        let (id, key) = match session {
            None => (run.clone(), format!("task-{task}_run-{run}")),
            Some(ses) => (
                format!("ses-{ses}_run-{run}"),
                format!("ses-{ses}_task-{task}_run-{run}"),
            ),
        };
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
        Ok((
            run_label,
            Run {
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
            },
        ))
    }
}
