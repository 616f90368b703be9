//! Bio-signal inputs as users hold them (issue 20): the kinds that used to be read silently
//! wrong (EDF+D records without their time-keeping TAL, accelerometer pauses, channels-last
//! tensors, mixed physical units) and the unclear ones (NUL/latin-1/duplicate labels, 1-based
//! labels, annotation-only EDF+, dummy channels, normalisation order, p95 spikes). Each test
//! fails on the code before the fix. EDF files are built byte by byte (tests/biosignal_ref);
//! MNE (in .venv) is the independent reader where it reads the same file.
mod biosignal_ref;
mod common;
use biosignal_ref::{edf_bytes, reference, tal, EdfSig};
use brainscale::biosignal::{self, accel, edf, resample, LoadOptions, Norm, Windows};
use common::brainscale;
use ndarray::{Array1, Array3, Axis};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err(p: &Path, opts: &LoadOptions) -> String {
    format!("{:#}", biosignal::load(p, opts).unwrap_err())
}

fn ramp(n: usize) -> Vec<i16> {
    (0..n).map(|i| (i as i16) * 3 - 50).collect()
}

fn one_sig(unit: &str, records: usize, scale: f64) -> EdfSig {
    EdfSig::linear("Fp1", unit, 10, ramp(10 * records), scale)
}

// ------------------------------------------------------------ silently wrong, now right

#[test]
fn edf_plus_time_keeping_is_checked_record_by_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let opts = LoadOptions {
        window: Some(1.0),
        ..Default::default()
    };
    let sig = || vec![one_sig("uV", 3, 1.0)];
    // EDF+D, record 2 has no TAL and record 3 starts after a 3-s gap: before the fix the gap
    // check was skipped for the whole file and the gap read as contiguous.
    let tals = [tal(0.0, &[]), Vec::new(), tal(5.0, &[])];
    let p = write(
        d,
        "d_missing.edf",
        &edf_bytes("EDF+D", "1", 3, &sig(), Some((&tals, 40))),
    );
    let e = err(&p, &opts);
    assert!(
        e.contains("d_missing.edf") && e.contains("data record 2 of 3 has no time-keeping TAL"),
        "{e}"
    );
    // EDF+C: a record without TAL is contiguous by declaration, but the others are still
    // checked: a gap after it is found.
    let tals = [tal(0.0, &[]), Vec::new(), tal(5.0, &[])];
    let p = write(
        d,
        "c_gap.edf",
        &edf_bytes("EDF+C", "1", 3, &sig(), Some((&tals, 40))),
    );
    let e = err(&p, &opts);
    assert!(
        e.contains("data record 3 starts at 5 s, expected 2 s"),
        "{e}"
    );
    let tals = [tal(0.0, &[]), Vec::new(), tal(2.0, &[(2.5, "Spike")])];
    let p = write(
        d,
        "c_ok.edf",
        &edf_bytes("EDF+C", "1", 3, &sig(), Some((&tals, 60))),
    );
    let f = edf::read(&p).unwrap();
    assert_eq!(f.signals[0].data.len(), 30);
    assert_eq!(f.annotations.len(), 1);
    assert_eq!(
        (f.annotations[0].onset, f.annotations[0].text.as_str()),
        (2.5, "Spike")
    );
    // EDF+D whose records are all timed and contiguous reads.
    let tals = [tal(0.0, &[]), tal(1.0, &[]), tal(2.0, &[])];
    let p = write(
        d,
        "d_ok.edf",
        &edf_bytes("EDF+D", "1", 3, &sig(), Some((&tals, 40))),
    );
    assert_eq!(biosignal::load(&p, &opts).unwrap().len(), 3);
}

