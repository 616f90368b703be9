//! Figures state the data: the study's figure set plots exactly the CSV rows (and the frontier of
//! the law the losses were generated from); a subject's stat map has the colour-bar range,
//! threshold, peak and coordinates of its r map; the HTML report embeds every figure and, when
//! Debian's chromium is installed, renders them all in a headless browser.
mod common;

use brainscale::fmri::maps::statmap;
use brainscale::study::figures::{self as study, Style};
use brainscale::study::scaling::parametric::Law;
use std::collections::BTreeMap;
use std::path::Path;

/// (name, d_model, n_layer, n_head): width, depth and heads varied one at a time around m64.
const MODELS: &[(&str, u64, u64, u64)] = &[
    ("m64", 64, 2, 2),
    ("w32", 32, 2, 2),
    ("w128", 128, 2, 2),
    ("l1", 64, 1, 2),
    ("l4", 64, 4, 2),
    ("h4", 64, 2, 4),
];
const TOKENS: &[f64] = &[1e4, 1e5, 1e6];
const LAW: Law = Law {
    e: 1.5,
    a: 30.0,
    b: 60.0,
    alpha: 0.35,
    beta: 0.3,
};

fn n_params(d: u64, l: u64, h: u64) -> f64 {
    // Heads change nothing in N; make h4 differ a little so every model has its own N.
    (12 * l * d * d) as f64 + if h == 4 { 64.0 } else { 0.0 }
}

fn enc_r(d: u64, l: u64, h: u64, t: f64, prec: &str) -> f64 {
    0.1 + 0.02 * (d as f64).log2() + 0.01 * l as f64 + 0.003 * h as f64 + 0.01 * t.log10()
        - if prec == "bf16" { 0.001 } else { 0.0 }
}

/// A results.csv as `bench run` writes it (same columns), losses from LAW; one cell run with
/// two seeds.
fn write_results(path: &Path) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record([
        "grid",
        "cell_id",
        "config_hash",
        "model",
        "n_layer",
        "n_head",
        "d_model",
        "ctx",
        "vocab",
        "n_params",
        "n_params_total",
        "tokens",
        "flops",
        "precision",
        "seed",
        "device",
        "wall_s",
        "train_loss",
        "eval_loss",
        "encoding_r",
        "encoding_r_top10",
        "finished_unix",
        "pretrain_s",
        "r_layer:0",
        "r_layer:1",
        "r_layer:2",
        "r_layer:3",
        "r_layer:4",
    ])
    .unwrap();
    for &(m, d, l, h) in MODELS {
        for &t in TOKENS {
            for prec in ["fp32", "bf16"] {
                let seeds: &[u64] = if (m, t, prec) == ("m64", 1e5, "fp32") {
                    &[0, 1]
                } else {
                    &[0]
                };
                for &seed in seeds {
                    let n = n_params(d, l, h);
                    let r = enc_r(d, l, h, t, prec) + 0.004 * seed as f64;
                    let time = n * t * 1e-9 * if prec == "bf16" { 0.7 } else { 1.0 };
                    let mut rec = vec![
                        "g".to_string(),
                        format!("{m}-D{t}-{prec}-s{seed}"),
                        "h".into(),
                        m.into(),
                        l.to_string(),
                        h.to_string(),
                        d.to_string(),
                        "128".into(),
                        "64".into(),
                        n.to_string(),
                        (n + 8192.0).to_string(),
                        t.to_string(),
                        format!("{:e}", 6.0 * n * t),
                        prec.into(),
                        seed.to_string(),
                        "cpu".into(),
                        (time + 5.0).to_string(),
                        "".into(),
                        LAW.predict(n, t).to_string(),
                        r.to_string(),
                        (r + 0.2).to_string(),
                        "0".into(),
                        time.to_string(),
                    ];
                    for layer in 0..=4 {
                        rec.push(if layer <= l && prec == "fp32" {
                            (r * (0.5 + 0.5 * layer as f64 / l as f64)).to_string()
                        } else {
                            String::new()
                        });
                    }
                    w.write_record(&rec).unwrap();
                }
            }
        }
    }
    w.flush().unwrap();
}

fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let h = rdr.headers().unwrap().clone();
    rdr.records()
        .map(|r| {
            h.iter()
                .zip(r.unwrap().iter())
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        })
        .collect()
}

