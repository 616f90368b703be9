//! Bio-signal data: readers checked on the real files in ../shared/data/biosignal against
//! pyEDFlib, bad files refused with errors naming the file and the fault, windows and BIOT's
//! normalisation against numpy, the resampler against scipy and on known sines (the generator
//! and metrics are in tests/biosignal_synth.rs). Python references run from .venv (scripts/install-deps.sh installs pyedflib, scipy,
//! scikit-learn, safetensors): tests/fixtures/biosignal_reference.py.
mod biosignal_ref;
mod common;
use biosignal_ref::{data, f64s, reference};
use brainscale::biosignal::resample::{self, alignment_spectral_errors, Method};
use brainscale::biosignal::synth::{Generator, Modality, SynthSplit};
use brainscale::biosignal::{self, accel, edf, spectral, LoadOptions, Norm, Windows};
use brainscale::core::io::TensorFile;
use common::{brainscale, expect_error};
use ndarray::{s, Array1, Array3, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- EDF / BDF readers

#[test]
fn generator_edf_channels_rates_and_sines() {
    let f = edf::read(&data("edf/generator-11ch-200hz.edf")).unwrap();
    assert_eq!(
        f.kind,
        edf::EdfKind::EdfPlus {
            discontinuous: false
        }
    );
    let labels: Vec<&str> = f.signals.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "squarewave",
            "ramp",
            "pulse",
            "noise",
            "sine 1 Hz",
            "sine 8 Hz",
            "sine 8.1777 Hz",
            "sine 8.5 Hz",
            "sine 15 Hz",
            "sine 17 Hz",
            "sine 50 Hz"
        ]
    );
    assert!(f
        .signals
        .iter()
        .all(|s| s.rate == 200.0 && s.data.len() == 120_000 && s.unit == "uV"));
    assert_eq!(f.duration(), 600.0);
    assert_eq!(f.start_subsecond, 0.0);
    assert_eq!(
        f.annotations
            .iter()
            .map(|a| (a.onset, a.text.as_str()))
            .collect::<Vec<_>>(),
        [(0.0, "Recording starts"), (600.0, "Recording ends")]
    );
    // Each sine channel's spectral peak is at its labelled frequency (60 s analysed:
    // resolution 1/60 Hz before refinement, so 8, 8.1777 and 8.5 Hz are told apart).
    for s in &f.signals[4..] {
        let want: f64 = s
            .label
            .trim_start_matches("sine ")
            .trim_end_matches(" Hz")
            .parse()
            .unwrap();
        let (pf, amp) = spectral::peak(&f64s(&s.data[..12_000]), 200.0, 0.5);
        assert!((pf - want).abs() < 0.01, "{}: peak at {pf} Hz", s.label);
        assert!(amp > 10.0, "{}: amplitude {amp} µV", s.label);
    }
}

#[test]
fn bdf_mixed_rates_and_5hz_sine() {
    let f = edf::read(&data("edf/generator-5ch-mixed-rates.bdf")).unwrap();
    assert!(matches!(f.kind, edf::EdfKind::Bdf { .. }));
    let rates: Vec<f64> = f.signals.iter().map(|s| s.rate).collect();
    assert_eq!(rates, [1000.0, 800.0, 500.0, 975.0, 999.0]);
    let lens: Vec<usize> = f.signals.iter().map(|s| s.data.len()).collect();
    assert_eq!(lens, [30_000, 24_000, 15_000, 29_250, 29_970]);
    assert_eq!(f.signals[0].label, "sine 5Hz");
    let (pf, _) = spectral::peak(&f64s(&f.signals[0].data), 1000.0, 0.5);
    assert!((pf - 5.0).abs() < 0.005, "peak {pf}");
    let (pf, _) = spectral::peak(&f64s(&f.signals[1].data), 800.0, 0.5);
    assert!((pf - 13.0).abs() < 0.01, "square wave fundamental {pf}");
    // Mixed rates need a common rate; the resampled 5 Hz sine keeps its frequency.
    let err = f.to_recording(None, None).unwrap_err().to_string();
    assert!(
        err.contains("different rates") && err.contains("975 Hz"),
        "{err}"
    );
    let rec = f.to_recording(None, Some(250.0)).unwrap();
    assert_eq!(rec.data.dim(), (5, 7500));
    let (pf, _) = spectral::peak(&f64s(rec.data.row(0).as_slice().unwrap()), 250.0, 0.5);
    assert!((pf - 5.0).abs() < 0.005);
}

