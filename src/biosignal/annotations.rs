//! Labelled windows from time-stamped events: EDF+ annotations, Sleep-EDF hypnograms (an
//! annotation-only EDF+ beside each PSG recording) and BIDS `_events.tsv` rows.
//!
//! Every event (onset s, duration s, description) whose description maps to a class is cut
//! into windows that lie wholly inside it (window i at onset + i·hop, as many as fit); events
//! shorter than one window, and descriptions that map to no class, give none. This is MNE's
//! `mne.events_from_annotations(raw, event_id, chunk_duration=window)` for hop = window:
//! events at onset + k·window for every whole chunk (MNE: onsets rounded to samples).
//!
//! Classes: [`sleep_stage`] for hypnograms (AASM five classes, R&K stages 3 and 4 merged as
//! in TF-C's and most papers' Sleep-EDF setups), else the distinct descriptions in sorted
//! order (MNE's default `event_id` order), numbered from 0.
use crate::biosignal::{Recording, Windows};
use anyhow::{bail, Result};
use ndarray::{Array1, Array3, Axis};
use std::collections::BTreeMap;

/// One event: onset and duration in seconds after the recording's first sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub onset: f64,
    pub duration: f64,
    pub description: String,
}

/// Sleep-EDF hypnogram descriptions → AASM classes: `Sleep stage W` 0, `1` 1, `2` 2,
/// `3` and `4` 3 (N3), `R` 4; `Sleep stage ?` and `Movement time` → None (left out).
pub fn sleep_stage(description: &str) -> Option<i64> {
    match description.trim() {
        "Sleep stage W" => Some(0),
        "Sleep stage 1" => Some(1),
        "Sleep stage 2" => Some(2),
        "Sleep stage 3" | "Sleep stage 4" => Some(3),
        "Sleep stage R" => Some(4),
        _ => None,
    }
}

/// The AASM class names of [`sleep_stage`], in class order.
pub const SLEEP_CLASSES: [&str; 5] = ["W", "N1", "N2", "N3", "REM"];

/// Classes of `events` by description: the distinct descriptions, sorted, numbered from 0.
pub fn class_map(events: &[Event]) -> BTreeMap<String, i64> {
    let mut names: Vec<&str> = events.iter().map(|e| e.description.as_str()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i as i64))
        .collect()
}

/// The windows of `rec` inside each labelled event (see the module docs), with their start
/// samples. `class` maps a description to a class (None: left out); `classes` is K.
/// Errors name the recording when no window can be cut.
pub fn labelled_windows(
    rec: &Recording,
    events: &[Event],
    class: &dyn Fn(&str) -> Option<i64>,
    classes: usize,
    window_s: f64,
    hop_s: f64,
) -> Result<(Windows, Vec<usize>)> {
    let len = (window_s * rec.rate).round() as usize;
    let hop = (hop_s * rec.rate).round() as usize;
    if len == 0 || hop == 0 {
        bail!(
            "{}: window {window_s} s / hop {hop_s} s is under one sample at {} Hz",
            rec.source.display(),
            rec.rate
        );
    }
    // End of the recording in gap-filled samples (file time · rate).
    let t = rec.data.ncols();
    let g_end = match (rec.breaks.last(), rec.segment_onsets.last()) {
        (Some(&b), Some(&o)) if rec.segment_onsets.len() == rec.breaks.len() => {
            (o * rec.rate).round() as usize + (t - b)
        }
        _ => t,
    };
    let mut starts = Vec::new();
    let mut labels = Vec::new();
    for e in events {
        let Some(y) = class(&e.description) else {
            continue;
        };
        // Sample span of the event, as MNE rounds onsets to samples.
        let s0 = (e.onset * rec.rate).round() as i64;
        let s1 = ((e.onset + e.duration) * rec.rate).round() as i64;
        if s0 < 0 {
            continue;
        }
        // Windows in file time (gap-filled samples, as MNE places them); one that crosses an
        // EDF+D gap or lies in one is left out.
        let mut g = s0 as usize;
        while (g + len) as i64 <= s1 && g + len <= g_end {
            if let Some(s) = rec.window_at(g, len) {
                starts.push(s);
                labels.push(y);
            }
            g += hop;
        }
    }
    if starts.is_empty() {
        bail!(
            "{}: no labelled window: no event with a class lasts one window of {window_s} s \
             inside the recording ({} events)",
            rec.source.display(),
            events.len()
        );
    }
    let c = rec.data.nrows();
    let mut samples = Array3::zeros((starts.len(), c, len));
    for (i, &s) in starts.iter().enumerate() {
        samples
            .index_axis_mut(Axis(0), i)
            .assign(&rec.data.slice(ndarray::s![.., s..s + len]));
    }
    let mut meta = BTreeMap::new();
    meta.insert("window_s".into(), window_s.to_string());
    meta.insert("hop_s".into(), hop_s.to_string());
    meta.insert("labels_from".into(), "events".into());
    Ok((
        Windows {
            samples,
            labels: Some(Array1::from(labels)),
            rate: Some(rec.rate),
            channels: rec.channels.clone(),
            classes: Some(classes),
            source: rec.source.display().to_string(),
            meta,
        },
        starts,
    ))
}

/// The events of EDF+ annotations (a missing duration is 0).
pub fn from_edf(annotations: &[crate::biosignal::edf::Annotation]) -> Vec<Event> {
    annotations
        .iter()
        .map(|a| Event {
            onset: a.onset,
            duration: a.duration.unwrap_or(0.0),
            description: a.text.clone(),
        })
        .collect()
}