#[test]
fn accelerometer_pauses_are_never_interpolated() {
    let dir = tempfile::tempdir().unwrap();
    // 50 Hz for 10 s, a 120-s pause, 50 Hz for 10 s; x = the row index.
    let mut rows = String::from("time,x,y,z,label\n");
    let mut times = Vec::new();
    for i in 0..500 {
        times.push(i as f64 / 50.0);
    }
    for i in 0..500 {
        times.push(130.0 + i as f64 / 50.0);
    }
    for (i, t) in times.iter().enumerate() {
        rows += &format!("{t},{i},0,1,{}\n", i / 500);
    }
    let p = write(dir.path(), "paused.csv", rows.as_bytes());
    let (rec, info) = accel::read_with_info(&p).unwrap();
    assert_eq!(info.pauses.len(), 1);
    assert!((info.pauses[0].0 - 9.98).abs() < 1e-9 && (info.pauses[0].1 - 120.02).abs() < 1e-9);
    assert_eq!((rec.data.ncols(), rec.breaks.clone()), (1000, vec![500]));
    // 2.56-s windows: 3 per segment, none across the pause, every value a real row.
    let ds = biosignal::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(ds.samples.dim(), (6, 3, 128));
    let starts: Vec<f32> = (0..6).map(|i| ds.samples[[i, 0, 0]]).collect();
    assert_eq!(starts, [0.0, 128.0, 256.0, 500.0, 628.0, 756.0]);
    for w in ds.samples.axis_iter(Axis(0)) {
        let x = w.index_axis(Axis(0), 0);
        assert!(x.windows(2).into_iter().all(|p| p[1] - p[0] == 1.0));
    }
    assert_eq!(ds.labels.unwrap().to_vec(), [0, 0, 0, 1, 1, 1]);
    // `check` reports the pause.
    let (ok, out, e) = brainscale(&["biosignal", "check", p.to_str().unwrap()]);
    assert!(ok, "{e}");
    assert!(out.contains("pauses: 1 (longest 120.020 s)"), "{out}");
}

#[test]
fn channels_last_tensors_are_transposed() {
    let dir = tempfile::tempdir().unwrap();
    // HAR-style [N = 4, L = 128, C = 3]: value = 1000·c + t.
    let nlc = Array3::from_shape_fn((4, 128, 3), |(i, t, c)| (i * 10_000 + c * 1000 + t) as f32);
    let p = dir.path().join("har.npy");
    ndarray_npy::write_npy(&p, &nlc).unwrap();
    let ds = biosignal::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(ds.samples.dim(), (4, 3, 128));
    assert_eq!(ds.samples[[2, 1, 7]], 21_007.0);
    // Metadata decides when present: channel names matching the last axis, or layout=NCL.
    let mut m = std::collections::HashMap::new();
    m.insert("channels".to_string(), "x,y,z".to_string());
    let p = dir.path().join("named.safetensors");
    brainscale::core::io::write_tensors(
        &p,
        vec![(
            "samples",
            brainscale::core::io::Tensor::F32(nlc.clone().into_dyn()),
        )],
        m,
    )
    .unwrap();
    let ds = biosignal::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(
        (ds.samples.dim(), ds.channels.clone()),
        ((4, 3, 128), vec!["x".into(), "y".into(), "z".into()])
    );
    let ncl = Array3::from_shape_fn((2, 5, 3), |(i, c, t)| (i * 100 + c * 10 + t) as f32);
    let mut m = std::collections::HashMap::new();
    m.insert("layout".to_string(), "NCL".to_string());
    let p = dir.path().join("short.safetensors");
    brainscale::core::io::write_tensors(
        &p,
        vec![("samples", brainscale::core::io::Tensor::F32(ncl.into_dyn()))],
        m,
    )
    .unwrap();
    assert_eq!(
        biosignal::load(&p, &LoadOptions::default())
            .unwrap()
            .samples
            .dim(),
        (2, 5, 3)
    );
}