#[test]
fn real_fp1_recording() {
    let f = edf::read(&data("edf/fp1-128hz-698s.edf")).unwrap();
    assert_eq!(f.signals.len(), 1);
    let s = &f.signals[0];
    assert_eq!(
        (s.label.as_str(), s.rate, s.unit.as_str()),
        ("Fp1", 128.0, "uV")
    );
    assert_eq!(s.data.len(), 128 * 698);
    assert_eq!(f.duration(), 698.0);
    // Physical max < min in this export: a negative gain, kept as stored.
    assert!(s.gain() < 0.0);
    // By hand (Python struct parsing of the first data record): its time-keeping TAL is
    // "+0.3945312\x14\x14\0" and the next TAL "+2.3457031\x14XLSpike\x14"; onsets are
    // reported after the first sample, as EDFlib: 2.3457031 − 0.3945312 = 1.9511719.
    assert_eq!(f.start_subsecond, 0.3945312);
    assert_eq!(
        (f.start_date.as_str(), f.start_time.as_str()),
        ("24.01.20", "04.05.56")
    );
    let a: Vec<(f64, &str)> = f
        .annotations
        .iter()
        .map(|a| (a.onset, a.text.as_str()))
        .collect();
    let want = [
        (1.9511719, "XLSpike"),
        (3.4921875, "Clip Note"),
        (290.5019531, "XLEvent"),
        (583.5722656, "XLSpike"),
    ];
    assert_eq!(a.len(), 4);
    for ((o, t), (wo, wt)) in a.iter().zip(want) {
        assert!((o - wo).abs() < 1e-9 && *t == wt, "{o} {t}");
    }
    // As a pool: 10-s windows, 69 of them.
    let ds = biosignal::load(&data("edf/fp1-128hz-698s.edf"), &LoadOptions::default()).unwrap();
    assert_eq!(ds.samples.dim(), (69, 1, 1280));
    assert_eq!(
        (ds.rate, ds.channels.clone()),
        (Some(128.0), vec!["Fp1".to_string()])
    );
}

#[test]
fn readers_agree_with_pyedflib() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        data("edf/fp1-128hz-698s.edf"),
        data("edf/generator-11ch-200hz.edf"),
        data("edf/generator-5ch-mixed-rates.bdf"),
    ];
    let (st, js) = (
        dir.path().join("ref.safetensors"),
        dir.path().join("ref.json"),
    );
    let mut args = vec!["edf", st.to_str().unwrap(), js.to_str().unwrap()];
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    reference(&args);
    let facts: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    let tf = TensorFile::open(&st).unwrap();
    for (fi, (path, fact)) in files.iter().zip(&facts).enumerate() {
        let f = edf::read(path).unwrap();
        let labels: Vec<String> = f.signals.iter().map(|s| s.label.clone()).collect();
        assert_eq!(
            serde_json::json!(labels),
            fact["labels"],
            "{}",
            path.display()
        );
        assert_eq!(f.duration(), fact["duration"].as_f64().unwrap());
        assert!((f.start_subsecond - fact["start_subsecond"].as_f64().unwrap()).abs() < 1e-7);
        let ann = fact["annotations"].as_array().unwrap();
        assert_eq!(ann.len(), f.annotations.len());
        for (a, r) in f.annotations.iter().zip(ann) {
            assert!((a.onset - r[0].as_f64().unwrap()).abs() < 1e-6);
            assert_eq!(a.text, r[2].as_str().unwrap());
        }
        for (i, s) in f.signals.iter().enumerate() {
            assert_eq!(s.rate, fact["rates"][i].as_f64().unwrap());
            assert_eq!(s.unit, fact["units"][i].as_str().unwrap());
            let r = tf.f64(&format!("f{fi}_s{i}")).unwrap();
            assert_eq!(r.len(), s.data.len());
            // Same digital → physical map; the only difference is our f32 storage.
            let range = (s.physical_max - s.physical_min).abs();
            let worst = r
                .iter()
                .zip(&s.data)
                .map(|(a, &b)| (a - b as f64).abs())
                .fold(0.0, f64::max);
            assert!(
                worst <= 1e-6 * range,
                "{} signal {i}: max |Δ| {worst}",
                path.display()
            );
        }
    }
}

