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
use crate::study::scaling::plot;
use crate::study::scaling::report::{render_validate_text, Measured, Prediction, ValidateReport};
use crate::study::scaling::{
    isoflop, load_points, run_fit, Columns, Direction, FitConfig, FitReport, Point, Target,
};
use anyhow::{bail, Context, Result};

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
    let mut report = compare(a, &fit, &input, at, k, &fit_pts, &sweep)?;
    let opts = crate::study::scaling::parametric::FitOptions {
        huber_delta: a.huber_delta,
        ..Default::default()
    };
    report.baselines = Some(crate::study::scaling::baselines::compare(
        &fit_pts,
        &sweep,
        at,
        k,
        tol,
        a.isoflop_window,
        &opts,
        &fit.parametric.fit.law,
        a.bootstrap,
        a.seed,
    ));
    let text = render_validate_text(&report);
    crate::core::io::write_json(&out.join("validate.json"), &report)?;
    crate::core::io::write_bytes(&out.join("validate.txt"), text.as_bytes())?;
    let mut plots = Vec::new();
    if !a.no_plots {
        crate::core::plot::ensure_font()?;
        let f = out.join("check_5x.png");
        plot::draw_check(&f, &report, a.direction)
            .with_context(|| format!("drawing {}", f.display()))?;
        let g = out.join("allocation.png");
        plot::draw_allocation(&g, &report, &fit)
            .with_context(|| format!("drawing {}", g.display()))?;
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
        baselines: None,
    })
}
