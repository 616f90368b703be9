//! `scaling validate` against trivial baselines (issue 19, item 3): at the held-out budget C*,
//! does the parametric law pick the compute-optimal model better than
//! - **previous best**: the best measured N at the largest fitted budget (no law at all);
//! - **a = 0.5**: a line of slope 0.5 in (ln C, ln N) through the fitted budgets' iso-FLOP optima
//!   (Chinchilla's allocation, no fitted exponent);
//! - **iso-FLOP line**: the fitted optima extrapolated on their own least-squares line?
//!
//! Each method is scored by ln(N_pred / N*) against the measured optimum N* at C* (the sweep's
//! parabola vertex when inside its N range, else its best size) and by the loss excess of the
//! measured size nearest to N_pred over the best measured size. Intervals come from a bootstrap
//! over cells: a cell with several seeds resamples its seeds; a cell with one row gets its
//! loss multiplied by exp(σz), σ the cell noise of [`diagnostics::noise`] over all rows (a parametric
//! bootstrap: conservative, its noise adds to the recorded one). Every method, the law's refit
//! and the measured optimum are recomputed in each replicate.
//!
//! The verdict says "the law beats X" only when the 95% intervals of |ln(N_pred / N*)|
//! separate (the law's upper end below X's lower end); "X beats the law" in the mirror case;
//! "not distinguishable" otherwise.
use crate::study::scaling::diagnostics;
use crate::study::scaling::isoflop::{self, Run};
use crate::study::scaling::parametric::{self, FitOptions, Law, Obs};
use crate::study::scaling::stats::{interval, sig, Interval};
use crate::study::scaling::Point;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The methods compared, in report order (the law first).
pub const METHODS: [&str; 4] = ["law", "previous best", "a = 0.5", "iso-FLOP line"];

/// One method's score at C*.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Score {
    pub method: String,
    /// Its N_opt at C* on the recorded data (None when it cannot be formed).
    pub n_pred: Option<f64>,
    /// ln(N_pred / N*) on the recorded data.
    pub log_ratio: Option<f64>,
    /// 95% bootstrap interval of ln(N_pred / N*) and of its absolute value.
    pub ci_log_ratio: Option<Interval>,
    pub ci_abs_log_ratio: Option<Interval>,
    /// (loss of the measured size nearest N_pred − best measured loss) / best, on the data.
    pub excess: Option<f64>,
    pub ci_excess: Option<Interval>,
}

/// The law against one baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub baseline: String,
    /// "law beats baseline", "baseline beats law" or "not distinguishable".
    pub outcome: String,
    /// 95% interval of |lr_law| − |lr_baseline| over the replicates (paired, for reference).
    pub ci_paired_difference: Option<Interval>,
}

/// The comparison (validate.json's `baselines`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineReport {
    pub at: f64,
    /// The measured optimum N* at C* on the recorded data, and what it is.
    pub n_star: f64,
    pub reference: String,
    pub replicates: usize,
    pub noise_sd_log: Option<f64>,
    pub noise_source: Option<String>,
    pub scores: Vec<Score>,
    pub verdicts: Vec<Verdict>,
}

fn same_n(a: f64, b: f64) -> bool {
    (a / b).ln().abs() < 1e-6
}

/// Mean loss per distinct N, sorted by N.
fn curve(runs: &[Run]) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64, usize)> = Vec::new();
    for r in runs {
        match v.iter_mut().find(|e| same_n(e.0, r.n)) {
            Some(e) => {
                e.1 += r.loss;
                e.2 += 1;
            }
            None => v.push((r.n, r.loss, 1)),
        }
    }
    let mut c: Vec<(f64, f64)> = v.into_iter().map(|(n, l, k)| (n, l / k as f64)).collect();
    c.sort_by(|a, b| a.0.total_cmp(&b.0));
    c
}

fn best(c: &[(f64, f64)]) -> (f64, f64) {
    *c.iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("non-empty curve")
}

/// The measured optimum of a sweep: its parabola's vertex when inside the N range, else the
/// best size. Returns (N*, "vertex" | "best run").
fn optimum(sweep: &[Run], window: Option<usize>) -> (f64, &'static str) {
    let mut g = vec![(0..sweep.len()).collect::<Vec<_>>()];
    if let Some(k) = window {
        g = isoflop::narrow_groups(sweep, &g, k);
    }
    match isoflop::fit_profile(sweep, &g[0]) {
        Ok(p) if p.inside_range => (p.n_opt, "vertex"),
        _ => (best(&curve(sweep)).0, "best run"),
    }
}

/// One replicate's N_pred per method (same order as [`METHODS`]), N* and the sweep's curve.
struct Replicate {
    preds: [Option<f64>; 4],
    n_star: f64,
    reference: &'static str,
    sweep: Vec<(f64, f64)>,
}

