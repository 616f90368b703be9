//! Dataset stage: discovery and validation of movie-fMRI datasets in three layouts.
//!
//! 1. BIDS-like (what `dataset synth` writes):
//! ```text
//! ROOT/stimuli/<movie>.mp4
//! ROOT/sub-XX/func/sub-XX_task-T_run-YY_bold.nii.gz   4-D BOLD, TR in pixdim[4]
//! ROOT/sub-XX/func/sub-XX_task-T_run-YY_bold.json     {"RepetitionTime": s, "StimulusFile": "stimuli/..."}
//! ROOT/sub-XX/func/sub-XX_task-T_desc-brain_mask.nii.gz
//! ```
//! A run's movie is the sidecar's `StimulusFile` (relative to ROOT), else `stimuli/task-T_run-YY.*`.
//!
//! 2. Parcellated HDF5 (Algonauts 2025, CNeuroMod lab derivatives):
//! ```text
//! ROOT/fmri/sub-XX/func/sub-XX_task-friends_..._bold.h5     datasets `ses-001_task-s01e02a`: (TRs, parcels)
//! ROOT/fmri/sub-XX/atlas/sub-XX_..._desc-dseg_parcellation.nii.gz   optional label volume
//! ROOT/stimuli/movies/friends/s1/friends_s01e02a.mkv        any depth under stimuli/
//! ```
//! (`ROOT/sub-XX/...` works too.) A run's movie is the file whose stem is its episode key
//! (`s01e02a`, `bourne01`) or ends with `_<key>` (`friends_s01e02a`). The TR is `--tr`, else
//! the file's `RepetitionTime` attribute, else CNeuroMod's 1.49 s (said in the report).
//!
//! 3. fMRIPrep derivatives (`ROOT/derivatives/fmriprep/` or ROOT itself):
//! `sub-XX[/ses-YYY]/func/sub-XX_[ses-YYY_]task-s01e02a_space-S_desc-preproc_bold.nii.gz` with
//! its `..._space-S_desc-brain_mask.nii.gz`, JSON sidecar and `..._desc-confounds_timeseries.tsv`
//! (a named subset of columns can be regressed out). Movies are matched by episode key as for
//! HDF5. The voxels used are those inside every run's mask.
//!
//! `Dataset::scan` collects every problem instead of stopping at the first, for
//! `brainscale dataset check`; `Dataset::open` fails when there is any.
pub mod atlas;
pub mod confounds;
pub mod hdf5;
pub mod nifti_io;
pub mod splits;
pub mod synth;

use anyhow::{bail, Context, Result};
use atlas::Atlas;
use ndarray::Array2;
use nifti::NiftiHeader;
use nifti_io::Mask;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// CNeuroMod's TR (Friends and Movie10), used for HDF5 runs that do not state one.
pub const CNEUROMOD_TR: f64 = 1.49;
const MOVIE_EXTENSIONS: [&str; 9] = [
    "mkv", "mp4", "avi", "mov", "webm", "m4v", "mpg", "mpeg", "ogv",
];

/// How a subject's data are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Bids,
    Fmriprep,
    Hdf5,
}

impl Layout {
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Bids => "BIDS-like NIfTI runs",
            Layout::Fmriprep => "fMRIPrep derivatives",
            Layout::Hdf5 => "parcellated HDF5",
        }
    }
}

/// Options that say how to read a dataset (flags of every stage that reads one).
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize)]
pub struct OpenOptions {
    /// TR in seconds for runs that do not state one (HDF5 default: CNeuroMod's 1.49 s).
    #[arg(long)]
    pub tr: Option<f64>,
    /// Atlas label volume (NIfTI): parcel results get NIfTI/PNG maps; voxel data are averaged
    /// per parcel. Default for HDF5: the subject's `atlas/*.nii.gz` when there is one.
    #[arg(long)]
    pub atlas: Option<PathBuf>,
    /// fMRIPrep output space to use when there are several (e.g. MNI152NLin2009cAsym).
    #[arg(long)]
    pub space: Option<String>,
    /// fMRIPrep confound columns to regress out of each run, e.g. trans_x,trans_y,trans_z,rot_x,rot_y,rot_z.
    #[arg(long, value_delimiter = ',')]
    pub confounds: Vec<String>,
    /// Folder searched for movies (default ROOT/stimuli).
    #[arg(long)]
    pub stimuli: Option<PathBuf>,
    /// Leave out runs that have no movie (they are listed) instead of failing.
    #[arg(long)]
    pub skip_runs_without_movie: bool,
}