#[test]
fn p95_windows_match_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p95.safetensors");
    let edf_path = data("edf/fp1-128hz-698s.edf");
    reference(&[
        "p95",
        edf_path.to_str().unwrap(),
        "10",
        out.to_str().unwrap(),
    ]);
    let want = TensorFile::open(&out).unwrap().f64("samples").unwrap();
    let opts = LoadOptions {
        norm: Norm::P95,
        ..Default::default()
    };
    let ds = biosignal::load(&edf_path, &opts).unwrap();
    assert_eq!(want.shape(), &[69, 1, 1280]);
    let worst = want
        .iter()
        .zip(ds.samples.iter())
        .map(|(a, &b)| (a - b as f64).abs() / a.abs().max(1.0))
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "max relative difference {worst}");
    // Z-score: mean 0 and standard deviation 1 per window and channel.
    let z = biosignal::load(
        &edf_path,
        &LoadOptions {
            norm: Norm::Zscore,
            ..Default::default()
        },
    )
    .unwrap();
    for w in z.samples.axis_iter(Axis(0)) {
        let v = f64s(w.as_slice().unwrap());
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!(m.abs() < 1e-4 && (sd - 1.0).abs() < 1e-4);
    }
}

// ---------------------------------------------------------------- bad files

fn damaged(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(data("edf/fp1-128hz-698s.edf")).unwrap();
    edit(&mut b);
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

fn set_field(b: &mut [u8], off: usize, len: usize, text: &str) {
    let mut f = text.as_bytes().to_vec();
    f.resize(len, b' ');
    b[off..off + len].copy_from_slice(&f);
}

fn load_err(p: &Path, opts: &LoadOptions) -> String {
    format!("{:#}", biosignal::load(p, opts).unwrap_err())
}

#[test]
fn corrupt_edf_files_are_refused_with_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let none = LoadOptions::default();
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (
            damaged(d, "truncated.edf", |b| b.truncate(b.len() - 100)),
            &["record size mismatch", "truncated"],
        ),
        (
            damaged(d, "short.edf", |b| b.truncate(200)),
            &["header truncated"],
        ),
        (
            damaged(d, "extra.edf", |b| b.extend_from_slice(&[0; 7])),
            &["record size mismatch"],
        ),
        (
            damaged(d, "records.edf", |b| set_field(b, 236, 8, "699")),
            &["699 records"],
        ),
        (
            damaged(d, "hdrsize.edf", |b| set_field(b, 184, 8, "512")),
            &["header size", "512"],
        ),
        (
            damaged(d, "nsig.edf", |b| set_field(b, 252, 4, "x1")),
            &["number of signals", "not a number"],
        ),
        (
            damaged(d, "version.edf", |b| set_field(b, 0, 8, "9")),
            &["version"],
        ),
        // Signal 1's digital maximum (offset 256 + 128·ns, ns = 2).
        (
            damaged(d, "digmax.edf", |b| {
                set_field(b, 256 + 128 * 2, 8, "-40000")
            }),
            &["signal 1 ('Fp1')", "digital maximum"],
        ),
        (
            damaged(d, "spr.edf", |b| set_field(b, 256 + 216 * 2, 8, "12x")),
            &["samples per record", "Fp1"],
        ),
    ];
    for (p, needles) in cases {
        let e = load_err(&p, &none);
        assert!(
            e.contains(p.to_str().unwrap()),
            "error should name the file: {e}"
        );
        for n in needles {
            assert!(
                e.contains(n),
                "{}: error should mention {n:?}: {e}",
                p.display()
            );
        }
    }
    // The command line: non-zero exit, no panic, the file and fault named.
    let p = d.join("truncated.edf");
    expect_error(
        &["biosignal", "check", p.to_str().unwrap()],
        &["truncated.edf", "record size mismatch"],
    );
}

fn tiny_set(
    rate: f64,
    c: usize,
    l: usize,
    labels: Vec<i64>,
    classes: Option<usize>,
    name: &str,
) -> Windows {
    let n = labels.len();
    Windows {
        samples: Array3::from_shape_fn((n, c, l), |(i, j, k)| (i * 100 + j * 10 + k) as f32 * 0.01),
        labels: Some(Array1::from(labels)),
        rate: Some(rate),
        channels: (0..c).map(|i| format!("ch{i}")).collect(),
        classes,
        source: name.into(),
        meta: BTreeMap::new(),
    }
}

