//! End-to-end checks on the tiny synthetic dataset, whose true weights and noise-free signal
//! are known: recovery against ground truth, and the whole pipeline through the binary.
mod common;
use brainscale::core::stats;
use brainscale::fmri::align::{self, AlignOptions, Lag};
use brainscale::fmri::dataset::Dataset;
use brainscale::fmri::encode::{self, SplitPlan};
use brainscale::fmri::features::{self, ExtractorKind, FeaturesOptions};
use brainscale::ridge::RidgeOptions;
use common::{brainscale, tiny};

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

/// With the true latent factors as features (an oracle), voxels with signal reach their
/// ceiling, voxels without stay at 0, and the recovered weights match the true ones.
#[test]
fn ground_truth_is_recovered() {
    let ds = Dataset::open(tiny()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let fo = FeaturesOptions {
        extractor: ExtractorKind::Groundtruth,
        pca: None,
        fps: None,
        size: None,
        gpt: None,
        decode: Default::default(),
    };
    features::run_stage(&ds, work.path(), &fo).unwrap();
    align::align_dataset(
        &ds,
        work.path(),
        "groundtruth",
        &AlignOptions {
            lag: Lag::Hrf,
            max_mismatch_s: None,
        },
    )
    .unwrap();
    let ropts = RidgeOptions {
        keep_weights: true,
        ..Default::default()
    };
    for s in &ds.subjects {
        let f = encode::encode_subject(
            &ds,
            s,
            work.path(),
            "groundtruth",
            &SplitPlan::default(),
            &ropts,
        )
        .unwrap();
        let (r, ceil, hs) = (
            &f.fit.test_r,
            f.ceiling.as_ref().unwrap(),
            f.has_signal.as_ref().unwrap(),
        );
        let sig: Vec<usize> = (0..r.len()).filter(|&v| hs[v] == 1).collect();
        let noise: Vec<usize> = (0..r.len()).filter(|&v| hs[v] == 0).collect();
        let (r_sig, c_sig) = (
            mean(sig.iter().map(|&v| r[v])),
            mean(sig.iter().map(|&v| ceil[v])),
        );
        let r_noise = mean(noise.iter().map(|&v| r[v]));
        assert!(
            r_sig > 0.9 * c_sig,
            "sub-{}: signal voxels r {r_sig:.3} vs ceiling {c_sig:.3}",
            s.id
        );
        assert!(
            c_sig > 0.5,
            "the tiny dataset should have a usable ceiling, got {c_sig:.3}"
        );
        assert!(
            r_noise.abs() < 0.05,
            "sub-{}: no-signal voxels r {r_noise:.3}",
            s.id
        );
        // Significance written beside test_r: among voxels declared at BH q < 0.05 the
        // no-signal ones stay within the FDR bound, and most signal voxels are found.
        let file = brainscale::core::io::TensorFile::open(&encode::encode_path(
            work.path(),
            "groundtruth",
            &s.id,
        ))
        .unwrap();
        let q = file.f64("test_q").unwrap();
        let fwe = file.f64("test_fwe_p").unwrap();
        let disc: Vec<usize> = (0..r.len()).filter(|&v| q[v] < 0.05).collect();
        let false_disc = disc.iter().filter(|&&v| hs[v] == 0).count();
        let fdp = false_disc as f64 / disc.len().max(1) as f64;
        let power = disc.iter().filter(|&&v| hs[v] == 1).count() as f64 / sig.len() as f64;
        let fwe_false = noise.iter().filter(|&&v| fwe[v] < 0.05).count();
        eprintln!(
            "sub-{}: q < 0.05: {} voxels, false discovery proportion {fdp:.4}, power {power:.3}; \
             no-signal voxels at FWE p < 0.05: {fwe_false}",
            s.id,
            disc.len()
        );
        assert!(fdp <= 0.05, "sub-{}: FDP {fdp}", s.id);
        // Bootstrap resamples of the summaries: 200, their 95% interval around the mean r.
        let boot = file.f64("boot_mean_r").unwrap();
        let b = ndarray::Array1::from_iter(boot.iter().copied());
        let (lo, hi) = brainscale::fmri::bootstrap::interval95(&b);
        let m = r.mean().unwrap();
        assert_eq!(b.len(), 200);
        assert!(
            lo < m && m < hi && hi - lo < 0.2,
            "mean r {m} outside [{lo}, {hi}]"
        );
        assert!(power > 0.8, "sub-{}: power {power}", s.id);
        // Per-voxel r tracks the per-voxel ceiling.
        let rc = stats::pearson_columns(
            ndarray::Array2::from_shape_fn((sig.len(), 1), |(i, _)| r[sig[i]] as f32).view(),
            ndarray::Array2::from_shape_fn((sig.len(), 1), |(i, _)| ceil[sig[i]] as f32).view(),
        )[0];
        assert!(rc > 0.8, "sub-{}: r vs ceiling across voxels {rc:.3}", s.id);
        // Weights: the design is z-scored, so compare directions per voxel (cosine).
        let (w, tw) = (
            f.fit.weights.as_ref().unwrap(),
            f.true_weights.as_ref().unwrap(),
        );
        let cos = mean(sig.iter().map(|&v| {
            let a = w.column(v).mapv(|x| x as f64);
            let b = tw.row(v).mapv(|x| x as f64);
            a.dot(&b) / (a.dot(&a).sqrt() * b.dot(&b).sqrt())
        }));
        assert!(
            cos > 0.9,
            "sub-{}: mean cosine between recovered and true weights {cos:.3}",
            s.id
        );
    }
}

/// The demo, stage by stage through the binary, on the tiny dataset: every output exists and
/// the baseline features get a good share of the ceiling.
#[test]
fn whole_pipeline_through_the_binary() {
    let work = tempfile::tempdir().unwrap();
    let (d, w) = (tiny().to_str().unwrap(), work.path().to_str().unwrap());
    let run = |args: &[&str]| {
        let (ok, out, err) = brainscale(args);
        assert!(ok, "{args:?} failed: {err}");
        out
    };
    run(&["dataset", "check", d]);
    let out = run(&["decode", "--dataset", d, "--work", w, "--size", "64"]);
    assert!(
        out.contains("2160 frames 64x64 at 24.000 fps, 90.000 s"),
        "{out}"
    );
    run(&[
        "features",
        "--dataset",
        d,
        "--work",
        w,
        "--extractor",
        "baseline",
        "--pca",
        "16",
    ]);
    run(&[
        "align",
        "--dataset",
        d,
        "--work",
        w,
        "--features",
        "baseline",
    ]);
    run(&[
        "encode",
        "--dataset",
        d,
        "--work",
        w,
        "--features",
        "baseline",
        "--test-runs",
        "04",
    ]);
    let out = run(&[
        "maps",
        "--dataset",
        d,
        "--work",
        w,
        "--features",
        "baseline",
    ]);
    assert!(out.contains("sub-01") && out.contains("sub-02"), "{out}");
    for s in ["01", "02"] {
        for f in [
            "r.nii.gz",
            "r2.nii.gz",
            "alpha.nii.gz",
            "ceiling_r.nii.gz",
            "r_mosaic.png",
        ] {
            assert!(
                work.path()
                    .join(format!("maps/baseline/sub-{s}/{f}"))
                    .exists(),
                "missing {f}"
            );
        }
    }
    let rows: Vec<brainscale::fmri::maps::SummaryRow> =
        csv::Reader::from_path(work.path().join("summary.csv"))
            .unwrap()
            .deserialize()
            .map(|r| r.unwrap())
            .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let (sig, ceil) = (r.signal_mean_r.unwrap(), r.signal_ceiling_mean_r.unwrap());
        assert!(
            sig > 0.6 * ceil,
            "baseline features reach {sig:.3} of ceiling {ceil:.3}"
        );
        assert!(r.noise_mean_r.unwrap().abs() < 0.05);
        assert!(r.top10_mean_r > r.mean_r && r.frac_r_above_0_1 > 0.3);
    }
    // Re-running a finished stage is a no-op that keeps the outputs.
    let out = run(&[
        "align",
        "--dataset",
        d,
        "--work",
        w,
        "--features",
        "baseline",
    ]);
    assert!(out.starts_with("0 design matrices written"), "{out}");
    let fit = work.path().join("encode/baseline/sub-01/ridge.safetensors");
    let mtime = || std::fs::metadata(&fit).unwrap().modified().unwrap();
    let before = mtime();
    let encode = |test_run: &str| {
        run(&[
            "encode",
            "--dataset",
            d,
            "--work",
            w,
            "--features",
            "baseline",
            "--test-runs",
            test_run,
        ])
    };
    encode("04");
    assert_eq!(mtime(), before, "encode re-ran a finished fit");
    // Other options are other inputs: the fit is redone.
    encode("03");
    assert_ne!(mtime(), before, "a changed split must refit");
    // New features make the designs (and so the fits) stale.
    run(&[
        "features",
        "--dataset",
        d,
        "--work",
        w,
        "--extractor",
        "baseline",
        "--pca",
        "8",
    ]);
    let out = run(&[
        "align",
        "--dataset",
        d,
        "--work",
        w,
        "--features",
        "baseline",
    ]);
    assert!(out.starts_with("8 design matrices written"), "{out}");
}

/// The same seed gives the same dataset, bit for bit.
#[test]
fn synth_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = brainscale::fmri::dataset::synth::SynthConfig {
        subjects: 1,
        runs: 2,
        trs_per_run: 12,
        ..brainscale::fmri::dataset::synth::SynthConfig::preset(
            brainscale::fmri::dataset::synth::Size::Tiny,
            7,
        )
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    brainscale::fmri::dataset::synth::generate(&cfg, &a).unwrap();
    brainscale::fmri::dataset::synth::generate(&cfg, &b).unwrap();
    for rel in [
        "sub-01/func/sub-01_task-movie_run-01_bold.nii.gz",
        "stimuli/task-movie_run-02.mp4",
        "derivatives/groundtruth/sub-01_truth.safetensors",
    ] {
        assert_eq!(
            std::fs::read(a.join(rel)).unwrap(),
            std::fs::read(b.join(rel)).unwrap(),
            "{rel} differs"
        );
    }
}