fn num(r: &BTreeMap<String, String>, k: &str) -> f64 {
    r[k].parse().unwrap()
}

/// Mean of `k` over the CSV rows matching `pred` (seeds).
fn mean_of(
    rows: &[BTreeMap<String, String>],
    k: &str,
    pred: impl Fn(&BTreeMap<String, String>) -> bool,
) -> f64 {
    let v: Vec<f64> = rows.iter().filter(|r| pred(r)).map(|r| num(r, k)).collect();
    assert!(!v.is_empty(), "no rows for {k}");
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn study_figures_plot_the_csv_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.csv");
    write_results(&path);
    let csv = csv_rows(&path);
    let rows = study::read_rows(&path).unwrap();
    let figs = brainscale::study::figures::figure_set(&rows);
    let names: Vec<&str> = figs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "r_vs_data",
            "r_vs_shape",
            "r_per_layer",
            "precision",
            "loss_vs_flops"
        ]
    );
    let fig = |n: &str| figs.iter().find(|f| f.name == n).unwrap();

    // r vs D: one line per model (fp32), ordered by N; points = CSV rows (seeds averaged).
    let p = &fig("r_vs_data").panels[0];
    let order: Vec<&str> = p
        .series
        .iter()
        .map(|s| s.label.split(' ').next().unwrap())
        .collect();
    assert_eq!(order, ["w32", "l1", "m64", "h4", "l4", "w128"]);
    for s in &p.series {
        let m = s.label.split(' ').next().unwrap();
        let want: Vec<(f64, f64)> = TOKENS
            .iter()
            .map(|&t| {
                (
                    t,
                    mean_of(&csv, "encoding_r", |r| {
                        r["model"] == m && r["precision"] == "fp32" && num(r, "tokens") == t
                    }),
                )
            })
            .collect();
        assert_eq!(s.points, want, "{m}");
    }
    // The two seeds of m64 at D = 1e5 are averaged.
    let m64 = p
        .series
        .iter()
        .find(|s| s.label.starts_with("m64"))
        .unwrap();
    assert!((m64.points[1].1 - (enc_r(64, 2, 2, 1e5, "fp32") + 0.002)).abs() < 1e-12);

    // r vs width / depth / heads: the families that vary one dimension, one line per D.
    let f = fig("r_vs_shape");
    assert_eq!(f.panels.len(), 3);
    for (panel, (attr, models, xs)) in f.panels.iter().zip([
        (
            "d_model",
            ["w32", "m64", "w128"].as_slice(),
            [32.0, 64.0, 128.0].as_slice(),
        ),
        (
            "n_layer",
            ["l1", "m64", "l4"].as_slice(),
            [1.0, 2.0, 4.0].as_slice(),
        ),
        ("n_head", ["m64", "h4"].as_slice(), [2.0, 4.0].as_slice()),
    ]) {
        assert!(panel.x_label.contains(attr), "{}", panel.x_label);
        assert_eq!(panel.series.len(), TOKENS.len());
        for (s, &t) in panel.series.iter().zip(TOKENS) {
            let want: Vec<(f64, f64)> = models
                .iter()
                .zip(xs)
                .map(|(m, &x)| {
                    (
                        x,
                        mean_of(&csv, "encoding_r", |r| {
                            r["model"] == *m && r["precision"] == "fp32" && num(r, "tokens") == t
                        }),
                    )
                })
                .collect();
            assert_eq!(s.points, want, "{attr} at D {t}");
        }
    }

    // Per-layer r at the largest D: layers 0..=L of each model.
    let p = &fig("r_per_layer").panels[0];
    for s in &p.series {
        let m = s.label.split(' ').next().unwrap();
        let row = csv
            .iter()
            .find(|r| r["model"] == m && r["precision"] == "fp32" && num(r, "tokens") == 1e6)
            .unwrap();
        let l = num(row, "n_layer") as usize;
        let want: Vec<(f64, f64)> = (0..=l)
            .map(|i| (i as f64, num(row, &format!("r_layer:{i}"))))
            .collect();
        assert_eq!(s.points, want, "{m}");
    }

    // Precision: pretraining time and r per N, one line per precision, at D = 1e6.
    let f = fig("precision");
    for (panel, col) in f.panels.iter().zip(["pretrain_s", "encoding_r"]) {
        let labels: Vec<&str> = panel.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["bf16", "fp32"]);
        for s in &panel.series {
            let mut want: Vec<(f64, f64)> = csv
                .iter()
                .filter(|r| r["precision"] == s.label && num(r, "tokens") == 1e6)
                .map(|r| (num(r, "n_params"), num(r, col)))
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(s.points, want, "{col} {}", s.label);
        }
    }

    // Loss vs FLOPs: each model's (C, loss) rows, and the frontier of the generating law.
    let p = &fig("loss_vs_flops").panels[0];
    let (fr, models): (Vec<_>, Vec<_>) = p.series.iter().partition(|s| s.style == Style::Dashed);
    assert_eq!(models.len(), MODELS.len());
    for s in &models {
        let m = s.label.split(' ').next().unwrap();
        let mut want: Vec<(f64, f64)> = csv
            .iter()
            .filter(|r| r["model"] == m && r["precision"] == "fp32")
            .map(|r| (num(r, "flops"), num(r, "eval_loss")))
            .collect();
        want.dedup_by(|a, b| a.0 == b.0); // m64's two seeds have equal losses
        assert_eq!(s.points, want, "{m}");
    }
    assert_eq!(fr.len(), 1);
    for &(c, l) in &fr[0].points {
        let (n, d) = LAW.optimal(c);
        let want = LAW.predict(n, d);
        assert!(
            (l - want).abs() < 2e-3 * want,
            "frontier at C {c:e}: {l} vs {want}"
        );
    }

    // Drawn: one PNG per figure, of the renderer's size.
    let out = dir.path().join("figs");
    let files = brainscale::study::figures::draw_figure_set(&path, &out).unwrap();
    assert_eq!(files.len(), 5);
    for f in files {
        let img = image::open(&f).unwrap();
        assert_eq!((img.width(), img.height()), (1300, 620), "{}", f.display());
    }
}

