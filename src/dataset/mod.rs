//! Dataset stage: discovery and validation of a BIDS-like movie-fMRI folder.
//!
//! Layout (what `dataset synth` writes and what `Dataset::open` reads):
//! ```text
//! ROOT/stimuli/<movie>.mp4
//! ROOT/sub-XX/func/sub-XX_task-T_run-YY_bold.nii.gz   4-D BOLD, TR in pixdim[4]
//! ROOT/sub-XX/func/sub-XX_task-T_run-YY_bold.json     {"RepetitionTime": s, "StimulusFile": "stimuli/..."}
//! ROOT/sub-XX/func/sub-XX_task-T_desc-brain_mask.nii.gz
//! ROOT/derivatives/groundtruth/...                    (synthetic datasets only)
//! ```
//! A run's movie is the sidecar's `StimulusFile` (relative to ROOT), else
//! `stimuli/task-T_run-YY.*`.
pub mod nifti_io;
pub mod synth;

use anyhow::{bail, Context, Result};
use ndarray::Array2;
use nifti::NiftiHeader;
use nifti_io::Mask;
use std::path::{Path, PathBuf};

/// One BOLD run and the movie shown during it.
#[derive(Debug, Clone)]
pub struct Run {
    /// e.g. "01".
    pub id: String,
    pub task: String,
    pub bold: PathBuf,
    pub movie: PathBuf,
    /// Seconds.
    pub tr: f64,
    pub n_volumes: usize,
}

impl Run {
    /// Short label used in file names: `task-T_run-YY`.
    pub fn label(&self) -> String {
        format!("task-{}_run-{}", self.task, self.id)
    }
}

#[derive(Debug, Clone)]
pub struct Subject {
    /// e.g. "01" (the part after `sub-`).
    pub id: String,
    pub mask: PathBuf,
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub subjects: Vec<Subject>,
}

/// A subject's voxel data: time series of the mask's voxels for every run.
pub struct SubjectData {
    pub mask: Mask,
    /// Header of the first BOLD run: the geometry maps are written with.
    pub header: NiftiHeader,
    /// [TRs, voxels] per run, in the subject's run order.
    pub runs: Vec<Array2<f32>>,
}