struct Inputs<'a> {
    fit: &'a [Run],
    sweep: &'a [Run],
    at: f64,
    k: f64,
    tol: f64,
    window: Option<usize>,
    opts: &'a FitOptions,
    start: &'a Law,
}

fn evaluate(x: &Inputs, fit: &[Run], sweep: &[Run], law: Law) -> Replicate {
    let mut groups = isoflop::group_by_budget(fit, x.tol);
    let largest = groups.last().cloned().unwrap_or_default();
    if let Some(k) = x.window {
        groups = isoflop::narrow_groups(fit, &groups, k);
    }
    let optima: Vec<(f64, f64)> = groups
        .iter()
        .filter_map(|g| isoflop::fit_profile(fit, g).ok())
        .map(|p| (p.budget.ln(), p.n_opt.ln()))
        .collect();
    let prev = (!largest.is_empty()).then(|| {
        let runs: Vec<Run> = largest.iter().map(|&i| fit[i]).collect();
        best(&curve(&runs)).0
    });
    let lc = x.at.ln();
    let half = (!optima.is_empty()).then(|| {
        let icpt = optima.iter().map(|(c, n)| n - 0.5 * c).sum::<f64>() / optima.len() as f64;
        (icpt + 0.5 * lc).exp()
    });
    let line = (optima.len() >= 2)
        .then(|| {
            let (c, n): (Vec<f64>, Vec<f64>) = optima.iter().copied().unzip();
            isoflop::polyfit(&c, &n, 1).map(|p| (p[0] + p[1] * lc).exp())
        })
        .flatten();
    let (n_star, reference) = optimum(sweep, x.window);
    Replicate {
        preds: [Some(law.optimal_k(x.at, x.k).0), prev, half, line],
        n_star,
        reference,
        sweep: curve(sweep),
    }
}

/// Excess loss of the measured size nearest (in ln N) to `n` over the best measured size.
fn excess(sweep: &[(f64, f64)], n: f64) -> f64 {
    let (_, lb) = best(sweep);
    let near = sweep
        .iter()
        .min_by(|a, b| (a.0 / n).ln().abs().total_cmp(&(b.0 / n).ln().abs()))
        .expect("non-empty sweep");
    (near.1 - lb) / lb
}

/// Cells keyed by (budget group, N): each a list of row indices.
fn cells(runs: &[Run], tol: f64) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for g in isoflop::group_by_budget(runs, tol) {
        let mut local: Vec<Vec<usize>> = Vec::new();
        for i in g {
            match local.iter_mut().find(|c| same_n(runs[c[0]].n, runs[i].n)) {
                Some(c) => c.push(i),
                None => local.push(vec![i]),
            }
        }
        out.extend(local);
    }
    out
}

fn perturb(runs: &[Run], cells: &[Vec<usize>], sigma: f64, rng: &mut ChaCha8Rng) -> Vec<Run> {
    let z = Normal::new(0.0, 1.0).expect("unit normal");
    let mut out = Vec::with_capacity(runs.len());
    for c in cells {
        if c.len() > 1 {
            for _ in 0..c.len() {
                out.push(runs[c[rng.gen_range(0..c.len())]]);
            }
        } else {
            let mut r = runs[c[0]];
            r.loss *= (sigma * z.sample(rng)).exp();
            out.push(r);
        }
    }
    out
}

fn to_runs(p: &[&Point]) -> Vec<Run> {
    p.iter()
        .map(|p| Run {
            c: p.c,
            n: p.n,
            d: p.d,
            loss: p.loss,
        })
        .collect()
}

fn obs(r: &[Run]) -> Vec<Obs> {
    r.iter()
        .map(|r| Obs {
            n: r.n,
            d: r.d,
            loss: r.loss,
        })
        .collect()
}

