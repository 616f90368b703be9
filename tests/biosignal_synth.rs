//! Bio-signal generator and metrics: the synthetic windows are deterministic, have the right
//! rates and shapes, and their classes differ in spectral and temporal structure; the metrics
//! agree with scikit-learn (tests/fixtures/biosignal_reference.py, run from .venv).
mod biosignal_ref;
mod common;
use biosignal_ref::{f64s, reference};
use brainscale::biosignal::metrics::{self, evaluate};
use brainscale::biosignal::synth::{Generator, Modality, SynthSplit};
use brainscale::biosignal::{self, spectral, LoadOptions, Norm, Windows};
use common::{brainscale, expect_error};
use ndarray::{Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

// ---------------------------------------------------------------- synthetic generator

#[test]
fn synth_is_deterministic_with_correct_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let p = dir.path().join(name);
        let mut a = vec![
            "biosignal",
            "synth",
            "--n",
            "12",
            "--seed",
            "9",
            "--out",
            p.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        let (ok, _, err) = brainscale(&a);
        assert!(ok, "{err}");
        p
    };
    for m in Modality::ALL {
        let a = run(
            &format!("{}-a.safetensors", m.name()),
            &["--modality", m.name(), "--labelled"],
        );
        let b = run(
            &format!("{}-b.safetensors", m.name()),
            &["--modality", m.name(), "--labelled"],
        );
        // Bit-identical tensors and equal metadata (its order in the header is a hash map's).
        let ds = biosignal::load(&a, &LoadOptions::default()).unwrap();
        let again = biosignal::load(&b, &LoadOptions::default()).unwrap();
        let bits = |d: &Windows| d.samples.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        assert!(bits(&ds) == bits(&again), "{} reruns differ", m.name());
        assert_eq!((&ds.labels, &ds.meta), (&again.labels, &again.meta));
        let spec = m.spec();
        assert_eq!(ds.samples.dim(), (12, spec.channels.len(), spec.length));
        assert_eq!(
            (ds.rate, ds.classes),
            (Some(spec.rate), Some(spec.classes()))
        );
        assert_eq!(ds.meta["modality"], m.name());
        assert_eq!(ds.meta["seed"], "9");
        // Labelled sets are balanced (index mod K).
        let counts = ds.label_counts();
        assert!(counts.values().max().unwrap() - counts.values().min().unwrap() <= 1);
        // The file holds exactly what the streaming API gives.
        let g = Generator::new(9);
        let (w, c) = g.window_in(m, SynthSplit::Train, 7);
        assert!(ds.samples.index_axis(Axis(0), 7) == w);
        assert_eq!(ds.labels.as_ref().unwrap()[7], c);
    }
    // Pools are unlabelled; other seeds and splits differ; rates in range are honoured.
    let p = run(
        "pool.safetensors",
        &["--modality", "eeg", "--rate", "256", "--length", "512"],
    );
    let ds = biosignal::load(&p, &LoadOptions::default()).unwrap();
    assert!(ds.labels.is_none());
    assert_eq!((ds.samples.dim(), ds.rate), ((12, 4, 512), Some(256.0)));
    let g = Generator::new(9);
    assert_ne!(
        g.window(Modality::Ecg, 0).0,
        Generator::new(10).window(Modality::Ecg, 0).0
    );
    assert_ne!(g.window(Modality::Ecg, 0).0, g.window(Modality::Ecg, 1).0);
    expect_error(
        &[
            "biosignal",
            "synth",
            "--modality",
            "eeg",
            "--n",
            "1",
            "--rate",
            "1000",
            "--out",
            "x.safetensors",
        ],
        &["1000 Hz is outside", "100-256"],
    );
}