#[test]
fn bad_tensor_sets_are_refused_with_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let none = LoadOptions::default();
    // NaN and inf in a .npy written by numpy-compatible writer.
    let mut bad = tiny_set(100.0, 2, 8, vec![0, 1, 1], None, "x");
    bad.samples[[2, 1, 5]] = f32::NAN;
    let p = d.join("nan_samples.npy");
    bad.save(&p).unwrap();
    assert!(d.join("nan_labels.npy").exists());
    let e = load_err(&p, &none);
    assert!(
        e.contains("nan_samples.npy")
            && e.contains("non-finite")
            && e.contains("window 2, channel 1"),
        "{e}"
    );
    bad.samples[[2, 1, 5]] = f32::INFINITY;
    let p = d.join("inf.safetensors");
    bad.save(&p).unwrap();
    assert!(load_err(&p, &none).contains("non-finite sample inf"));
    // Labels outside the class set: from metadata (2 classes) or from --classes.
    let p = d.join("labels.safetensors");
    tiny_set(100.0, 1, 8, vec![0, 1, 2], Some(2), "x")
        .save(&p)
        .unwrap();
    let e = load_err(&p, &none);
    assert!(
        e.contains("labels.safetensors")
            && e.contains("label 2 of window 2")
            && e.contains("class set 0..1"),
        "{e}"
    );
    let p = d.join("neg.npz");
    tiny_set(100.0, 1, 8, vec![0, -1], None, "x")
        .save(&p)
        .unwrap();
    assert!(load_err(&p, &none).contains("label -1 of window 1"));
    let p = d.join("ok.npz");
    tiny_set(100.0, 1, 8, vec![0, 4], None, "x")
        .save(&p)
        .unwrap();
    assert!(biosignal::load(&p, &none).is_ok());
    assert!(load_err(
        &p,
        &LoadOptions {
            classes: Some(3),
            ..Default::default()
        }
    )
    .contains("label 4"));
    // Rate, channel-count and length mismatch across files.
    let a = d.join("a.safetensors");
    tiny_set(100.0, 2, 8, vec![0, 1], None, "x")
        .save(&a)
        .unwrap();
    for (name, ds, fault) in [
        (
            "rate.safetensors",
            tiny_set(200.0, 2, 8, vec![0], None, "x"),
            "sampling rate mismatch: 200 Hz",
        ),
        (
            "chans.safetensors",
            tiny_set(100.0, 3, 8, vec![0], None, "x"),
            "channel count mismatch: 3 channels",
        ),
        (
            "len.safetensors",
            tiny_set(100.0, 2, 9, vec![0], None, "x"),
            "window length mismatch: 9 samples",
        ),
    ] {
        let b = d.join(name);
        ds.save(&b).unwrap();
        let e = format!(
            "{:#}",
            biosignal::load_all(&[a.clone(), b.clone()], &none).unwrap_err()
        );
        assert!(
            e.contains(name) && e.contains(fault) && e.contains("a.safetensors"),
            "{e}"
        );
        let err = expect_error(
            &[
                "biosignal",
                "check",
                a.to_str().unwrap(),
                b.to_str().unwrap(),
            ],
            &[name, fault],
        );
        assert!(err.contains("1 fault(s)"));
    }
    // A tensor file with the wrong shape or without samples.
    let p = d.join("shape.safetensors");
    brainscale::core::io::write_tensors(
        &p,
        vec![(
            "samples",
            brainscale::core::io::Tensor::F32(ndarray::ArrayD::zeros(vec![2, 2, 2, 2])),
        )],
        Default::default(),
    )
    .unwrap();
    assert!(load_err(&p, &none).contains("[N, C, L] or [N, L]"));
    let p = d.join("nosamples.safetensors");
    brainscale::core::io::write_tensors(
        &p,
        vec![(
            "x",
            brainscale::core::io::Tensor::F32(ndarray::ArrayD::zeros(vec![2])),
        )],
        Default::default(),
    )
    .unwrap();
    assert!(load_err(&p, &none).contains("samples"));
}

