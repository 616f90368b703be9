//! When a grid cannot answer: the diagnostics `scaling fit` adds to its printout and fit.json.
//!
//! - **Bracketing** per budget: does the iso-FLOP minimum lie inside the sampled N range, with
//!   the best run away from the ends? Else which side of the ladder to extend (Hoffmann et al.
//!   2022 read N_opt off each budget's minimum: an unbracketed one is an extrapolation).
//! - **Identifiability** of L(N, D) = E + A/N^α + B/D^β: each parameter's bootstrap interval and
//!   the share of resamples at a bound (E ≈ 0, a term negligible over the data, α or β ≈ 0 or
//!   ≥ 5). When E is pinned at 0 the law is refitted with E = 0 (profiled out) and reported too.
//! - **Misfit**: the log-residual RMS against the cell noise — the pooled within-cell sd of
//!   ln L over seeds when cells have several seeds, else the residual sd of each model's
//!   learning curve across budgets (quadratic in ln C) — and each model's mean residual
//!   (systematic when beyond 2 standard errors).
//! - **The allocation exponent** a = β/(α+β) (N_opt ∝ C^a) with its interval: what a user acts on.
use crate::study::scaling::isoflop::{self, Run};
use crate::study::scaling::parametric::{self, FitOptions, Law, Obs};
use crate::study::scaling::stats::{interval, sig, Interval};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// E below this share of the smallest observed loss counts as pinned at its bound 0.
pub const E_BOUND_REL: f64 = 1e-3;
/// A term A/N^α (or B/D^β) below this share of the smallest loss over the whole data range
/// counts as negligible (the parameter is at a bound: the data cannot see it).
pub const TERM_BOUND_REL: f64 = 1e-3;
/// Exponents at or above this are treated as degenerate (a step, not a power law).
pub const EXPONENT_MAX: f64 = 5.0;
/// Exponents at or below this are treated as zero (no dependence).
pub const EXPONENT_MIN: f64 = 1e-3;

/// One budget's iso-FLOP sweep: is its minimum inside the sampled N range?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bracket {
    pub budget: f64,
    pub runs: usize,
    /// Distinct model sizes.
    pub sizes: usize,
    pub n_min: f64,
    pub n_max: f64,
    /// The size with the lowest mean loss (over seeds).
    pub best_n: f64,
    /// The parabola's vertex when it has a minimum.
    pub vertex_n: Option<f64>,
    pub bracketed: bool,
    /// "smaller", "larger" or "both" (no minimum with the best run inside): where to add sizes.
    pub extend: Option<String>,
    pub reason: String,
}

/// One parameter of the law with its bootstrap evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub value: f64,
    pub ci: Option<Interval>,
    /// Share of bootstrap resamples whose value is at a bound (see the module doc).
    pub share_at_bound: Option<f64>,
    /// The point estimate itself is at a bound.
    pub at_bound: bool,
}

/// The cell noise the fits are judged against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Noise {
    /// "seeds" (pooled within-cell sd of ln L), else (one seed per cell) "learning-curve
    /// residuals" or "parabola residuals".
    pub source: String,
    /// sd of ln L (≈ relative sd of L).
    pub sd_log: f64,
    /// Degrees of freedom behind it.
    pub df: usize,
    /// Cells with at least two seeds.
    pub replicated_cells: usize,
}

/// One model size's mean log residual ln(observed / law) over its rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelResidual {
    pub n: f64,
    pub rows: usize,
    pub mean_log_residual: f64,
    /// |mean| > 2 · noise / √rows.
    pub systematic: bool,
}

/// The law refitted with E fixed at 0 (reported when E is pinned).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profiled {
    pub law: Law,
    pub ci_alpha: Option<Interval>,
    pub ci_beta: Option<Interval>,
    pub a: f64,
    pub ci_a: Option<Interval>,
    pub residual_rms: f64,
}

/// One cell (budget, model) over its seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellSummary {
    pub budget: f64,
    pub n: f64,
    pub seeds: usize,
    /// Mean and sample sd (0 for one seed) of the fitted loss-like quantity.
    pub mean: f64,
    pub sd: f64,
}

