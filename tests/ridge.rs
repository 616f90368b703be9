//! Ridge engine tests against independent references: a direct solve (X'X + αI)⁻¹X'Y per
//! alpha, and leave-run-out CV computed naively (one solve per fold and alpha) on tiny data.
use brainscale::cli::args::{ByteSize, RidgeArgs};
use brainscale::ridge::{
    fit_cv, fold_rows, Backend, CvScore, Dtype, Folds, RidgeFit, RidgeOptions, RidgeProblem,
};
use clap::Parser;
use ndarray::{s, Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

struct Data {
    x: Array2<f32>,
    y: Array2<f32>,
    groups: Vec<usize>,
    xt: Array2<f32>,
    yt: Array2<f32>,
}

/// Correlated features, a true linear map, and voxels with signal-to-noise from high to none,
/// so that different voxels prefer different alphas.
fn make_data(n_runs: usize, run_len: usize, p: usize, v: usize, n_test: usize, seed: u64) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g = Normal::new(0.0, 1.0).unwrap();
    let n = n_runs * run_len;
    let mix = Array2::from_shape_fn((p, p), |(i, j)| {
        if i == j {
            1.0
        } else {
            0.3 * g.sample(&mut rng) / (p as f64).sqrt()
        }
    });
    let mut gen_x = |rows: usize| {
        let raw = Array2::from_shape_fn((rows, p), |_| g.sample(&mut rng) as f64);
        raw.dot(&mix) + 0.5
    };
    let (x, xt) = (gen_x(n), gen_x(n_test));
    let w = Array2::from_shape_fn((p, v), |_| g.sample(&mut rng) / (p as f64).sqrt());
    let noise_sd = Array1::from_shape_fn(v, |j| 0.2 + 3.0 * j as f64 / v as f64);
    let mut gen_y = |x: &Array2<f64>| {
        let mut y = x.dot(&w) + 1.0;
        for ((_, j), t) in y.indexed_iter_mut() {
            *t += noise_sd[j] * g.sample(&mut rng);
        }
        y
    };
    let (y, yt) = (gen_y(&x), gen_y(&xt));
    let f = |a: Array2<f64>| a.mapv(|t| t as f32);
    Data {
        x: f(x),
        y: f(y),
        groups: (0..n).map(|i| 10 + i / run_len).collect(),
        xt: f(xt),
        yt: f(yt),
    }
}

fn problem(d: &Data) -> RidgeProblem<'_> {
    RidgeProblem {
        x_train: d.x.view(),
        y_train: d.y.view(),
        groups: &d.groups,
        x_test: d.xt.view(),
        y_test: d.yt.view(),
    }
}

fn opts(
    alphas: &[f64],
    score: CvScore,
    intercept: bool,
    backend: Backend,
    dtype: Dtype,
) -> RidgeOptions {
    RidgeOptions {
        alphas: alphas.to_vec(),
        score,
        intercept,
        keep_cv_scores: true,
        keep_weights: true,
        backend,
        dtype,
        progress: false,
        ..RidgeOptions::default()
    }
}

// ---------- independent reference ----------

/// Solves A X = B (A square) by Gauss-Jordan elimination with partial pivoting.
fn solve(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    let mut m = ndarray::concatenate![Axis(1), a.view(), b.view()];
    for c in 0..n {
        let piv = (c..n)
            .max_by(|&i, &j| m[[i, c]].abs().total_cmp(&m[[j, c]].abs()))
            .unwrap();
        for j in 0..m.ncols() {
            m.swap([c, j], [piv, j]);
        }
        let d = m[[c, c]];
        m.row_mut(c).mapv_inplace(|t| t / d);
        let pivot_row = m.row(c).to_owned();
        for i in 0..n {
            if i != c {
                let f = m[[i, c]];
                m.row_mut(i).scaled_add(-f, &pivot_row);
            }
        }
    }
    m.slice(s![.., n..]).to_owned()
}

/// Ridge weights and intercept by a direct solve on the given rows.
fn direct(
    x: &Array2<f64>,
    y: &Array2<f64>,
    alpha: f64,
    intercept: bool,
) -> (Array2<f64>, Array1<f64>) {
    let (xm, ym) = if intercept {
        (x.mean_axis(Axis(0)).unwrap(), y.mean_axis(Axis(0)).unwrap())
    } else {
        (Array1::zeros(x.ncols()), Array1::zeros(y.ncols()))
    };
    let (xc, yc) = (x - &xm, y - &ym);
    let a = xc.t().dot(&xc) + Array2::<f64>::eye(x.ncols()) * alpha;
    let w = solve(&a, &xc.t().dot(&yc));
    let b = &ym - &xm.dot(&w);
    (w, b)
}

