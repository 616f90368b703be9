//! EDF+D with real gaps (issue 20): records placed at their time-keeping TAL onsets, the
//! samples between gaps kept as segments that no window spans, annotation onsets in file time
//! so that labels land on the samples they name, `check` reporting the gaps. MNE 1.13 (in
//! .venv) reads the same files' records back to back and the annotations in file time: its
//! samples are compared segment by segment, its onsets directly; the record onsets are the
//! ground truth the test writes.
mod biosignal_ref;
mod common;
use biosignal_ref::{edf_bytes, reference, tal, EdfSig};
use brainscale::biosignal::{self, edf, LoadOptions};
use common::brainscale;
use std::path::{Path, PathBuf};

/// 6 records of 1 s at 10 Hz, sample value (µV) = its index in the file; records start at
/// 0, 1, 4, 5, 6, 9.5 s (gaps of 2 s before record 3 and 2.5 s before record 6); a "Move"
/// event from 0.2 s for 5 s spans the first gap, a "Spike" from 4.5 s for 1.5 s.
fn gapped(dir: &Path) -> PathBuf {
    let onsets = [0.0, 1.0, 4.0, 5.0, 6.0, 9.5];
    let tals: Vec<Vec<u8>> = onsets
        .iter()
        .enumerate()
        .map(|(r, &o)| {
            let mut t = tal(o, &[]);
            if r == 0 {
                t.extend(b"+0.2\x155\x14Move\x14\x00");
            }
            if r == 2 {
                t.extend(b"+4.5\x151.5\x14Spike\x14\x00");
            }
            t
        })
        .collect();
    let digital: Vec<i16> = (0..60).collect();
    let sig = EdfSig::linear("EEG Fp1", "uV", 10, digital, 1.0);
    let p = dir.join("gapped.edf");
    std::fs::write(&p, edf_bytes("EDF+D", "1", 6, &[sig], Some((&tals, 60)))).unwrap();
    p
}

#[test]
fn edf_plus_d_gaps_become_segments_at_their_onsets() {
    let dir = tempfile::tempdir().unwrap();
    let p = gapped(dir.path());
    let f = edf::read(&p).unwrap();
    assert_eq!(f.record_onsets, [0.0, 1.0, 4.0, 5.0, 6.0, 9.5]);
    assert_eq!(f.gaps(), [(2, 2.0), (5, 2.5)]);
    let rec = f.to_recording(None, None).unwrap();
    assert_eq!(rec.breaks, [20, 50]);
    assert_eq!(rec.segment_onsets, [4.0, 9.5]);

    // MNE: the same samples, record after record; segment k of ours is the slice of MNE's
    // data between our breaks, and starts at the record onset the file states.
    let r: serde_json::Value =
        serde_json::from_str(&reference(&["mne_edf", p.to_str().unwrap()])).unwrap();
    let mne: Vec<f64> = r["data_uv"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(mne.len(), rec.data.ncols());
    let bounds = [0, 20, 50, 60];
    for k in 0..3 {
        for i in bounds[k]..bounds[k + 1] {
            assert!(
                (rec.data[[0, i]] as f64 - mne[i]).abs() < 1e-4,
                "sample {i}"
            );
        }
    }
    // Annotation onsets in file time, as MNE.
    let mne_annot: Vec<(f64, f64, String)> =
        serde_json::from_value(r["annotations"].clone()).unwrap();
    let ours: Vec<(f64, f64, String)> = f
        .annotations
        .iter()
        .map(|a| (a.onset, a.duration.unwrap_or(0.0), a.text.clone()))
        .collect();
    assert_eq!(ours.len(), mne_annot.len());
    for (a, b) in ours.iter().zip(&mne_annot) {
        assert!(
            (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9 && a.2 == b.2,
            "{a:?} {b:?}"
        );
    }

    // Unlabelled 1-s windows: 2 + 3 + 1, none across a gap.
    let opts = LoadOptions {
        window: Some(1.0),
        ..Default::default()
    };
    let ds = biosignal::load(&p, &opts).unwrap();
    let firsts: Vec<f32> = (0..ds.len()).map(|i| ds.samples[[i, 0, 0]]).collect();
    assert_eq!(firsts, [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);

    // Labelled windows at onset + i·hop in file time: Move 0.2 s → samples 2..12; its
    // windows at 1.2, 2.2, 3.2 s cross or fall in the gap and are left out; at 4.2 s it is
    // stored sample 22 (record 3 starts at 4 s = sample 20). Spike at 4.5 s is sample 25.
    let opts = LoadOptions {
        window: Some(1.0),
        annotation_labels: true,
        ..Default::default()
    };
    let ds = biosignal::load(&p, &opts).unwrap();
    let firsts: Vec<f32> = (0..ds.len()).map(|i| ds.samples[[i, 0, 0]]).collect();
    assert_eq!(firsts, [2.0, 22.0, 25.0]);
    assert_eq!(ds.labels.unwrap().to_vec(), [0, 0, 1]);

    // `check` reports the gaps.
    let (ok, out, e) = brainscale(&["biosignal", "check", p.to_str().unwrap(), "--window", "1"]);
    assert!(ok, "{e}");
    assert!(
        out.contains("gaps (EDF+D): 2 totalling 4.5 s, before records 3, 6"),
        "{out}"
    );
}

#[test]
fn edf_plus_d_faults_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let sig = || vec![EdfSig::linear("Fp1", "uV", 10, (0..20).collect(), 1.0)];
    // Record 2 starts inside record 1.
    let tals = [tal(0.0, &[]), tal(0.5, &[])];
    let p = dir.path().join("overlap.edf");
    std::fs::write(&p, edf_bytes("EDF+D", "1", 2, &sig(), Some((&tals, 40)))).unwrap();
    let e = format!("{:#}", edf::read(&p).unwrap_err());
    assert!(
        e.contains("overlap.edf")
            && e.contains("data record 2 starts at 0.5 s")
            && e.contains("overlap"),
        "{e}"
    );
    // EDF+D without an annotation signal: its records cannot be placed.
    let p = dir.path().join("untimed.edf");
    std::fs::write(&p, edf_bytes("EDF+D", "1", 2, &sig(), None)).unwrap();
    let e = format!("{:#}", edf::read(&p).unwrap_err());
    assert!(
        e.contains("untimed.edf") && e.contains("no 'EDF Annotations'"),
        "{e}"
    );
    // With a common rate, each segment is resampled on its own: 10 → 20 Hz doubles each.
    let tals = [tal(0.0, &[]), tal(3.0, &[])];
    let p = dir.path().join("resampled.edf");
    std::fs::write(&p, edf_bytes("EDF+D", "1", 2, &sig(), Some((&tals, 40)))).unwrap();
    let rec = edf::read(&p)
        .unwrap()
        .to_recording(None, Some(20.0))
        .unwrap();
    assert_eq!((rec.data.ncols(), rec.breaks.clone()), (40, vec![20]));
    assert_eq!(rec.segment_onsets, [3.0]);
}