/// Mean over windows of the fraction of channel-0 power in [lo, hi) Hz, per class.
fn band_fraction(g: &Generator, m: Modality, n_per_class: usize, lo: f64, hi: f64) -> Vec<f64> {
    let spec = g.spec(m).clone();
    let k = spec.classes();
    let (x, y) = g.batch(m, SynthSplit::Train, 0, n_per_class * k);
    let mut acc = vec![0.0; k];
    for (w, &c) in x.axis_iter(Axis(0)).zip(y.iter()) {
        let v = f64s(&w.row(0).to_vec());
        let total = spectral::band_power(&v, spec.rate, 0.5, spec.rate / 2.0 + 1.0);
        acc[c as usize] += spectral::band_power(&v, spec.rate, lo, hi) / total / n_per_class as f64;
    }
    acc
}

#[test]
fn synth_classes_differ_in_their_spectra() {
    let g = Generator::new(1);
    // EEG: each rhythm class has the most power in its own band.
    for (class, (lo, hi)) in [
        (0, (1.5, 3.5)),
        (1, (5.0, 7.0)),
        (2, (9.0, 12.0)),
        (3, (12.5, 14.5)),
    ] {
        let f = band_fraction(&g, Modality::Eeg, 12, lo, hi);
        let others = f
            .iter()
            .enumerate()
            .filter(|&(c, _)| c != class)
            .map(|(_, v)| *v)
            .fold(0.0, f64::max);
        assert!(
            f[class] > 1.5 * others,
            "EEG class {class} band {lo}-{hi} Hz: {f:?}"
        );
    }
    // EMG: myopathy (short polyphasic MUAPs) has the most power above 500 Hz,
    // neuropathy (long MUAPs) the least.
    let f = band_fraction(&g, Modality::Emg, 12, 500.0, 2000.0);
    assert!(
        f[1] > f[0] && f[0] > f[2],
        "EMG high-frequency fractions {f:?}"
    );
    // Accelerometer: walking cadence 1.6-2 Hz dominates walking's vertical axis; static
    // postures have almost no power there.
    let spec = g.spec(Modality::Accel).clone();
    let (x, y) = g.batch(Modality::Accel, SynthSplit::Train, 0, 60);
    for (w, &c) in x.axis_iter(Axis(0)).zip(y.iter()) {
        let z = f64s(&w.row(2).to_vec());
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let zc: Vec<f64> = z.iter().map(|v| v - mean).collect();
        let sd = (zc.iter().map(|v| v * v).sum::<f64>() / z.len() as f64).sqrt();
        if c >= 3 {
            assert!(sd < 0.05, "static class {c}: sd {sd}");
        } else {
            assert!(sd > 0.1, "moving class {c}: sd {sd}");
        }
        if c == 0 {
            let (pf, _) = spectral::peak(&zc, spec.rate, 0.5);
            assert!((1.5..2.1).contains(&pf), "walking cadence {pf}");
        }
    }
}