fn col_r(a: &Array2<f64>, b: &Array2<f64>) -> Array1<f64> {
    Array1::from_shape_fn(a.ncols(), |j| {
        let (x, y) = (a.column(j), b.column(j));
        let (mx, my) = (x.mean().unwrap(), y.mean().unwrap());
        let sxy: f64 = x.iter().zip(y).map(|(p, q)| (p - mx) * (q - my)).sum();
        let sxx: f64 = x.iter().map(|p| (p - mx).powi(2)).sum();
        let syy: f64 = y.iter().map(|q| (q - my).powi(2)).sum();
        if sxx < 1e-20 || syy < 1e-20 {
            0.0
        } else {
            sxy / (sxx * syy).sqrt()
        }
    })
}

fn col_r2(truth: &Array2<f64>, pred: &Array2<f64>) -> Array1<f64> {
    Array1::from_shape_fn(truth.ncols(), |j| {
        let (t, p) = (truth.column(j), pred.column(j));
        let m = t.mean().unwrap();
        let sst: f64 = t.iter().map(|a| (a - m).powi(2)).sum();
        let sse: f64 = t.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum();
        if sst < 1e-20 {
            0.0
        } else {
            1.0 - sse / sst
        }
    })
}

struct Naive {
    scores: Array2<f64>,
    best: Vec<f64>,
    pred: Array2<f64>,
    weights: Array2<f64>,
}

/// CV the slow way: for each fold and alpha, a fresh solve on the training rows.
fn naive(d: &Data, alphas: &[f64], score: CvScore, intercept: bool, folds: Folds) -> Naive {
    let x = d.x.mapv(|t| t as f64);
    let y = d.y.mapv(|t| t as f64);
    let fr = fold_rows(&d.groups, folds);
    let mut scores = Array2::zeros((alphas.len(), y.ncols()));
    for val in &fr {
        let tr: Vec<usize> = (0..x.nrows()).filter(|i| !val.contains(i)).collect();
        let (xt, yt) = (x.select(Axis(0), &tr), y.select(Axis(0), &tr));
        let (xv, yv) = (x.select(Axis(0), val), y.select(Axis(0), val));
        for (a, &alpha) in alphas.iter().enumerate() {
            let (w, b) = direct(&xt, &yt, alpha, intercept);
            let pred = xv.dot(&w) + &b;
            let sc = match score {
                CvScore::R => col_r(&pred, &yv),
                CvScore::R2 => col_r2(&yv, &pred),
            };
            scores.row_mut(a).scaled_add(1.0 / fr.len() as f64, &sc);
        }
    }
    let best_idx: Vec<usize> = (0..y.ncols())
        .map(|j| {
            let mut b = alphas.len() - 1;
            for a in (0..alphas.len()).rev() {
                if scores[[a, j]] > scores[[b, j]] {
                    b = a;
                }
            }
            b
        })
        .collect();
    let xt = d.xt.mapv(|t| t as f64);
    let mut pred = Array2::zeros((xt.nrows(), y.ncols()));
    let mut weights = Array2::zeros((x.ncols(), y.ncols()));
    for (a, &alpha) in alphas.iter().enumerate() {
        let (w, b) = direct(&x, &y, alpha, intercept);
        let pa = xt.dot(&w) + &b;
        for j in (0..y.ncols()).filter(|&j| best_idx[j] == a) {
            pred.column_mut(j).assign(&pa.column(j));
            weights.column_mut(j).assign(&w.column(j));
        }
    }
    Naive {
        scores,
        best: best_idx.iter().map(|&a| alphas[a]).collect(),
        pred,
        weights,
    }
}