#[test]
fn study_figure_errors_name_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("results.csv");
    write_results(&p);
    let text = std::fs::read_to_string(&p).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut cells: Vec<&str> = lines[1].split(',').collect();
    cells[11] = "ten thousand"; // the tokens column
    lines[1] = cells.join(",");
    std::fs::write(&p, lines.join("\n")).unwrap();
    let e = format!("{:#}", study::read_rows(&p).unwrap_err());
    assert!(
        e.contains("line 2") && e.contains("column tokens") && e.contains("ten thousand"),
        "{e}"
    );
    std::fs::write(&p, "model,tokens\nx,1\n").unwrap();
    let e = format!("{:#}", study::read_rows(&p).unwrap_err());
    assert!(e.contains("no column 'n_layer'"), "{e}");
}

/// The tiny dataset through features (ground truth) → align → encode → maps, in `work`.
fn tiny_maps(
    work: &Path,
) -> (
    brainscale::fmri::dataset::Dataset,
    Vec<brainscale::fmri::maps::SummaryRow>,
) {
    use brainscale::fmri::align::{AlignOptions, Lag};
    use brainscale::fmri::features::{ExtractorKind, FeaturesOptions};
    let ds = brainscale::fmri::dataset::Dataset::open(common::tiny()).unwrap();
    let fo = FeaturesOptions {
        extractor: ExtractorKind::Groundtruth,
        pca: None,
        fps: None,
        size: None,
        gpt: None,
        decode: Default::default(),
    };
    brainscale::fmri::features::run_stage(&ds, work, &fo).unwrap();
    let ao = AlignOptions {
        lag: Lag::Hrf,
        max_mismatch_s: None,
    };
    brainscale::fmri::align::align_dataset(&ds, work, "groundtruth", &ao).unwrap();
    let split = brainscale::fmri::encode::SplitPlan::default();
    brainscale::fmri::encode::encode_dataset(
        &ds,
        work,
        "groundtruth",
        &[],
        &split,
        &Default::default(),
    )
    .unwrap();
    let rows = brainscale::fmri::demo::maps_dataset(&ds, work, "groundtruth", &[]).unwrap();
    (ds, rows)
}