/// Cells aggregated over their seeds (rows sharing a budget group and N).
pub fn cells(runs: &[Run], groups: &[Vec<usize>]) -> Vec<CellSummary> {
    let mut out = Vec::new();
    for g in groups.iter().filter(|g| !g.is_empty()) {
        let budget = (g.iter().map(|&i| runs[i].c.ln()).sum::<f64>() / g.len() as f64).exp();
        let mut seen: Vec<(f64, Vec<f64>)> = Vec::new();
        for &i in g {
            match seen.iter_mut().find(|(n, _)| same_n(*n, runs[i].n)) {
                Some(e) => e.1.push(runs[i].loss),
                None => seen.push((runs[i].n, vec![runs[i].loss])),
            }
        }
        seen.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (n, v) in seen {
            let k = v.len() as f64;
            let mean = v.iter().sum::<f64>() / k;
            let sd = if v.len() > 1 {
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt()
            } else {
                0.0
            };
            out.push(CellSummary {
                budget,
                n,
                seeds: v.len(),
                mean,
                sd,
            });
        }
    }
    out
}

/// Everything [`diagnose`] finds (fit.json's `diagnostics`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Every cell as mean ± sd over its seeds (the fits themselves use every seed's row).
    pub cells: Vec<CellSummary>,
    pub brackets: Vec<Bracket>,
    pub unbracketed: usize,
    pub params: Vec<Param>,
    /// E at its bound 0 in the point estimate or in at least half the resamples.
    pub e_pinned: bool,
    /// E's 95% interval reaches its bound (≥ 2.5% of resamples there): E is not identified
    /// away from 0, so the law is also reported with E = 0.
    pub e_reaches_bound: bool,
    pub profiled: Option<Profiled>,
    /// RMS of ln(observed / law) over the fitted rows.
    pub residual_rms: f64,
    pub noise: Option<Noise>,
    /// residual_rms / noise.sd_log.
    pub misfit_ratio: Option<f64>,
    pub models: Vec<ModelResidual>,
    /// N_opt ∝ C^a of the parametric law, with its bootstrap interval.
    pub a: f64,
    pub ci_a: Option<Interval>,
    /// The iso-FLOP method's exponent when it has one.
    pub isoflop_a: Option<f64>,
    pub isoflop_ci_a: Option<Interval>,
}

fn same_n(a: f64, b: f64) -> bool {
    (a / b).ln().abs() < 1e-6
}