#[test]
fn voltages_are_converted_to_microvolts_like_mne() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let opts = LoadOptions {
        window: Some(1.0),
        ..Default::default()
    };
    // The same signal (0.5 µV per digital step) in µV, mV, V, nV and latin-1 µ.
    let files = [
        ("uv.edf", b"uV".to_vec(), 0.5),
        ("mv.edf", b"mV".to_vec(), 0.5e-3),
        ("v.edf", b"V".to_vec(), 0.5e-6),
        ("nv.edf", b"nV".to_vec(), 500.0),
        ("micro.edf", vec![0xB5, b'V'], 0.5),
    ];
    let mut sets = Vec::new();
    for (name, unit, scale) in &files {
        let mut s = one_sig("", 3, *scale);
        s.unit = String::from_utf8_lossy(unit).into();
        let mut bytes = edf_bytes("", "1", 3, &[s], None);
        // The unit field (offset 256 + 96 for one signal) as raw bytes.
        let mut f = unit.clone();
        f.resize(8, b' ');
        bytes[256 + 96..256 + 104].copy_from_slice(&f);
        let p = write(d, name, &bytes);
        let e = edf::read(&p).unwrap();
        assert_eq!(e.signals[0].unit, "uV", "{name}");
        sets.push(biosignal::load(&p, &opts).unwrap());
        // MNE reads µV, mV and V (it does not know nV): in volts, × 1e6 = ours.
        if *name != "nv.edf" {
            let r: serde_json::Value =
                serde_json::from_str(&reference(&["mne_edf", p.to_str().unwrap()])).unwrap();
            let mne: Vec<f64> = r["data_uv"][0]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let ours = &e.signals[0].data;
            assert_eq!(mne.len(), ours.len());
            for (a, b) in mne.iter().zip(ours) {
                assert!(
                    (a - *b as f64).abs() <= 1e-4 * a.abs().max(1.0),
                    "{name}: {a} vs {b}"
                );
            }
        }
    }
    let first = &sets[0].samples;
    assert_eq!(first[[1, 0, 2]], 0.5 * (12 * 3 - 50) as f32);
    for (s, (name, ..)) in sets.iter().zip(&files) {
        let diff = (&s.samples - first)
            .mapv(f32::abs)
            .fold(0f32, |a, &b| a.max(b));
        assert!(diff <= 1e-4, "{name}: {diff}");
    }
    // Pooled: one unit.
    let pooled = Windows::concat(&sets).unwrap();
    assert_eq!(pooled.len(), 15);
    // An unknown unit is named in a warning and left as stored.
    let p = write(
        d,
        "odd.edf",
        &edf_bytes("", "1", 3, &[one_sig("furlong", 3, 1.0)], None),
    );
    let f = edf::read(&p).unwrap();
    assert_eq!(f.signals[0].unit, "furlong");
    assert!(f
        .warnings
        .iter()
        .any(|w| w.contains("unknown physical dimension 'furlong'")));
}

// ------------------------------------------------------------ unclear, now clear

#[test]
fn labels_nul_latin1_and_duplicates_read_as_mne() {
    let dir = tempfile::tempdir().unwrap();
    let mut nul = b"EEG Fp1".to_vec();
    nul.resize(16, 0);
    let labels: Vec<Vec<u8>> = vec![
        nul,
        b"C\xe2nula".to_vec(),
        b"Canula".to_vec(),
        b"EEG".to_vec(),
        b"EEG".to_vec(),
    ];
    let sigs: Vec<EdfSig> = labels
        .iter()
        .map(|l| EdfSig {
            label: l.clone(),
            ..one_sig("uV", 2, 1.0)
        })
        .collect();
    let p = write(
        dir.path(),
        "labels.edf",
        &edf_bytes("", "1", 2, &sigs, None),
    );
    let f = edf::read(&p).unwrap();
    let ours: Vec<&str> = f.signals.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(ours, ["EEG Fp1", "Cânula", "Canula", "EEG-0", "EEG-1"]);
    assert!(
        f.warnings.iter().any(|w| w.contains("'EEG'")),
        "{:?}",
        f.warnings
    );
    let r: serde_json::Value =
        serde_json::from_str(&reference(&["mne_edf", p.to_str().unwrap()])).unwrap();
    let mne: Vec<&str> = r["ch_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // MNE 1.13 keeps the NUL padding in the name ("EEG Fp1\0\0…", which no one can type):
    // the one deliberate difference; everything else (latin-1, renamed duplicates) is MNE's.
    assert_eq!(mne[0], "EEG Fp1\0\0\0\0\0\0\0\0\0");
    let mne: Vec<&str> = mne.iter().map(|m| m.trim_end_matches('\0')).collect();
    assert_eq!(ours, mne);
    // Selectable by name, accent included.
    let opts = LoadOptions {
        window: Some(1.0),
        channels: Some(vec!["Cânula".into(), "EEG Fp1".into()]),
        ..Default::default()
    };
    assert_eq!(
        biosignal::load(&p, &opts).unwrap().channels,
        ["Cânula", "EEG Fp1"]
    );
}

#[test]
fn one_based_labels_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Windows {
        samples: Array3::from_shape_fn((4, 1, 8), |(i, _, t)| (i + t) as f32),
        labels: Some(Array1::from(vec![1, 2, 1, 2])),
        rate: Some(100.0),
        channels: vec!["ch0".into()],
        classes: None,
        source: "x".into(),
        meta: BTreeMap::new(),
    };
    let p = dir.path().join("onebased.safetensors");
    ds.save(&p).unwrap();
    let e = err(&p, &LoadOptions::default());
    assert!(
        e.contains("onebased.safetensors") && e.contains("labels run 1..2"),
        "{e}"
    );
    let (ok, _, stderr) = brainscale(&["biosignal", "check", p.to_str().unwrap()]);
    assert!(!ok && stderr.contains("labels run 1..2"), "{stderr}");
    // With the class count given, 1..K are classes of 0..K.
    let opts = LoadOptions {
        classes: Some(3),
        ..Default::default()
    };
    assert!(biosignal::load(&p, &opts).is_ok());
}