#[test]
fn stat_map_states_the_r_map() {
    use brainscale::fmri::dataset::nifti_io;
    let work = tempfile::tempdir().unwrap();
    let (ds, rows) = tiny_maps(work.path());
    let s = &ds.subjects[0];
    let row = rows.iter().find(|r| r.subject == s.id).unwrap();
    let dir = work.path().join(format!("maps/groundtruth/sub-{}", s.id));
    let (h, rvol) = nifti_io::read_f32(&dir.join("r.nii.gz")).unwrap();
    let (_, mask) = nifti_io::Mask::read(s.mask.as_ref().unwrap()).unwrap();
    let res = brainscale::fmri::maps::VoxelResults::load(&brainscale::fmri::encode::encode_path(
        work.path(),
        "groundtruth",
        &s.id,
    ))
    .unwrap();
    let epi = brainscale::fmri::maps::mean_epi(&s.runs[0].bold, mask.dims)
        .unwrap()
        .unwrap();
    let thr = 0.25f32;
    let lay = brainscale::fmri::maps::write_subject_figure(
        &dir,
        row,
        &h,
        &mask,
        &res.test_r,
        Some((&epi, "mean EPI")),
        thr,
    )
    .unwrap();

    // Colour bar: ±max |r| over the mask (nilearn's default), threshold as asked.
    let inside: Vec<f32> = mask
        .linear
        .iter()
        .map(|&l| {
            let [nx, ny, _] = mask.dims;
            rvol[[l % nx, (l / nx) % ny, l / (nx * ny)].as_slice()]
        })
        .collect();
    let max_abs = inside.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_eq!(lay.vmax, max_abs);
    assert_eq!(lay.threshold, thr);
    assert_eq!(lay.ticks.first(), Some(&-max_abs));
    assert_eq!(lay.ticks.last(), Some(&max_abs));
    assert_eq!(lay.n_inside, mask.len());
    assert_eq!(
        lay.n_shown,
        inside
            .iter()
            .filter(|v| v.abs() >= thr && **v != 0.0)
            .count()
    );
    let lo = inside.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = inside.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(lay.value_range, (lo, hi));
    // Cuts through the peak, in mm from the affine.
    let p = lay.peak_voxel;
    assert_eq!(rvol[p.as_slice()].abs(), max_abs);
    let a = nifti_io::affine(&h);
    for r in 0..3 {
        let mm = a[r][0] * p[0] as f64 + a[r][1] * p[1] as f64 + a[r][2] * p[2] as f64 + a[r][3];
        assert!((lay.cut_mm[r] - mm).abs() < 1e-9);
    }
    for &(k, z) in &lay.slices {
        assert!((z - (a[2][2] * k as f64 + a[2][3])).abs() < 1e-9);
    }
    // The title states subject, features, mean r and test runs.
    for part in [
        format!("sub-{}", s.id),
        "groundtruth".into(),
        format!("mean r {:.3}", row.mean_r),
        format!("test runs {}", row.test_runs),
    ] {
        assert!(lay.title.contains(&part), "{} lacks {part}", lay.title);
    }
    // The PNG: the colour bar's top row has the colour of +vmax, its bottom that of −vmax.
    let img = image::open(dir.join("r_statmap.png")).unwrap().to_rgb8();
    let top = statmap::cold_hot(max_abs, max_abs, thr).unwrap();
    let bottom = statmap::cold_hot(-max_abs, max_abs, thr).unwrap();
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    assert!(
        count(top) >= 22 && count(bottom) >= 22,
        "colour-bar ends not drawn"
    );
    // The mean EPI is the time mean of run 1.
    let (_, bold) = nifti_io::read_f32(&s.runs[0].bold).unwrap();
    let t = bold.shape()[3];
    let v = (0..t)
        .map(|i| bold[[3, 4, 5, i].as_slice()] as f64)
        .sum::<f64>()
        / t as f64;
    assert!((epi[[3, 4, 5].as_slice()] as f64 - v).abs() < 1e-3 * v.abs().max(1.0));
}

