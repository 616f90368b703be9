//! `brainscale scaling validate`: does a scaling law fitted on small budgets predict the
//! compute-optimal model at a larger one? (Fortin 2024's headline check for BIOT: laws fitted on
//! budgets up to C predicted the optimal N/D split at 5C.)
//!
//! Fit both methods ([`crate::study::scaling::run_fit`]) on the rows with C ≤ `--fit-upto` (within
//! `--budget-tol`), predict N_opt, D_opt and the loss at `--at` (default 5 × fit-upto), then
//! compare with the measured iso-FLOP sweep at that budget (its parabola vertex, and its best
//! run):
//! - `log_ratio_n` = ln(N_opt predicted / N_opt measured) (0 = exact; ±0.69 = off by 2×), the
//!   same for D;
//! - the measured loss at the predicted N_opt against the measured optimum: the sweep's parabola
//!   there vs its minimum (`excess`), and the run nearest to it vs the best run
//!   (`excess_nearest`): how much a user following the prediction loses;
//! - the parametric law's predicted loss at its optimum against the best measured loss.
//!
//! The parametric allocation uses C = K·N·D with K the geometric mean of C/(N·D) over the
//! fitted rows (6 for Chinchilla's C = 6ND; larger for BIOT's two-view objective and its
//! attention term), unless `--c-per-nd` gives it.
use crate::study::scaling::plot::{e, lin_range, log_range, render, sci, H};
use crate::study::scaling::{
    isoflop, load_points, run_fit, Columns, Direction, FitConfig, FitReport, Point, Target,
};
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What `scaling validate` checks and how (the command-line defaults are in `cli::study`).
#[derive(Debug, Clone)]
pub struct ValidateConfig {
    /// Results CSV(s) with the same header (e.g. a grid and its 5× sweep), taken together.
    pub results: Vec<PathBuf>,
    /// Fit on the rows whose budget C is at most this many FLOPs.
    pub fit_upto: f64,
    /// Budget of the measured validation sweep (default: 5 × --fit-upto).
    pub at: Option<f64>,
    /// Column holding the target (lower is better unless --direction higher).
    pub target_col: String,
    /// Whether lower (losses) or higher (correlations, fitted as 1 − value) is better.
    pub direction: Direction,
    /// Column holding the parameter count N.
    pub n_col: String,
    /// Column holding the training tokens D.
    pub d_col: String,
    /// Column holding the training compute C in FLOPs.
    pub c_col: String,
    /// Keep only rows where COLUMN equals VALUE (repeatable), e.g. --where grid=biosignal-cpu-eeg.
    pub filters: Vec<String>,
    /// Fit every iso-FLOP parabola (the fitted budgets' and the measured sweep's) to the K runs
    /// nearest in ln N to the budget's best run (default: all runs).
    pub isoflop_window: Option<usize>,
    /// K of C = K·N·D for the parametric allocation (default: estimated from the fitted rows).
    pub c_per_nd: Option<f64>,
    /// Bootstrap resamples for the intervals (0: none).
    pub bootstrap: usize,
    /// Seed of the bootstrap resampling.
    pub seed: u64,
    /// Runs whose budgets agree within this relative tolerance form one budget.
    pub budget_tol: f64,
    /// Huber delta on the log residuals of the parametric fit.
    pub huber_delta: f64,
    /// Output folder (default: validate-<fit-upto> beside the first results file).
    pub out: Option<PathBuf>,
    /// Do not draw PNG plots.
    pub no_plots: bool,
}