#[test]
fn annotation_only_edf_and_dummy_channels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A hypnogram-like annotation-only EDF+ with record duration 0 (allowed by EDF+).
    let tals = [tal(0.0, &[(0.0, "Sleep stage W"), (30.0, "Sleep stage 1")])];
    let p = write(
        d,
        "hyp.edf",
        &edf_bytes("EDF+C", "0", 1, &[], Some((&tals, 120))),
    );
    let f = edf::read(&p).unwrap();
    assert!(f.signals.is_empty());
    let texts: Vec<(f64, &str)> = f
        .annotations
        .iter()
        .map(|a| (a.onset, a.text.as_str()))
        .collect();
    assert_eq!(texts, [(0.0, "Sleep stage W"), (30.0, "Sleep stage 1")]);
    let e = err(&p, &LoadOptions::default());
    assert!(
        e.contains("hyp.edf") && e.contains("annotation-only"),
        "{e}"
    );
    // CHB-MIT's dummy channel '-' (digital range 0..0): unreadable only when selected.
    let dummy = EdfSig {
        label: b"-".to_vec(),
        dig: (0, 0),
        phys: (0.0, 0.0),
        ..one_sig("", 2, 1.0)
    };
    let p = write(
        d,
        "dummy.edf",
        &edf_bytes("", "1", 2, &[one_sig("uV", 2, 1.0), dummy], None),
    );
    let opts = LoadOptions {
        window: Some(1.0),
        ..Default::default()
    };
    let e = err(&p, &opts);
    assert!(
        e.contains("dummy.edf") && e.contains("signal 2 ('-')") && e.contains("--channels"),
        "{e}"
    );
    let opts = LoadOptions {
        channels: Some(vec!["Fp1".into()]),
        ..opts
    };
    assert_eq!(biosignal::load(&p, &opts).unwrap().len(), 2);
}