/// Where a run's time series are.
#[derive(Debug, Clone, PartialEq)]
pub enum RunSource {
    /// A 4-D NIfTI; fMRIPrep runs also have their own brain mask and confounds file.
    Nifti {
        mask: Option<PathBuf>,
        confounds: Option<PathBuf>,
    },
    /// A dataset of an HDF5 file (`Run::bold`).
    Hdf5 { dataset: String },
}

/// One BOLD run and the movie shown during it.
#[derive(Debug, Clone)]
pub struct Run {
    /// Short id used on the command line: "01" (BIDS run entity), or the episode key
    /// (`s01e02a`, `figures04_run-1`) for keyed layouts.
    pub id: String,
    pub task: String,
    /// The NIfTI file, or the HDF5 file holding the run.
    pub bold: PathBuf,
    pub movie: PathBuf,
    /// Seconds.
    pub tr: f64,
    pub n_volumes: usize,
    /// Unique name used in output file names: `task-T_run-YY`, or the HDF5 dataset name
    /// (`ses-001_task-s01e02a`), or the fMRIPrep entities (`ses-001_task-s01e02a`).
    pub key: String,
    /// The stimulus key the movie is found by (`s01e02a`, `bourne01`).
    pub episode: String,
    pub source: RunSource,
}

impl Run {
    /// Short label used in file names.
    pub fn label(&self) -> String {
        self.key.clone()
    }

    /// The Friends season of `sXXeYY...` episodes.
    pub fn season(&self) -> Option<u32> {
        parse_friends(&self.episode).map(|(s, _)| s)
    }

    /// Runs that must stay on the same side of a split: the two halves (a/b/c/d) of a Friends
    /// episode, and repeated viewings (`_run-N`) of a Movie10 chunk.
    pub fn episode_group(&self) -> String {
        match parse_friends(&self.episode) {
            Some((s, e)) => format!("s{s:02}e{e:02}"),
            None => self.episode.clone(),
        }
    }

    /// Whether a name given by the user designates this run (id, key or episode key).
    pub fn matches(&self, name: &str) -> bool {
        name == self.id || name == self.key || name == self.episode
    }

    fn describe(&self) -> String {
        match &self.source {
            RunSource::Hdf5 { dataset } => format!("{} in {}", dataset, self.bold.display()),
            RunSource::Nifti { .. } => self.bold.display().to_string(),
        }
    }
}

/// `sXXeYY` followed by anything (a part letter a/b/c/d): (season, episode).
pub fn parse_friends(key: &str) -> Option<(u32, u32)> {
    let rest = key.strip_prefix('s')?;
    let (season, rest) = rest.split_once('e')?;
    let ep: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if season.is_empty() || !season.chars().all(|c| c.is_ascii_digit()) || ep.is_empty() {
        return None;
    }
    Some((season.parse().ok()?, ep.parse().ok()?))
}

#[derive(Debug, Clone)]
pub struct Subject {
    /// e.g. "01" (the part after `sub-`).
    pub id: String,
    pub layout: Layout,
    /// The brain mask of a BIDS-like subject (fMRIPrep runs have one each; HDF5 none).
    pub mask: Option<PathBuf>,
    /// Atlas label volume: HDF5 parcels are its labels; voxel data are averaged over it.
    pub atlas: Option<PathBuf>,
    /// Parcels per run (HDF5).
    pub n_parcels: Option<usize>,
    /// Confound columns regressed out of each run (fMRIPrep).
    pub confound_columns: Vec<String>,
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub subjects: Vec<Subject>,
    /// Movies found under the stimuli folder that no run uses (e.g. Friends season 7 in
    /// Algonauts 2025, whose fMRI is withheld).
    pub movies_without_run: Vec<PathBuf>,
    /// Facts worth saying (assumed TRs, skipped runs, ignored datasets).
    pub notes: Vec<String>,
}

/// What `Dataset::scan` found: the dataset and every problem (empty when all is well).
pub struct Scan {
    pub dataset: Dataset,
    pub problems: Vec<String>,
}

/// How a subject's columns relate to the brain.
#[derive(Debug, Clone)]
pub enum Space {
    /// Voxels of a mask, with the header maps are written with.
    Voxels { mask: Mask, header: NiftiHeader },
    /// Parcels 1..=n, mapped to the brain by the atlas when there is one.
    Parcels { n: usize, atlas: Option<Atlas> },
}

