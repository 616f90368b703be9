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
//! `status`, annotations from `events.tsv`). A sidecar missing beside the data file is
//! inherited from the session, subject or dataset level (the BIDS inheritance principle,
//! [`find_sidecar`]; `_eeg.json` files merge, nearer keys winning); `units` of
//! `channels.tsv` must agree with the EDF header ([`check_units`]). Errors name the file, the
//! column or field and the fault.
use crate::biosignal::annotations::{self, Event};
use crate::biosignal::{edf, montage, LoadOptions, Windows};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The BIDS entities (`key-value` pairs before the suffix) of a file name, e.g.
/// `sub-01_ses-01_task-rest_run-01_eeg.edf` → sub=01, ses=01, task=rest, run=01.
fn entities(name: &str) -> Vec<(String, String)> {
    let stem = name.split('.').next().unwrap_or(name);
    stem.split('_')
        .filter_map(|p| p.split_once('-'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The sidecar of `data` (`…_eeg.edf`) with suffix `suffix` (`channels.tsv`, `events.tsv`,
/// `eeg.json`) by the BIDS inheritance principle (BIDS spec, "The Inheritance Principle"):
/// the one beside the data file first, else the nearest one up to the dataset root (the
/// folder that holds `sub-*`) whose entities are all entities of the data file; at one
/// level, the one with the most entities. `None` when `data` is not a `…_eeg.edf|bdf` name
/// or no sidecar applies. Errors when two equally specific ones apply at one level.
pub fn find_sidecar(data: &Path, suffix: &str) -> Result<Option<PathBuf>> {
    let mut found = inherited(data, suffix)?;
    Ok(if found.is_empty() {
        None
    } else {
        Some(found.remove(0))
    })
}

/// Every sidecar of `data` with `suffix` that applies, nearest first (see [`find_sidecar`]).
fn inherited(data: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let Some(beside) = sidecar(data, suffix) else {
        return Ok(Vec::new());
    };
    let name = data.file_name().unwrap_or_default().to_string_lossy();
    let own = entities(&name);
    let mut out = Vec::new();
    if beside.is_file() {
        out.push(beside.clone());
    }
    // Levels: the data folder (eeg/), then up to and including the dataset root: at most
    // eeg/, ses-*/, sub-*/ and the root, so a file outside a dataset never reaches into
    // unrelated folders above it.
    let mut dir = data.parent().map(Path::to_path_buf);
    let mut levels = 0;
    while let Some(d) = dir {
        levels += 1;
        if levels > 4 {
            break;
        }
        let mut best: Vec<(usize, PathBuf)> = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                let n = e.file_name().to_string_lossy().to_string();
                let tail = format!("_{suffix}");
                if !p.is_file() || p == beside || !(n.ends_with(&tail) || n == suffix) {
                    continue;
                }
                let ents = entities(&n);
                if ents.iter().all(|kv| own.contains(kv)) {
                    best.push((ents.len(), p));
                }
            }
        }
        best.sort();
        if let Some((k, p)) = best.last().cloned() {
            let ties: Vec<&PathBuf> = best.iter().filter(|b| b.0 == k).map(|b| &b.1).collect();
            if ties.len() > 1 {
                bail!(
                    "{}: {} sidecars '{suffix}' apply equally at {} ({}): the inheritance \
                     principle allows one per level",
                    data.display(),
                    ties.len(),
                    d.display(),
                    ties.iter()
                        .map(|t| t.file_name().unwrap_or_default().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if !out.contains(&p) {
                out.push(p);
            }
        }
        let is_root = d.join("dataset_description.json").is_file()
            || d.file_name()
                .map(|n| !n.to_string_lossy().starts_with("sub-"))
                .unwrap_or(true)
                && std::fs::read_dir(&d).is_ok_and(|rd| {
                    rd.flatten().any(|e| {
                        e.file_name().to_string_lossy().starts_with("sub-") && e.path().is_dir()
                    })
                });
        if is_root {
            break;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Ok(out)
}

/// The sidecar name beside `data` (same entities) with suffix `suffix`; it may not exist.
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

/// Whether `path` is a BIDS-EEG data file: `sub-*…_eeg.edf|bdf` with a `_channels.tsv` beside
/// it or inherited from a higher level.
pub fn is_bids(path: &Path) -> bool {
    let sub = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("sub-"));
    sub && find_sidecar(path, "channels.tsv").is_ok_and(|p| p.is_some())
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
    /// The sidecars read (beside the data file or inherited): channels.tsv, eeg.json
    /// (nearest), events.tsv (None when absent).
    pub channels_tsv: PathBuf,
    pub eeg_json: PathBuf,
    pub events_tsv: Option<PathBuf>,
    /// Good channels, in `channels.tsv` order.
    pub channels: Vec<String>,
    /// Channels whose `status` is `bad`.
    pub bad: Vec<String>,
    /// `type` and `units` of each good channel.
    pub types: Vec<(String, String)>,
    /// `SamplingFrequency` of `_eeg.json`.
    pub sampling_frequency: f64,
    pub events: Vec<Event>,
    /// Rows of `events.tsv` dropped because their `trial_type` is `n/a` or empty.
    pub events_dropped: usize,
}

/// Reads the sidecars of `data` (see the module docs).
pub fn read_sidecars(data: &Path) -> Result<BidsEeg> {
    let beside = sidecar(data, "channels.tsv").with_context(|| {
        format!(
            "{}: not a BIDS-EEG data file name (…_eeg.edf or …_eeg.bdf)",
            data.display()
        )
    })?;
    let ch_path = find_sidecar(data, "channels.tsv")?.with_context(|| {
        format!(
            "{}: no _channels.tsv beside it or at a higher level ({} or inherited)",
            data.display(),
            beside.display()
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
    // JSON sidecars merge down the tree: keys of a nearer file override those above.
    let json_paths = inherited(data, "eeg.json")?;
    if json_paths.is_empty() {
        bail!(
            "{}: no _eeg.json beside it or at a higher level (needed for SamplingFrequency)",
            data.display()
        );
    }
    let mut json = serde_json::Map::new();
    for p in json_paths.iter().rev() {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}: not valid JSON", p.display()))?;
        let serde_json::Value::Object(m) = v else {
            bail!("{}: not a JSON object", p.display());
        };
        json.extend(m);
    }
    let json_path = json_paths[0].clone();
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
    let mut events_dropped = 0;
    let events_tsv = find_sidecar(data, "events.tsv")?;
    if let Some(ev_path) = events_tsv.clone() {
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
                    events_dropped += 1;
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
        channels_tsv: ch_path,
        eeg_json: json_path,
        events_tsv,
        channels,
        bad,
        types,
        sampling_frequency,
        events,
        events_dropped,
    })
}

/// Checks the `units` column of `channels.tsv` against the EDF header's physical dimension of
/// each good channel: voltages compare by scale (µV = uV = microV), other units by text;
/// `n/a`/empty on either side is not checked. Errors name the TSV, channel and both units.
pub fn check_units(side: &BidsEeg, f: &edf::EdfFile) -> Result<()> {
    for (name, (_, units)) in side.channels.iter().zip(&side.types) {
        let Some(sig) = f.signals.iter().find(|s| &s.label == name) else {
            continue;
        };
        let (a, b) = (units.trim(), sig.unit_in_file.trim());
        if a.is_empty() || a == "n/a" || b.is_empty() {
            continue;
        }
        let same = match (edf::voltage_scale(a), edf::voltage_scale(b)) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            (None, None) => a == b,
            _ => false,
        };
        if !same {
            bail!(
                "{}: channel '{name}', column 'units': {a:?} but the header of {} says {b:?}",
                side.channels_tsv.display(),
                f.path.display()
            );
        }
    }
    Ok(())
}

/// Loads a BIDS-EEG recording as windows: the good channels of `channels.tsv` (or
/// `opts.channels`, which must be good ones), labelled by `events.tsv` `trial_type` when
/// present (classes: sorted distinct trial types), else unlabelled windows. With
/// `opts.montage` the montage is built from the electrodes it needs after the same checks
/// (units, `SamplingFrequency`, events); a needed electrode marked bad is an error naming it
/// and the `channels.tsv`.
pub fn load(data: &Path, opts: &LoadOptions) -> Result<Windows> {
    let side = read_sidecars(data)?;
    let f = edf::read(data)?;
    for w in &f.warnings {
        eprintln!("warning: {}: {w}", data.display());
    }
    let labels: Vec<&str> = f.signals.iter().map(|s| s.label.as_str()).collect();
    let ch_path = side.channels_tsv.clone();
    check_units(&side, &f)?;
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
    if opts.montage.is_some() && opts.channels.is_some() {
        bail!("{}: give --channels or --montage, not both", data.display());
    }
    let picked: Vec<String> = match (&opts.channels, opts.montage) {
        // The electrodes the montage needs; one marked bad is a fault, not a silent
        // derivation from a channel the dataset's curators rejected.
        (_, Some(m)) => {
            let all: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
            let need = montage::needed(&all, m);
            let bad: Vec<&String> = need.iter().filter(|n| side.bad.contains(n)).collect();
            if !bad.is_empty() {
                bail!(
                    "{}: montage {} needs channel(s) {} marked bad in {} (column 'status')",
                    data.display(),
                    m.name(),
                    bad.iter()
                        .map(|b| format!("'{b}' ({})", montage::normalise_label(b)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    ch_path.display()
                );
            }
            need
        }
        (Some(c), None) => {
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
        (None, None) => labels
            .iter()
            .filter(|l| !side.bad.iter().any(|b| b == *l))
            .map(|l| l.to_string())
            .collect(),
    };
    let rec = if picked.is_empty() {
        // No electrode of the montage: read the good channels for the rate check, and let
        // `montage::apply` name what is missing.
        let good: Vec<String> = labels
            .iter()
            .filter(|l| !side.bad.iter().any(|b| b == *l))
            .map(|l| l.to_string())
            .collect();
        f.to_recording(Some(&good), opts.common_rate)?
    } else {
        f.to_recording(Some(&picked), opts.common_rate)?
    };
    if (rec.rate - side.sampling_frequency).abs() > 1e-6 * rec.rate && opts.common_rate.is_none() {
        bail!(
            "{}: field 'SamplingFrequency' is {} Hz but {} is sampled at {} Hz",
            side.eeg_json.display(),
            side.sampling_frequency,
            data.display(),
            rec.rate
        );
    }
    let rec = match opts.montage {
        Some(m) => montage::apply(&rec, m)?,
        None => rec,
    };
    let w = opts.window.unwrap_or(crate::biosignal::EDF_WINDOW_S);
    let hop = opts.hop.unwrap_or(w);
    let mut ds = if side.events.is_empty() {
        rec.windows(w, hop)?
    } else {
        let map = annotations::class_map(&side.events);
        let k = map.len();
        if k == 1 {
            eprintln!(
                "warning: {}: one trial_type only ({}): every window has the same label",
                side.events_tsv.as_deref().unwrap_or(data).display(),
                map.keys().next().map(String::as_str).unwrap_or("")
            );
        }
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
    if side.events_dropped > 0 {
        let ev = side.events_tsv.as_deref().unwrap_or(data);
        eprintln!(
            "note: {}: {} event(s) with trial_type 'n/a' dropped",
            ev.display(),
            side.events_dropped
        );
        ds.meta.insert(
            "bids_events_dropped".into(),
            side.events_dropped.to_string(),
        );
    }
    if !side.bad.is_empty() {
        ds.meta
            .insert("bids_bad_channels".into(), side.bad.join(","));
    }
    Ok(ds)
}
