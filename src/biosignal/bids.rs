//! BIDS-EEG (Pernet et al. 2019, Sci. Data 6:103; the layout of OpenNeuro and MNE-BIDS):
//! `sub-*/[ses-*/]eeg/sub-*[_ses-*]_task-*[_run-*]_eeg.{edf,bdf}` with, beside it (same entities):
//! - `_channels.tsv`: columns `name`, `type`, `units` (required), `status` (`good`/`bad`,
//!   optional): bad channels are dropped, and every listed name must be a channel of the file;
//! - `_events.tsv`: `onset`, `duration` (s, required), `trial_type` (optional): events with a
//!   `trial_type` label windows ([`crate::biosignal::annotations`]); without it windows are
//!   unlabelled;
//! - `_eeg.json`: `SamplingFrequency` (Hz, required), which must equal the file's rate.
//!
//! Read as MNE-BIDS's `read_raw_bids` reads it (channels from the data file, bads from
//! `status`, annotations from `events.tsv`); sidecars higher in the tree (the inheritance
//! principle) are not searched. Errors name the file, the column or field and the fault.
use crate::biosignal::annotations::{self, Event};
use crate::biosignal::{edf, LoadOptions, Windows};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The sidecar of `data` (`…_eeg.edf`) with suffix `suffix` (`channels.tsv`, `events.tsv`,
/// `eeg.json`).
pub fn sidecar(data: &Path, suffix: &str) -> Option<PathBuf> {
    let name = data.file_name()?.to_string_lossy().to_string();
    let stem = name
        .strip_suffix(".edf")
        .or_else(|| name.strip_suffix(".bdf"))
        .or_else(|| name.strip_suffix(".EDF"))
        .or_else(|| name.strip_suffix(".BDF"))?;
    let base = stem.strip_suffix("_eeg")?;
    Some(data.with_file_name(format!("{base}_{suffix}")))
}

/// Whether `path` is a BIDS-EEG data file: `…_eeg.edf|bdf` with a `_channels.tsv` beside it.
pub fn is_bids(path: &Path) -> bool {
    sidecar(path, "channels.tsv").is_some_and(|p| p.is_file())
}

/// A TSV file: header names and rows (BIDS: tab-separated, `n/a` for missing values).
fn read_tsv(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let header: Vec<String> = r
        .headers()
        .with_context(|| format!("{}: reading the header row", path.display()))?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        rows.push(rec.iter().map(|s| s.trim().to_string()).collect());
    }
    Ok((header, rows))
}

fn column(header: &[String], name: &str, path: &Path) -> Result<usize> {
    header.iter().position(|h| h == name).with_context(|| {
        format!(
            "{}: no '{name}' column (columns: {})",
            path.display(),
            header.join(", ")
        )
    })
}

/// One BIDS-EEG recording's sidecar facts.
#[derive(Debug, Clone)]
pub struct BidsEeg {
    pub data: PathBuf,
    /// Good channels, in `channels.tsv` order.
    pub channels: Vec<String>,
    /// Channels whose `status` is `bad`.
    pub bad: Vec<String>,
    /// `type` and `units` of each good channel.
    pub types: Vec<(String, String)>,
    /// `SamplingFrequency` of `_eeg.json`.
    pub sampling_frequency: f64,
    pub events: Vec<Event>,
}