/// The report embeds every subject's map and every study figure; with chromium installed, a
/// headless browser renders the page, its own check counts every image decoded, and a
/// screenshot shows the figures' colours.
#[test]
fn report_embeds_and_renders_every_figure() {
    use base64::Engine as _;
    let work = tempfile::tempdir().unwrap();
    let (ds, rows) = tiny_maps(work.path());
    brainscale::fmri::demo::maps_figures(
        &ds,
        work.path(),
        "groundtruth",
        &rows,
        &Default::default(),
    )
    .unwrap();
    let bench = work.path().join("bench/study");
    std::fs::create_dir_all(&bench).unwrap();
    write_results(&bench.join("results.csv"));
    let (ok, out, err) = common::brainscale(&["report", work.path().to_str().unwrap()]);
    assert!(ok, "{err}");
    let html_path = work.path().join("report.html");
    assert!(out.contains(html_path.to_str().unwrap()), "{out}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    // Self-contained: images only as data URIs, no external references.
    assert!(
        !html.contains("src=\"http") && !html.contains("<link"),
        "external reference"
    );
    let imgs: Vec<&str> = html.split("<img ").skip(1).collect();
    assert_eq!(
        imgs.len(),
        rows.len() + 5,
        "one map per subject + 5 study figures"
    );
    for i in &imgs {
        let b64 = i
            .split("data:image/png;base64,")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        image::load_from_memory(&png).expect("an embedded PNG");
    }
    for r in &rows {
        assert!(html.contains(&format!("<td>sub-{}</td>", r.subject)));
        assert!(html.contains(&format!("{:.3}", r.mean_r)));
    }
    assert!(html.contains("r_vs_data") || html.contains("Encoding r vs pretraining data"));

    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(chromium) = chromium else {
        eprintln!("NOTE: chromium not installed: the headless rendering check was skipped (apt-get install chromium)");
        return;
    };
    let url = format!("file://{}", html_path.display());
    let common_args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=20000",
    ];
    let dom = std::process::Command::new(chromium)
        .args(common_args)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    let n = imgs.len();
    assert!(
        dom.contains(&format!("data-images-loaded=\"{n}/{n}\"")),
        "chromium did not render all {n} images: {}",
        dom.split("data-images-loaded")
            .nth(1)
            .map(|s| &s[..20.min(s.len())])
            .unwrap_or("no marker")
    );
    let shot = work.path().join("report.png");
    let st = std::process::Command::new(chromium)
        .args(common_args)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1300,2400")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let img = image::open(&shot).unwrap().to_rgb8();
    // The maps' hot colours are on the page (red-yellow pixels: r high, b low).
    let hot = img.pixels().filter(|p| p.0[0] > 200 && p.0[2] < 60).count();
    assert!(
        hot > 500,
        "screenshot shows no map colours ({hot} hot pixels)"
    );
    if let Ok(keep) = std::env::var("BRAINSCALE_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    eprintln!(
        "chromium rendered {n}/{n} images; screenshot {}x{} with {hot} hot pixels",
        img.width(),
        img.height()
    );
}

/// `maps` thresholds at BH q < 0.05 when the encode results hold q-values (the figure names
/// the rule and the null), and at the fixed |r| otherwise or when asked.
#[test]
fn maps_threshold_by_q_when_present() {
    use brainscale::fmri::maps::{FigureOptions, MapThreshold, VoxelResults};
    use ndarray::array;
    let mut res = VoxelResults {
        test_r: array![0.3, 0.05, -0.2, 0.12],
        test_r2: array![0.0, 0.0, 0.0, 0.0],
        best_alpha: array![1.0, 1.0, 1.0, 1.0],
        ceiling: None,
        has_signal: None,
        test_runs: "06".into(),
        bands: None,
        p: Some(array![0.001, 0.3, 0.9, 0.01]),
        q: Some(array![0.004, 0.4, 0.9, 0.02]),
        fwe_p: Some(array![0.01, 1.0, 1.0, 0.3]),
        null: Some("1000 permutations of 10-TR blocks".into()),
        repeat_ceiling: None,
        normalised_r: None,
        bootstrap: None,
    };
    let rule = MapThreshold::choose(&FigureOptions::default(), &res);
    let (painted, level) = rule.apply(&res).unwrap();
    assert_eq!(painted.to_vec(), vec![0.3, 0.0, 0.0, 0.12]);
    assert_eq!(level, 0.0);
    assert_eq!(
        rule.describe(&res),
        "BH q < 0.05 (2 significant; 1000 permutations of 10-TR blocks)"
    );
    // A fixed r threshold when asked (q: None), or when there are no q-values.
    let fixed = FigureOptions {
        q: None,
        threshold: 0.2,
        background: None,
    };
    assert_eq!(MapThreshold::choose(&fixed, &res), MapThreshold::AbsR(0.2));
    res.q = None;
    let rule = MapThreshold::choose(&FigureOptions::default(), &res);
    assert_eq!(rule, MapThreshold::AbsR(0.1));
    assert_eq!(rule.describe(&res), "|r| ≥ 0.10");
}

