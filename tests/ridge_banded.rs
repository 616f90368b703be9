//! Banded ridge against independent references: himalaya's `GroupRidgeCV` (= `BandedRidgeCV`)
//! and `r2_score_split` on the same candidates, alphas and run folds; the single-band engine
//! for one band; closed forms of the split and partition; a synthetic dataset with known bands.
use brainscale::ridge::banded::{
    fit_banded, r2_split, Band, BandedFit, BandedOptions, BandedProblem, Candidates,
};
use brainscale::ridge::{fit_cv, Backend, CvScore, Dtype, RidgeOptions, RidgeProblem};
use ndarray::{concatenate, s, Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::path::Path;

struct Data {
    x: Array2<f32>,
    y: Array2<f32>,
    groups: Vec<usize>,
    xt: Array2<f32>,
    yt: Array2<f32>,
    bands: Vec<Band>,
}

/// Two bands of correlated features; voxel j is driven by band 0 (j % 3 == 0), band 1
/// (j % 3 == 1) or both, with noise from low to high, so that voxels prefer different band
/// weights and alphas. Every run (and the test block) is z-scored per column, as encode does.
fn make_data(run_len: usize, widths: &[usize], v: usize, n_test: usize, seed: u64) -> Data {
    let n_runs = 5;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g = Normal::new(0.0, 1.0).unwrap();
    let p: usize = widths.iter().sum();
    let mix = Array2::from_shape_fn((p, p), |(i, j)| {
        if i == j {
            1.0
        } else {
            0.3 * g.sample(&mut rng) / (p as f64).sqrt()
        }
    });
    let mut w = Array2::from_shape_fn((p, v), |_| g.sample(&mut rng) / (p as f64).sqrt());
    for j in 0..v {
        let off = match j % 3 {
            0 => widths[0]..p,
            1 => 0..widths[0],
            _ => 0..0,
        };
        w.slice_mut(s![off, j]).fill(0.0);
    }
    let noise = Array1::from_shape_fn(v, |j| 0.3 + 3.0 * ((j * 7919) % v) as f64 / v as f64);
    let mut block = |rows: usize| {
        let x = Array2::from_shape_fn((rows, p), |_| g.sample(&mut rng)).dot(&mix);
        let mut y = x.dot(&w);
        for ((_, j), t) in y.indexed_iter_mut() {
            *t += noise[j] * g.sample(&mut rng);
        }
        (zscore(x), zscore(y))
    };
    let (mut xs, mut ys) = (vec![], vec![]);
    for _ in 0..n_runs {
        let (x, y) = block(run_len);
        xs.push(x);
        ys.push(y);
    }
    let (xt, yt) = block(n_test);
    let cat = |a: &[Array2<f32>]| {
        concatenate(Axis(0), &a.iter().map(|x| x.view()).collect::<Vec<_>>()).unwrap()
    };
    Data {
        x: cat(&xs),
        y: cat(&ys),
        groups: (0..n_runs * run_len).map(|i| 3 + i / run_len).collect(),
        xt,
        yt,
        bands: widths
            .iter()
            .enumerate()
            .map(|(i, &f)| Band {
                name: format!("band{i}"),
                features: f,
            })
            .collect(),
    }
}

fn zscore(mut a: Array2<f64>) -> Array2<f32> {
    for mut c in a.columns_mut() {
        let m = c.mean().unwrap();
        let sd = c.mapv(|t| (t - m).powi(2)).mean().unwrap().sqrt();
        c.mapv_inplace(|t| (t - m) / sd);
    }
    a.mapv(|t| t as f32)
}

fn ridge(d: &Data) -> RidgeProblem<'_> {
    RidgeProblem {
        x_train: d.x.view(),
        y_train: d.y.view(),
        groups: &d.groups,
        x_test: d.xt.view(),
        y_test: d.yt.view(),
    }
}

fn alphas() -> Vec<f64> {
    (0..8).map(|i| 10f64.powf(-1.0 + 0.75 * i as f64)).collect()
}

