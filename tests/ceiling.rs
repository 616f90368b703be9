//! The noise ceiling from repeated viewings (`fmri::ceiling`, Sahani & Linden 2003 /
//! Schoppe et al. 2016) against the synthetic dataset's true ceiling (the correlation of
//! each voxel's noise-free signal with its measured test run), on a dataset made with
//! `dataset synth --repeat-test 3` (the last three runs show one movie), with the default
//! split: every viewing of the test movie tests, none trains.
use brainscale::core::io::TensorFile;
use brainscale::fmri::align::{self, AlignOptions, Lag};
use brainscale::fmri::dataset::synth::{self, SynthConfig};
use brainscale::fmri::dataset::Dataset;
use brainscale::fmri::encode::{self, SplitPlan};
use brainscale::fmri::features::{self, ExtractorKind, FeaturesOptions};
use brainscale::ridge::RidgeOptions;

#[test]
fn repeat_ceiling_matches_the_true_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ds");
    let cfg = SynthConfig {
        subjects: 1,
        runs: 5,
        trs_per_run: 160,
        repeat_test: 3,
        ..SynthConfig::preset(synth::Size::Tiny, 11)
    };
    synth::generate(&cfg, &root).unwrap();
    let ds = Dataset::open(&root).unwrap();
    let s = &ds.subjects[0];
    // Runs 03, 04 and 05 show the same movie; the default split tests all three.
    assert_eq!(s.runs[2].movie, s.runs[4].movie);
    assert_eq!(s.runs[3].movie, s.runs[4].movie);
    assert_ne!(s.runs[1].movie, s.runs[4].movie);
    let roles = SplitPlan::default().resolve(s).unwrap().roles;
    use brainscale::fmri::encode::Role;
    assert_eq!(
        roles,
        [Role::Train, Role::Train, Role::Test, Role::Test, Role::Test]
    );
    let work = dir.path().join("work");
    let fo = FeaturesOptions {
        extractor: ExtractorKind::Groundtruth,
        pca: None,
        fps: None,
        size: None,
        gpt: None,
        decode: Default::default(),
    };
    features::run_stage(&ds, &work, &fo).unwrap();
    align::align_dataset(
        &ds,
        &work,
        "groundtruth",
        &AlignOptions {
            lag: Lag::Hrf,
            max_mismatch_s: None,
        },
    )
    .unwrap();
    encode::encode_subject(
        &ds,
        s,
        &work,
        "groundtruth",
        &SplitPlan::default(),
        &RidgeOptions::default(),
    )
    .unwrap();
    let f = TensorFile::open(&encode::encode_path(&work, "groundtruth", &s.id)).unwrap();
    assert_eq!(f.metadata()["test_runs"], "03,04,05");
    // Results saved before the split grouped the viewings have another key: refitted.
    let key = encode::inputs_key(
        s,
        &work,
        "groundtruth",
        &SplitPlan::default(),
        &RidgeOptions::default(),
    )
    .unwrap();
    assert!(key.contains("runs of one movie grouped"));
    let est = f.f64("repeat_ceiling_r").unwrap();
    let truth = f.f64("ceiling_r").unwrap();
    let norm = f.f64("normalised_r").unwrap();
    let r = f.f64("test_r").unwrap();
    let hs = f.u8("has_signal").unwrap();
    let sig: Vec<usize> = (0..est.len()).filter(|&v| hs[v] == 1).collect();
    let mean = |x: &dyn Fn(usize) -> f64| sig.iter().map(|&v| x(v)).sum::<f64>() / sig.len() as f64;
    let (m_est, m_true) = (mean(&|v| est[v]), mean(&|v| truth[v]));
    let mad = mean(&|v| (est[v] - truth[v]).abs());
    let a: Vec<f32> = sig.iter().map(|&v| est[v] as f32).collect();
    let b: Vec<f32> = sig.iter().map(|&v| truth[v] as f32).collect();
    let rc = brainscale::core::stats::pearson_columns(
        ndarray::Array2::from_shape_vec((a.len(), 1), a)
            .unwrap()
            .view(),
        ndarray::Array2::from_shape_vec((b.len(), 1), b)
            .unwrap()
            .view(),
    )[0];
    let norm_sig: Vec<f64> = sig
        .iter()
        .map(|&v| norm[v])
        .filter(|x| x.is_finite())
        .collect();
    let m_norm = norm_sig.iter().sum::<f64>() / norm_sig.len() as f64;
    let m_r = mean(&|v| r[v]);
    eprintln!(
        "signal voxels ({}): repeat ceiling {m_est:.3} vs true {m_true:.3}, mean |diff| {mad:.3}, \
         r across voxels {rc:.3}; oracle r {m_r:.3}, normalised r {m_norm:.3}",
        sig.len()
    );
    assert!((m_est - m_true).abs() < 0.05, "{m_est} vs {m_true}");
    assert!(mad < 0.1, "mean |diff| {mad}");
    assert!(rc > 0.8, "across voxels {rc}");
    // The oracle features reach ~95% of the ceiling: normalised r near 1, not above.
    assert!((0.85..1.1).contains(&m_norm), "normalised r {m_norm}");

    // maps: the NIfTI maps, the summary columns, the normalised figure; the report shows it.
    let rows = brainscale::fmri::demo::maps_dataset(&ds, &work, "groundtruth", &[]).unwrap();
    let row = &rows[0];
    let (rc, nm) = (
        row.repeat_ceiling_mean_r.unwrap(),
        row.normalised_mean_r.unwrap(),
    );
    assert!(rc > 0.3 && (0.5..1.1).contains(&nm), "{rc} {nm}");
    let (lo, hi) = (row.mean_r_ci_low.unwrap(), row.mean_r_ci_high.unwrap());
    assert!(
        lo < row.mean_r && row.mean_r < hi,
        "{lo} {} {hi}",
        row.mean_r
    );
    assert!(row.frac_q_below_0_05.unwrap() > 0.3);
    // The fraction at q < 0.05 with its block-bootstrap interval (encode single-band here;
    // the interval's coverage on known truth is in tests/significance.rs).
    let (fq, qlo, qhi) = (
        row.frac_q_below_0_05.unwrap(),
        row.frac_q_below_0_05_ci_low.unwrap(),
        row.frac_q_below_0_05_ci_high.unwrap(),
    );
    assert!(
        qlo <= fq && fq <= qhi && qhi - qlo < 0.3,
        "{qlo} {fq} {qhi}"
    );
    let opts = brainscale::fmri::maps::FigureOptions::default();
    brainscale::fmri::demo::maps_figures(&ds, &work, "groundtruth", &rows, &opts).unwrap();
    let d = work.join("maps/groundtruth").join(format!("sub-{}", s.id));
    for f in [
        "normalised_r.nii.gz",
        "repeat_ceiling_r.nii.gz",
        "p.nii.gz",
        "q.nii.gz",
        "fwe_p.nii.gz",
        "r_statmap.png",
        "normalised_r_statmap.png",
    ] {
        assert!(d.join(f).exists(), "{f} missing");
    }
    // The normalised map's title gives the mean normalised r, not the mean r.
    if let brainscale::fmri::dataset::Space::Voxels { mask, header } =
        brainscale::fmri::dataset::subject_space(s).unwrap()
    {
        let lay = brainscale::fmri::maps::write_normalised_figure(
            dir.path(),
            row,
            &header,
            &mask,
            &norm
                .iter()
                .map(|&x| if x.is_finite() { x } else { 0.0 })
                .collect::<ndarray::Array1<f64>>(),
            None,
            "all voxels",
        )
        .unwrap();
        assert!(
            lay.title.contains(&format!("mean r / ceiling {nm:.3}"))
                && !lay.title.contains(&format!("mean r {:.3}", row.mean_r)),
            "{}",
            lay.title
        );
    } else {
        panic!("the synthetic subject has voxels");
    }
    let rep = brainscale::study::report::write_report(&work, None).unwrap();
    let html = std::fs::read_to_string(&rep.path).unwrap();
    assert!(html.contains(&format!("r / repeat ceiling of sub-{}", s.id)));
    assert!(html.contains("mean r [95% CI]"));
    assert!(html.contains("q &lt; 0.05 [95% CI]"));
    assert!(html.contains(&format!(
        "{:.3}% [{:.3}, {:.3}]",
        100.0 * fq,
        100.0 * qlo,
        100.0 * qhi
    )));
}