/// Error bars: a point's bar is ±1 sample sd of its subject × seed values (the `r_mean:SUBJECT`
/// columns) for encoding r and of its seeds for per-layer r and loss; a point of one value has
/// none, and the notes say what the bars are only when there are some.
#[test]
fn study_figures_bars_over_subjects_and_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record([
        "model",
        "n_layer",
        "n_head",
        "d_model",
        "n_params",
        "tokens",
        "flops",
        "precision",
        "seed",
        "eval_loss",
        "encoding_r",
        "r_layer:0",
        "r_layer:1",
        "r_mean:01",
        "r_mean:02",
    ])
    .unwrap();
    // Model a at D 1e5: seeds 0 and 1, subjects 01 and 02 → r {0.1, 0.3, 0.2, 0.4}: mean 0.25,
    // sample sd sqrt(0.05 / 3). At D 1e6: one seed, one subject (02 left empty) → no bar.
    let rows: &[[&str; 15]] = &[
        [
            "a", "2", "2", "64", "1e5", "1e5", "6e10", "fp32", "0", "3.0", "0.2", "0.1", "0.2",
            "0.1", "0.3",
        ],
        [
            "a", "2", "2", "64", "1e5", "1e5", "6e10", "fp32", "1", "3.2", "0.3", "0.2", "0.4",
            "0.2", "0.4",
        ],
        [
            "a", "2", "2", "64", "1e5", "1e6", "6e11", "fp32", "0", "2.5", "0.5", "0.3", "0.5",
            "0.5", "",
        ],
    ];
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let rows = study::read_rows(&path).unwrap();
    assert_eq!(rows[2].subject_r.len(), 1);
    let figs = study::figure_set(&rows);
    let fig = |n: &str| figs.iter().find(|f| f.name == n).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;

    let f = fig("r_vs_data");
    let s = &f.panels[0].series[0];
    assert_eq!(s.points.len(), 2);
    assert!(close(s.points[0].1, 0.25) && s.points[1] == (1e6, 0.5));
    let sd = (0.05f64 / 3.0).sqrt();
    let (lo, hi) = s.errors[0].unwrap();
    assert!(close(lo, 0.25 - sd) && close(hi, 0.25 + sd), "{lo} {hi}");
    assert_eq!(s.errors[1], None, "one value: no bar");
    assert!(f.note.contains("±1 sd over subjects × seeds"), "{}", f.note);

    // Per-layer r at the D where the model ran (the largest: one seed): no bars, no bar note.
    let f = fig("r_per_layer");
    assert!(f.panels[0].series[0].errors.is_empty());
    assert!(!f.note.contains("bars"), "{}", f.note);

    // Loss: mean ± sd over the two seeds at C 6e10 (3.0, 3.2: sd 0.1414), none at 6e11.
    let f = fig("loss_vs_flops");
    let s = &f.panels[0].series[0];
    assert!(close(s.points[0].1, 3.1));
    let (lo, hi) = s.errors[0].unwrap();
    assert!(close(hi - lo, 2.0 * 0.02f64.sqrt()), "{lo} {hi}");
    assert_eq!(s.errors[1], None);
    assert!(f.note.contains("±1 sd over seeds"), "{}", f.note);

    // Without the per-subject columns the bars are over seeds (the rows' encoding_r).
    let mut no_subj = rows.clone();
    for r in &mut no_subj {
        r.subject_r.clear();
    }
    // (0.2, 0.3: sd 0.0707).
    let f = study::r_vs_data(&no_subj).unwrap();
    let (lo, hi) = f.panels[0].series[0].errors[0].unwrap();
    assert!(close(hi - lo, 2.0 * 0.005f64.sqrt()), "{lo} {hi}");

    // The bars draw.
    let out = dir.path().join("figs");
    let files = study::draw_figure_set(&path, &out).unwrap();
    assert!(files.iter().any(|f| f.ends_with("r_vs_data.png")));
}
