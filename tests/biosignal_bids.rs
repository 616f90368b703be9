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