/// Reads the sidecars of `data` (see the module docs).
pub fn read_sidecars(data: &Path) -> Result<BidsEeg> {
    let ch_path = sidecar(data, "channels.tsv").with_context(|| {
        format!(
            "{}: not a BIDS-EEG data file name (…_eeg.edf or …_eeg.bdf)",
            data.display()
        )
    })?;
    let (h, rows) = read_tsv(&ch_path)?;
    let (cn, ct, cu) = (
        column(&h, "name", &ch_path)?,
        column(&h, "type", &ch_path)?,
        column(&h, "units", &ch_path)?,
    );
    let cs = h.iter().position(|x| x == "status");
    let mut channels = Vec::new();
    let mut bad = Vec::new();
    let mut types = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let status = cs.map(|c| r[c].to_lowercase()).unwrap_or_default();
        match status.as_str() {
            "bad" => bad.push(r[cn].clone()),
            "good" | "n/a" | "" => {
                channels.push(r[cn].clone());
                types.push((r[ct].clone(), r[cu].clone()));
            }
            s => bail!(
                "{}: row {}, column 'status': {s:?} is neither 'good' nor 'bad'",
                ch_path.display(),
                i + 2
            ),
        }
    }
    let json_path = sidecar(data, "eeg.json").unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json_path)
            .with_context(|| format!("reading {}", json_path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", json_path.display()))?;
    let sampling_frequency = json
        .get("SamplingFrequency")
        .and_then(|v| v.as_f64())
        .with_context(|| {
            format!(
                "{}: field 'SamplingFrequency' missing or not a number",
                json_path.display()
            )
        })?;
    let mut events = Vec::new();
    if let Some(ev_path) = sidecar(data, "events.tsv").filter(|p| p.is_file()) {
        let (h, rows) = read_tsv(&ev_path)?;
        let (co, cd) = (
            column(&h, "onset", &ev_path)?,
            column(&h, "duration", &ev_path)?,
        );
        if let Some(ctt) = h.iter().position(|x| x == "trial_type") {
            for (i, r) in rows.iter().enumerate() {
                let num = |c: usize, name: &str| -> Result<f64> {
                    let s = &r[c];
                    if s == "n/a" {
                        return Ok(0.0);
                    }
                    s.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .with_context(|| {
                            format!(
                                "{}: row {}, column '{name}': {s:?} is not a number",
                                ev_path.display(),
                                i + 2
                            )
                        })
                };
                let tt = r[ctt].clone();
                if tt == "n/a" || tt.is_empty() {
                    continue;
                }
                events.push(Event {
                    onset: num(co, "onset")?,
                    duration: num(cd, "duration")?,
                    description: tt,
                });
            }
        }
    }
    Ok(BidsEeg {
        data: data.to_path_buf(),
        channels,
        bad,
        types,
        sampling_frequency,
        events,
    })
}

/// Loads a BIDS-EEG recording as windows: the good channels of `channels.tsv` (or
/// `opts.channels`, which must be good ones), labelled by `events.tsv` `trial_type` when
/// present (classes: sorted distinct trial types), else unlabelled windows.
pub fn load(data: &Path, opts: &LoadOptions) -> Result<Windows> {
    let side = read_sidecars(data)?;
    let f = edf::read(data)?;
    for w in &f.warnings {
        eprintln!("warning: {}: {w}", data.display());
    }
    let labels: Vec<&str> = f.signals.iter().map(|s| s.label.as_str()).collect();
    let ch_path = sidecar(data, "channels.tsv").unwrap_or_default();
    for n in side.channels.iter().chain(&side.bad) {
        if !labels.contains(&n.as_str()) {
            bail!(
                "{}: channel '{n}' is not in {} (channels: {})",
                ch_path.display(),
                data.display(),
                labels.join(", ")
            );
        }
    }
    let picked: Vec<String> = match &opts.channels {
        Some(c) => {
            if let Some(b) = c.iter().find(|c| side.bad.contains(c)) {
                bail!(
                    "{}: channel '{b}' is marked bad in {}",
                    data.display(),
                    ch_path.display()
                );
            }
            c.clone()
        }
        // Channels of the data file that are not bad (as MNE-BIDS, whose raw keeps them all
        // and lists the bad ones in info['bads']), in the file's order.
        None => labels
            .iter()
            .filter(|l| !side.bad.iter().any(|b| b == *l))
            .map(|l| l.to_string())
            .collect(),
    };
    let rec = f.to_recording(Some(&picked), opts.common_rate)?;
    if (rec.rate - side.sampling_frequency).abs() > 1e-6 * rec.rate && opts.common_rate.is_none() {
        bail!(
            "{}: field 'SamplingFrequency' is {} Hz but {} is sampled at {} Hz",
            sidecar(data, "eeg.json").unwrap_or_default().display(),
            side.sampling_frequency,
            data.display(),
            rec.rate
        );
    }
    let w = opts.window.unwrap_or(crate::biosignal::EDF_WINDOW_S);
    let hop = opts.hop.unwrap_or(w);
    let mut ds = if side.events.is_empty() {
        rec.windows(w, hop)?
    } else {
        let map = annotations::class_map(&side.events);
        let k = map.len();
        let (ds, _) =
            annotations::labelled_windows(&rec, &side.events, &|d| map.get(d).copied(), k, w, hop)?;
        let mut ds = ds;
        ds.meta.insert(
            "classes".into(),
            map.iter()
                .map(|(n, i)| format!("{i} = {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        ds
    };
    if !side.bad.is_empty() {
        ds.meta
            .insert("bids_bad_channels".into(), side.bad.join(","));
    }
    Ok(ds)
}