/// Mean loss per distinct N of one group, sorted by N: (N, mean loss, rows).
fn by_size(runs: &[Run], group: &[usize]) -> Vec<(f64, f64, usize)> {
    let mut v: Vec<(f64, f64, usize)> = Vec::new();
    for &i in group {
        match v.iter_mut().find(|(n, _, _)| same_n(*n, runs[i].n)) {
            Some(e) => {
                e.1 += runs[i].loss;
                e.2 += 1;
            }
            None => v.push((runs[i].n, runs[i].loss, 1)),
        }
    }
    for e in &mut v {
        e.1 /= e.2 as f64;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Bracketing of one budget group.
pub fn bracket(runs: &[Run], group: &[usize]) -> Bracket {
    let sizes = by_size(runs, group);
    let budget = (group.iter().map(|&i| runs[i].c.ln()).sum::<f64>() / group.len() as f64).exp();
    let (n_min, n_max) = (sizes[0].0, sizes[sizes.len() - 1].0);
    let ib = (0..sizes.len())
        .min_by(|&a, &b| sizes[a].1.total_cmp(&sizes[b].1))
        .expect("non-empty group");
    let best_n = sizes[ib].0;
    let edge = if sizes.len() < 2 {
        None
    } else if ib == 0 {
        Some("smaller")
    } else if ib == sizes.len() - 1 {
        Some("larger")
    } else {
        None
    };
    let prof = isoflop::fit_profile(runs, group);
    let vertex_n = prof.as_ref().ok().map(|p| p.n_opt);
    let (bracketed, extend, reason) = match (&prof, edge) {
        (Ok(p), None) if p.inside_range => {
            (true, None, "minimum inside the sampled N range".into())
        }
        (Ok(p), _) if p.n_opt < n_min => (
            false,
            Some("smaller"),
            format!("vertex N = {} below the smallest model", sig(p.n_opt)),
        ),
        (Ok(p), _) if p.n_opt > n_max => (
            false,
            Some("larger"),
            format!("vertex N = {} above the largest model", sig(p.n_opt)),
        ),
        (_, Some(side)) => (
            false,
            Some(side),
            format!("the {side} model is the best run"),
        ),
        (Err(s), None) => (false, Some("both"), s.reason.clone()),
        (Ok(_), None) => unreachable!("inside range without an edge is bracketed"),
    };
    Bracket {
        budget,
        runs: group.len(),
        sizes: sizes.len(),
        n_min,
        n_max,
        best_n,
        vertex_n,
        bracketed,
        extend: extend.map(str::to_string),
        reason,
    }
}

/// The cell noise: pooled within-cell sd of ln L when some (budget, N) cell has several rows
/// (seeds); else the residual sd of each model's learning curve across budgets; else that of
/// each budget's parabola in ln N fitted to ln L.
pub fn noise(runs: &[Run], groups: &[Vec<usize>]) -> Option<Noise> {
    let (mut ss, mut df, mut cells) = (0.0, 0usize, 0usize);
    for g in groups {
        let mut seen: Vec<(f64, Vec<f64>)> = Vec::new();
        for &i in g {
            let l = runs[i].loss.ln();
            match seen.iter_mut().find(|(n, _)| same_n(*n, runs[i].n)) {
                Some(e) => e.1.push(l),
                None => seen.push((runs[i].n, vec![l])),
            }
        }
        for (_, v) in seen.iter().filter(|(_, v)| v.len() > 1) {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            ss += v.iter().map(|x| (x - m).powi(2)).sum::<f64>();
            df += v.len() - 1;
            cells += 1;
        }
    }
    if df > 0 {
        return Some(Noise {
            source: "seeds".into(),
            sd_log: (ss / df as f64).sqrt(),
            df,
            replicated_cells: cells,
        });
    }
    // One seed: the residuals of each model's learning curve across budgets (ln L against ln C,
    // a quadratic, for models run at ≥ 4 budgets): a smooth curve for a fixed model, so what
    // is left is cell noise. (An iso-FLOP parabola over a wide N range also leaves its shape
    // misfit: the fallback when no model has 4 budgets.)
    let mut series: Vec<(f64, Vec<(f64, f64)>)> = Vec::new();
    for r in runs {
        match series.iter_mut().find(|(n, _)| same_n(*n, r.n)) {
            Some(e) => e.1.push((r.c.ln(), r.loss.ln())),
            None => series.push((r.n, vec![(r.c.ln(), r.loss.ln())])),
        }
    }
    for (_, v) in series.iter().filter(|(_, v)| v.len() >= 4) {
        let (x, y): (Vec<f64>, Vec<f64>) = v.iter().copied().unzip();
        if let Some(c) = isoflop::polyfit(&x, &y, 2) {
            ss += x
                .iter()
                .zip(&y)
                .map(|(x, y)| (y - (c[0] + c[1] * x + c[2] * x * x)).powi(2))
                .sum::<f64>();
            df += v.len() - 3;
        }
    }
    if df > 0 {
        return Some(Noise {
            source: "learning-curve residuals".into(),
            sd_log: (ss / df as f64).sqrt(),
            df,
            replicated_cells: 0,
        });
    }
    for g in groups.iter().filter(|g| g.len() >= 4) {
        let x: Vec<f64> = g.iter().map(|&i| runs[i].n.ln()).collect();
        let y: Vec<f64> = g.iter().map(|&i| runs[i].loss.ln()).collect();
        if let Some(c) = isoflop::polyfit(&x, &y, 2) {
            ss += x
                .iter()
                .zip(&y)
                .map(|(x, y)| (y - (c[0] + c[1] * x + c[2] * x * x)).powi(2))
                .sum::<f64>();
            df += g.len() - 3;
        }
    }
    (df > 0).then(|| Noise {
        source: "parabola residuals".into(),
        sd_log: (ss / df as f64).sqrt(),
        df,
        replicated_cells: 0,
    })
}

fn log_residuals(obs: &[Obs], law: &Law) -> Vec<f64> {
    obs.iter()
        .map(|o| (o.loss / law.predict(o.n, o.d)).ln())
        .collect()
}

fn rms(v: &[f64]) -> f64 {
    (v.iter().map(|r| r * r).sum::<f64>() / v.len() as f64).sqrt()
}

/// Which of (E, A, B, alpha, beta) sit at a bound for this law over these data.
fn at_bounds(law: &Law, obs: &[Obs]) -> [bool; 5] {
    let min_l = obs.iter().map(|o| o.loss).fold(f64::INFINITY, f64::min);
    let max_n = obs.iter().map(|o| o.n).fold(0.0, f64::max);
    let min_n = obs.iter().map(|o| o.n).fold(f64::INFINITY, f64::min);
    let max_d = obs.iter().map(|o| o.d).fold(0.0, f64::max);
    let min_d = obs.iter().map(|o| o.d).fold(f64::INFINITY, f64::min);
    let exp_bound = |x: f64| !(x > EXPONENT_MIN && x < EXPONENT_MAX);
    // A term is invisible when it is negligible everywhere, or when it barely varies over the
    // sampled range (then it is indistinguishable from E).
    let term_bound = |k: f64, x: f64, lo: f64, hi: f64| {
        let (big, small) = (k / lo.powf(x), k / hi.powf(x));
        !(big.is_finite()) || big < TERM_BOUND_REL * min_l || big - small < TERM_BOUND_REL * min_l
    };
    [
        !(law.e >= E_BOUND_REL * min_l),
        term_bound(law.a, law.alpha, min_n, max_n),
        term_bound(law.b, law.beta, min_d, max_d),
        exp_bound(law.alpha),
        exp_bound(law.beta),
    ]
}

/// Runs every diagnostic. `obs`/`runs` are the fitted rows, `groups` the iso-FLOP groups used,
/// `boots` the bootstrap laws (may be empty), `opts` the fit's options (for the E = 0 refit),
/// `seed` the bootstrap seed.
#[allow(clippy::too_many_arguments)]
pub fn diagnose(
    obs: &[Obs],
    runs: &[Run],
    groups: &[Vec<usize>],
    law: &Law,
    boots: &[Law],
    opts: &FitOptions,
    seed: u64,
    isoflop_a: Option<f64>,
    isoflop_ci_a: Option<Interval>,
) -> Diagnostics {
    let brackets: Vec<Bracket> = groups
        .iter()
        .filter(|g| !g.is_empty())
        .map(|g| bracket(runs, g))
        .collect();
    let point = at_bounds(law, obs);
    let boot_bounds: Vec<[bool; 5]> = boots.iter().map(|l| at_bounds(l, obs)).collect();
    let names = ["E", "A", "B", "alpha", "beta"];
    let value = |l: &Law, k: usize| [l.e, l.a, l.b, l.alpha, l.beta][k];
    let params: Vec<Param> = (0..5)
        .map(|k| Param {
            name: names[k].into(),
            value: value(law, k),
            ci: (!boots.is_empty())
                .then(|| interval(&boots.iter().map(|l| value(l, k)).collect::<Vec<_>>())),
            share_at_bound: (!boot_bounds.is_empty()).then(|| {
                boot_bounds.iter().filter(|b| b[k]).count() as f64 / boot_bounds.len() as f64
            }),
            at_bound: point[k],
        })
        .collect();
    let e_pinned = params[0].at_bound || params[0].share_at_bound.is_some_and(|s| s >= 0.5);
    let e_reaches_bound = e_pinned || params[0].share_at_bound.is_some_and(|s| s >= 0.025);
    let profiled = e_reaches_bound.then(|| {
        let popts = FitOptions {
            fixed_log_e: Some(parametric::E_ZERO_LOG),
            ..opts.clone()
        };
        let fit = parametric::fit(obs, &popts).ok()?;
        let pb = parametric::bootstrap(obs, &popts, &fit.law, boots.len(), seed);
        let col = |f: fn(&Law) -> f64| -> Option<Interval> {
            (!pb.is_empty()).then(|| interval(&pb.iter().map(f).collect::<Vec<_>>()))
        };
        Some(Profiled {
            law: fit.law,
            ci_alpha: col(|l| l.alpha),
            ci_beta: col(|l| l.beta),
            a: fit.law.allocation_exponents().0,
            ci_a: col(|l| l.allocation_exponents().0),
            residual_rms: rms(&log_residuals(obs, &fit.law)),
        })
    });
    let res = log_residuals(obs, law);
    let residual_rms = rms(&res);
    let noise = noise(runs, groups);
    let mut models: Vec<ModelResidual> = Vec::new();
    for (o, r) in obs.iter().zip(&res) {
        match models.iter_mut().find(|m| same_n(m.n, o.n)) {
            Some(m) => {
                m.rows += 1;
                m.mean_log_residual += r;
            }
            None => models.push(ModelResidual {
                n: o.n,
                rows: 1,
                mean_log_residual: *r,
                systematic: false,
            }),
        }
    }
    for m in &mut models {
        m.mean_log_residual /= m.rows as f64;
        if let Some(nz) = &noise {
            m.systematic = m.mean_log_residual.abs() > 2.0 * nz.sd_log / (m.rows as f64).sqrt();
        }
    }
    models.sort_by(|a, b| a.n.total_cmp(&b.n));
    let ci_a = (!boots.is_empty()).then(|| {
        interval(
            &boots
                .iter()
                .map(|l| l.allocation_exponents().0)
                .collect::<Vec<_>>(),
        )
    });
    Diagnostics {
        cells: cells(runs, groups),
        unbracketed: brackets.iter().filter(|b| !b.bracketed).count(),
        brackets,
        params,
        e_pinned,
        e_reaches_bound,
        profiled: profiled.flatten(),
        residual_rms,
        misfit_ratio: noise.as_ref().map(|n| residual_rms / n.sd_log),
        noise,
        models,
        a: law.allocation_exponents().0,
        ci_a,
        isoflop_a,
        isoflop_ci_a,
    }
}

fn ci(c: Option<&Interval>) -> String {
    c.map_or(String::new(), |[l, h]| {
        format!(" [95% CI {} – {}]", sig(*l), sig(*h))
    })
}

/// The diagnostics as text (appended to fit.txt and the printout).
pub fn render(d: &Diagnostics) -> String {
    let mut s = String::from("\ndiagnostics: can this grid answer?\n");
    let seeded = d.cells.iter().filter(|c| c.seeds > 1).count();
    let _ = writeln!(
        s,
        "  cells: {} ({} with several seeds; fit.json's diagnostics.cells has each as mean ± sd)",
        d.cells.len(),
        seeded
    );
    let _ = writeln!(
        s,
        "  bracketing: {} of {} budgets have their iso-FLOP minimum inside the sampled N range",
        d.brackets.len() - d.unbracketed,
        d.brackets.len()
    );
    for b in &d.brackets {
        let _ = writeln!(
            s,
            "    C = {:.3e}: {} sizes {}–{}, best N = {}: {}{}",
            b.budget,
            b.sizes,
            sig(b.n_min),
            sig(b.n_max),
            sig(b.best_n),
            if b.bracketed {
                "bracketed"
            } else {
                "NOT bracketed"
            },
            match &b.extend {
                Some(side) => format!(" ({}; extend the ladder: {side} N)", b.reason),
                None => String::new(),
            }
        );
    }
    let _ = writeln!(s, "  parameters (share of bootstrap resamples at a bound):");
    for p in &d.params {
        let _ = writeln!(
            s,
            "    {:<6} = {}{}{}{}",
            p.name,
            sig(p.value),
            ci(p.ci.as_ref()),
            p.share_at_bound.map_or(String::new(), |v| format!(
                ", at a bound in {:.0}%",
                100.0 * v
            )),
            if p.at_bound {
                "  (estimate at a bound)"
            } else {
                ""
            }
        );
    }
    if d.e_reaches_bound {
        let _ = writeln!(
            s,
            "  {}",
            if d.e_pinned {
                "E is pinned at 0: the data do not identify an irreducible loss."
            } else {
                "E's interval reaches 0: the data do not separate the irreducible loss from 0."
            }
        );
        if let Some(p) = &d.profiled {
            let l = &p.law;
            let _ = writeln!(
                s,
                "    with E profiled out (E = 0): A = {}, B = {}, alpha = {}{}, beta = {}{}, a = {}{}, residual RMS {:.2}%",
                sig(l.a),
                sig(l.b),
                sig(l.alpha),
                ci(p.ci_alpha.as_ref()),
                sig(l.beta),
                ci(p.ci_beta.as_ref()),
                sig(p.a),
                ci(p.ci_a.as_ref()),
                100.0 * p.residual_rms
            );
        }
    }
    match (&d.noise, d.misfit_ratio) {
        (Some(n), Some(r)) => {
            let _ = writeln!(
                s,
                "  misfit: log-residual RMS {:.2}% vs cell noise {:.2}% ({}, {} df): {:.1}× the noise{}",
                100.0 * d.residual_rms,
                100.0 * n.sd_log,
                n.source,
                n.df,
                r,
                if r > 1.5 {
                    " — the law misfits beyond noise"
                } else {
                    " — within noise"
                }
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "  misfit: log-residual RMS {:.2}% (no estimate of the cell noise: add seeds)",
                100.0 * d.residual_rms
            );
        }
    }
    let sys: Vec<&ModelResidual> = d.models.iter().filter(|m| m.systematic).collect();
    if sys.is_empty() {
        let _ = writeln!(s, "  no model has a systematic residual (beyond 2 s.e.)");
    } else {
        let _ = writeln!(s, "  systematic residuals by model (observed / law − 1):");
        for m in sys {
            let _ = writeln!(
                s,
                "    N = {}: {:+.1}% over {} rows",
                sig(m.n),
                100.0 * (m.mean_log_residual.exp() - 1.0),
                m.rows
            );
        }
    }
    let _ = writeln!(
        s,
        "  allocation exponent a = beta/(alpha+beta) (N_opt ∝ C^a): {}{}",
        sig(d.a),
        ci(d.ci_a.as_ref())
    );
    if let Some(a) = d.isoflop_a {
        let _ = writeln!(
            s,
            "    iso-FLOP optima: a = {}{}",
            sig(a),
            ci(d.isoflop_ci_a.as_ref())
        );
    }
    s
}
