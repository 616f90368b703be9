//! BIDS-EEG sidecars by the inheritance principle (issue 20): `_channels.tsv`, `_events.tsv`
//! and `_eeg.json` found at session, subject or dataset level when not beside the data file,
//! `_eeg.json` files merged (nearer keys win), and `channels.tsv` units checked against the
//! EDF header. MNE-BIDS (in .venv) writes the dataset and reads the same layout (it searches
//! the subject and session levels; the dataset level is checked against the spec's rule).
mod biosignal_ref;
mod common;
use biosignal_ref::{edf_bytes, reference, EdfSig};
use brainscale::biosignal::{self, bids, LoadOptions};
use common::brainscale;
use std::path::{Path, PathBuf};

fn err(p: &Path, opts: &LoadOptions) -> String {
    format!("{:#}", biosignal::load(p, opts).unwrap_err())
}

/// 4 channels × 60 s at 100 Hz (value = sample index + channel), written to BIDS by
/// MNE-BIDS with C3 bad and three events; returns the data file.
fn dataset(d: &Path) -> PathBuf {
    let sigs: Vec<EdfSig> = ["Fp1", "Fp2", "C3", "C4"]
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let v: Vec<i16> = (0..6000).map(|t| (t + k) as i16).collect();
            EdfSig {
                phys: (-32768.0, 32767.0),
                dig: (-32768, 32767),
                ..EdfSig::linear(l, "uV", 100, v, 1.0)
            }
        })
        .collect();
    let src = d.join("src.edf");
    std::fs::write(&src, edf_bytes("", "1", 60, &sigs, None)).unwrap();
    let ev = d.join("events.json");
    std::fs::write(
        &ev,
        r#"[[0, 20, "rest"], [20, 20, "task"], [40, 15, "rest"]]"#,
    )
    .unwrap();
    let root = d.join("bids");
    PathBuf::from(
        reference(&[
            "bids_write",
            src.to_str().unwrap(),
            root.to_str().unwrap(),
            "C3",
            ev.to_str().unwrap(),
        ])
        .trim(),
    )
}

/// Our windows as (first sample, class name), and MNE-BIDS's events the same way.
fn compare_with_mne_bids(data: &Path) {
    let opts = LoadOptions {
        window: Some(10.0),
        ..Default::default()
    };
    let ds = biosignal::load(data, &opts).unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&reference(&["bids_read", data.to_str().unwrap(), "10"])).unwrap();
    let bads: Vec<String> = serde_json::from_value(r["bads"].clone()).unwrap();
    let good: Vec<String> = serde_json::from_value::<Vec<String>>(r["ch_names"].clone())
        .unwrap()
        .into_iter()
        .filter(|c| !bads.contains(c))
        .collect();
    assert_eq!(bads, ["C3"]);
    assert_eq!(ds.channels, good);
    let mne: Vec<(f32, String)> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_f64().unwrap() as f32, e[1].as_str().unwrap().into()))
        .collect();
    let names = ["rest", "task"];
    let ours: Vec<(f32, String)> = (0..ds.len())
        .map(|i| {
            let y = ds.labels.as_ref().unwrap()[i] as usize;
            (ds.samples[[i, 0, 0]], names[y].to_string())
        })
        .collect();
    assert_eq!(ours.len(), 5);
    assert_eq!(ours, mne);
}