/// Scores the law `start` (fitted on `fit_pts`) and the three baselines at `at` against the
/// measured `sweep`, with `replicates` bootstrap replicates seeded by `seed`.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    fit_pts: &[&Point],
    sweep_pts: &[&Point],
    at: f64,
    k: f64,
    tol: f64,
    window: Option<usize>,
    opts: &FitOptions,
    start: &Law,
    replicates: usize,
    seed: u64,
) -> BaselineReport {
    let (fit, sweep) = (to_runs(fit_pts), to_runs(sweep_pts));
    let x = Inputs {
        fit: &fit,
        sweep: &sweep,
        at,
        k,
        tol,
        window,
        opts,
        start,
    };
    // The noise is estimated on every row, the sweep's too: it is not what is validated, and
    // one more budget lets more models' learning curves (≥ 4 budgets) enter it.
    let all: Vec<Run> = fit.iter().chain(&sweep).copied().collect();
    let noise = diagnostics::noise(&all, &isoflop::group_by_budget(&all, tol));
    let sigma = noise.as_ref().map_or(0.0, |n| n.sd_log);
    let base = evaluate(&x, &fit, &sweep, *start);
    let (fit_cells, sweep_cells) = (cells(&fit, tol), cells(&sweep, tol));
    let reps: Vec<Replicate> = (0..replicates)
        .into_par_iter()
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xBA5E_11E5);
            rng.set_stream(i as u64 + 1);
            let f = perturb(x.fit, &fit_cells, sigma, &mut rng);
            let s = perturb(x.sweep, &sweep_cells, sigma, &mut rng);
            let law = parametric::refit(&obs(&f), x.opts, x.start);
            evaluate(&x, &f, &s, law)
        })
        .collect();
    let lr = |r: &Replicate, m: usize| r.preds[m].map(|n| (n / r.n_star).ln());
    let ci_of = |v: Vec<f64>| -> Option<Interval> {
        let v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
        (v.len() >= 2).then(|| interval(&v))
    };
    let scores: Vec<Score> = (0..4)
        .map(|m| Score {
            method: METHODS[m].into(),
            n_pred: base.preds[m],
            log_ratio: lr(&base, m),
            ci_log_ratio: ci_of(reps.iter().filter_map(|r| lr(r, m)).collect()),
            ci_abs_log_ratio: ci_of(reps.iter().filter_map(|r| lr(r, m).map(f64::abs)).collect()),
            excess: base.preds[m].map(|n| excess(&base.sweep, n)),
            ci_excess: ci_of(
                reps.iter()
                    .filter_map(|r| r.preds[m].map(|n| excess(&r.sweep, n)))
                    .collect(),
            ),
        })
        .collect();
    let verdicts = (1..4)
        .map(|m| {
            let outcome = match (scores[0].ci_abs_log_ratio, scores[m].ci_abs_log_ratio) {
                (Some([_, law_hi]), Some([b_lo, _])) if law_hi < b_lo => "law beats baseline",
                (Some([law_lo, _]), Some([_, b_hi])) if b_hi < law_lo => "baseline beats law",
                (Some(_), Some(_)) => "not distinguishable",
                _ => "no interval (bootstrap off or baseline not formed)",
            };
            Verdict {
                baseline: METHODS[m].into(),
                outcome: outcome.into(),
                ci_paired_difference: ci_of(
                    reps.iter()
                        .filter_map(|r| Some(lr(r, 0)?.abs() - lr(r, m)?.abs()))
                        .collect(),
                ),
            }
        })
        .collect();
    BaselineReport {
        at,
        n_star: base.n_star,
        reference: base.reference.into(),
        replicates,
        noise_sd_log: noise.as_ref().map(|n| n.sd_log),
        noise_source: noise.map(|n| n.source),
        scores,
        verdicts,
    }
}

fn ci(c: Option<&Interval>, pct: bool) -> String {
    match c {
        Some([l, h]) if pct => format!("[{:.2}%, {:.2}%]", 100.0 * l, 100.0 * h),
        Some([l, h]) => format!("[{l:.3}, {h:.3}]"),
        None => "-".into(),
    }
}

/// The comparison as text (appended to validate.txt).
pub fn render(b: &BaselineReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nthe law against trivial baselines at C = {} (N* = {}, the sweep's {}; {} bootstrap replicates, cell noise {}):",
        sig(b.at),
        sig(b.n_star),
        b.reference,
        b.replicates,
        match (&b.noise_sd_log, &b.noise_source) {
            (Some(v), Some(src)) => format!("{:.2}% from {src}", 100.0 * v),
            _ => "unknown".into(),
        }
    );
    let _ = writeln!(
        s,
        "{:<14} {:>10} {:>9} {:>17} {:>17} {:>9} {:>19}",
        "method", "N_opt", "ln(N/N*)", "95% CI", "95% CI |ln|", "excess", "95% CI excess"
    );
    for sc in &b.scores {
        let _ = writeln!(
            s,
            "{:<14} {:>10} {:>9} {:>17} {:>17} {:>9} {:>19}",
            sc.method,
            sc.n_pred.map_or("-".into(), sig),
            sc.log_ratio.map_or("-".into(), |v| format!("{v:.3}")),
            ci(sc.ci_log_ratio.as_ref(), false),
            ci(sc.ci_abs_log_ratio.as_ref(), false),
            sc.excess
                .map_or("-".into(), |v| format!("{:.2}%", 100.0 * v)),
            ci(sc.ci_excess.as_ref(), true),
        );
    }
    let _ = writeln!(s, "verdict (on |ln(N_opt/N*)|, intervals must separate):");
    for v in &b.verdicts {
        let said = match v.outcome.as_str() {
            "law beats baseline" => format!("the law beats baseline '{}'", v.baseline),
            "baseline beats law" => format!("baseline '{}' beats the law", v.baseline),
            "not distinguishable" => format!(
                "the law and baseline '{}' are not distinguishable",
                v.baseline
            ),
            o => format!("baseline '{}': {o}", v.baseline),
        };
        let _ = writeln!(
            s,
            "  {said} (paired |ln| difference {})",
            ci(v.ci_paired_difference.as_ref(), false)
        );
    }
    s
}
