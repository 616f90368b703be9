//! `biosignal check`: what each input file holds (format facts, units, gaps, montages, labels,
//! BIDS sidecars, bad channels) and whether the files can be used together. Split from
//! `cli/biosignal.rs` to keep files under 900 lines.
use crate::biosignal::montage::{self, Montage};
use crate::biosignal::{
    accel, consistent, edf, file_kind, load, window, FileKind, LoadOptions, Windows,
};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The report `biosignal check` prints, and its faults (empty = all files usable together).
pub fn check(files: &[PathBuf], opts: &LoadOptions) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut faults = Vec::new();
    let mut loaded: Vec<Windows> = Vec::new();
    for path in files {
        let _ = writeln!(out, "{}", path.display());
        if let Err(e) = describe(path, opts, &mut out) {
            faults.push(format!("{e:#}"));
            let _ = writeln!(out, "  FAULT: {e:#}");
            continue;
        }
        if let Some(note) = needs_common_rate(path, opts) {
            let _ = writeln!(out, "  note: {note}");
            continue;
        }
        match load(path, opts) {
            Ok(ds) => {
                let _ = writeln!(
                    out,
                    "  windows: {} × [{} ch, {} samples]{}{}",
                    ds.len(),
                    ds.n_channels(),
                    ds.window_len(),
                    ds.window_seconds()
                        .map(|s| format!(" = {s:.3} s"))
                        .unwrap_or_default(),
                    if opts.norm != window::Norm::None {
                        format!(", normalised {}", opts.norm.name())
                    } else {
                        String::new()
                    }
                );
                if ds.labels.is_some() {
                    let _ = writeln!(
                        out,
                        "  labels: {:?}{}",
                        ds.label_counts(),
                        ds.classes
                            .map(|k| format!(" of {k} classes"))
                            .unwrap_or_default()
                    );
                } else {
                    let _ = writeln!(out, "  labels: none");
                }
                if let Some(first) = loaded.first() {
                    if let Err(e) = consistent(first, &ds) {
                        faults.push(format!("{e:#}"));
                        let _ = writeln!(out, "  FAULT: {e:#}");
                    }
                }
                loaded.push(ds);
            }
            Err(e) => {
                faults.push(format!("{e:#}"));
                let _ = writeln!(out, "  FAULT: {e:#}");
            }
        }
    }
    let _ = writeln!(out, "{} file(s), {} fault(s)", files.len(), faults.len());
    (out, faults)
}

/// For an EDF/BDF whose selected channels have different rates and no `--common-rate`:
/// the reason it cannot be windowed as is (not a fault of the file).
fn needs_common_rate(path: &std::path::Path, opts: &LoadOptions) -> Option<String> {
    if opts.common_rate.is_some() || file_kind(path).ok()? != FileKind::Edf {
        return None;
    }
    let f = edf::read(path).ok()?;
    let rates: Vec<f64> = f
        .signals
        .iter()
        .filter(|s| opts.channels.as_ref().is_none_or(|c| c.contains(&s.label)))
        .map(|s| s.rate)
        .collect();
    let mixed = rates.iter().any(|&r| r != rates[0]);
    mixed.then(|| {
        "channels have different rates: windows need --common-rate R (sinc-resampled) or \
         --channels of one rate"
            .to_string()
    })
}