fn max_abs_diff<'a>(
    a: impl IntoIterator<Item = &'a f64>,
    b: impl IntoIterator<Item = &'a f64>,
) -> f64 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Checks a fit against the naive reference.
fn check_against_naive(fit: &RidgeFit, nv: &Naive, tol: f64) {
    let cv = fit.cv_scores.as_ref().unwrap();
    assert!(
        max_abs_diff(cv.iter(), nv.scores.iter()) < tol,
        "cv scores differ by {}",
        max_abs_diff(cv.iter(), nv.scores.iter())
    );
    assert_eq!(fit.best_alpha.to_vec(), nv.best, "best alphas differ");
    let pred = fit.test_pred.mapv(|t| t as f64);
    let scale = nv.pred.iter().fold(1.0f64, |m, t| m.max(t.abs()));
    // Predictions and weights are returned as f32.
    let perr = max_abs_diff(pred.iter(), nv.pred.iter()) / scale;
    assert!(perr < 1e-6, "test predictions differ by {perr} relative");
    let w = fit.weights.as_ref().unwrap().mapv(|t| t as f64);
    let wscale = nv.weights.iter().fold(1e-3f64, |m, t| m.max(t.abs()));
    let werr = max_abs_diff(w.iter(), nv.weights.iter()) / wscale;
    assert!(werr < 1e-6, "weights differ by {werr} relative");
}

const ALPHAS: [f64; 6] = [0.1, 1.0, 10.0, 100.0, 1000.0, 1e4];

// ---------- tests ----------

#[test]
fn single_alpha_weights_match_direct_solve() {
    // n > p (primal form) and p > n (kernel form), with and without intercept.
    for (runs, len, p) in [(4, 20, 10), (3, 6, 25)] {
        let d = make_data(runs, len, p, 7, 9, 1);
        let x = d.x.mapv(|t| t as f64);
        let y = d.y.mapv(|t| t as f64);
        for intercept in [true, false] {
            for alpha in [0.5, 30.0, 2e3] {
                let fit = fit_cv(
                    &problem(&d),
                    &opts(&[alpha], CvScore::R, intercept, Backend::Cpu, Dtype::F64),
                )
                .unwrap();
                let (w, b) = direct(&x, &y, alpha, intercept);
                let got = fit.weights.unwrap().mapv(|t| t as f64);
                let err = max_abs_diff(got.iter(), w.iter())
                    / w.iter().fold(0.0f64, |m, t| m.max(t.abs()));
                assert!(
                    err < 1e-6,
                    "p={p} intercept={intercept} alpha={alpha}: relative weight error {err}"
                );
                let pred = d.xt.mapv(|t| t as f64).dot(&w) + &b;
                let perr = max_abs_diff(fit.test_pred.mapv(|t| t as f64).iter(), pred.iter());
                assert!(perr < 1e-5, "prediction error {perr}");
            }
        }
    }
}

#[test]
fn cv_matches_naive_leave_run_out() {
    let d = make_data(4, 15, 8, 12, 10, 2);
    for score in [CvScore::R, CvScore::R2] {
        for intercept in [true, false] {
            let fit = fit_cv(
                &problem(&d),
                &opts(&ALPHAS, score, intercept, Backend::Cpu, Dtype::F64),
            )
            .unwrap();
            check_against_naive(
                &fit,
                &naive(&d, &ALPHAS, score, intercept, Folds::LeaveOneRunOut),
                1e-9,
            );
            assert_eq!(fit.n_folds, 4);
        }
    }
}

#[test]
fn cv_matches_naive_when_p_exceeds_n() {
    // 3 runs of 8 rows, 40 features: every fold uses the kernel form.
    let d = make_data(3, 8, 40, 6, 5, 3);
    for score in [CvScore::R, CvScore::R2] {
        let fit = fit_cv(
            &problem(&d),
            &opts(&ALPHAS, score, true, Backend::Cpu, Dtype::F64),
        )
        .unwrap();
        check_against_naive(
            &fit,
            &naive(&d, &ALPHAS, score, true, Folds::LeaveOneRunOut),
            1e-8,
        );
    }
}

#[test]
fn cv_matches_naive_with_run_groups_and_unequal_runs() {
    let mut d = make_data(6, 10, 6, 9, 8, 4);
    // Runs of unequal length, labels out of order.
    d.groups = (0..60)
        .map(|i| [5, 5, 3, 1, 7, 9][(i * i / 7) % 6] * 100)
        .collect();
    let mut o = opts(&ALPHAS, CvScore::R, true, Backend::Cpu, Dtype::F64);
    o.folds = Folds::RunGroups(3);
    let fit = fit_cv(&problem(&d), &o).unwrap();
    assert_eq!(fit.n_folds, 3);
    check_against_naive(
        &fit,
        &naive(&d, &ALPHAS, CvScore::R, true, Folds::RunGroups(3)),
        1e-9,
    );
}