/// One method's prediction at the validation budget and how it fared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prediction {
    pub method: String,
    pub n_opt: f64,
    pub d_opt: f64,
    /// 95% bootstrap interval of N_opt (parametric) when computed.
    pub ci_n_opt: Option<[f64; 2]>,
    /// ln(predicted / measured) N_opt and D_opt.
    pub log_ratio_n: f64,
    pub log_ratio_d: f64,
    /// The sweep's parabola at the predicted N (target units); `extrapolated` when outside the
    /// sweep's N range.
    pub measured_at_prediction: f64,
    pub extrapolated: bool,
    /// The measured target of the sweep's run nearest (in ln N) to the prediction.
    pub nearest_run_n: f64,
    pub nearest_run_value: f64,
    /// Parabola at the prediction over the parabola's minimum (vertex inside the range, else
    /// the best run), minus 1: the loss a user following the prediction gives up.
    pub excess: f64,
    /// (nearest run's value − best run's value) / |best run's value|.
    pub excess_nearest: f64,
    /// The law's own predicted target at its optimum (parametric only).
    pub predicted_value: Option<f64>,
    /// (predicted_value − best measured) / |best measured|.
    pub predicted_value_error: Option<f64>,
}

/// The measured sweep at the validation budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub budget: f64,
    pub runs: usize,
    /// The parabola's vertex (None when the sweep has no minimum: see `profile_error`).
    pub vertex_n: Option<f64>,
    pub vertex_d: Option<f64>,
    pub vertex_value: Option<f64>,
    pub vertex_inside_range: Option<bool>,
    pub profile_error: Option<String>,
    /// Parabola coefficients in ln N (loss-like quantity).
    pub coef: Option<[f64; 3]>,
    pub best_n: f64,
    pub best_d: f64,
    pub best_value: f64,
    /// What the log-ratios compare with: "vertex" (inside the sampled range) or "best run".
    pub reference: String,
    pub n_ref: f64,
    pub d_ref: f64,
    /// (N, D, value) of every run of the sweep.
    pub points: Vec<[f64; 3]>,
}

/// Everything `scaling validate` computes (validate.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidateReport {
    pub inputs: Vec<String>,
    pub target: String,
    pub fit_upto: f64,
    pub at: f64,
    pub ratio: f64,
    pub fit_rows: usize,
    pub fit_budgets: Vec<f64>,
    pub c_per_nd: f64,
    pub iso_exponents: Option<[f64; 2]>,
    pub parametric_exponents: [f64; 2],
    pub measured: Measured,
    pub predictions: Vec<Prediction>,
}

/// Concatenates CSVs with identical headers into `dst`.
fn concat(files: &[PathBuf], dst: &Path) -> Result<()> {
    let mut header: Option<csv::StringRecord> = None;
    let mut rows = Vec::new();
    for f in files {
        let mut r = csv::Reader::from_path(f)
            .with_context(|| format!("opening results file {}", f.display()))?;
        let h = r
            .headers()
            .with_context(|| format!("reading the header of {}", f.display()))?
            .clone();
        match &header {
            None => header = Some(h),
            Some(h0) if *h0 != h => bail!(
                "{}: its columns differ from {}'s; validate takes results files with one header",
                f.display(),
                files[0].display()
            ),
            _ => {}
        }
        for rec in r.records() {
            rows.push(rec.with_context(|| format!("reading {}", f.display()))?);
        }
    }
    crate::core::io::write_atomic(dst, |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        w.write_record(header.as_ref().expect("at least one file"))?;
        for r in &rows {
            w.write_record(r)?;
        }
        w.flush()?;
        Ok(())
    })
}