impl Space {
    pub fn len(&self) -> usize {
        match self {
            Space::Voxels { mask, .. } => mask.len(),
            Space::Parcels { n, .. } => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A subject's data: time series of every run, [TRs, voxels or parcels].
pub struct SubjectData {
    pub space: Space,
    /// In the subject's run order.
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

/// Files under `dir` (sorted, depth-limited; hidden entries skipped).
fn walk_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    for p in sorted_dir(dir).unwrap_or_default() {
        if name_of(&p).starts_with('.') {
            continue;
        }
        if p.is_dir() {
            if depth > 0 {
                walk_files(&p, depth - 1, out);
            }
        } else {
            out.push(p);
        }
    }
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_nifti(name: &str) -> bool {
    name.ends_with(".nii.gz") || name.ends_with(".nii")
}

fn nifti_stem(name: &str) -> &str {
    name.trim_end_matches(".gz").trim_end_matches(".nii")
}

/// Value of a BIDS entity (`run` in `sub-01_task-movie_run-02_bold`).
pub fn entity(name: &str, key: &str) -> Option<String> {
    name.split('_')
        .find_map(|p| p.strip_prefix(&format!("{key}-")).map(str::to_string))
}

/// Movie files under a folder, by stem.
struct MovieIndex {
    by_stem: BTreeMap<String, Vec<PathBuf>>,
}

impl MovieIndex {
    fn build(dir: &Path) -> Self {
        let mut files = Vec::new();
        walk_files(dir, 6, &mut files);
        let mut by_stem: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for f in files {
            let ext = f
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if MOVIE_EXTENSIONS.contains(&ext.as_str()) {
                let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
                by_stem.entry(stem).or_default().push(f);
            }
        }
        Self { by_stem }
    }

    /// The movie of an episode key: stem == key or stem ending in `_key`.
    fn find(&self, key: &str) -> std::result::Result<Option<PathBuf>, Vec<PathBuf>> {
        let suffix = format!("_{key}");
        let hits: Vec<PathBuf> = self
            .by_stem
            .iter()
            .filter(|(s, _)| *s == key || s.ends_with(&suffix))
            .flat_map(|(_, v)| v.iter().cloned())
            .collect();
        match hits.len() {
            0 => Ok(None),
            1 => Ok(Some(hits[0].clone())),
            _ => Err(hits),
        }
    }

    fn all(&self) -> Vec<PathBuf> {
        self.by_stem.values().flatten().cloned().collect()
    }
}

/// TR from a sidecar and a NIfTI header (and the user's `--tr` when neither has one).
fn resolve_tr(
    bold: &Path,
    sidecar: &serde_json::Value,
    sidecar_path: &Path,
    header: &NiftiHeader,
    user: Option<f64>,
) -> Result<f64> {
    let side_tr = sidecar.get("RepetitionTime").and_then(|v| v.as_f64());
    let head_tr = nifti_io::header_tr(header);
    let tr = match (side_tr, head_tr) {
        (Some(a), Some(b)) if (a - b).abs() > 1e-3 => bail!(
            "{}: TR differs between the sidecar ({a} s) and the NIfTI header ({b} s)",
            bold.display()
        ),
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => match user {
            Some(t) => t,
            None => bail!(
                "{}: no TR: neither a sidecar {} with RepetitionTime nor pixdim[4] in the header (or give --tr)",
                bold.display(),
                sidecar_path.display()
            ),
        },
    };
    if !(tr > 0.0 && tr.is_finite()) {
        bail!("{}: invalid TR {tr}", bold.display());
    }
    Ok(tr)
}

fn read_sidecar(path: &Path) -> Result<serde_json::Value> {
    if path.exists() {
        crate::io::read_json(path)
    } else {
        Ok(serde_json::Value::Null)
    }
}

/// Collects problems while scanning.
struct Scanner<'a> {
    root: &'a Path,
    opts: &'a OpenOptions,
    movies: MovieIndex,
    stimuli: PathBuf,
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Scanner<'_> {
    /// The movie of a keyed run, or a problem (or a note with --skip-runs-without-movie).
    fn movie_for(
        &mut self,
        episode: &str,
        what: &str,
        sidecar: &serde_json::Value,
    ) -> Option<PathBuf> {
        if let Some(rel) = sidecar.get("StimulusFile").and_then(|v| v.as_str()) {
            let p = self.root.join(rel);
            if p.exists() {
                return Some(p);
            }
            self.problems
                .push(format!("{what}: its movie {} does not exist", p.display()));
            return None;
        }
        match self.movies.find(episode) {
            Ok(Some(p)) if !p.exists() => {
                // datalad / git-annex trees hold links to content that may not be fetched yet.
                self.problems.push(format!(
                    "{what}: its movie {} is a broken link (content not fetched? `datalad get` it)",
                    p.display()
                ));
                None
            }
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                let msg = format!(
                    "{what}: run without a movie: no file named {episode}.* or *_{episode}.* under {}",
                    self.stimuli.display()
                );
                if self.opts.skip_runs_without_movie {
                    self.notes.push(format!("skipped: {msg}"));
                } else {
                    self.problems.push(msg);
                }
                None
            }
            Err(many) => {
                let list: Vec<String> = many.iter().map(|p| p.display().to_string()).collect();
                self.problems.push(format!(
                    "{what}: several movies match episode '{episode}': {}",
                    list.join(", ")
                ));
                None
            }
        }
    }

    fn subject(&mut self, dir: &Path, id: &str) -> Option<Subject> {
        let mut files = Vec::new();
        walk_files(dir, 4, &mut files);
        let names: Vec<String> = files.iter().map(|p| name_of(p)).collect();
        let has = |f: &dyn Fn(&str) -> bool| names.iter().any(|n| f(n));
        let layout = if has(&|n| n.ends_with(".h5") || n.ends_with(".hdf5")) {
            Layout::Hdf5
        } else if has(&|n| n.contains("_desc-preproc_bold.nii")) {
            Layout::Fmriprep
        } else {
            Layout::Bids
        };
        if !self.opts.confounds.is_empty() && layout != Layout::Fmriprep {
            self.problems.push(format!(
                "sub-{id}: confound columns were given but {} is {} (confounds apply to fMRIPrep derivatives)",
                dir.display(),
                layout.describe()
            ));
        }
        let mut s = Subject {
            id: id.to_string(),
            layout,
            mask: None,
            atlas: self.opts.atlas.clone(),
            n_parcels: None,
            confound_columns: self.opts.confounds.clone(),
            runs: vec![],
        };
        match layout {
            Layout::Bids => self.bids_subject(dir, &mut s),
            Layout::Fmriprep => self.fmriprep_subject(&files, &mut s),
            Layout::Hdf5 => self.hdf5_subject(&files, &mut s),
        }
        if s.runs.is_empty()
            && !self
                .problems
                .iter()
                .any(|p| p.contains(&format!("sub-{id}")) || p.contains(&dir.display().to_string()))
        {
            self.problems
                .push(format!("sub-{id}: no usable run in {}", dir.display()));
        }
        self.check_atlas(&mut s);
        Some(s)
    }

    fn bids_subject(&mut self, dir: &Path, s: &mut Subject) {
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

    fn fmriprep_subject(&mut self, files: &[PathBuf], s: &mut Subject) {
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

    fn hdf5_subject(&mut self, files: &[PathBuf], s: &mut Subject) {
        if s.atlas.is_none() {
            s.atlas = files
                .iter()
                .find(|p| {
                    let n = name_of(p);
                    is_nifti(&n)
                        && (p.parent().is_some_and(|d| name_of(d) == "atlas")
                            || n.contains("dseg")
                            || n.contains("parcellation"))
                })
                .cloned();
        }
        let mut parcels: Option<(usize, String)> = None;
        for file in files.iter().filter(|p| {
            let n = name_of(p);
            n.ends_with(".h5") || n.ends_with(".hdf5")
        }) {
            let entries = match hdf5::entries(file) {
                Ok(e) => e,
                Err(e) => {
                    self.problems.push(format!("{e:#}"));
                    continue;
                }
            };
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let attr_tr = hdf5::root_attr_f64(file, "RepetitionTime").ok().flatten();
            let side = read_sidecar(&file.with_file_name(format!("{stem}.json")))
                .unwrap_or(serde_json::Value::Null);
            let tr = match (
                self.opts.tr,
                attr_tr.or(side.get("RepetitionTime").and_then(|v| v.as_f64())),
            ) {
                (Some(u), Some(f)) if (u - f).abs() > 1e-3 => {
                    self.problems.push(format!(
                        "{}: --tr {u} s differs from the file's RepetitionTime {f} s",
                        file.display()
                    ));
                    continue;
                }
                (Some(t), _) | (None, Some(t)) => t,
                (None, None) => {
                    self.notes.push(format!("{}: no RepetitionTime; assuming CNeuroMod's TR of {CNEUROMOD_TR} s (set --tr)", file.display()));
                    CNEUROMOD_TR
                }
            };
            if !(tr > 0.0 && tr.is_finite()) {
                self.problems
                    .push(format!("{}: invalid TR {tr}", file.display()));
                continue;
            }
            for e in entries {
                if e.shape.len() != 2 {
                    self.notes.push(format!(
                        "{}: dataset '{}' of shape {:?} ignored (runs are (TRs, parcels))",
                        file.display(),
                        e.key,
                        e.shape
                    ));
                    continue;
                }
                let what = format!("sub-{} run '{}' in {}", s.id, e.key, file.display());
                match &parcels {
                    None => parcels = Some((e.shape[1], e.key.clone())),
                    Some((n, first)) if *n != e.shape[1] => {
                        self.problems.push(format!(
                            "{what}: {} parcels, but run '{first}' has {n}",
                            e.shape[1]
                        ));
                        continue;
                    }
                    _ => {}
                }
                let base = e.key.rsplit('/').next().unwrap().to_string();
                let task = entity(&base, "task").unwrap_or_else(|| base.clone());
                let id = match entity(&base, "run") {
                    Some(r) => format!("{task}_run-{r}"),
                    None => task.clone(),
                };
                let Some(movie) = self.movie_for(&task, &what, &serde_json::Value::Null) else {
                    continue;
                };
                s.runs.push(Run {
                    id,
                    task: task.clone(),
                    bold: file.clone(),
                    movie,
                    tr,
                    n_volumes: e.shape[0],
                    key: e.key.replace('/', "_"),
                    episode: task,
                    source: RunSource::Hdf5 {
                        dataset: e.key.clone(),
                    },
                });
            }
        }
        s.n_parcels = parcels.map(|p| p.0);
        // The same episode seen twice without a run entity: fall back to the unique keys.
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

    /// Atlas checks that need no time series: labels vs HDF5 parcels, grid vs the BOLD grid.
    fn check_atlas(&mut self, s: &mut Subject) {
        let Some(path) = s.atlas.clone() else { return };
        let a = match Atlas::read(&path) {
            Ok(a) => a,
            Err(e) => {
                self.problems.push(format!("sub-{}: {e:#}", s.id));
                return;
            }
        };
        if let Some(n) = s.n_parcels {
            if let Err(e) = a.check_parcels(n, &format!("sub-{} (HDF5 runs)", s.id)) {
                self.problems.push(format!("{e:#}"));
            }
        } else if let Some(r) = s.runs.first() {
            if let Ok(h) = nifti_io::read_header(&r.bold) {
                let d = nifti_io::spatial_dims(&h);
                if d != a.mask.dims {
                    self.problems.push(format!(
                        "sub-{}: the atlas {} is {}x{}x{} but the BOLD {} is {}x{}x{}",
                        s.id,
                        path.display(),
                        a.mask.dims[0],
                        a.mask.dims[1],
                        a.mask.dims[2],
                        r.bold.display(),
                        d[0],
                        d[1],
                        d[2]
                    ));
                }
            }
        }
        let missing = a.missing_labels();
        if !missing.is_empty() {
            self.notes.push(format!(
                "sub-{}: atlas {} lacks label(s) {:?} (their parcels map to no voxel)",
                s.id,
                path.display(),
                missing
            ));
        }
    }
}

impl Dataset {
    /// Opens a dataset with default options (see [`OpenOptions`]).
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, &OpenOptions::default())
    }

    /// Opens a dataset; any problem found is an error (all of them are listed).
    pub fn open_with(root: &Path, opts: &OpenOptions) -> Result<Self> {
        let scan = Self::scan(root, opts)?;
        if !scan.problems.is_empty() {
            bail!("{}", problems_message(root, &scan.problems));
        }
        for n in &scan.dataset.notes {
            if n.starts_with("skipped") {
                eprintln!("warning: {n}");
            }
        }
        Ok(scan.dataset)
    }

    /// Finds subjects, runs, masks, TRs and movies, checking everything that can be checked
    /// from headers, sidecars and HDF5 shapes (time series are read later, per subject), and
    /// collecting every problem.
    pub fn scan(root: &Path, opts: &OpenOptions) -> Result<Scan> {
        if !root.is_dir() {
            bail!("dataset folder {} not found", root.display());
        }
        let subjects_in = |d: &Path| -> Vec<PathBuf> {
            sorted_dir(d)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.is_dir() && name_of(p).starts_with("sub-"))
                .collect()
        };
        let base = [
            root.join("fmri"),
            root.join("derivatives").join("fmriprep"),
            root.to_path_buf(),
        ]
        .into_iter()
        .find(|d| !subjects_in(d).is_empty())
        .with_context(|| {
            format!(
                "{}: no subject folders (sub-XX) found (looked in ., fmri/, derivatives/fmriprep/)",
                root.display()
            )
        })?;
        let stimuli = opts.stimuli.clone().unwrap_or_else(|| root.join("stimuli"));
        let mut sc = Scanner {
            root,
            opts,
            movies: MovieIndex::build(&stimuli),
            stimuli,
            problems: vec![],
            notes: vec![],
        };
        let mut subjects = Vec::new();
        for dir in subjects_in(&base) {
            let name = name_of(&dir);
            let id = name.trim_start_matches("sub-").to_string();
            if let Some(s) = sc.subject(&dir, &id) {
                subjects.push(s);
            }
        }
        let used: Vec<&PathBuf> = subjects
            .iter()
            .flat_map(|s| s.runs.iter().map(|r| &r.movie))
            .collect();
        let movies_without_run = sc
            .movies
            .all()
            .into_iter()
            .filter(|m| !used.contains(&m))
            .collect();
        Ok(Scan {
            dataset: Dataset {
                root: root.to_path_buf(),
                subjects,
                movies_without_run,
                notes: sc.notes,
            },
            problems: sc.problems,
        })
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

fn problems_message(root: &Path, problems: &[String]) -> String {
    if problems.len() == 1 {
        problems[0].clone()
    } else {
        format!(
            "{}: {} problems:\n  - {}",
            root.display(),
            problems.len(),
            problems.join("\n  - ")
        )
    }
}

/// The voxels used for an fMRIPrep subject: inside every run's mask.
fn fmriprep_mask(s: &Subject) -> Result<(Mask, NiftiHeader)> {
    let mut inter: Option<(Mask, PathBuf)> = None;
    for r in &s.runs {
        let RunSource::Nifti { mask: Some(mp), .. } = &r.source else {
            bail!("{}: no brain mask", r.bold.display())
        };
        let (_, m) = Mask::read(mp)?;
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
            let (a, b) = (nifti_io::affine(&h), nifti_io::affine(mh));
            let diff = a
                .iter()
                .flatten()
                .zip(b.iter().flatten())
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            if diff > 1e-3 {
                bail!(
                    "{}: the BOLD affine differs from the mask's ({})",
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
        let (x, y) = (nifti_io::affine(&a.header), nifti_io::affine(bold_header));
        let diff = x
            .iter()
            .flatten()
            .zip(y.iter().flatten())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        if diff > 1e-3 {
            bail!(
                "{}: the atlas affine differs from the BOLD's ({}): resample the atlas to the BOLD grid",
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

/// Duration of a movie file in seconds from its container (None when it cannot tell).
#[cfg(feature = "video")]
pub fn movie_duration(path: &Path) -> Option<f64> {
    if let Ok(p) = crate::video::probe(path) {
        if p.duration_s > 0.0 {
            return Some(p.duration_s);
        }
    }
    let ictx = ffmpeg_next::format::input(&path).ok()?;
    let d = ictx.duration();
    (d > 0).then(|| d as f64 / f64::from(ffmpeg_next::ffi::AV_TIME_BASE))
}

#[cfg(not(feature = "video"))]
pub fn movie_duration(_path: &Path) -> Option<f64> {
    None
}

/// What `dataset check` prints, and the problems (the command fails when there are any).
pub struct CheckReport {
    pub text: String,
    pub problems: Vec<String>,
}

/// A report of a dataset: layout, subjects, runs (TRs, TR, movie and its duration, season),
/// voxels or parcels, movies without a run, and every problem found. Reads headers, masks,
/// atlases and HDF5 shapes; runs nothing else.
/// `max_mismatch_s` is the align stage's `--max-mismatch` (how much longer than the BOLD run a
/// movie may be; default one TR).
pub fn check(root: &Path, opts: &OpenOptions, max_mismatch_s: Option<f64>) -> Result<CheckReport> {
    use std::fmt::Write;
    let Scan {
        dataset: ds,
        mut problems,
    } = Dataset::scan(root, opts)?;
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let mut out = String::new();
    writeln!(out, "dataset {}", root.display())?;
    let mut durations: HashMap<PathBuf, Option<f64>> = HashMap::new();
    let mut seasons: BTreeMap<u32, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut episode_trs: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
    for s in &ds.subjects {
        let space = if s.runs.is_empty() {
            "no usable run".into()
        } else {
            match subject_space(s) {
                Ok(Space::Voxels { mask, .. }) => format!("{} voxels in mask", mask.len()),
                Ok(Space::Parcels { n, atlas }) => match atlas {
                    Some(a) => format!("{n} parcels, atlas {}", rel(&a.path)),
                    None => format!(
                    "{n} parcels, no atlas (parcel results as CSV; give --atlas for NIfTI maps)"
                ),
                },
                Err(e) => {
                    let m = format!("sub-{}: {e:#}", s.id);
                    if !problems.contains(&m) && !problems.iter().any(|p| m.contains(p.as_str())) {
                        problems.push(m);
                    }
                    "space unreadable".into()
                }
            }
        };
        writeln!(
            out,
            "  sub-{} ({}): {} runs, {space}",
            s.id,
            s.layout.describe(),
            s.runs.len()
        )?;
        if !s.confound_columns.is_empty() {
            writeln!(
                out,
                "    confounds regressed: {}",
                s.confound_columns.join(", ")
            )?;
        }
        for r in &s.runs {
            let dur = *durations
                .entry(r.movie.clone())
                .or_insert_with(|| movie_duration(&r.movie));
            let season = r
                .season()
                .map_or(String::new(), |x| format!(", season {x}"));
            writeln!(
                out,
                "    {}: {} TRs x {} s = {:.1} s, movie {}{}{season}",
                r.label(),
                r.n_volumes,
                r.tr,
                r.n_volumes as f64 * r.tr,
                rel(&r.movie),
                dur.map_or(" (duration unknown)".into(), |d| format!(" ({d:.1} s)")),
            )?;
            if let Some(d) = dur {
                let what = format!("sub-{} {} ({})", s.id, r.label(), r.describe());
                if let Some(p) =
                    crate::coverage::coverage_problem(d, r.tr, r.n_volumes, max_mismatch_s, &what)
                {
                    problems.push(format!("{p} (TR count mismatch)"));
                }
            }
            if let Some(x) = r.season() {
                seasons.entry(x).or_default().insert(r.key.clone());
            }
            episode_trs
                .entry(r.key.clone())
                .or_default()
                .push((s.id.clone(), r.n_volumes));
        }
    }
    if !seasons.is_empty() {
        let list: Vec<String> = seasons
            .iter()
            .map(|(s, k)| format!("{s} ({} runs)", k.len()))
            .collect();
        writeln!(out, "  seasons: {}", list.join(", "))?;
    }
    let mut notes = ds.notes.clone();
    for (key, v) in &episode_trs {
        if v.iter().any(|(_, n)| *n != v[0].1) {
            let list: Vec<String> = v.iter().map(|(s, n)| format!("sub-{s} {n}")).collect();
            notes.push(format!(
                "{key}: TR counts differ between subjects ({})",
                list.join(", ")
            ));
        }
    }
    writeln!(out, "  {} movies used", ds.movies().len())?;
    if !ds.movies_without_run.is_empty() {
        writeln!(
            out,
            "  {} movie(s) without a run:",
            ds.movies_without_run.len()
        )?;
        for m in &ds.movies_without_run {
            writeln!(out, "    {}", rel(m))?;
        }
    }
    for n in &notes {
        writeln!(out, "  note: {n}")?;
    }
    if problems.is_empty() {
        writeln!(out, "  no problem found")?;
    } else {
        writeln!(out, "  {} problem(s):", problems.len())?;
        for p in &problems {
            writeln!(out, "    - {p}")?;
        }
    }
    Ok(CheckReport {
        text: out,
        problems,
    })
}

/// The error `dataset check` exits with when it found problems.
pub fn check_error(root: &Path, problems: &[String]) -> anyhow::Error {
    anyhow::anyhow!("{}", problems_message(root, problems))
}