#[test]
fn resample_normalises_after_alignment_like_pretrain() {
    let dir = tempfile::tempdir().unwrap();
    let ds = Windows {
        samples: Array3::from_shape_fn((3, 2, 100), |(i, c, t)| {
            ((t as f32 * 0.3 + i as f32).sin() + 0.1 * c as f32) * (1.0 + t as f32 / 50.0)
        }),
        labels: Some(Array1::from(vec![0, 1, 0])),
        rate: Some(100.0),
        channels: vec!["a".into(), "b".into()],
        classes: Some(2),
        source: "x".into(),
        meta: BTreeMap::new(),
    };
    let p = dir.path().join("in.safetensors");
    ds.save(&p).unwrap();
    let out = dir.path().join("out.safetensors");
    let (ok, _, e) = brainscale(&[
        "biosignal",
        "resample",
        p.to_str().unwrap(),
        "--rate",
        "200",
        "--length",
        "256",
        "--norm",
        "p95",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{e}");
    let got = biosignal::load(&out, &LoadOptions::default()).unwrap();
    let mut want = resample::align(&ds, 200.0, 256, resample::Method::Sinc).unwrap();
    want.normalise(Norm::P95);
    let diff = (&got.samples - &want.samples)
        .mapv(f32::abs)
        .fold(0f32, |a, &b| a.max(b));
    assert!(diff < 1e-6, "{diff}");
}

#[test]
fn p95_on_a_flat_channel_with_spikes_warns() {
    let mut samples = Array3::zeros((2, 2, 200));
    for t in 0..200 {
        samples[[0, 0, t]] = (t as f32 * 0.1).sin();
        samples[[1, 0, t]] = (t as f32 * 0.1).cos();
    }
    samples[[1, 1, 50]] = 300.0; // flat channel 'b', one spike
    samples[[1, 1, 51]] = 1e-6;
    for t in 60..200 {
        samples[[1, 1, t]] = 1e-6 * (t % 3) as f32;
    }
    let mut ds = Windows {
        samples,
        labels: None,
        rate: Some(100.0),
        channels: vec!["a".into(), "b".into()],
        classes: None,
        source: "spiky".into(),
        meta: BTreeMap::new(),
    };
    let mut calm = ds.subset(&[0]);
    assert!(calm.normalise(Norm::P95).is_none());
    let w = ds.normalise(Norm::P95).expect("a warning");
    assert!(
        w.contains("spiky") && w.contains("window 1, channel 'b'"),
        "{w}"
    );
}

// ------------------------------------------------------------ montages

#[test]
fn montages_from_referential_labels() {
    use brainscale::biosignal::montage::{self, Montage};
    let dir = tempfile::tempdir().unwrap();
    // Referential TUH-style labels, old 10-20 names for the temporal row, mixed case.
    let electrodes = [
        "EEG FP1-REF",
        "EEG F7-REF",
        "EEG T3-REF",
        "EEG T5-REF",
        "EEG O1-REF",
        "EEG FP2-REF",
        "EEG F8-REF",
        "EEG T4-REF",
        "EEG T6-REF",
        "EEG O2-REF",
        "EEG F3-REF",
        "EEG C3-REF",
        "EEG P3-REF",
        "EEG F4-REF",
        "EEG C4-REF",
        "EEG P4-REF",
        "EEG A1-REF",
        "ECG",
    ];
    let sigs: Vec<EdfSig> = electrodes
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let v: Vec<i16> = (0..20).map(|t| (k * 30 + t) as i16).collect();
            EdfSig::linear(l, "uV", 10, v, 1.0)
        })
        .collect();
    let p = write(dir.path(), "tuh.edf", &edf_bytes("", "1", 2, &sigs, None));
    let opts = LoadOptions {
        window: Some(1.0),
        montage: Some(Montage::Banana16),
        ..Default::default()
    };
    let ds = biosignal::load(&p, &opts).unwrap();
    assert_eq!(ds.channels, Montage::Banana16.channel_names());
    assert_eq!(ds.channels[1], "F7-T7");
    // F7 (k = 1) − T3 (k = 2) = −30 everywhere; P8-O2 = T6 (k = 8) − O2 (k = 9) = −30;
    // FP1-F3 = 0 − 10·30.
    assert!(ds
        .samples
        .index_axis(Axis(1), 1)
        .iter()
        .all(|&v| v == -30.0));
    assert!(ds
        .samples
        .index_axis(Axis(1), 7)
        .iter()
        .all(|&v| v == -30.0));
    assert!(ds
        .samples
        .index_axis(Axis(1), 8)
        .iter()
        .all(|&v| v == -300.0));
    // biot18 needs A2: named.
    let opts = LoadOptions {
        montage: Some(Montage::Biot18),
        ..opts
    };
    let e = err(&p, &opts);
    assert!(e.contains("tuh.edf") && e.contains("C3-A2 (no A2)"), "{e}");
    assert_eq!(montage::normalise_label("EEG T3-REF"), "T7");
    // `check` reports units, labels, montages.
    let (ok, out, e) = brainscale(&["biosignal", "check", p.to_str().unwrap(), "--window", "1"]);
    assert!(ok, "{e}");
    for needle in [
        "montage banana16: can be formed",
        "montage biot18: cannot be formed: C3-A2 (no A2)",
        "labels, normalised: FP1, F7, T7, P7",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

// ------------------------------------------------------------ BIOT checkpoint → fine-tune

#[test]
fn finetune_starts_from_an_imported_biot_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(biosignal_ref::python())
        .arg(root.join("tests/fixtures/biot_checkpoint.py"))
        .arg(d)
        .arg("3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 16-channel 10-s windows at 200 Hz, two classes.
    let set = |n: usize, name: &str| {
        let ds = Windows {
            samples: Array3::from_shape_fn((n, 16, 2000), |(i, c, t)| {
                ((t as f32 * 0.05 * (1 + i % 2) as f32) + c as f32).sin() * 50.0
            }),
            labels: Some(Array1::from_iter((0..n).map(|i| (i % 2) as i64))),
            rate: Some(200.0),
            channels: (0..16).map(|c| format!("ch{c}")).collect(),
            classes: Some(2),
            source: name.into(),
            meta: BTreeMap::new(),
        };
        let p = d.join(name);
        ds.save(&p).unwrap();
        p
    };
    let (train, test) = (set(4, "train.safetensors"), set(2, "test.safetensors"));
    let ckpt = d.join("encoder.ckpt");
    let (ok, stdout, e) = brainscale(&[
        "biosignal",
        "finetune",
        "--pretrained",
        ckpt.to_str().unwrap(),
        "--train",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--regimes",
        "100%",
        "--seeds",
        "0",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--norm",
        "p95",
    ]);
    assert!(ok, "{e}");
    assert!(
        stdout.contains("encoder.ckpt") && stdout.contains("200 Hz × 2000"),
        "{stdout}"
    );
}

// ------------------------------------------------------------ labels from events

fn ramp_sigs(labels: &[&str], records: usize, spr: usize) -> Vec<EdfSig> {
    labels
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let v: Vec<i16> = (0..records * spr).map(|t| (t + k) as i16).collect();
            EdfSig {
                phys: (-32768.0, 32767.0),
                dig: (-32768, 32767),
                ..EdfSig::linear(l, "uV", spr, v, 1.0)
            }
        })
        .collect()
}

