//! What `scaling fit` and `scaling validate` report: the structs saved as fit.json and
//! validate.json, and their human-readable text (fit.txt, validate.txt, and what the CLI prints).
use crate::study::scaling::{isoflop, parametric, Columns, Direction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub(crate) use crate::study::scaling::stats::interval;
pub use crate::study::scaling::stats::{sig, Interval};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParametricReport {
    pub fit: parametric::Fit,
    /// 95% bootstrap intervals of E, A, B, alpha, beta (empty without bootstrap).
    pub ci: BTreeMap<String, Interval>,
    /// N_opt ∝ C^a, D_opt ∝ C^b implied by the law: a = β/(α+β), b = α/(α+β).
    pub a: f64,
    pub b: f64,
    pub ci_a: Option<Interval>,
    pub ci_b: Option<Interval>,
    pub bootstrap_replicates: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsoFlopReport {
    #[serde(flatten)]
    pub fit: isoflop::IsoFlop,
    pub ci_a: Option<Interval>,
    pub ci_b: Option<Interval>,
    pub bootstrap_replicates: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BudgetReport {
    pub budget: f64,
    /// From the parametric law (C = K·N·D, K = `--c-per-nd`, default 6).
    pub n_opt: f64,
    pub d_opt: f64,
    /// The target (own units) predicted at (n_opt, d_opt).
    pub predicted: f64,
    pub ci_n_opt: Option<Interval>,
    pub ci_d_opt: Option<Interval>,
    /// From the iso-FLOP power laws, when they could be fitted.
    pub isoflop_n_opt: Option<f64>,
    pub isoflop_d_opt: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldoutRow {
    pub n: f64,
    pub d: f64,
    pub c: f64,
    pub observed: f64,
    pub predicted: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldoutReport {
    pub above: f64,
    pub fit_points: usize,
    pub rows: Vec<HoldoutRow>,
    /// Errors of the parametric prediction, in the target's units.
    pub rmse: f64,
    pub mean_abs_error: f64,
    /// Mean |pred − obs| / |obs| of the fitted loss-like quantity (L or 1 − r).
    pub mape_loss: f64,
    /// Held-out budgets with their own iso-FLOP minimum: (budget, observed N_opt, predicted).
    pub isoflop_n_opt: Vec<[f64; 3]>,
}

/// Everything `scaling fit` computes; saved as fit.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitReport {
    pub input: String,
    pub columns: Columns,
    pub fitted_quantity: String,
    pub points: usize,
    pub skipped_empty: usize,
    pub dropped_highest: usize,
    pub huber_delta: f64,
    pub seed: u64,
    pub isoflop: IsoFlopReport,
    pub parametric: ParametricReport,
    pub budgets: Vec<BudgetReport>,
    pub holdout: Option<HoldoutReport>,
    /// K of C = K·N·D used for the parametric allocation.
    #[serde(default = "six")]
    pub c_per_nd: f64,
    /// Whether the grid can answer (bracketing, identifiability, misfit vs noise); absent in
    /// fit.json files written before it existed.
    #[serde(default)]
    pub diagnostics: Option<crate::study::scaling::diagnostics::Diagnostics>,
}

fn six() -> f64 {
    6.0
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
    /// The law against trivial baselines with bootstrap intervals and a verdict.
    #[serde(default)]
    pub baselines: Option<crate::study::scaling::baselines::BaselineReport>,
}

fn ci_str(ci: Option<&Interval>) -> String {
    match ci {
        Some([lo, hi]) => format!("  [95% CI {} – {}]", sig(*lo), sig(*hi)),
        None => String::new(),
    }
}

/// The human-readable summary (printed and saved as fit.txt).
pub fn render_text(r: &FitReport) -> String {
    let mut s = String::new();
    let c = &r.columns;
    let _ = writeln!(
        s,
        "scaling fit of {} ({} rows; N = {}, D = {}, C = {})",
        r.input, r.points, c.n, c.d, c.c
    );
    if r.skipped_empty > 0 {
        let _ = writeln!(
            s,
            "  skipped {} rows with an empty '{}'",
            r.skipped_empty, c.target
        );
    }
    if r.dropped_highest > 0 {
        let _ = writeln!(
            s,
            "  dropped the {} rows with the highest loss",
            r.dropped_highest
        );
    }
    let _ = writeln!(
        s,
        "target: {} ({} is better); fitted quantity L = {}",
        c.target,
        match c.direction {
            Direction::Lower => "lower",
            Direction::Higher => "higher",
        },
        r.fitted_quantity
    );
    let p = &r.parametric;
    let l = &p.fit.law;
    let _ = writeln!(s, "\nparametric law  L(N, D) = E + A/N^alpha + B/D^beta   (Huber delta {}, {} starts, {} converged, objective {:.6e})",
        r.huber_delta, p.fit.starts, p.fit.starts_converged, p.fit.objective);
    for (name, v) in [
        ("E", l.e),
        ("A", l.a),
        ("B", l.b),
        ("alpha", l.alpha),
        ("beta", l.beta),
    ] {
        let _ = writeln!(s, "  {name:<6} = {}{}", sig(v), ci_str(p.ci.get(name)));
    }
    if c.direction == Direction::Higher {
        let _ = writeln!(
            s,
            "  ceiling of {} at infinite N and D: 1 - E = {}",
            c.target,
            sig(1.0 - l.e)
        );
    }
    let _ = writeln!(s, "  N_opt ∝ C^{}{}", sig(p.a), ci_str(p.ci_a.as_ref()));
    let _ = writeln!(s, "  D_opt ∝ C^{}{}", sig(p.b), ci_str(p.ci_b.as_ref()));
    if p.bootstrap_replicates > 0 {
        let _ = writeln!(
            s,
            "  ({} bootstrap resamples, seed {})",
            p.bootstrap_replicates, r.seed
        );
    }
    let i = &r.isoflop;
    let _ = writeln!(
        s,
        "\niso-FLOP profiles ({} budgets fitted, {} skipped)",
        i.fit.profiles.len(),
        i.fit.skipped.len()
    );
    for pr in &i.fit.profiles {
        let _ = writeln!(
            s,
            "  C = {:.3e}: {} runs, N_opt = {:.3e}, D_opt = {:.3e}, {} at optimum = {}{}",
            pr.budget,
            pr.runs,
            pr.n_opt,
            pr.d_opt,
            c.target,
            sig(c.direction.from_loss(pr.loss_opt)),
            if pr.inside_range {
                ""
            } else {
                "  (vertex outside the sampled N range: extrapolated)"
            }
        );
    }
    if i.fit.skipped.len() <= 8 {
        for sk in &i.fit.skipped {
            let _ = writeln!(
                s,
                "  C = {:.3e}: {} runs, skipped: {}",
                sk.budget, sk.runs, sk.reason
            );
        }
    } else {
        // Scattered budgets (not an iso-FLOP design) give many tiny groups: count by reason.
        let mut by: BTreeMap<&str, usize> = BTreeMap::new();
        for sk in &i.fit.skipped {
            *by.entry(sk.reason.as_str()).or_default() += 1;
        }
        for (reason, k) in by {
            let _ = writeln!(s, "  {k} budgets skipped: {reason}");
        }
    }
    match (i.fit.n_opt, i.fit.d_opt) {
        (Some(n), Some(d)) => {
            let _ = writeln!(
                s,
                "  N_opt = {:.3e} · C^{}{}",
                n.k,
                sig(n.exponent),
                ci_str(i.ci_a.as_ref())
            );
            let _ = writeln!(
                s,
                "  D_opt = {:.3e} · C^{}{}",
                d.k,
                sig(d.exponent),
                ci_str(i.ci_b.as_ref())
            );
        }
        _ => {
            let _ = writeln!(s, "  fewer than two usable budgets: no power law fitted");
        }
    }
    if !r.budgets.is_empty() {
        let _ = writeln!(
            s,
            "\ncompute-optimal allocation (parametric law, C = {}ND)",
            sig(r.c_per_nd)
        );
        for b in &r.budgets {
            let _ = writeln!(
                s,
                "  C = {:.3e}: N_opt = {:.3e}{}, D_opt = {:.3e}{}, predicted {} = {}",
                b.budget,
                b.n_opt,
                ci_str(b.ci_n_opt.as_ref()),
                b.d_opt,
                ci_str(b.ci_d_opt.as_ref()),
                c.target,
                sig(b.predicted)
            );
            if let (Some(n), Some(d)) = (b.isoflop_n_opt, b.isoflop_d_opt) {
                let _ = writeln!(
                    s,
                    "    iso-FLOP power laws: N_opt = {n:.3e}, D_opt = {d:.3e}"
                );
            }
        }
    }
    if let Some(h) = &r.holdout {
        let _ = writeln!(
            s,
            "\nhold-out: fitted on {} rows with C <= {:.3e}; predicting {} rows above",
            h.fit_points,
            h.above,
            h.rows.len()
        );
        let _ = writeln!(
            s,
            "  parametric: RMSE {} and mean |error| {} in {}; mean relative error of {} {:.2}%",
            sig(h.rmse),
            sig(h.mean_abs_error),
            c.target,
            r.fitted_quantity,
            100.0 * h.mape_loss
        );
        for [b, obs, pred] in &h.isoflop_n_opt {
            let _ = writeln!(
                s,
                "  iso-FLOP at C = {b:.3e}: observed N_opt {obs:.3e}, predicted {pred:.3e} (ratio {:.3})",
                pred / obs
            );
        }
    }
    if let Some(d) = &r.diagnostics {
        s += &crate::study::scaling::diagnostics::render(d);
    }
    s
}

pub fn render_validate_text(r: &ValidateReport) -> String {
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
    if let Some(b) = &r.baselines {
        s += &crate::study::scaling::baselines::render(b);
    }
    s
}
