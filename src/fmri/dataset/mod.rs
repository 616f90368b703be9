//! Dataset stage: discovery and validation of movie-fMRI datasets in three layouts.
//!
//! 1. BIDS-like (what `dataset synth` writes):
//! ```text
//! ROOT/stimuli/<movie>.mp4
//! ROOT/sub-XX/func/sub-XX_task-T_run-YY_bold.nii.gz   4-D BOLD, TR in pixdim[4]
//! ROOT/sub-XX/func/sub-XX_task-T_run-YY_bold.json     {"RepetitionTime": s, "StimulusFile": "stimuli/..."}
//! ROOT/sub-XX/func/sub-XX_task-T_desc-brain_mask.nii.gz
//! ```
//! or sessions `ROOT/sub-XX/ses-YY/func/...` (run ids `ses-YY_run-ZZ`); runs are ordered by
//! session, then integer run index. A run's movie is the sidecar's `StimulusFile` (relative to
//! ROOT), else `stimuli/<key>.*` (`task-T_run-YY`, or `ses-YY_task-T_run-ZZ`).
//!
//! 2. Parcellated HDF5 (Algonauts 2025, CNeuroMod lab derivatives):
//! ```text
//! ROOT/fmri/sub-XX/func/sub-XX_task-friends_..._bold.h5     datasets `ses-001_task-s01e02a`: (TRs, parcels)
//! ROOT/fmri/sub-XX/atlas/sub-XX_..._desc-dseg_parcellation.nii.gz   optional label volume
//! ROOT/stimuli/movies/friends/s1/friends_s01e02a.mkv        any depth under stimuli/
//! ```
//! (`ROOT/sub-XX/...` works too.) A run's movie is the file whose stem is its episode key
//! (`s01e02a`, `bourne01`) or ends with `_<key>` (`friends_s01e02a`). The TR is `--tr`, else
//! the file's `RepetitionTime` attribute (number or numeric string) or JSON sidecar, else
//! CNeuroMod's 1.49 s (said in the report).
//!
//! 3. fMRIPrep derivatives (`ROOT/derivatives/fmriprep/` or ROOT itself):
//! `sub-XX[/ses-YYY]/func/sub-XX_[ses-YYY_]task-s01e02a_space-S_desc-preproc_bold.nii.gz` with
//! its `..._space-S_desc-brain_mask.nii.gz`, JSON sidecar and `..._desc-confounds_timeseries.tsv`
//! (a named subset of columns can be regressed out). Movies are matched by episode key as for
//! HDF5. The voxels used are those inside every run's mask.
//!
//! `Dataset::scan` collects every problem instead of stopping at the first, for
//! `brainscale dataset check`; `Dataset::open` fails when there is any.
//!
//! Files: this one holds the data model (subjects, runs, layouts) and the scan's layout
//! detection; scan.rs what every layout's scan shares, scan_bids.rs, scan_fmriprep.rs and
//! scan_hdf5.rs each layout's scan; load.rs a subject's time series; check.rs `dataset check`
//! (check_deep.rs its `--deep` part); nifti_header.rs (NIfTI-1/2 headers, affines, grids),
//! nifti_io.rs, hdf5.rs, atlas.rs and confounds.rs the file formats; splits.rs train/test
//! splits; synth.rs the synthetic dataset.
pub mod atlas;
mod check;
mod check_deep;
pub mod confounds;
pub mod hdf5;
mod load;
pub mod nifti_header;
pub mod nifti_io;
pub mod nifti_stream;
mod scan;
mod scan_bids;
mod scan_fmriprep;
mod scan_hdf5;
pub mod splits;
pub mod synth;
pub mod voxcache;

pub use check::{check, check_error, check_with, movie_duration, CheckReport};
pub use load::{load_subject, subject_space, RunReader};

use anyhow::{bail, Context, Result};
use atlas::Atlas;
use ndarray::Array2;
use nifti::NiftiHeader;
use nifti_io::Mask;
use scan::{name_of, sorted_dir, walk_files, MovieIndex, Scanner};
use std::path::{Path, PathBuf};

/// CNeuroMod's TR (Friends and Movie10), used for HDF5 runs that do not state one.
pub const CNEUROMOD_TR: f64 = 1.49;

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

/// Options that say how to read a dataset (the CLI's flags of every stage that reads one:
/// `cli::fmri::OpenFlags`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OpenOptions {
    /// TR in seconds for runs that do not state one (HDF5 default: CNeuroMod's 1.49 s).
    pub tr: Option<f64>,
    /// Atlas label volume (NIfTI): parcel results get NIfTI/PNG maps; voxel data are averaged
    /// per parcel. Default for HDF5: the subject's `atlas/*.nii.gz` when there is one.
    pub atlas: Option<PathBuf>,
    /// fMRIPrep output space to use when there are several (e.g. MNI152NLin2009cAsym).
    pub space: Option<String>,
    /// fMRIPrep confound columns to regress out of each run, e.g. trans_x,trans_y,trans_z,rot_x,rot_y,rot_z.
    pub confounds: Vec<String>,
    /// Folder searched for movies (default ROOT/stimuli).
    pub stimuli: Option<PathBuf>,
    /// Leave out runs that have no movie (they are listed) instead of failing.
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

/// Value of a BIDS entity (`run` in `sub-01_task-movie_run-02_bold`).
pub fn entity(name: &str, key: &str) -> Option<String> {
    name.split('_')
        .find_map(|p| p.strip_prefix(&format!("{key}-")).map(str::to_string))
}

impl Scanner<'_> {
    /// Detects the subject's layout and scans it.
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

    /// The subjects with these ids ("01" or "sub-01"), in the order given; every subject when
    /// `ids` is empty. Errors: an id the dataset does not have.
    pub fn select(&self, ids: &[String]) -> Result<Vec<&Subject>> {
        if ids.is_empty() {
            return Ok(self.subjects.iter().collect());
        }
        ids.iter().map(|id| self.subject(id)).collect()
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