#[test]
fn sidecars_are_inherited_from_higher_levels_as_mne_bids() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let eeg = data.parent().unwrap().to_path_buf();
    let ses = eeg.parent().unwrap().to_path_buf();
    let sub = ses.parent().unwrap().to_path_buf();
    let root = sub.parent().unwrap().to_path_buf();
    let stem = "sub-01_ses-01_task-rest_run-01";
    // channels.tsv to the session level, events.tsv and eeg.json to the subject level.
    let moves = [
        (
            format!("{stem}_channels.tsv"),
            ses.join("sub-01_ses-01_channels.tsv"),
        ),
        (
            format!("{stem}_events.tsv"),
            sub.join("sub-01_task-rest_events.tsv"),
        ),
        (
            format!("{stem}_eeg.json"),
            sub.join("sub-01_task-rest_eeg.json"),
        ),
    ];
    for (from, to) in &moves {
        std::fs::rename(eeg.join(from), to).unwrap();
    }
    assert!(bids::is_bids(&data));
    compare_with_mne_bids(&data);
    let side = bids::read_sidecars(&data).unwrap();
    assert_eq!(side.channels_tsv, moves[0].1);
    assert_eq!(side.events_tsv.as_ref(), Some(&moves[1].1));
    assert_eq!(side.eeg_json, moves[2].1);

    // eeg.json merges: a dataset-level one with a wrong rate is overridden by the subject's;
    // alone, its value is used and named.
    let top = root.join("task-rest_eeg.json");
    std::fs::write(
        &top,
        r#"{"SamplingFrequency": 250, "PowerLineFrequency": 50}"#,
    )
    .unwrap();
    let opts = LoadOptions {
        window: Some(10.0),
        ..Default::default()
    };
    assert_eq!(biosignal::load(&data, &opts).unwrap().len(), 5);
    std::fs::remove_file(&moves[2].1).unwrap();
    let e = err(&data, &opts);
    assert!(
        e.contains("task-rest_eeg.json") && e.contains("'SamplingFrequency' is 250 Hz"),
        "{e}"
    );
    std::fs::write(&top, r#"{"SamplingFrequency": 100}"#).unwrap();
    assert_eq!(biosignal::load(&data, &opts).unwrap().len(), 5);
    // A sidecar beside the data file wins over the inherited one: an events.tsv there with
    // one "task" event from 0 s for 10 s gives one window.
    let near = eeg.join(format!("{stem}_events.tsv"));
    std::fs::write(&near, "onset\tduration\ttrial_type\n0\t10\ttask\n").unwrap();
    assert_eq!(biosignal::load(&data, &opts).unwrap().len(), 1);
    std::fs::remove_file(&near).unwrap();
    // Two equally specific sidecars at one level are ambiguous, named.
    let twin = sub.join("sub-01_run-01_events.tsv");
    std::fs::copy(&moves[1].1, &twin).unwrap();
    let e = err(&data, &opts);
    assert!(
        e.contains("2 sidecars 'events.tsv' apply equally")
            && e.contains("sub-01_run-01_events.tsv"),
        "{e}"
    );
    std::fs::remove_file(&twin).unwrap();
    // An events.tsv of another task does not apply: no labels, 6 unlabelled windows.
    std::fs::rename(&moves[1].1, sub.join("sub-01_task-other_events.tsv")).unwrap();
    let ds = biosignal::load(&data, &opts).unwrap();
    assert_eq!((ds.len(), ds.labels.is_none()), (6, true));
    // `check` names the sidecars it read.
    let (ok, out, e) = brainscale(&["biosignal", "check", data.to_str().unwrap()]);
    assert!(ok, "{e}");
    assert!(
        out.contains("BIDS sidecars:") && out.contains("sub-01_ses-01_channels.tsv"),
        "{out}"
    );
}

#[test]
fn channels_tsv_units_must_match_the_edf_header() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let tsv = data.with_file_name("sub-01_ses-01_task-rest_run-01_channels.tsv");
    let text = std::fs::read_to_string(&tsv).unwrap();
    // MNE-BIDS writes µV for a uV header: the same unit.
    assert!(text.contains("µV"), "{text}");
    let opts = LoadOptions {
        window: Some(10.0),
        ..Default::default()
    };
    assert!(biosignal::load(&data, &opts).is_ok());
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let fp2 = lines.iter().position(|l| l.starts_with("Fp2\t")).unwrap();
    lines[fp2] = lines[fp2].replace("µV", "mV");
    std::fs::write(&tsv, lines.join("\n") + "\n").unwrap();
    let e = err(&data, &opts);
    assert!(
        e.contains("_channels.tsv")
            && e.contains("channel 'Fp2', column 'units': \"mV\"")
            && e.contains("says \"uV\""),
        "{e}"
    );
    let (ok, _, stderr) = brainscale(&["biosignal", "check", data.to_str().unwrap()]);
    assert!(!ok && stderr.contains("column 'units'"), "{stderr}");
}

