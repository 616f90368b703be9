//! What every layout's scan shares: the [`Scanner`] that collects problems and notes instead
//! of stopping at the first, file-finding helpers, the movie index (movies by episode key) and
//! TR resolution. The layouts (scan_bids.rs, scan_fmriprep.rs, scan_hdf5.rs) extend it.
use crate::fmri::dataset::atlas::Atlas;
use crate::fmri::dataset::nifti_header::grid_mismatch;
use crate::fmri::dataset::nifti_io;
use crate::fmri::dataset::{OpenOptions, Subject};
use anyhow::{bail, Context, Result};
use nifti::NiftiHeader;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MOVIE_EXTENSIONS: [&str; 9] = [
    "mkv", "mp4", "avi", "mov", "webm", "m4v", "mpg", "mpeg", "ogv",
];

pub(super) fn sorted_dir(path: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading folder {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// Files under `dir` (sorted, depth-limited; hidden entries skipped).
pub(super) fn walk_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
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

pub(super) fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn is_nifti(name: &str) -> bool {
    name.ends_with(".nii.gz") || name.ends_with(".nii")
}

pub(super) fn nifti_stem(name: &str) -> &str {
    name.trim_end_matches(".gz").trim_end_matches(".nii")
}

/// Movie files under a folder, by stem.
pub(super) struct MovieIndex {
    by_stem: BTreeMap<String, Vec<PathBuf>>,
}

impl MovieIndex {
    pub(super) fn build(dir: &Path) -> Self {
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
    pub(super) fn find(&self, key: &str) -> std::result::Result<Option<PathBuf>, Vec<PathBuf>> {
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

    pub(super) fn all(&self) -> Vec<PathBuf> {
        self.by_stem.values().flatten().cloned().collect()
    }
}

/// A TR given as text or a number, checked: a positive, finite number of seconds.
/// `what` names the file and field (`sub-01_bold.json: RepetitionTime`).
pub(super) fn parse_tr_text(text: &str, what: &str) -> Result<f64> {
    let t = text.trim();
    let v: f64 = t
        .parse()
        .map_err(|_| anyhow::anyhow!("{what} = {text:?} is not a number of seconds"))?;
    check_tr(v, what)
}

fn check_tr(v: f64, what: &str) -> Result<f64> {
    if !(v > 0.0 && v.is_finite()) {
        bail!("{what} = {v} is not a positive number of seconds");
    }
    Ok(v)
}

/// The `RepetitionTime` of a JSON sidecar, however it is written: a number, a numeric string
/// (`"1.5"`), or a one-element array of either. None when the field is absent; an error naming
/// the file, the field and the value for anything else (never a silent default).
pub(super) fn sidecar_tr(sidecar: &serde_json::Value, path: &Path) -> Result<Option<f64>> {
    use serde_json::Value;
    let Some(v) = sidecar.get("RepetitionTime") else {
        return Ok(None);
    };
    let what = format!("{}: RepetitionTime", path.display());
    let one = match v {
        Value::Array(a) if a.len() == 1 => &a[0],
        other => other,
    };
    match one {
        Value::Number(n) => n
            .as_f64()
            .with_context(|| format!("{what} = {n} is not a number of seconds"))
            .and_then(|x| check_tr(x, &what))
            .map(Some),
        Value::String(s) => parse_tr_text(s, &what).map(Some),
        _ => bail!("{what} = {v} is not a number of seconds"),
    }
}

/// TR from a sidecar and a NIfTI header (and the user's `--tr` when neither has one). Both
/// files' values must agree (within 1 ms); `--tr` must agree with them too when it is given.
pub(super) fn resolve_tr(
    bold: &Path,
    sidecar: &serde_json::Value,
    sidecar_path: &Path,
    header: &NiftiHeader,
    user: Option<f64>,
) -> Result<f64> {
    let side_tr = sidecar_tr(sidecar, sidecar_path)?;
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
    if let Some(u) = user {
        if (u - tr).abs() > 1e-3 {
            bail!(
                "{}: --tr {u} s differs from the TR the files give ({tr} s, from the {})",
                bold.display(),
                if side_tr.is_some() {
                    "sidecar"
                } else {
                    "NIfTI header"
                }
            );
        }
    }
    check_tr(tr, &format!("{}: TR", bold.display()))
}

pub(super) fn read_sidecar(path: &Path) -> Result<serde_json::Value> {
    if path.exists() {
        crate::core::io::read_json(path)
    } else {
        Ok(serde_json::Value::Null)
    }
}

/// Collects problems while scanning.
pub(super) struct Scanner<'a> {
    pub(super) root: &'a Path,
    pub(super) opts: &'a OpenOptions,
    pub(super) movies: MovieIndex,
    pub(super) stimuli: PathBuf,
    pub(super) problems: Vec<String>,
    pub(super) notes: Vec<String>,
}

impl Scanner<'_> {
    /// The movie of a keyed run, or a problem (or a note with --skip-runs-without-movie).
    pub(super) fn movie_for(
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

    /// Atlas checks that need no time series: labels vs HDF5 parcels, grid vs the BOLD grid.
    pub(super) fn check_atlas(&mut self, s: &mut Subject) {
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
                if let Some(why) = grid_mismatch(&a.header, &h) {
                    self.problems.push(format!(
                        "sub-{}: the atlas {} is not on the grid of the BOLD {}: {why}; resample the atlas to the BOLD grid",
                        s.id,
                        path.display(),
                        r.bold.display(),
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