#[test]
fn fold_rows_groups_consecutive_runs() {
    let groups = [3, 1, 1, 2, 4, 4, 5, 3];
    assert_eq!(
        fold_rows(&groups, Folds::LeaveOneRunOut),
        vec![vec![1, 2], vec![3], vec![0, 7], vec![4, 5], vec![6]]
    );
    // 5 runs in 2 groups: runs {1, 2, 3} and {4, 5}.
    assert_eq!(
        fold_rows(&groups, Folds::RunGroups(2)),
        vec![vec![0, 1, 2, 3, 7], vec![4, 5, 6]]
    );
}

#[test]
fn f32_is_close_to_f64() {
    let d = make_data(5, 40, 30, 50, 20, 5);
    let a = fit_cv(
        &problem(&d),
        &opts(&ALPHAS, CvScore::R, true, Backend::Cpu, Dtype::F64),
    )
    .unwrap();
    let b = fit_cv(
        &problem(&d),
        &opts(&ALPHAS, CvScore::R, true, Backend::Cpu, Dtype::F32),
    )
    .unwrap();
    let cv_err = max_abs_diff(
        a.cv_scores.as_ref().unwrap().iter(),
        b.cv_scores.as_ref().unwrap().iter(),
    );
    assert!(cv_err < 1e-5, "f32 CV scores off by {cv_err}");
    assert!(max_abs_diff(a.test_r.iter(), b.test_r.iter()) < 1e-4);
}

#[test]
fn chunked_voxels_give_the_same_result() {
    let d = make_data(3, 30, 12, 300, 10, 6);
    let o = opts(&ALPHAS, CvScore::R2, true, Backend::Cpu, Dtype::F64);
    let whole = fit_cv(&problem(&d), &o).unwrap();
    // A budget that allows only ~100 voxels per chunk.
    let mut small = o.clone();
    small.max_memory = Some(400_000);
    let chunked = fit_cv(&problem(&d), &small).unwrap();
    assert_eq!(whole.best_alpha, chunked.best_alpha);
    assert!(max_abs_diff(whole.test_r.iter(), chunked.test_r.iter()) < 1e-12);
    // The torch backend reads column slices of Y in place.
    small.backend = Backend::Torch;
    let torch = fit_cv(&problem(&d), &small).unwrap();
    assert_eq!(whole.best_alpha, torch.best_alpha);
    assert!(max_abs_diff(whole.test_r.iter(), torch.test_r.iter()) < 1e-9);
    let w = |f: &RidgeFit| f.weights.as_ref().unwrap().mapv(|t| t as f64);
    assert!(max_abs_diff(w(&whole).iter(), w(&torch).iter()) < 1e-6);
    let mut tiny = o.clone();
    tiny.max_memory = Some(1000);
    let err = fit_cv(&problem(&d), &tiny).unwrap_err().to_string();
    assert!(err.contains("too small"), "{err}");
}

#[test]
fn cpu_results_do_not_depend_on_the_thread_count() {
    // Many rows, so that rayon splits the per-voxel moments differently on 1 and 3 threads.
    let d = make_data(4, 400, 8, 40, 20, 11);
    let o = opts(&ALPHAS, CvScore::R, true, Backend::Cpu, Dtype::F64);
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| fit_cv(&problem(&d), &o).unwrap())
    };
    let (one, three) = (on(1), on(3));
    let bits = |a: &Array1<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one.test_r), bits(&three.test_r), "test r");
    let cv = |f: &RidgeFit| {
        f.cv_scores
            .as_ref()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(cv(&one), cv(&three), "cv scores");
}