/// Issue 20, bug 1: `--montage` on a BIDS file used to skip every sidecar (no labels, no
/// bad channels, no rate check). 17 electrodes × 60 s at 100 Hz (value = sample index +
/// 100 × channel), written by MNE-BIDS with T4 (T8, needed by banana16) bad.
#[test]
fn montage_on_bids_keeps_events_bad_channels_and_the_rate_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let names = [
        "Fp1", "Fp2", "F7", "F3", "F4", "F8", "T3", "C3", "C4", "T4", "T5", "P3", "P4", "T6", "O1",
        "O2", "Cz",
    ];
    let sigs: Vec<EdfSig> = names
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let v: Vec<i16> = (0..6000).map(|t| (t + 100 * k) as i16).collect();
            EdfSig {
                phys: (-32768.0, 32767.0),
                dig: (-32768, 32767),
                ..EdfSig::linear(l, "uV", 100, v, 1.0)
            }
        })
        .collect();
    let src = d.join("src.edf");
    std::fs::write(&src, edf_bytes("", "1", 60, &sigs, None)).unwrap();
    let ev = d.join("events.json");
    std::fs::write(
        &ev,
        r#"[[0, 20, "rest"], [20, 20, "task"], [40, 15, "rest"]]"#,
    )
    .unwrap();
    let root = d.join("bids");
    let data = PathBuf::from(
        reference(&[
            "bids_write",
            src.to_str().unwrap(),
            root.to_str().unwrap(),
            "T4",
            ev.to_str().unwrap(),
        ])
        .trim(),
    );
    let opts = LoadOptions {
        window: Some(10.0),
        montage: Some(biosignal::montage::Montage::Banana16),
        ..Default::default()
    };
    // A needed electrode marked bad: named, with the channels.tsv.
    let e = err(&data, &opts);
    assert!(
        e.contains("'T4' (T8)") && e.contains("_channels.tsv") && e.contains("banana16"),
        "{e}"
    );
    let (ok, out, _) = brainscale(&[
        "biosignal",
        "check",
        data.to_str().unwrap(),
        "--montage",
        "banana16",
    ]);
    assert!(!ok && out.contains("'T4' (T8)"), "{out}");
    // T4 good, Cz (not in banana16) bad: the montage forms, labelled by events.tsv.
    let tsv = data.with_file_name("sub-01_ses-01_task-rest_run-01_channels.tsv");
    let text = std::fs::read_to_string(&tsv).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            let mut f: Vec<String> = l.split('\t').map(String::from).collect();
            if f[0] == "T4" || f[0] == "Cz" {
                let s = f.len() - 2; // status, status_description
                f[s] = if f[0] == "Cz" { "bad" } else { "good" }.into();
            }
            f.join("\t") + "\n"
        })
        .collect();
    std::fs::write(&tsv, text).unwrap();
    // One event without a trial_type: dropped, and counted.
    let evt = data.with_file_name("sub-01_ses-01_task-rest_run-01_events.tsv");
    let text = std::fs::read_to_string(&evt).unwrap();
    std::fs::write(
        &evt,
        format!("{}\n55.0\t5.0\tn/a\tn/a\t5500\n", text.trim_end()),
    )
    .unwrap();
    let ds = biosignal::load(&data, &opts).unwrap();
    assert_eq!(
        ds.meta.get("bids_events_dropped").map(String::as_str),
        Some("1")
    );
    assert_eq!(ds.channels.len(), 16);
    assert_eq!(ds.channels[0], "FP1-F7");
    assert_eq!(
        ds.meta.get("bids_bad_channels").map(String::as_str),
        Some("Cz")
    );
    // FP1 − F7 = (t + 0) − (t + 200); T8 − P8 = T4 − T6 = 900 − 1300.
    assert_eq!(ds.samples[[0, 0, 0]], -200.0);
    assert_eq!(ds.samples[[3, 6, 5]], -400.0);
    let lab: Vec<i64> = ds.labels.as_ref().unwrap().to_vec();
    // rest, rest, task, task, rest (as MNE-BIDS reads them, above).
    assert_eq!(lab, [0, 0, 1, 1, 0]);
    // The _eeg.json rate is checked with a montage too.
    let json = data.with_file_name("sub-01_ses-01_task-rest_run-01_eeg.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    v["SamplingFrequency"] = serde_json::json!(250.0);
    std::fs::write(&json, v.to_string()).unwrap();
    let e = err(&data, &opts);
    assert!(e.contains("SamplingFrequency"), "{e}");
}
