//! `brainscale dataset check`: a report of what a dataset holds and every problem found, from
//! headers, sidecars, masks, atlases and HDF5 shapes (no time series are read).
use crate::fmri::dataset::check_deep as deep;
use crate::fmri::dataset::load::subject_space;
use crate::fmri::dataset::{problems_message, Dataset, OpenOptions, Scan, Space};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Duration of a movie file in seconds from its container (None when it cannot tell).
#[cfg(feature = "video")]
pub fn movie_duration(path: &Path) -> Option<f64> {
    if let Ok(p) = crate::fmri::video::probe(path) {
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
    check_with(root, opts, max_mismatch_s, false)
}

/// [`check`], and with `deep` every volume of every run and every movie is read too: files cut
/// short, NaN or infinite values inside the mask (or in parcel series), voxels or parcels
/// constant over a whole run (a warning: they get r = 0), and each movie's decoded duration
/// (the decoder's own checks apply) in place of its header duration for the coverage check.
pub fn check_with(
    root: &Path,
    opts: &OpenOptions,
    max_mismatch_s: Option<f64>,
    deep: bool,
) -> Result<CheckReport> {
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
    let mut deep_warnings: Vec<String> = Vec::new();
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
        if deep && !s.runs.is_empty() {
            let (p, w) = deep::subject(s);
            problems.extend(p);
            deep_warnings.extend(w);
        }
        for r in &s.runs {
            let dur = *durations.entry(r.movie.clone()).or_insert_with(|| {
                if deep {
                    match deep::decoded_duration(&r.movie) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            problems.push(format!("{e:#}"));
                            None
                        }
                    }
                } else {
                    movie_duration(&r.movie)
                }
            });
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
                if let Some(p) = crate::fmri::coverage::coverage_problem(
                    d,
                    r.tr,
                    r.n_volumes,
                    max_mismatch_s,
                    &what,
                ) {
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
    for w in &deep_warnings {
        writeln!(out, "  warning: {w}")?;
    }
    if deep {
        writeln!(
            out,
            "  data read: every volume of every run and every movie (decoded)"
        )?;
    } else {
        writeln!(
            out,
            "  data not read: headers, sidecars, masks and shapes only (movie durations from their \
             headers); `dataset check --deep` reads every volume and decodes every movie"
        )?;
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