#[test]
fn streamed_weights_match_the_in_memory_fit() {
    let d = make_data(3, 30, 12, 300, 10, 6);
    let mut o = opts(&ALPHAS, CvScore::R, true, Backend::Cpu, Dtype::F64);
    o.keep_cv_scores = true;
    let whole = fit_cv(&problem(&d), &o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    // Blocks of 70 voxels: 5 blocks, the last one partial.
    let streamed = brainscale::ridge::fit_cv_streaming(&problem(&d), &o, &path, Some(70)).unwrap();
    assert!(streamed.weights.is_none());
    assert_eq!(whole.best_alpha, streamed.best_alpha);
    assert!(max_abs_diff(whole.test_r.iter(), streamed.test_r.iter()) < 1e-12);
    assert_eq!(
        whole.cv_scores.as_ref().unwrap().dim(),
        streamed.cv_scores.as_ref().unwrap().dim()
    );
    assert_eq!(whole.test_pred.dim(), streamed.test_pred.dim());
    // The file: f32 [voxels, features], the transpose of the in-memory weights.
    let f = brainscale::core::io::TensorFile::open(&path).unwrap();
    let w = f.f32("weights").unwrap();
    assert_eq!(w.shape(), &[300, 12]);
    let mem = whole.weights.as_ref().unwrap();
    for j in 0..300 {
        for i in 0..12 {
            assert!(
                (w[[j, i]] - mem[[i, j]]).abs() <= 1e-6 * (1.0 + mem[[i, j]].abs()),
                "voxel {j} feature {i}"
            );
        }
    }
}

#[test]
fn constant_voxel_gets_zero_r_and_the_largest_alpha() {
    let mut d = make_data(3, 20, 5, 4, 10, 7);
    d.y.column_mut(2).fill(3.5);
    for backend in backends() {
        for score in [CvScore::R, CvScore::R2] {
            let fit = fit_cv(
                &problem(&d),
                &opts(&ALPHAS, score, true, backend, Dtype::F32),
            )
            .unwrap();
            assert_eq!(fit.constant_voxels, vec![2]);
            assert_eq!(fit.test_r[2], 0.0);
            assert_eq!(fit.best_alpha[2], 1e4, "ties go to the largest alpha");
            assert!(fit.cv_scores.unwrap().column(2).iter().all(|&s| s == 0.0));
            assert!(fit.test_r.iter().all(|r| r.is_finite()) && fit.test_r[0] > 0.5);
        }
    }
}

fn backends() -> Vec<Backend> {
    vec![Backend::Cpu, Backend::Torch]
}

#[test]
fn bad_input_gets_clear_errors() {
    let d = make_data(3, 10, 4, 3, 5, 8);
    let o = opts(&ALPHAS, CvScore::R, true, Backend::Cpu, Dtype::F32);
    let err = |d: &Data, o: &RidgeOptions| fit_cv(&problem(d), o).unwrap_err().to_string();

    let mut one_run = make_data(3, 10, 4, 3, 5, 8);
    one_run.groups = vec![7; 30];
    assert!(
        err(&one_run, &o).contains("at least 2 training runs"),
        "{}",
        err(&one_run, &o)
    );

    for bad in [0.0, -1.0, f64::NAN] {
        let e = err(
            &d,
            &opts(&[1.0, bad], CvScore::R, true, Backend::Cpu, Dtype::F32),
        );
        assert!(e.contains("positive"), "{e}");
    }
    assert!(err(&d, &opts(&[], CvScore::R, true, Backend::Cpu, Dtype::F32)).contains("no alphas"));

    let mut nan = make_data(3, 10, 4, 3, 5, 8);
    nan.y[[4, 1]] = f32::NAN;
    let e = err(&nan, &o);
    assert!(
        e.contains("training Y") && e.contains("row 4, column 1"),
        "{e}"
    );
    let mut inf = make_data(3, 10, 4, 3, 5, 8);
    inf.xt[[2, 0]] = f32::INFINITY;
    assert!(err(&inf, &o).contains("test X has a non-finite"));

    let mut short = make_data(3, 10, 4, 3, 5, 8);
    short.groups.pop();
    assert!(err(&short, &o).contains("29 run labels for 30"));
    let mut wrong = make_data(3, 10, 4, 3, 5, 8);
    wrong.xt = Array2::zeros((5, 3));
    assert!(err(&wrong, &o).contains("test X has 3 features"));

    let mut groups = o.clone();
    groups.folds = Folds::RunGroups(4);
    assert!(err(&d, &groups).contains("only 3 training runs"));
    let mut gpu_cpu = o.clone();
    gpu_cpu.device = "cuda:1".parse().unwrap();
    assert!(err(&d, &gpu_cpu).contains("cpu backend runs on the CPU only"));
}

#[test]
fn cli_args_become_options() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ridge: RidgeArgs,
    }
    let parse =
        |args: &[&str]| Cli::try_parse_from([&["x"], args].concat()).map(|c| c.ridge.to_options());
    let o = parse(&[
        "--alphas",
        "1,10,100",
        "--cv-score",
        "r2",
        "--no-intercept",
        "--max-memory",
        "2GiB",
        "--cv-run-groups",
        "3",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(o.alphas, vec![1.0, 10.0, 100.0]);
    assert_eq!(
        (o.score, o.intercept, o.max_memory, o.folds),
        (CvScore::R2, false, Some(2 << 30), Folds::RunGroups(3))
    );
    let d = parse(&[]).unwrap().unwrap();
    assert_eq!(d.alphas.len(), 10);
    assert_eq!(d.dtype, Dtype::F32);
    let o = parse(&[
        "--backend",
        "torch",
        "--device",
        "cuda:1",
        "--precision",
        "f32",
        "--tf32",
        "--save-weights",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(o.device.to_string(), "cuda:1");
    assert!(o.tf32 && o.keep_weights && !o.keep_cv_scores);
    // Bad values are errors naming the option.
    let e = parse(&["--alphas", "1,-2"]).unwrap().unwrap_err();
    assert!(format!("{e:#}").contains("positive"), "{e:#}");
    // Devices and sizes are parsed by clap: the usage error names the option.
    let e = parse(&["--device", "tpu"]).err().expect("refused");
    assert!(format!("{e}").contains("--device"), "{e}");
    let e = parse(&["--tf32"]).unwrap().unwrap_err();
    assert!(format!("{e:#}").contains("tf32"));
    let e = parse(&["--max-memory", "lots"]).err().expect("refused");
    assert!(format!("{e}").contains("--max-memory"));
    assert!(parse(&["--cv-run-groups", "1"]).unwrap().is_err());
    let bytes = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
    assert_eq!(bytes("1.5KiB").unwrap(), 1536);
    assert_eq!(bytes("3GB").unwrap(), 3_000_000_000);
    assert!(bytes("0").is_err() && bytes("5 parsecs").is_err());
    // --dtype, and --precision kept as its alias for existing scripts.
    for flag in ["--dtype", "--precision"] {
        assert_eq!(parse(&[flag, "f64"]).unwrap().unwrap().dtype, Dtype::F64);
    }
}

#[test]
fn torch_backend_agrees_with_cpu() {
    // Same inputs, both forms (n > p and p > n), both scores: same best alphas, r to 1e-5.
    for (runs, len, p, v) in [(5, 30, 20, 40), (3, 10, 45, 20)] {
        let d = make_data(runs, len, p, v, 15, 9);
        for score in [CvScore::R, CvScore::R2] {
            let a = fit_cv(
                &problem(&d),
                &opts(&ALPHAS, score, true, Backend::Cpu, Dtype::F64),
            )
            .unwrap();
            let b = fit_cv(
                &problem(&d),
                &opts(&ALPHAS, score, true, Backend::Torch, Dtype::F64),
            )
            .unwrap();
            assert_eq!(a.best_alpha, b.best_alpha);
            assert!(max_abs_diff(a.test_r.iter(), b.test_r.iter()) < 1e-5);
            let cv = max_abs_diff(
                a.cv_scores.as_ref().unwrap().iter(),
                b.cv_scores.as_ref().unwrap().iter(),
            );
            assert!(cv < 1e-9, "cv scores differ by {cv}");
            // f32 on both: r to 1e-5 wherever the alpha choice is not a near-tie.
            let a32 = fit_cv(
                &problem(&d),
                &opts(&ALPHAS, score, true, Backend::Cpu, Dtype::F32),
            )
            .unwrap();
            let b32 = fit_cv(
                &problem(&d),
                &opts(&ALPHAS, score, true, Backend::Torch, Dtype::F32),
            )
            .unwrap();
            let cv32 = max_abs_diff(
                a32.cv_scores.as_ref().unwrap().iter(),
                b32.cv_scores.as_ref().unwrap().iter(),
            );
            assert!(cv32 < 1e-5, "f32 cv scores differ by {cv32}");
            for j in 0..v {
                if a32.best_alpha[j] == b32.best_alpha[j] {
                    assert!((a32.test_r[j] - b32.test_r[j]).abs() < 1e-5);
                } else {
                    let cvs = a.cv_scores.as_ref().unwrap();
                    let pos = |x: f64| ALPHAS.iter().position(|&y| y == x).unwrap();
                    let (ia, ib) = (pos(a32.best_alpha[j]), pos(b32.best_alpha[j]));
                    assert!(
                        (cvs[[ia, j]] - cvs[[ib, j]]).abs() < 1e-5,
                        "voxel {j}: alphas differ without a near-tie"
                    );
                }
            }
        }
    }
}

#[test]
fn degenerate_spectrum_design_works_in_f32() {
    // Walsh-like ±1 features of period 8, each run 8 rows: every training Gram is a multiple
    // of the identity (all eigenvalues equal), the case partial fractions cannot handle.
    // (With equal eigenvalues every alpha gives the same r, so alphas are chosen by R².)
    let (runs, len, p, v) = (4, 8, 7, 5);
    let n = runs * len;
    let walsh = |i: usize, j: usize| {
        if ((i % 8) & (j + 1)).count_ones() % 2 == 0 {
            1.0f32
        } else {
            -1.0
        }
    };
    let mut d = make_data(runs, len, p, v, 8, 10);
    d.x = Array2::from_shape_fn((n, p), |(i, j)| walsh(i, j));
    d.xt = Array2::from_shape_fn((8, p), |(i, j)| walsh(i + 3, j));
    let w = Array2::from_shape_fn((p, v), |(i, j)| ((i * 3 + j) % 5) as f32 - 2.0);
    let noise = make_data(runs, len, 1, v, 8, 11);
    d.y = d.x.dot(&w) + &noise.y * 2.0;
    d.yt = d.xt.dot(&w) + &noise.yt * 2.0;
    let nv = naive(&d, &ALPHAS, CvScore::R2, true, Folds::LeaveOneRunOut);
    let f64fit = fit_cv(
        &problem(&d),
        &opts(&ALPHAS, CvScore::R2, true, Backend::Cpu, Dtype::F64),
    )
    .unwrap();
    check_against_naive(&f64fit, &nv, 1e-9);
    for backend in backends() {
        let fit = fit_cv(
            &problem(&d),
            &opts(&ALPHAS, CvScore::R2, true, backend, Dtype::F32),
        )
        .unwrap();
        let err = max_abs_diff(fit.cv_scores.as_ref().unwrap().iter(), nv.scores.iter());
        assert!(err < 1e-5, "{backend}: f32 CV scores off by {err}");
        assert!(max_abs_diff(fit.test_r.iter(), f64fit.test_r.iter()) < 1e-4);
    }
}

#[test]
fn large_means_keep_f32_precision() {
    // Raw BOLD-like data: large voxel means and feature offsets. With an intercept the fit is
    // shift-invariant; f32 must still match f64 (products are formed on centred data).
    let mut d = make_data(4, 25, 15, 30, 12, 12);
    d.x.mapv_inplace(|t| t + 100.0);
    d.xt.mapv_inplace(|t| t + 100.0);
    d.y.mapv_inplace(|t| t + 1000.0);
    d.yt.mapv_inplace(|t| t + 1000.0);
    let nv = naive(&d, &ALPHAS, CvScore::R, true, Folds::LeaveOneRunOut);
    let f64fit = fit_cv(
        &problem(&d),
        &opts(&ALPHAS, CvScore::R, true, Backend::Cpu, Dtype::F64),
    )
    .unwrap();
    check_against_naive(&f64fit, &nv, 1e-7);
    for backend in backends() {
        let fit = fit_cv(
            &problem(&d),
            &opts(&ALPHAS, CvScore::R, true, backend, Dtype::F32),
        )
        .unwrap();
        let err = max_abs_diff(fit.cv_scores.as_ref().unwrap().iter(), nv.scores.iter());
        assert!(err < 1e-5, "{backend}: f32 CV scores off by {err}");
        let perr = max_abs_diff(fit.test_pred.mapv(|t| t as f64).iter(), nv.pred.iter());
        assert!(
            perr < 1e-3,
            "{backend}: f32 test predictions off by {perr} (values ~1000)"
        );
    }
}

#[test]
fn no_test_rows_still_fits() {
    let mut d = make_data(3, 12, 5, 4, 0, 13);
    d.xt = Array2::zeros((0, 5));
    d.yt = Array2::zeros((0, 4));
    for backend in backends() {
        let fit = fit_cv(
            &problem(&d),
            &opts(&ALPHAS, CvScore::R, true, backend, Dtype::F32),
        )
        .unwrap();
        assert_eq!(fit.test_pred.dim(), (0, 4));
        assert_eq!(fit.best_alpha.len(), 4);
        assert!(fit.weights.unwrap().iter().all(|w| w.is_finite()));
    }
}