#[test]
fn tensor_files_real_and_round_trip() {
    let ds = biosignal::load(&data("epilepsy/train.safetensors"), &LoadOptions::default()).unwrap();
    assert_eq!(ds.samples.dim(), (60, 1, 178));
    assert_eq!((ds.rate, ds.classes), (Some(178.0), Some(2)));
    assert_eq!(ds.label_counts(), BTreeMap::from([(0, 30), (1, 30)]));
    let dir = tempfile::tempdir().unwrap();
    for name in ["e.safetensors", "samples.npy", "e.npz"] {
        let p = dir.path().join(name);
        ds.save(&p).unwrap();
        let back = biosignal::load(
            &p,
            &LoadOptions {
                input_rate: Some(178.0),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(back.samples, ds.samples, "{name}");
        assert_eq!(back.labels, ds.labels, "{name}");
        assert_eq!(back.rate, Some(178.0));
    }
    assert!(dir.path().join("labels.npy").exists());
    // Pooled with itself: N adds up.
    let both = biosignal::load_all(
        &[
            data("epilepsy/train.safetensors"),
            data("epilepsy/val.safetensors"),
        ],
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(both.len(), 80);
    let (x, y) = both.batch(&[0, 79], tch::Device::Cpu).unwrap();
    assert_eq!(x.size(), [2, 1, 178]);
    assert_eq!(y.unwrap().kind(), tch::Kind::Int64);
}

// ---------------------------------------------------------------- accelerometer CSV

#[test]
fn accelerometer_csv() {
    let dir = tempfile::tempdir().unwrap();
    let g = Generator::new(3);
    let mut rows = String::from("time,x,y,z,label\n");
    let mut truth = Vec::new();
    for w in 0..4u64 {
        let (x, c) = g.window_in(Modality::Accel, SynthSplit::Train, w);
        for k in 0..128 {
            let i = w as usize * 128 + k;
            rows += &format!(
                "{},{},{},{},{c}\n",
                i as f64 / 50.0,
                x[[0, k]],
                x[[1, k]],
                x[[2, k]]
            );
        }
        truth.push((x, c));
    }
    let p = dir.path().join("walk.csv");
    std::fs::write(&p, &rows).unwrap();
    let ds = biosignal::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(ds.samples.dim(), (4, 3, 128));
    assert!((ds.rate.unwrap() - 50.0).abs() < 1e-9);
    for (i, (x, c)) in truth.iter().enumerate() {
        assert_eq!(ds.labels.as_ref().unwrap()[i], *c);
        let d = (&ds.samples.index_axis(Axis(0), i) - x)
            .mapv(f32::abs)
            .fold(0.0f32, |a, &b| a.max(b));
        assert!(d < 1e-5);
    }
    // Jittered timestamps: regridded onto 50 Hz.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let jit: String = (0..300)
        .map(|i| {
            format!(
                "{},{},0,1\n",
                i as f64 / 50.0 + rng.gen_range(-0.002..0.002),
                (i as f64 * 0.1).sin()
            )
        })
        .collect();
    let p = dir.path().join("jitter.csv");
    std::fs::write(&p, format!("time,x,y,z\n{jit}")).unwrap();
    let (rec, info) = accel::read_with_info(&p).unwrap();
    assert!(info.regridded && (rec.rate - 50.0).abs() < 0.5);
    // Faults, with the file, the row and the column named.
    for (name, body, fault) in [
        ("cols.csv", "time,x,y\n0,1,2\n", "no 'z' column"),
        (
            "order.csv",
            "time,x,y,z\n0,1,1,1\n0.02,1,1,1\n0.01,1,1,1\n",
            "row 4: time 0.01 s does not increase",
        ),
        (
            "nan.csv",
            "time,x,y,z\n0,1,1,1\n0.02,NaN,1,1\n",
            "row 3, column 'x': non-finite",
        ),
        (
            "text.csv",
            "time,x,y,z\n0,1,1,1\n0.02,1,abc,1\n",
            "row 3, column 'y'",
        ),
        ("one.csv", "time,x,y,z\n0,1,1,1\n", "need at least 2"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        let e = load_err(&p, &LoadOptions::default());
        assert!(e.contains(name) && e.contains(fault), "{e}");
    }
}

// ---------------------------------------------------------------- resampling

#[test]
fn fft_resample_matches_scipy() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let shapes = [
        (178, 200),
        (200, 178),
        (64, 100),
        (101, 50),
        (100, 64),
        (33, 33),
        (50, 101),
        (1000, 200),
    ];
    let cases: Vec<(Vec<f64>, usize)> = shapes
        .iter()
        .map(|&(n, num)| ((0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(), num))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cases.json");
    let js: Vec<_> = cases
        .iter()
        .map(|(x, num)| serde_json::json!({"x": x, "num": num}))
        .collect();
    std::fs::write(&p, serde_json::to_string(&js).unwrap()).unwrap();
    let want: Vec<Vec<f64>> =
        serde_json::from_str(&reference(&["resample", p.to_str().unwrap()])).unwrap();
    for ((x, num), w) in cases.iter().zip(want) {
        let y = resample::fft_resample(x, *num);
        assert_eq!(y.len(), w.len());
        let d = y
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(d < 1e-10, "{} → {num}: max |Δ| {d}", x.len());
    }
}

#[test]
fn resampling_keeps_a_sine_and_beats_linear_interpolation() {
    // Epilepsy-like windows (178 Hz × 178) to BIOT's 200 Hz × 200: a 2 Hz to 60 Hz sine keeps
    // its frequency (within 0.3 Hz, the Hann peak refinement on 1 s) and amplitude (within 3%).
    let freqs = [2.0, 10.0, 25.0, 40.0, 60.0];
    let rows = alignment_spectral_errors(&freqs, 178.0, 178, 200.0, 200, &Method::ALL);
    let get = |m: Method, f: f64| {
        rows.iter()
            .find(|r| r.method == m && r.freq_hz == f)
            .unwrap()
    };
    for &f in &freqs {
        let s = get(Method::Sinc, f);
        assert!(
            (s.peak_hz - f).abs() < 0.3,
            "sinc {f} Hz: peak {}",
            s.peak_hz
        );
        assert!(
            (s.peak_amplitude - 1.0).abs() < 0.03,
            "sinc {f} Hz: amplitude {}",
            s.peak_amplitude
        );
        let l = get(Method::Linear, f);
        assert!(
            s.spectral_error < l.spectral_error,
            "{f} Hz: sinc {} vs linear {}",
            s.spectral_error,
            l.spectral_error
        );
        // Ignoring the rates moves the peak by the rate ratio.
        let p = get(Method::Pad, f);
        assert!(
            (p.peak_hz - f * 200.0 / 178.0).abs() < 0.4,
            "pad {f}: {}",
            p.peak_hz
        );
    }
    // Linear interpolation attenuates high frequencies: at 60 Hz it loses > 10% here.
    assert!(get(Method::Linear, 60.0).peak_amplitude < 0.9);
    // Downsampling 1000 → 200 Hz: a 150 Hz sine is above the new Nyquist frequency. Sinc
    // removes it; linear interpolation aliases it to 50 Hz at nearly full amplitude.
    let rows = alignment_spectral_errors(
        &[150.0],
        1000.0,
        1000,
        200.0,
        200,
        &[Method::Sinc, Method::Linear],
    );
    assert!(
        rows[0].peak_amplitude < 0.02,
        "sinc leaves {}",
        rows[0].peak_amplitude
    );
    assert!((rows[1].peak_hz - 50.0).abs() < 0.5 && rows[1].peak_amplitude > 0.8);
    assert!(rows[0].spectral_error < 0.05 && rows[1].spectral_error > 0.5);
}

#[test]
fn resample_command_aligns_a_real_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("val200.safetensors");
    let (ok, stdout, err) = brainscale(&[
        "biosignal",
        "resample",
        data("epilepsy/val.safetensors").to_str().unwrap(),
        "--rate",
        "200",
        "--length",
        "256",
        "--method",
        "sinc",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("[1, 256] at 200 Hz"), "{stdout}");
    let ds = biosignal::load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(ds.samples.dim(), (20, 1, 256));
    assert_eq!((ds.rate, ds.classes), (Some(200.0), Some(2)));
    let src = biosignal::load(&data("epilepsy/val.safetensors"), &LoadOptions::default()).unwrap();
    assert_eq!(ds.labels, src.labels);
    // 178 samples at 178 Hz are 200 at 200 Hz; the rest is zero padding.
    assert!(ds
        .samples
        .slice(s![.., .., 200..])
        .iter()
        .all(|&v| v == 0.0));
    let x = f64s(&src.samples.slice(s![3, 0, ..]).to_vec());
    let want = resample::fft_resample(&x, 200);
    let got = ds.samples.slice(s![3, 0, ..200]).to_vec();
    assert!(want
        .iter()
        .zip(&got)
        .all(|(a, &b)| (a - b as f64).abs() < 1e-5));
    // A set without a rate cannot be resampled.
    let p = dir.path().join("norate.npy");
    src.save(&p).unwrap();
    // Our .npy keeps its rate in the sidecar; without it the file is a foreign .npy.
    std::fs::remove_file(dir.path().join("norate.npy.json")).unwrap();
    expect_error(
        &[
            "biosignal",
            "resample",
            p.to_str().unwrap(),
            "--rate",
            "200",
            "--length",
            "200",
            "--out",
            out.to_str().unwrap(),
        ],
        &["norate.npy", "sampling rate unknown"],
    );
}