/// A nearest-centroid classifier on p95-normalised log band powers (amplitude-invariant) reaches
/// well above chance on held-out windows: labels depend on spectral structure.
#[test]
fn synth_labels_are_learnable_from_spectra() {
    let g = Generator::new(2);
    for m in Modality::ALL {
        let spec = g.spec(m).clone();
        let k = spec.classes();
        let feats = |split: SynthSplit, n: usize| -> (Array2<f64>, Vec<i64>) {
            let mut ds = g.dataset(m, split, 0, n, true);
            ds.normalise(Norm::P95);
            let edges: Vec<f64> = (0..=12)
                .map(|i| spec.rate / 2.0 * 2f64.powf(i as f64 - 12.0))
                .collect();
            let mut f = Array2::zeros((n, spec.channels.len() * 13));
            for (i, w) in ds.samples.axis_iter(Axis(0)).enumerate() {
                for (c, ch) in w.axis_iter(Axis(0)).enumerate() {
                    let v = f64s(&ch.to_vec());
                    f[[i, c * 13]] = v.iter().sum::<f64>() / v.len() as f64; // DC: posture
                    for (b, p) in spectral::band_powers(&v, spec.rate, &edges)
                        .iter()
                        .enumerate()
                    {
                        f[[i, c * 13 + b + 1]] = (p + 1e-9).ln();
                    }
                }
            }
            (f, ds.labels.unwrap().to_vec())
        };
        let (ftr, ytr) = feats(SynthSplit::Train, 20 * k);
        let (fte, yte) = feats(SynthSplit::Test, 10 * k);
        // Standardise features by the training set, then nearest class centroid.
        let mu = ftr.mean_axis(Axis(0)).unwrap();
        let sd = ftr.std_axis(Axis(0), 0.0).mapv(|v| v.max(1e-9));
        let z = |f: &Array2<f64>| (f - &mu) / &sd;
        let (ztr, zte) = (z(&ftr), z(&fte));
        let mut cent = Array2::zeros((k, ztr.ncols()));
        for (r, &y) in ztr.rows().into_iter().zip(&ytr) {
            let mut row = cent.row_mut(y as usize);
            row += &(&r / 20.0);
        }
        let pred: Vec<i64> = zte
            .rows()
            .into_iter()
            .map(|r| {
                (0..k)
                    .min_by(|&a, &b| {
                        let da = (&r - &cent.row(a)).mapv(|v| v * v).sum();
                        let db = (&r - &cent.row(b)).mapv(|v| v * v).sum();
                        da.total_cmp(&db)
                    })
                    .unwrap() as i64
            })
            .collect();
        let bacc = metrics::balanced_accuracy(&yte, &pred);
        eprintln!("{}: nearest-centroid balanced accuracy {bacc:.3}", m.name());
        assert!(
            bacc > 0.6,
            "{}: nearest-centroid balanced accuracy {bacc} (chance {})",
            m.name(),
            1.0 / k as f64
        );
    }
}

// ---------------------------------------------------------------- metrics

#[test]
fn metrics_match_scikit_learn() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut cases = Vec::new();
    for (n, k, round) in [
        (40, 2, true),
        (57, 2, false),
        (90, 3, true),
        (120, 5, false),
        (25, 4, true),
    ] {
        let y: Vec<i64> = (0..n)
            .map(|i| {
                if i < k {
                    i as i64
                } else {
                    rng.gen_range(0..k as i64)
                }
            })
            .collect();
        let scores = Array2::from_shape_fn((n, k), |(i, j)| {
            // Informative but noisy; rounding creates ties (AUROC averages tied ranks).
            let v: f64 = rng.gen_range(0.0..1.0) + if y[i] == j as i64 { 0.6 } else { 0.0 };
            if round {
                (v * 4.0).round() / 4.0
            } else {
                v
            }
        });
        // Rows normalised to probabilities (scikit-learn's multi-class AUROC requires it).
        let sums = scores.sum_axis(Axis(1));
        let probs = &scores / &sums.insert_axis(Axis(1));
        cases.push((y, probs));
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cases.json");
    let js: Vec<_> = cases
        .iter()
        .map(|(y, s)| serde_json::json!({"y_true": y, "scores": s.rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>()}))
        .collect();
    std::fs::write(&p, serde_json::to_string(&js).unwrap()).unwrap();
    let want: Vec<BTreeMap<String, f64>> =
        serde_json::from_str(&reference(&["metrics", p.to_str().unwrap()])).unwrap();
    for ((y, s), w) in cases.iter().zip(want) {
        let got = evaluate(y, s.view()).unwrap();
        let close = |a: f64, name: &str| {
            assert!(
                (a - w[name]).abs() < 1e-12,
                "{name}: {a} vs sklearn {}",
                w[name]
            )
        };
        close(got.balanced_accuracy, "balanced_accuracy");
        close(got.auroc, "auroc");
        close(got.macro_f1, "macro_f1");
        close(got.weighted_f1, "weighted_f1");
        close(got.kappa, "kappa");
        if let Some(ap) = got.auc_pr {
            close(ap, "auc_pr");
        }
    }
}