#[test]
fn sleep_edf_hypnogram_labels_match_mne() {
    use brainscale::biosignal::annotations;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A 5-min PSG at 100 Hz (value = sample index) and its hypnogram: an annotation-only
    // EDF+ with record duration 0, as Sleep-EDF's.
    let psg = write(
        d,
        "SC4001E0-PSG.edf",
        &edf_bytes(
            "",
            "1",
            300,
            &ramp_sigs(&["EEG Fpz-Cz", "EEG Pz-Oz"], 300, 100),
            None,
        ),
    );
    let mut hyp_tal = b"+0\x14\x14\x00".to_vec();
    for (onset, dur, text) in [
        (0, 60, "Sleep stage W"),
        (60, 30, "Sleep stage 1"),
        (90, 90, "Sleep stage 2"),
        (180, 30, "Sleep stage 3"),
        (210, 30, "Sleep stage 4"),
        (240, 30, "Movement time"),
        (270, 45, "Sleep stage R"),
        (315, 30, "Sleep stage ?"),
    ] {
        hyp_tal.extend_from_slice(format!("+{onset}\x15{dur}\x14{text}\x14\x00").as_bytes());
    }
    let hyp = write(
        d,
        "SC4001EC-Hypnogram.edf",
        &edf_bytes("EDF+C", "0", 1, &[], Some((&[hyp_tal], 400))),
    );
    let f = edf::read(&psg).unwrap();
    let rec = f.to_recording(None, None).unwrap();
    let events = annotations::from_edf(&edf::read(&hyp).unwrap().annotations);
    let (ds, starts) =
        annotations::labelled_windows(&rec, &events, &annotations::sleep_stage, 5, 30.0, 30.0)
            .unwrap();
    let ours: Vec<(i64, i64)> = starts
        .iter()
        .zip(ds.labels.as_ref().unwrap())
        .map(|(&s, &y)| (s as i64, y))
        .collect();
    let r: Vec<(i64, i64)> = serde_json::from_str(&reference(&[
        "mne_sleep",
        psg.to_str().unwrap(),
        hyp.to_str().unwrap(),
        "30",
    ]))
    .unwrap();
    assert_eq!(ours, r);
    assert_eq!(
        ours.iter().map(|p| p.1).collect::<Vec<_>>(),
        [0, 0, 1, 2, 2, 2, 3, 3, 4]
    );
    // Through the loader (--hypnogram): the same windows, the sample values their starts.
    let opts = LoadOptions {
        window: Some(30.0),
        hypnogram: Some(hyp.clone()),
        ..Default::default()
    };
    let ds = biosignal::load(&psg, &opts).unwrap();
    assert_eq!((ds.len(), ds.classes), (9, Some(5)));
    assert_eq!(ds.samples[[2, 0, 0]], 6000.0); // N1 starts at 60 s = sample 6000
}