/// Format-specific facts (channels, rates, units, duration, annotations) before windowing.
fn describe(path: &std::path::Path, opts: &LoadOptions, out: &mut String) -> Result<()> {
    match file_kind(path)? {
        FileKind::Edf => {
            let f = edf::read(path)?;
            let _ = writeln!(
                out,
                "  {}: {} channels, {} records × {} s = {} s, start {} {} + {} s",
                f.kind.name(),
                f.signals.len(),
                f.n_records,
                f.record_duration,
                f.duration(),
                f.start_date,
                f.start_time,
                f.start_subsecond
            );
            for s in &f.signals {
                let _ = writeln!(
                    out,
                    "    {:<16} {:>8} Hz  {:<6} [{}, {}]{}{}",
                    s.label,
                    s.rate,
                    s.unit,
                    s.physical_min,
                    s.physical_max,
                    if s.unit != s.unit_in_file {
                        format!(" (file: {}, converted to uV)", s.unit_in_file)
                    } else {
                        String::new()
                    },
                    s.fault
                        .as_ref()
                        .map(|e| format!("  BAD: {e}"))
                        .unwrap_or_default()
                );
            }
            let gaps = f.gaps();
            if !gaps.is_empty() {
                let _ = writeln!(
                    out,
                    "  gaps (EDF+D): {} totalling {} s, before records {} (no window spans one)",
                    gaps.len(),
                    gaps.iter().map(|g| g.1).sum::<f64>(),
                    gaps.iter()
                        .map(|g| (g.0 + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for w in &f.warnings {
                let _ = writeln!(out, "  warning: {w}");
            }
            let labels: Vec<String> = f.signals.iter().map(|s| s.label.clone()).collect();
            let _ = writeln!(
                out,
                "  labels, normalised: {}",
                labels
                    .iter()
                    .map(|l| montage::normalise_label(l))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let bad: Vec<&str> = f
                .signals
                .iter()
                .filter(|s| s.fault.is_some())
                .map(|s| s.label.as_str())
                .collect();
            if !bad.is_empty() {
                let _ = writeln!(out, "  bad channels (unreadable): {}", bad.join(", "));
            }
            if crate::biosignal::bids::is_bids(path) {
                let side = crate::biosignal::bids::read_sidecars(path)?;
                crate::biosignal::bids::check_units(&side, &f)?;
                let _ = writeln!(
                    out,
                    "  BIDS sidecars: {}, {}{}",
                    side.channels_tsv.display(),
                    side.eeg_json.display(),
                    side.events_tsv
                        .as_ref()
                        .map(|p| format!(", {}", p.display()))
                        .unwrap_or_default()
                );
                let tt = crate::biosignal::annotations::class_map(&side.events);
                let _ = writeln!(
                    out,
                    "  BIDS-EEG: {} Hz (eeg.json), bad channels (channels.tsv): {}; {} events, \
                     trial types: {}",
                    side.sampling_frequency,
                    if side.bad.is_empty() {
                        "none".to_string()
                    } else {
                        side.bad.join(", ")
                    },
                    side.events.len(),
                    tt.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            for m in Montage::ALL {
                let missing = montage::missing(&labels, m);
                let verdict = if missing.is_empty() {
                    "can be formed".to_string()
                } else {
                    format!("cannot be formed: {}", missing.join("; "))
                };
                let _ = writeln!(out, "  montage {}: {verdict}", m.name());
            }
            let _ = writeln!(out, "  annotations: {}", f.annotations.len());
            for a in f.annotations.iter().take(10) {
                let _ = writeln!(
                    out,
                    "    {:>10.4} s {}{}",
                    a.onset,
                    a.text,
                    a.duration.map(|d| format!(" ({d} s)")).unwrap_or_default()
                );
            }
            let w = opts.window.unwrap_or(crate::biosignal::EDF_WINDOW_S);
            let hop = opts.hop.unwrap_or(w);
            let n = if f.duration() >= w {
                ((f.duration() - w) / hop + 1e-9).floor() as usize + 1
            } else {
                0
            };
            let _ = writeln!(out, "  {w} s windows every {hop} s: {n}");
        }
        FileKind::AccelCsv => {
            let (rec, info) = accel::read_with_info(path)?;
            let _ = writeln!(
                out,
                "  accelerometer CSV: {} rows, {:.4} Hz, {:.3} s, timing jitter {:.2}%{}",
                info.rows,
                rec.rate,
                rec.duration(),
                100.0 * info.jitter,
                if info.regridded {
                    " (interpolated onto a uniform grid)"
                } else {
                    ""
                }
            );
            if !info.pauses.is_empty() {
                let longest = info.pauses.iter().map(|p| p.1).fold(0.0, f64::max);
                let _ = writeln!(
                    out,
                    "  pauses: {} (longest {longest:.3} s): split into {} segments, no window \
                     spans a pause",
                    info.pauses.len(),
                    info.pauses.len() + 1
                );
                for (t, d) in info.pauses.iter().take(10) {
                    let _ = writeln!(out, "    at {t:.3} s: {d:.3} s without samples");
                }
            }
        }
        FileKind::Tensors => {}
    }
    Ok(())
}