fn ropts(score: CvScore, backend: Backend, dtype: Dtype) -> RidgeOptions {
    RidgeOptions {
        alphas: alphas(),
        score,
        backend,
        dtype,
        progress: false,
        ..RidgeOptions::default()
    }
}

fn cands() -> Vec<Vec<f64>> {
    vec![
        vec![0.5, 0.5],
        vec![0.9, 0.1],
        vec![0.1, 0.9],
        vec![0.99, 0.01],
        vec![0.01, 0.99],
        vec![0.7, 0.3],
        vec![0.3, 0.7],
    ]
}

fn fit(d: &Data, o: &BandedOptions) -> BandedFit {
    fit_banded(
        &BandedProblem {
            ridge: ridge(d),
            bands: &d.bands,
        },
        o,
    )
    .unwrap()
}

// ---- himalaya reference ------------------------------------------------------------------

/// Writes a little-endian f64 (or i64) .npy file.
fn write_npy(path: &Path, shape: &[usize], descr: &str, data: Vec<u8>) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

fn npy_f64(path: &Path, a: &Array2<f64>) {
    let bytes = a.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_npy(path, &[a.nrows(), a.ncols()], "<f8", bytes);
}

fn npy_f32(path: &Path, a: &Array2<f32>) {
    npy_f64(path, &a.mapv(|t| t as f64));
}

struct Reference {
    best_candidate: Vec<usize>,
    best_alpha: Vec<f64>,
    test_r: Vec<f64>,
    test_r2: Vec<f64>,
    r2_split: Vec<Vec<f64>>,
}