fn sorted_dir(path: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading folder {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// Value of a BIDS entity (`run` in `sub-01_task-movie_run-02_bold`).
pub fn entity(name: &str, key: &str) -> Option<String> {
    name.split('_').find_map(|p| p.strip_prefix(&format!("{key}-")).map(str::to_string))
}

impl Dataset {
    /// Finds subjects, runs, masks, TRs and movies, checking everything that can be checked
    /// from headers and sidecars (volumes are read later, per subject).
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!("dataset folder {} not found", root.display());
        }
        let mut subjects = Vec::new();
        for dir in sorted_dir(root)? {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let Some(id) = name.strip_prefix("sub-") else { continue };
            if dir.is_dir() {
                subjects.push(Self::open_subject(root, &dir, id)?);
            }
        }
        if subjects.is_empty() {
            bail!("{}: no subject folders (sub-XX) found", root.display());
        }
        Ok(Self { root: root.to_path_buf(), subjects })
    }

    fn open_subject(root: &Path, dir: &Path, id: &str) -> Result<Subject> {
        let func = dir.join("func");
        let files = sorted_dir(&func)?;
        let name_of = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        let mask = files
            .iter()
            .find(|p| name_of(p).ends_with("_mask.nii.gz") || name_of(p).ends_with("_mask.nii"))
            .cloned()
            .with_context(|| format!("{}: no brain mask (*_desc-brain_mask.nii.gz)", func.display()))?;
        let mut runs = Vec::new();
        for bold in files.iter().filter(|p| name_of(p).ends_with("_bold.nii.gz") || name_of(p).ends_with("_bold.nii")) {
            runs.push(Self::open_run(root, bold)?);
        }
        if runs.is_empty() {
            bail!("{}: no BOLD runs (*_bold.nii.gz)", func.display());
        }
        Ok(Subject { id: id.to_string(), mask, runs })
    }

    fn open_run(root: &Path, bold: &Path) -> Result<Run> {
        let name = bold.file_name().unwrap().to_string_lossy().into_owned();
        let stem = name.trim_end_matches(".gz").trim_end_matches(".nii");
        let task = entity(stem, "task").unwrap_or_else(|| "movie".into());
        let id = entity(stem, "run").unwrap_or_else(|| "01".into());
        let header = nifti_io::read_header(bold)?;
        if header.dim[0] != 4 {
            bail!("{}: BOLD must be 4-D, header says {}-D", bold.display(), header.dim[0]);
        }
        let sidecar_path = bold.with_file_name(format!("{stem}.json"));
        let sidecar: serde_json::Value = if sidecar_path.exists() {
            crate::io::read_json(&sidecar_path)?
        } else {
            serde_json::Value::Null
        };
        let side_tr = sidecar.get("RepetitionTime").and_then(|v| v.as_f64());
        let head_tr = nifti_io::header_tr(&header);
        let tr = match (side_tr, head_tr) {
            (Some(a), Some(b)) if (a - b).abs() > 1e-3 => bail!(
                "{}: TR differs between the sidecar ({a} s) and the NIfTI header ({b} s)",
                bold.display()
            ),
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => bail!(
                "{}: no TR: neither a sidecar {} with RepetitionTime nor pixdim[4] in the header",
                bold.display(),
                sidecar_path.display()
            ),
        };
        if !(tr > 0.0 && tr.is_finite()) {
            bail!("{}: invalid TR {tr}", bold.display());
        }
        let movie = match sidecar.get("StimulusFile").and_then(|v| v.as_str()) {
            Some(rel) => root.join(rel),
            None => {
                let want = format!("task-{task}_run-{id}");
                let stim = root.join("stimuli");
                sorted_dir(&stim)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|p| p.file_stem().is_some_and(|s| s.to_string_lossy() == want))
                    .unwrap_or_else(|| stim.join(format!("{want}.mp4")))
            }
        };
        if !movie.exists() {
            bail!("{}: its movie {} does not exist", bold.display(), movie.display());
        }
        Ok(Run { id, task, bold: bold.to_path_buf(), movie, tr, n_volumes: nifti_io::n_volumes(&header) })
    }

    /// The distinct movies, in first-use order.
    pub fn movies(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for r in self.subjects.iter().flat_map(|s| &s.runs) {
            if !out.contains(&r.movie) {
                out.push(r.movie.clone());
            }
        }
        out
    }

    pub fn subject(&self, id: &str) -> Result<&Subject> {
        self.subjects
            .iter()
            .find(|s| s.id == id || format!("sub-{}", s.id) == id)
            .with_context(|| format!("{}: no subject '{id}'", self.root.display()))
    }
}

/// Reads a subject's mask and every run's voxel time series, checking geometry and values.
pub fn load_subject(s: &Subject) -> Result<SubjectData> {
    let (mask_header, mask) = Mask::read(&s.mask)?;
    let mut runs = Vec::with_capacity(s.runs.len());
    let mut header = None;
    for run in &s.runs {
        let (h, vol) = nifti_io::read_f32(&run.bold)?;
        let (a, b) = (nifti_io::affine(&h), nifti_io::affine(&mask_header));
        let diff = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        if diff > 1e-3 {
            bail!("{}: the BOLD affine differs from the mask's ({})", run.bold.display(), s.mask.display());
        }
        runs.push(mask.extract(&vol, &run.bold)?);
        header.get_or_insert(h);
    }
    Ok(SubjectData { mask, header: header.expect("a subject has runs"), runs })
}

/// A one-screen report of a dataset: subjects, runs, TRs, voxels, movies, and every problem.
pub fn check(root: &Path) -> Result<String> {
    use std::fmt::Write;
    let ds = Dataset::open(root)?;
    let mut out = String::new();
    writeln!(out, "dataset {}", root.display())?;
    for s in &ds.subjects {
        let (_, mask) = Mask::read(&s.mask)?;
        writeln!(out, "  sub-{}: {} runs, {} voxels in mask", s.id, s.runs.len(), mask.len())?;
        for r in &s.runs {
            writeln!(
                out,
                "    {}: {} volumes x TR {} s = {:.1} s, movie {}",
                r.label(),
                r.n_volumes,
                r.tr,
                r.n_volumes as f64 * r.tr,
                r.movie.strip_prefix(root).unwrap_or(&r.movie).display()
            )?;
        }
    }
    writeln!(out, "  {} movies", ds.movies().len())?;
    Ok(out)
}