#[test]
fn bids_eeg_reads_as_mne_bids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = write(
        d,
        "src.edf",
        &edf_bytes(
            "",
            "1",
            60,
            &ramp_sigs(&["Fp1", "Fp2", "C3", "C4"], 60, 100),
            None,
        ),
    );
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
            "C3",
            ev.to_str().unwrap(),
        ])
        .trim(),
    );
    assert!(data.ends_with("sub-01/ses-01/eeg/sub-01_ses-01_task-rest_run-01_eeg.edf"));
    let opts = LoadOptions {
        window: Some(10.0),
        ..Default::default()
    };
    let ds = biosignal::load(&data, &opts).unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&reference(&["bids_read", data.to_str().unwrap(), "10"])).unwrap();
    let bads: Vec<&str> = r["bads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let good: Vec<&str> = r["ch_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .filter(|c| !bads.contains(c))
        .collect();
    assert_eq!(bads, ["C3"]);
    assert_eq!(ds.channels, good);
    let mne: Vec<(f32, String)> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_f64().unwrap() as f32,
                e[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names = ["rest", "task"];
    let ours: Vec<(f32, String)> = (0..ds.len())
        .map(|i| {
            (
                ds.samples[[i, 0, 0]],
                names[ds.labels.as_ref().unwrap()[i] as usize].to_string(),
            )
        })
        .collect();
    assert_eq!(ours, mne);
    assert_eq!(ours.len(), 5);
    // `check` names the bad channel; a wrong SamplingFrequency is named.
    let (ok, out, e) = brainscale(&["biosignal", "check", data.to_str().unwrap()]);
    assert!(ok, "{e}");
    assert!(out.contains("bad channels (channels.tsv): C3"), "{out}");
    let json = data.with_file_name("sub-01_ses-01_task-rest_run-01_eeg.json");
    let text = std::fs::read_to_string(&json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut v = v;
    v["SamplingFrequency"] = serde_json::json!(250.0);
    std::fs::write(&json, v.to_string()).unwrap();
    let e = err(&data, &opts);
    assert!(
        e.contains("_eeg.json") && e.contains("'SamplingFrequency' is 250 Hz"),
        "{e}"
    );
    // A channels.tsv naming a channel the data file lacks.
    std::fs::write(&json, text).unwrap();
    let tsv = data.with_file_name("sub-01_ses-01_task-rest_run-01_channels.tsv");
    let t = std::fs::read_to_string(&tsv).unwrap();
    std::fs::write(&tsv, t.replace("Fp2\t", "Fpz\t")).unwrap();
    let e = err(&data, &opts);
    assert!(
        e.contains("_channels.tsv") && e.contains("channel 'Fpz' is not in"),
        "{e}"
    );
}

#[test]
fn edf_plus_annotation_labels_match_mne() {
    let dir = tempfile::tempdir().unwrap();
    let mut tals: Vec<Vec<u8>> = (0..60).map(|r| tal(r as f64, &[])).collect();
    tals[0] = tal(0.0, &[]);
    for (onset, dur, text) in [
        (0, 20, "rest"),
        (20, 20, "task"),
        (40, 5, "blink"),
        (45, 15, "rest"),
    ] {
        tals[0].extend_from_slice(format!("+{onset}\x15{dur}\x14{text}\x14\x00").as_bytes());
    }
    let p = write(
        dir.path(),
        "annotated.edf",
        &edf_bytes(
            "EDF+C",
            "1",
            60,
            &ramp_sigs(&["Cz"], 60, 100),
            Some((&tals, 120)),
        ),
    );
    let opts = LoadOptions {
        window: Some(10.0),
        annotation_labels: true,
        ..Default::default()
    };
    let ds = biosignal::load(&p, &opts).unwrap();
    // Classes: sorted texts blink 0, rest 1, task 2 (MNE's event_id order).
    let names = ["blink", "rest", "task"];
    let ours: Vec<(i64, String)> = (0..ds.len())
        .map(|i| {
            (
                ds.samples[[i, 0, 0]] as i64,
                names[ds.labels.as_ref().unwrap()[i] as usize].to_string(),
            )
        })
        .collect();
    let mne: Vec<(i64, String)> =
        serde_json::from_str(&reference(&["mne_annot", p.to_str().unwrap(), "10"])).unwrap();
    assert_eq!(ours, mne);
    assert_eq!(ours.len(), 5);
}

#[test]
fn a_failed_pretrain_leaves_no_empty_out_folder() {
    let dir = tempfile::tempdir().unwrap();
    // 1001 STFT frames per channel: the model refuses the batch inside training, after the
    // trainer has made its output folder.
    let x = Array3::from_shape_fn((4, 1, 100_200), |(i, _, t)| ((t + i) as f32 * 0.01).sin());
    let p = dir.path().join("long.npy");
    ndarray_npy::write_npy(&p, &x).unwrap();
    let out = dir.path().join("run");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("models/biot-d16-l1.toml");
    let (ok, _, e) = brainscale(&[
        "biosignal",
        "pretrain",
        "--model",
        model.to_str().unwrap(),
        "--objective",
        "contrastive",
        "--data",
        p.to_str().unwrap(),
        "--input-rate",
        "200",
        "--steps",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && e.contains("1001 frames"), "{e}");
    assert!(!out.exists(), "a failed pretrain left {}", out.display());
}

/// Issue 20: `aligned` metadata names the source window length (it showed the window count),
/// and a crop or pad is recorded (the CLI prints it): 30-s windows at 100 Hz to BIOT's
/// 200 Hz × 2000 keep 10 s of 30 s.
#[test]
fn align_records_the_source_length_and_what_is_cropped_or_padded() {
    let ds = Windows {
        samples: Array3::zeros((6, 2, 3000)),
        labels: None,
        rate: Some(100.0),
        channels: vec!["a".into(), "b".into()],
        classes: None,
        source: "x".into(),
        meta: BTreeMap::new(),
    };
    let out = resample::align(&ds, 200.0, 2000, resample::Method::Sinc).unwrap();
    assert_eq!(
        out.meta["aligned"],
        "sinc from 100 Hz x 3000 to 200 Hz x 2000"
    );
    assert_eq!(
        out.meta["aligned_note"],
        "each window cropped from 6000 to 2000 samples (20.000 s of 30.000 s dropped)"
    );
    let out = resample::align(&ds, 50.0, 2000, resample::Method::Linear).unwrap();
    assert_eq!(
        out.meta["aligned_note"],
        "each window zero-padded from 1500 to 2000 samples (10.000 s of 40.000 s are padding)"
    );
    for m in [resample::Method::Stretch, resample::Method::Sinc] {
        let out = resample::align(&ds, 200.0, 6000, m).unwrap();
        assert!(!out.meta.contains_key("aligned_note"), "{m:?}");
    }
}

/// Issue 20: fine-tuning an imported BIOT checkpoint on channels that are not its bipolar
/// montage is warned about (by count: 16 → banana16, 18 → biot18), naming the first mismatch.
#[test]
fn biot_checkpoint_channels_are_checked_against_the_montage() {
    use brainscale::biosignal::montage::Montage;
    use brainscale::cli::biosignal::biot_channel_warning;
    for m in Montage::ALL {
        assert_eq!(biot_channel_warning(&m.channel_names()), None, "{m:?}");
    }
    // TUH-style stored bipolar labels normalise to the montage.
    let mut tuh: Vec<String> = Montage::Banana16
        .channel_names()
        .iter()
        .map(|c| format!("EEG {c}"))
        .collect();
    assert_eq!(biot_channel_warning(&tuh), None);
    tuh[2] = "EEG T7-REF".into();
    let w = biot_channel_warning(&tuh).unwrap();
    assert!(
        w.contains("banana16") && w.contains("channel 3 is 'EEG T7-REF'"),
        "{w}"
    );
    let refs: Vec<String> = (0..16).map(|i| format!("EEG {i}-REF")).collect();
    assert!(biot_channel_warning(&refs).unwrap().contains("banana16"));
    let w = biot_channel_warning(&["Fpz-Cz".to_string()]).unwrap();
    assert!(w.contains("1 channel(s)") && w.contains("--montage"), "{w}");
}