fn python() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Runs scripts/himalaya_banded.py on the same problem.
fn himalaya(d: &Data, cands: &[Vec<f64>], score: CvScore) -> Reference {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    npy_f32(&p.join("x_train.npy"), &d.x);
    npy_f32(&p.join("y_train.npy"), &d.y);
    npy_f32(&p.join("x_test.npy"), &d.xt);
    npy_f32(&p.join("y_test.npy"), &d.yt);
    let g: Vec<u8> = d
        .groups
        .iter()
        .flat_map(|&x| (x as i64).to_le_bytes())
        .collect();
    write_npy(&p.join("groups.npy"), &[d.groups.len()], "<i8", g);
    let c = Array2::from_shape_vec((cands.len(), cands[0].len()), cands.concat()).unwrap();
    npy_f64(&p.join("candidates.npy"), &c);
    let a = alphas();
    let ab: Vec<u8> = a.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_npy(&p.join("alphas.npy"), &[a.len()], "<f8", ab);
    let widths: Vec<usize> = d.bands.iter().map(|b| b.features).collect();
    let cfg = serde_json::json!({
        "widths": widths,
        "score": if score == CvScore::R { "r" } else { "r2" },
        "dtype": "float64",
    });
    std::fs::write(p.join("config.json"), cfg.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/himalaya_banded.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .arg(p)
        .output()
        .expect("run .venv/bin/python (make deps installs it)");
    assert!(
        out.status.success(),
        "himalaya reference failed (is himalaya installed? make deps): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = |k: &str| -> Vec<f64> { serde_json::from_value(v[k].clone()).unwrap() };
    Reference {
        best_candidate: serde_json::from_value(v["best_candidate"].clone()).unwrap(),
        best_alpha: f("best_alpha"),
        test_r: f("test_r"),
        test_r2: f("test_r2"),
        r2_split: serde_json::from_value(v["r2_split"].clone()).unwrap(),
    }
}

fn check_parity(score: CvScore) {
    let d = make_data(60, &[6, 10], 1000, 80, 11);
    let o = BandedOptions {
        ridge: ropts(score, Backend::Cpu, Dtype::F64),
        candidates: Candidates::Explicit(cands()),
        partition: false,
    };
    let f = fit(&d, &o);
    let h = himalaya(&d, &cands(), score);
    let v = d.y.ncols();
    let agree: Vec<usize> = (0..v)
        .filter(|&j| {
            f.best_candidate[j] == h.best_candidate[j]
                && (f.best_alpha[j] / h.best_alpha[j] - 1.0).abs() < 1e-9
        })
        .collect();
    assert!(
        agree.len() as f64 >= 0.999 * v as f64,
        "best (candidate, alpha) agrees on {} of {v} voxels",
        agree.len()
    );
    // Several candidates win somewhere, or the test would not test the search.
    let mut used = f.best_candidate.clone();
    used.sort_unstable();
    used.dedup();
    assert!(used.len() >= 3, "candidates chosen: {used:?}");
    for &j in &agree {
        assert!(
            (f.test_r[j] - h.test_r[j]).abs() < 1e-4,
            "voxel {j}: r {} vs himalaya {}",
            f.test_r[j],
            h.test_r[j]
        );
        assert!((f.test_r2[j] - h.test_r2[j]).abs() < 1e-4);
        for b in 0..2 {
            assert!(
                (f.r2_split[[b, j]] - h.r2_split[b][j]).abs() < 1e-5,
                "voxel {j} band {b}: split {} vs himalaya {}",
                f.r2_split[[b, j]],
                h.r2_split[b][j]
            );
        }
    }
}

#[test]
fn matches_himalaya_with_r2_scoring() {
    check_parity(CvScore::R2);
}

#[test]
fn matches_himalaya_with_r_scoring() {
    check_parity(CvScore::R);
}

// ---- closed forms and special cases ------------------------------------------------------

#[test]
fn one_band_is_single_band_ridge() {
    let d = make_data(40, &[12], 50, 30, 3);
    for backend in [Backend::Cpu, Backend::Torch] {
        let r = ropts(CvScore::R, backend, Dtype::F32);
        let single = fit_cv(&ridge(&d), &r).unwrap();
        let o = BandedOptions {
            ridge: r,
            candidates: Candidates::default(),
            partition: true,
        };
        let f = fit(&d, &o);
        assert_eq!(f.candidates.nrows(), 1, "one band has one candidate");
        assert_eq!(f.best_alpha, single.best_alpha);
        assert_eq!(f.test_r, single.test_r);
        assert_eq!(f.test_r2, single.test_r2);
        assert_eq!(f.test_pred, single.test_pred);
        assert!(f.partition.is_none());
        // One band explains everything the model explains (y and ν are ~zero-mean here).
        for j in 0..50 {
            assert!((f.r2_split[[0, j]] - f.test_r2[j]).abs() < 1e-4);
        }
    }
}

#[test]
fn split_sums_to_joint_r2_and_band_predictions_add_up() {
    let d = make_data(50, &[5, 7], 200, 60, 5);
    let o = BandedOptions {
        ridge: RidgeOptions {
            keep_weights: true,
            ..ropts(CvScore::R, Backend::Cpu, Dtype::F64)
        },
        candidates: Candidates::Random {
            n: 12,
            concentrations: vec![0.1, 1.0],
            seed: 4,
        },
        partition: false,
    };
    let f = fit(&d, &o);
    let w = f.weights.as_ref().unwrap();
    // Band predictions from the unscaled weights (test rows centred on the training means).
    let mean = d.x.mapv(|t| t as f64).mean_axis(Axis(0)).unwrap();
    let xtc = Array2::from_shape_fn(d.xt.dim(), |(i, k)| (d.xt[[i, k]] as f64 - mean[k]) as f32);
    let preds = vec![
        xtc.slice(s![.., 0..5]).dot(&w.slice(s![0..5, ..])),
        xtc.slice(s![.., 5..12]).dot(&w.slice(s![5..12, ..])),
    ];
    let split = r2_split(d.yt.view(), &preds);
    let ymean = d.y.mapv(|t| t as f64).mean_axis(Axis(0)).unwrap();
    for j in 0..200 {
        let total = &preds[0].column(j) + &preds[1].column(j);
        for t in 0..60 {
            let full = total[t] as f64 + ymean[j];
            assert!((full - f.test_pred[[t, j]] as f64).abs() < 1e-4);
        }
        assert!((split[[0, j]] - f.r2_split[[0, j]]).abs() < 1e-9);
        let sum = f.r2_split[[0, j]] + f.r2_split[[1, j]];
        assert!(
            (sum - f.test_r2[j]).abs() < 1e-4,
            "{sum} vs {}",
            f.test_r2[j]
        );
        // Band weights are a candidate; alpha is from the grid.
        let c = f.best_candidate[j];
        assert_eq!(
            f.band_weights.column(j).to_vec(),
            f.candidates.row(c).to_vec()
        );
        assert!(f.alphas.contains(&f.best_alpha[j]));
        assert!(f.cv_score[j].is_finite());
    }
    // Voxels driven by one band put (almost) all of the split on it.
    let top = f.top_band();
    let (mut right, mut total) = (0, 0);
    for j in (0..200).filter(|j| j % 3 != 2 && f.test_r2[*j] > 0.3) {
        total += 1;
        right += usize::from(top[j] == j % 3);
    }
    assert!(total > 20 && right == total, "{right} of {total}");
}

#[test]
fn random_candidates_are_seeded_and_on_the_simplex() {
    let c = Candidates::Random {
        n: 30,
        concentrations: vec![0.1, 1.0],
        seed: 9,
    };
    let a = c.resolve(3).unwrap();
    assert_eq!(a, c.resolve(3).unwrap());
    assert_eq!(a.row(0).to_vec(), vec![1.0 / 3.0; 3]);
    assert_eq!(a.nrows(), 30);
    for r in a.rows() {
        assert!((r.sum() - 1.0).abs() < 1e-12 && r.iter().all(|&w| w >= 0.0));
    }
    let other = Candidates::Random {
        n: 30,
        concentrations: vec![0.1, 1.0],
        seed: 10,
    };
    assert_ne!(a, other.resolve(3).unwrap());
    // Concentration 0.1 puts most of the weight on one band more often than 1.0 does.
    let peaked = |conc: f64| {
        let a = Candidates::Random {
            n: 400,
            concentrations: vec![conc],
            seed: 1,
        }
        .resolve(2)
        .unwrap();
        a.rows()
            .into_iter()
            .filter(|r| r[0].max(r[1]) > 0.95)
            .count()
    };
    assert!(peaked(0.1) > 2 * peaked(1.0));
}

#[test]
fn partition_matches_separate_fits() {
    let d = make_data(50, &[5, 7], 120, 60, 8);
    let r = ropts(CvScore::R2, Backend::Cpu, Dtype::F64);
    let f = fit(
        &d,
        &BandedOptions {
            ridge: r.clone(),
            candidates: Candidates::Explicit(cands()),
            partition: true,
        },
    );
    let part = f.partition.as_ref().unwrap();
    // Without band 0 the model is single-band ridge on band 1, and vice versa.
    for (b, cols) in [(0usize, 5..12), (1, 0..5)] {
        let (x, xt) = (
            d.x.slice(s![.., cols.clone()]).to_owned(),
            d.xt.slice(s![.., cols]).to_owned(),
        );
        let alone = fit_cv(
            &RidgeProblem {
                x_train: x.view(),
                x_test: xt.view(),
                ..ridge(&d)
            },
            &r,
        )
        .unwrap();
        for j in 0..120 {
            assert!((part.loo_r2[[b, j]] - alone.test_r2[j]).abs() < 1e-12);
            assert!((part.unique_r2[[b, j]] - (f.test_r2[j] - alone.test_r2[j])).abs() < 1e-12);
        }
    }
    for j in 0..120 {
        let shared = part.loo_r2[[0, j]] + part.loo_r2[[1, j]] - f.test_r2[j];
        assert!((part.shared_r2[j] - shared).abs() < 1e-12);
    }
    // Voxels driven by band 0 alone: its unique variance exceeds band 1's.
    let strong: Vec<usize> = (0..120)
        .filter(|j| j % 3 == 0 && f.test_r2[*j] > 0.3)
        .collect();
    assert!(!strong.is_empty());
    for &j in &strong {
        assert!(part.unique_r2[[0, j]] > part.unique_r2[[1, j]]);
    }
}

#[test]
fn torch_backend_agrees_with_cpu() {
    let d = make_data(50, &[5, 7], 150, 60, 21);
    let run = |backend, dtype| {
        fit(
            &d,
            &BandedOptions {
                ridge: ropts(CvScore::R, backend, dtype),
                candidates: Candidates::Explicit(cands()),
                partition: true,
            },
        )
    };
    for dtype in [Dtype::F64, Dtype::F32] {
        let (a, b) = (run(Backend::Cpu, dtype), run(Backend::Torch, dtype));
        let same: Vec<usize> = (0..150)
            .filter(|&j| {
                a.best_candidate[j] == b.best_candidate[j] && a.best_alpha[j] == b.best_alpha[j]
            })
            .collect();
        assert!(same.len() >= 148, "{} of 150 agree ({dtype:?})", same.len());
        for &j in &same {
            assert!((a.test_r[j] - b.test_r[j]).abs() < 1e-5);
            assert!((a.r2_split[[0, j]] - b.r2_split[[0, j]]).abs() < 1e-5);
            assert!((a.r2_split[[1, j]] - b.r2_split[[1, j]]).abs() < 1e-5);
            let (pa, pb) = (a.partition.as_ref().unwrap(), b.partition.as_ref().unwrap());
            assert!((pa.shared_r2[j] - pb.shared_r2[j]).abs() < 1e-5);
        }
    }
}

#[test]
fn chunked_memory_gives_the_same_result() {
    let d = make_data(40, &[5, 7], 300, 40, 2);
    let run = |max_memory| {
        fit(
            &d,
            &BandedOptions {
                ridge: RidgeOptions {
                    max_memory,
                    ..ropts(CvScore::R, Backend::Cpu, Dtype::F32)
                },
                candidates: Candidates::Explicit(cands()),
                partition: false,
            },
        )
    };
    let (a, b) = (run(None), run(Some(2_000_000)));
    assert_eq!(a.best_candidate, b.best_candidate);
    assert_eq!(a.test_r, b.test_r);
    assert_eq!(a.r2_split, b.r2_split);
}

#[test]
fn bad_bands_and_candidates_get_clear_errors() {
    let d = make_data(20, &[3, 4], 5, 10, 1);
    let o = |c| BandedOptions {
        ridge: ropts(CvScore::R, Backend::Cpu, Dtype::F32),
        candidates: c,
        partition: false,
    };
    let err = |bands: &[Band], c: Candidates| {
        fit_banded(
            &BandedProblem {
                ridge: ridge(&d),
                bands,
            },
            &o(c),
        )
        .unwrap_err()
        .to_string()
    };
    let b = |n: &str, f| Band {
        name: n.into(),
        features: f,
    };
    let good = [b("a", 3), b("b", 4)];
    assert!(err(&[b("a", 3), b("b", 5)], Candidates::default()).contains("8 features"));
    assert!(err(&[b("a", 3), b("a", 4)], Candidates::default()).contains("twice"));
    assert!(err(&good, Candidates::Explicit(vec![vec![1.0]])).contains("1 weights for 2 bands"));
    assert!(err(&good, Candidates::Explicit(vec![vec![0.0, 0.0]])).contains("not all zero"));
    assert!(err(&good, Candidates::Explicit(vec![vec![-1.0, 2.0]])).contains("non-negative"));
    let bad_conc = Candidates::Random {
        n: 3,
        concentrations: vec![0.0],
        seed: 0,
    };
    assert!(err(&good, bad_conc).contains("concentrations"));
}

// ---- the encode stage on a synthetic dataset with known bands -----------------------------

fn brainscale(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brainscale"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "brainscale {args:?} failed: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dataset synth --bands`: every signal voxel is driven by the latents of one band. The
/// ground-truth latents split into the two bands' feature sets; `encode --bands` must put
/// each voxel's explained variance on its true band, and one band through `--bands` must give
/// the single-band encode's results exactly.
#[test]
fn encode_bands_assigns_variance_to_the_true_band() {
    use brainscale::core::io::{into_1d, into_2d, TensorFile};
    use brainscale::fmri::dataset::synth::{self, SynthConfig, BANDS};
    use brainscale::fmri::features::FrameFeatures;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("synth-bands");
    let cfg = SynthConfig {
        subjects: 1,
        snr: 4.0,
        bands: true,
        ..SynthConfig::preset(synth::Size::Tiny, 3)
    };
    synth::generate(&cfg, &root).unwrap();
    let work = dir.path().join("work");
    let (ds, wk) = (root.to_str().unwrap(), work.to_str().unwrap());
    brainscale(&[
        "features",
        "--dataset",
        ds,
        "--work",
        wk,
        "--extractor",
        "groundtruth",
    ]);
    let gt = work.join("features/groundtruth");
    for entry in std::fs::read_dir(&gt).unwrap() {
        let path = entry.unwrap().path();
        let f = FrameFeatures::load(&path).unwrap();
        let meta = TensorFile::open(&path).unwrap().metadata();
        for (name, cols) in BANDS {
            let part = FrameFeatures {
                values: f.values.select(Axis(1), cols),
                times: f.times.clone(),
            };
            let out = work
                .join("features")
                .join(name)
                .join(path.file_name().unwrap());
            part.save(&out, meta.clone()).unwrap();
        }
    }
    for feat in ["groundtruth", "luminance", "motion"] {
        brainscale(&["align", "--dataset", ds, "--work", wk, "--features", feat]);
    }
    let out = brainscale(&[
        "encode",
        "--dataset",
        ds,
        "--work",
        wk,
        "--bands",
        "lum=luminance,mot=motion",
        "--band-candidates",
        "10",
        "--partition",
    ]);
    assert!(out.contains("mean R² split: lum"), "{out}");
    let f = TensorFile::open(&work.join("encode/lum+mot/sub-01/ridge.safetensors")).unwrap();
    let split = into_2d(f.f64("r2_split").unwrap(), "split").unwrap();
    let unique = into_2d(f.f64("unique_r2").unwrap(), "unique").unwrap();
    let r2 = into_1d(f.f64("test_r2").unwrap(), "r2").unwrap();
    let truth = into_1d(f.u8("true_band").unwrap(), "true_band").unwrap();
    assert_eq!(f.metadata()["band_names"], "lum,mot");
    let (mut right, mut total, mut right_unique) = (0, 0, 0);
    for j in 0..r2.len() {
        if truth[j] == u8::MAX || r2[j] < 0.2 {
            continue;
        }
        let b = truth[j] as usize;
        total += 1;
        right += usize::from(split[[b, j]] > split[[1 - b, j]]);
        right_unique += usize::from(unique[[b, j]] > unique[[1 - b, j]]);
        assert!((split.column(j).sum() - r2[j]).abs() < 1e-3);
    }
    assert!(total > 100, "only {total} well-predicted signal voxels");
    assert!(
        right == total,
        "split on the true band for {right} of {total} voxels"
    );
    assert!(
        right_unique as f64 >= 0.98 * total as f64,
        "{right_unique} of {total}"
    );

    // One band through --bands is the single-band encode.
    brainscale(&[
        "encode",
        "--dataset",
        ds,
        "--work",
        wk,
        "--features",
        "groundtruth",
    ]);
    brainscale(&[
        "encode",
        "--dataset",
        ds,
        "--work",
        wk,
        "--bands",
        "all=groundtruth",
    ]);
    let a = TensorFile::open(&work.join("encode/groundtruth/sub-01/ridge.safetensors")).unwrap();
    let b = TensorFile::open(&work.join("encode/all/sub-01/ridge.safetensors")).unwrap();
    for t in ["test_r", "test_r2", "best_alpha"] {
        assert_eq!(a.f64(t).unwrap(), b.f64(t).unwrap(), "{t}");
    }

    // Maps: per-band split maps, the top band, and per-band summary columns that survive a
    // later single-band maps run.
    brainscale(&[
        "maps",
        "--dataset",
        ds,
        "--work",
        wk,
        "--features",
        "lum+mot",
    ]);
    brainscale(&[
        "maps",
        "--dataset",
        ds,
        "--work",
        wk,
        "--features",
        "groundtruth",
    ]);
    let m = work.join("maps/lum+mot/sub-01");
    for name in [
        "r.nii.gz",
        "r2_split_lum.nii.gz",
        "r2_split_mot.nii.gz",
        "unique_r2_mot.nii.gz",
        "shared_r2.nii.gz",
        "band_weight_lum.nii.gz",
        "top_band.nii.gz",
        "top_band.png",
    ] {
        assert!(m.join(name).exists(), "{name} missing");
    }
    let mut rdr = csv::Reader::from_path(work.join("summary.csv")).unwrap();
    let h: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let col = |row: &Vec<String>, c: &str| row[h.iter().position(|x| x == c).unwrap()].clone();
    let banded = rows
        .iter()
        .find(|r| col(r, "features") == "lum+mot")
        .unwrap();
    let single = rows
        .iter()
        .find(|r| col(r, "features") == "groundtruth")
        .unwrap();
    let mean = |b: usize| split.row(b).mean().unwrap();
    for (b, name) in ["lum", "mot"].iter().enumerate() {
        let v: f64 = col(banded, &format!("mean_r2_split_{name}"))
            .parse()
            .unwrap();
        assert!((v - mean(b)).abs() < 1e-9);
        let frac: f64 = col(banded, &format!("frac_top_{name}")).parse().unwrap();
        assert!(frac > 0.1 && frac < 0.9, "{name}: {frac}");
        assert!(col(banded, &format!("mean_unique_r2_{name}"))
            .parse::<f64>()
            .is_ok());
        assert_eq!(col(single, &format!("mean_r2_split_{name}")), "");
    }
}

#[test]
fn band_arguments_are_checked() {
    use brainscale::fmri::encode::banded::BandRequest as BandArgs;
    let args = |bands: &[&str], weights: &[&str]| BandArgs {
        bands: bands.iter().map(|s| s.to_string()).collect(),
        band_weights: weights.iter().map(|s| s.to_string()).collect(),
        band_candidates: 5,
        band_concentration: vec![0.1, 1.0],
        ..BandArgs::default()
    };
    let specs = args(&["motion=baseline", "gpt=gpt-L4"], &[])
        .specs()
        .unwrap();
    assert_eq!(
        brainscale::fmri::encode::banded::bands_name(&specs),
        "motion+gpt"
    );
    assert_eq!(specs[1].features, "gpt-L4");
    let err = |a: BandArgs| {
        format!(
            "{:#}",
            a.specs()
                .and_then(|_| a.to_options(&RidgeOptions::default()))
                .unwrap_err()
        )
    };
    assert!(err(args(&["motion"], &[])).contains("expected NAME=FEATURES"));
    assert!(err(args(&["a=x", "a=y"], &[])).contains("given twice"));
    assert!(err(args(&["a/b=x"], &[])).contains("band names may hold only"));
    assert!(err(args(&["a=x", "b=y"], &["0.5:x"])).contains("--band-weights `0.5:x`"));
    assert!(err(args(&["a=x", "b=y"], &["0.5:0.2:0.3"])).contains("3 weights for 2 bands"));
    let ok = args(&["a=x", "b=y"], &["0.5:0.5", "1:0"]).to_options(&RidgeOptions::default());
    assert_eq!(
        ok.unwrap().candidates,
        Candidates::Explicit(vec![vec![0.5, 0.5], vec![1.0, 0.0]])
    );
}