/// Runs the validation; writes validate.json, validate.txt, the fit (fit/) and the plots.
pub fn run_validate(a: &ValidateConfig) -> Result<Validated> {
    if !(a.fit_upto > 0.0 && a.fit_upto.is_finite()) {
        bail!(
            "--fit-upto must be a positive number of FLOPs, got {}",
            a.fit_upto
        );
    }
    let at = a.at.unwrap_or(5.0 * a.fit_upto);
    let tol = a.budget_tol;
    if !(at > a.fit_upto * (1.0 + tol)) {
        bail!(
            "--at {at:e} must exceed --fit-upto {:e} by more than the budget tolerance",
            a.fit_upto
        );
    }
    let out = a.out.clone().unwrap_or_else(|| {
        a.results[0]
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("validate-{:e}", a.fit_upto))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let input = if a.results.len() == 1 {
        a.results[0].clone()
    } else {
        let p = out.join("combined.csv");
        concat(&a.results, &p)?;
        p
    };
    let cols = Columns {
        target: a.target_col.clone(),
        direction: a.direction,
        n: a.n_col.clone(),
        d: a.d_col.clone(),
        c: a.c_col.clone(),
    };
    let (points, _) = load_points(&input, &cols, &a.filters)?;
    let upto = a.fit_upto * (1.0 + tol);
    let fit_pts: Vec<&Point> = points.iter().filter(|p| p.c <= upto).collect();
    let sweep: Vec<&Point> = points
        .iter()
        .filter(|p| (p.c / at).ln().abs() <= (1.0 + tol).ln())
        .collect();
    if sweep.len() < 3 {
        bail!(
            "{}: {} rows at the validation budget {at:e} (±{tol}); a sweep needs at least 3 model sizes",
            input.display(),
            sweep.len()
        );
    }
    if fit_pts.is_empty() {
        bail!("{}: no row with C <= {:e}", input.display(), a.fit_upto);
    }
    let k = match a.c_per_nd {
        Some(k) if k > 0.0 && k.is_finite() => k,
        Some(k) => bail!("--c-per-nd must be positive, got {k}"),
        None => (fit_pts
            .iter()
            .map(|p| (p.c / (p.n * p.d)).ln())
            .sum::<f64>()
            / fit_pts.len() as f64)
            .exp(),
    };
    let fit_args = FitConfig {
        results: input.clone(),
        target: Target::EvalLoss,
        target_col: Some(a.target_col.clone()),
        direction: Some(a.direction),
        n_col: a.n_col.clone(),
        d_col: a.d_col.clone(),
        c_col: a.c_col.clone(),
        d_from_flops: false,
        filters: a.filters.clone(),
        drop_highest: 0,
        bootstrap: a.bootstrap,
        seed: a.seed,
        budget: vec![at],
        holdout_above: Some(upto),
        budget_tol: tol,
        c_per_nd: k,
        isoflop_window: a.isoflop_window,
        huber_delta: a.huber_delta,
        out: Some(out.join("fit")),
        no_plots: a.no_plots,
    };
    let fit = run_fit(&fit_args)?.report;
    let report = compare(a, &fit, &input, at, k, &fit_pts, &sweep)?;
    let text = render_text(&report);
    crate::core::io::write_json(&out.join("validate.json"), &report)?;
    crate::core::io::write_bytes(&out.join("validate.txt"), text.as_bytes())?;
    let mut plots = Vec::new();
    if !a.no_plots {
        crate::core::plot::ensure_font()?;
        let f = out.join("check_5x.png");
        draw_check(&f, &report, a.direction).with_context(|| format!("drawing {}", f.display()))?;
        let g = out.join("allocation.png");
        draw_allocation(&g, &report, &fit).with_context(|| format!("drawing {}", g.display()))?;
        plots = vec![f, g, out.join("fit")];
    }
    Ok(Validated {
        report,
        text,
        plots,
    })
}

/// A finished `scaling validate`: the report, its text (also in validate.txt) and the plots
/// drawn (check_5x.png, allocation.png, and the fit's folder), empty with `no_plots`.
#[derive(Debug, Clone)]
pub struct Validated {
    pub report: ValidateReport,
    pub text: String,
    pub plots: Vec<PathBuf>,
}

/// The comparison itself (no files): `fit` was made on `fit_pts`; `sweep` is measured at `at`.
pub fn compare(
    a: &ValidateConfig,
    fit: &FitReport,
    input: &Path,
    at: f64,
    k: f64,
    fit_pts: &[&Point],
    sweep: &[&Point],
) -> Result<ValidateReport> {
    let dir = a.direction;
    let runs: Vec<isoflop::Run> = sweep
        .iter()
        .map(|p| isoflop::Run {
            c: p.c,
            n: p.n,
            d: p.d,
            loss: p.loss,
        })
        .collect();
    let mut all = vec![(0..runs.len()).collect::<Vec<usize>>()];
    if let Some(k) = a.isoflop_window {
        all = isoflop::narrow_groups(&runs, &all, k);
    }
    let prof = isoflop::fit_profile(&runs, &all[0]);
    let best = sweep
        .iter()
        .min_by(|x, y| x.loss.total_cmp(&y.loss))
        .expect("sweep has rows");
    let (n_lo, n_hi) = sweep.iter().fold((f64::INFINITY, 0.0f64), |(l, h), p| {
        (l.min(p.n), h.max(p.n))
    });
    let (reference, n_ref, d_ref) = match &prof {
        Ok(p) if p.inside_range => ("vertex", p.n_opt, p.d_opt),
        _ => ("best run", best.n, best.d),
    };
    let measured = Measured {
        budget: at,
        runs: sweep.len(),
        vertex_n: prof.as_ref().ok().map(|p| p.n_opt),
        vertex_d: prof.as_ref().ok().map(|p| p.d_opt),
        vertex_value: prof.as_ref().ok().map(|p| dir.from_loss(p.loss_opt)),
        vertex_inside_range: prof.as_ref().ok().map(|p| p.inside_range),
        profile_error: prof.as_ref().err().map(|s| s.reason.clone()),
        coef: prof.as_ref().ok().map(|p| p.coef),
        best_n: best.n,
        best_d: best.d,
        best_value: best.value,
        reference: reference.into(),
        n_ref,
        d_ref,
        points: sweep.iter().map(|p| [p.n, p.d, p.value]).collect(),
    };
    let best_loss = best.loss;
    let assess = |method: &str, n: f64, d: f64, ci: Option<[f64; 2]>, pv: Option<f64>| {
        let x = n.ln();
        let at_pred_loss = match &prof {
            Ok(p) => p.coef[0] + p.coef[1] * x + p.coef[2] * x * x,
            // No parabola: fall back to the nearest run below.
            Err(_) => f64::NAN,
        };
        let nearest = sweep
            .iter()
            .min_by(|u, v| (u.n.ln() - x).abs().total_cmp(&(v.n.ln() - x).abs()))
            .expect("sweep has rows");
        let at_pred_loss = if at_pred_loss.is_finite() {
            at_pred_loss
        } else {
            nearest.loss
        };
        let rel = |l: f64| (l - best_loss) / best_loss.abs();
        // On the sweep's smooth curve: the parabola at the prediction vs its own minimum (the
        // vertex inside the sampled range; else the best run).
        let curve_min = match &prof {
            Ok(p) if p.inside_range => p.loss_opt,
            _ => best_loss,
        };
        Prediction {
            method: method.into(),
            n_opt: n,
            d_opt: d,
            ci_n_opt: ci,
            log_ratio_n: (n / n_ref).ln(),
            log_ratio_d: (d / d_ref).ln(),
            measured_at_prediction: dir.from_loss(at_pred_loss),
            extrapolated: !(n >= n_lo && n <= n_hi),
            nearest_run_n: nearest.n,
            nearest_run_value: nearest.value,
            excess: (at_pred_loss - curve_min) / curve_min.abs(),
            excess_nearest: rel(nearest.loss),
            predicted_value: pv,
            predicted_value_error: pv.map(|v| rel(dir.to_loss(v))),
        }
    };
    let mut predictions = Vec::new();
    if let (Some(pn), Some(pd)) = (fit.isoflop.fit.n_opt, fit.isoflop.fit.d_opt) {
        predictions.push(assess("iso-FLOP", pn.at(at), pd.at(at), None, None));
    }
    let b = &fit.budgets[0];
    predictions.push(assess(
        "parametric",
        b.n_opt,
        b.d_opt,
        b.ci_n_opt,
        Some(b.predicted),
    ));
    let mut budgets: Vec<f64> = fit.isoflop.fit.profiles.iter().map(|p| p.budget).collect();
    budgets.extend(fit.isoflop.fit.skipped.iter().map(|s| s.budget));
    budgets.sort_by(|x, y| x.total_cmp(y));
    Ok(ValidateReport {
        inputs: a.results.iter().map(|p| p.display().to_string()).collect(),
        target: format!("{} ({})", a.target_col, input.display()),
        fit_upto: a.fit_upto,
        at,
        ratio: at / a.fit_upto,
        fit_rows: fit_pts.len(),
        fit_budgets: budgets,
        c_per_nd: k,
        iso_exponents: fit
            .isoflop
            .fit
            .n_opt
            .zip(fit.isoflop.fit.d_opt)
            .map(|(n, d)| [n.exponent, d.exponent]),
        parametric_exponents: [fit.parametric.a, fit.parametric.b],
        measured,
        predictions,
    })
}

fn render_text(r: &ValidateReport) -> String {
    use crate::study::scaling::sig;
    let mut s = String::new();
    let m = &r.measured;
    let _ = writeln!(
        s,
        "validation of {}: fit on {} rows with C <= {} ({} budgets), predicted at C = {} ({}x), C = {}·N·D",
        r.target,
        r.fit_rows,
        sig(r.fit_upto),
        r.fit_budgets.len(),
        sig(r.at),
        sig(r.ratio),
        sig(r.c_per_nd)
    );
    if let Some([a, b]) = r.iso_exponents {
        let _ = writeln!(
            s,
            "  iso-FLOP:   N_opt ∝ C^{}, D_opt ∝ C^{}",
            sig(a),
            sig(b)
        );
    }
    let [a, b] = r.parametric_exponents;
    let _ = writeln!(
        s,
        "  parametric: N_opt ∝ C^{}, D_opt ∝ C^{}",
        sig(a),
        sig(b)
    );
    let _ = writeln!(
        s,
        "measured sweep at {}: {} runs; best run N = {}, D = {}, value {}",
        sig(m.budget),
        m.runs,
        sig(m.best_n),
        sig(m.best_d),
        sig(m.best_value)
    );
    match (&m.vertex_n, &m.profile_error) {
        (Some(n), _) => {
            let _ = writeln!(
                s,
                "  parabola vertex N = {}, D = {}, value {}{}",
                sig(*n),
                sig(m.vertex_d.unwrap_or(f64::NAN)),
                sig(m.vertex_value.unwrap_or(f64::NAN)),
                if m.vertex_inside_range == Some(true) {
                    ""
                } else {
                    " (outside the sampled N range)"
                }
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "  no parabola minimum: {e}");
        }
        _ => {}
    }
    let _ = writeln!(
        s,
        "  reference optimum: {} (N = {}, D = {})",
        m.reference,
        sig(m.n_ref),
        sig(m.d_ref)
    );
    let _ = writeln!(
        s,
        "\n{:<11} {:>10} {:>10} {:>11} {:>11} {:>12} {:>12} {:>12}",
        "method", "N_opt", "D_opt", "ln(N/N*)", "ln(D/D*)", "excess", "excess(run)", "pred. err"
    );
    for p in &r.predictions {
        let _ = writeln!(
            s,
            "{:<11} {:>10} {:>10} {:>11.3} {:>11.3} {:>11.2}% {:>11.2}% {:>12}{}",
            p.method,
            sig(p.n_opt),
            sig(p.d_opt),
            p.log_ratio_n,
            p.log_ratio_d,
            100.0 * p.excess,
            100.0 * p.excess_nearest,
            p.predicted_value_error
                .map_or("-".into(), |e| format!("{:.2}%", 100.0 * e)),
            if p.extrapolated {
                "  (outside the sweep's N range)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        s,
        "excess: the sweep's parabola at the predicted N_opt over its minimum; excess(run): the run nearest\n\
         to the predicted N_opt over the best run;\n\
         pred. err: the law's predicted loss at its optimum vs the best measured."
    );
    s
}

/// The sweep at the validation budget: runs, parabola, vertex, and each method's predicted N_opt.
fn draw_check(path: &Path, r: &ValidateReport, dir: Direction) -> Result<()> {
    let m = &r.measured;
    let xr = log_range(
        m.points
            .iter()
            .map(|p| p[0])
            .chain(r.predictions.iter().map(|p| p.n_opt)),
    );
    let yr = lin_range(
        m.points
            .iter()
            .map(|p| p[2])
            .chain(r.predictions.iter().filter_map(|p| p.predicted_value)),
    );
    render(path, |root| {
        let (main, foot) = root.split_vertically(H - 26);
        let mut ch = ChartBuilder::on(&main)
            .caption(
                format!(
                    "{}x check at C = {:.2e}: fitted on C <= {:.2e}",
                    crate::study::scaling::sig(r.ratio),
                    r.at,
                    r.fit_upto
                ),
                ("sans-serif", 24),
            )
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(xr.clone().log_scale(), yr.clone())
            .map_err(e)?;
        ch.configure_mesh()
            .x_desc("parameters N")
            .y_desc("measured target")
            .x_label_formatter(&sci)
            .light_line_style(RGBColor(238, 238, 238))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(e)?;
        ch.draw_series(
            m.points
                .iter()
                .map(|p| Circle::new((p[0], p[2]), 5, BLACK.filled())),
        )
        .map_err(e)?
        .label("runs at this budget")
        .legend(|(x, y)| Circle::new((x + 8, y), 5, BLACK.filled()));
        if let Some(c) = m.coef {
            let (lo, hi) = (xr.start.ln(), xr.end.ln());
            let curve: Vec<(f64, f64)> = (0..100)
                .map(|j| {
                    let x = lo + (hi - lo) * j as f64 / 99.0;
                    (x.exp(), dir.from_loss(c[0] + c[1] * x + c[2] * x * x))
                })
                .filter(|(_, y)| yr.contains(y))
                .collect();
            ch.draw_series(LineSeries::new(curve, BLACK.stroke_width(1)))
                .map_err(e)?
                .label("parabola in ln N")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        }
        if let (Some(n), Some(v)) = (m.vertex_n, m.vertex_value) {
            if yr.contains(&v) {
                ch.draw_series(std::iter::once(Cross::new(
                    (n, v),
                    9,
                    BLACK.stroke_width(3),
                )))
                .map_err(e)?
                .label("measured optimum (vertex)")
                .legend(|(x, y)| Cross::new((x + 8, y), 6, BLACK.stroke_width(2)));
            }
        }
        for (i, p) in r.predictions.iter().enumerate() {
            let col = if i == 0 && p.method == "iso-FLOP" {
                RGBColor(200, 50, 40)
            } else {
                RGBColor(33, 102, 172)
            };
            ch.draw_series(DashedLineSeries::new(
                vec![(p.n_opt, yr.start), (p.n_opt, yr.end)],
                8,
                5,
                col.stroke_width(2),
            ))
            .map_err(e)?
            .label(format!(
                "{} predicted N_opt (ln ratio {:+.2})",
                p.method, p.log_ratio_n
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2)));
            if let Some(v) = p.predicted_value {
                ch.draw_series(std::iter::once(TriangleMarker::new(
                    (p.n_opt, v),
                    8,
                    col.filled(),
                )))
                .map_err(e)?
                .label("parametric predicted loss")
                .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 6, col.filled()));
            }
        }
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
        foot.draw_text(
            "dashed: each method's N_opt extrapolated from the smaller budgets",
            &("sans-serif", 14).into_text_style(&foot),
            (80, 4),
        )
        .map_err(e)?;
        Ok(())
    })
}

/// N_opt and D_opt against C: the fitted budgets' iso-FLOP minima, both laws, and the measured
/// optimum at the validation budget.
fn draw_allocation(path: &Path, r: &ValidateReport, fit: &FitReport) -> Result<()> {
    let lo = fit
        .isoflop
        .fit
        .profiles
        .iter()
        .map(|p| p.budget)
        .fold(r.fit_upto, f64::min);
    let label = format!(
        "measured at {}x ({})",
        crate::study::scaling::sig(r.ratio),
        r.measured.reference
    );
    let measured = (r.at, (r.measured.n_ref, r.measured.d_ref), label.as_str());
    crate::study::scaling::plot::allocation_panels(
        path,
        fit,
        log_range([lo, r.at].into_iter()),
        &[],
        Some(measured),
    )
}
