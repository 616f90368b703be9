//! Scaling-law fits over results rows: `brainscale scaling fit RESULTS.csv`.
//!
//! Two methods (Hoffmann et al. 2022): iso-FLOP profiles ([`isoflop`]) and the parametric law
//! L(N, D) = E + A/N^α + B/D^β ([`parametric`]), each with seeded bootstrap intervals, the
//! compute-optimal N and D for chosen budgets, an optional hold-out of the largest budgets, and
//! PNG plots ([`plot`]). `scaling validate` ([`validate`]) checks a law at a larger budget.
//!
//! Files: this one (results rows → points, the fit itself), [`isoflop`], [`parametric`] and
//! [`lbfgs`] (the methods), [`report`] (fit.json / validate.json and their text), [`plot`]
//! (every PNG of a fit or a validation), [`target`] (what is fitted), [`validate`],
//! [`diagnostics`] (whether a grid can answer: bracketing, identifiability, misfit vs noise),
//! [`baselines`] (`validate` against trivial baselines), [`plan`] (`scaling plan`: the next
//! budget's grid), [`stats`] (intervals, number formatting).
//!
//! Direction: both methods minimise a positive loss-like quantity L. For lower-is-better targets
//! (eval_loss) L is the value itself. For higher-is-better targets (encoding_r, a Pearson r) the
//! law is fitted to L = 1 − r, the distance to a perfect prediction, so E reads as the
//! irreducible 1 − r (the r ceiling is 1 − E) and "compute-optimal" means the highest r.
pub mod baselines;
pub mod diagnostics;
pub mod isoflop;
pub mod lbfgs;
pub mod parametric;
pub mod plan;
pub mod plot;
pub mod report;
pub mod stats;
pub mod target;
pub mod validate;

pub use report::*;
pub use target::Target;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Lower is better: the law is fitted to the value.
    Lower,
    /// Higher is better: the law is fitted to 1 − value (values must be below 1).
    Higher,
}

/// What `scaling fit` fits and how (the command-line defaults are in `cli::study`).
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// Results CSV with a header (bench results.csv or any table with N, D, C and a target).
    pub results: PathBuf,
    /// What to fit; picks the default column and direction.
    pub target: Target,
    /// Column holding the target (default: the target's own column).
    pub target_col: Option<String>,
    /// Override the target's direction.
    pub direction: Option<Direction>,
    /// Column holding the parameter count N.
    pub n_col: String,
    /// Column holding the training tokens D.
    pub d_col: String,
    /// Column holding the training compute C in FLOPs.
    pub c_col: String,
    /// Derive D = C / (6 N) instead of reading a D column (Chinchilla's convention).
    pub d_from_flops: bool,
    /// Keep only rows where COLUMN equals VALUE (repeatable), e.g. --where precision=bf16.
    pub filters: Vec<String>,
    /// Drop the K rows with the highest loss-like value before fitting (replication recipe: 5).
    pub drop_highest: usize,
    /// Bootstrap resamples for confidence intervals (0: none).
    pub bootstrap: usize,
    /// Seed of the bootstrap resampling.
    pub seed: u64,
    /// Compute budget(s) in FLOPs for which to report the compute-optimal N and D (repeatable).
    pub budget: Vec<f64>,
    /// Fit only rows with C <= this budget (within `budget_tol`) and report prediction errors
    /// on the larger ones.
    pub holdout_above: Option<f64>,
    /// Runs whose budgets agree within this relative tolerance form one iso-FLOP group.
    pub budget_tol: f64,
    /// Fit each iso-FLOP parabola to the K runs nearest (in ln N) to the budget's best run.
    pub isoflop_window: Option<usize>,
    /// FLOPs per parameter and token for the parametric allocation, C = K·N·D (Chinchilla: 6).
    pub c_per_nd: f64,
    /// Huber delta on the log residuals.
    pub huber_delta: f64,
    /// Output folder (default: scaling-TARGET beside the results file).
    pub out: Option<PathBuf>,
    /// Do not draw PNG plots.
    pub no_plots: bool,
}

/// One usable results row.
#[derive(Debug, Clone)]
pub struct Point {
    pub n: f64,
    pub d: f64,
    pub c: f64,
    /// The target in its own units.
    pub value: f64,
    /// The positive loss-like quantity that is fitted.
    pub loss: f64,
}

impl Direction {
    pub fn to_loss(self, v: f64) -> f64 {
        match self {
            Direction::Lower => v,
            Direction::Higher => 1.0 - v,
        }
    }
    pub fn from_loss(self, l: f64) -> f64 {
        match self {
            Direction::Lower => l,
            Direction::Higher => 1.0 - l,
        }
    }
}

/// Resolved column names and direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Columns {
    pub target: String,
    pub direction: Direction,
    pub n: String,
    /// "C/(6N)" when derived.
    pub d: String,
    pub c: String,
}

impl FitConfig {
    pub fn columns(&self) -> Columns {
        let (col, dir) = (self.target.column(), self.target.direction());
        Columns {
            target: self.target_col.clone().unwrap_or_else(|| col.to_string()),
            direction: self.direction.unwrap_or(dir),
            n: self.n_col.clone(),
            d: if self.d_from_flops {
                "C/(6N)".into()
            } else {
                self.d_col.clone()
            },
            c: self.c_col.clone(),
        }
    }
}

/// Reads the rows to fit. Rows with an empty target cell (e.g. a cell that produced no loss)
/// are skipped and counted; anything else that is not a finite positive number is an error
/// naming the file, line and column.
pub fn load_points(path: &Path, cols: &Columns, filters: &[String]) -> Result<(Vec<Point>, usize)> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("opening results file {}", path.display()))?;
    let header = rdr
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .clone();
    let find = |name: &str, hint: &str| -> Result<usize> {
        header.iter().position(|h| h == name).with_context(|| {
            let names: Vec<&str> = header.iter().collect();
            format!(
                "{}: no column '{name}' ({hint}); columns are: {}",
                path.display(),
                names.join(", ")
            )
        })
    };
    let it = find(&cols.target, "choose it with --target-col")?;
    let in_ = find(&cols.n, "choose it with --n-col")?;
    let ic = find(&cols.c, "choose it with --c-col")?;
    let id = if cols.d == "C/(6N)" {
        None
    } else {
        Some(find(
            &cols.d,
            "choose it with --d-col, or pass --d-from-flops to use D = C/(6N)",
        )?)
    };
    let mut conds = Vec::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("--where '{f}': expected COLUMN=VALUE"))?;
        conds.push((find(k, "named in --where")?, v.to_string()));
    }
    let (mut points, mut empty) = (Vec::new(), 0);
    for (row, rec) in rdr.records().enumerate() {
        let line = row + 2;
        let rec = rec.with_context(|| format!("{}: reading line {line}", path.display()))?;
        if conds.iter().any(|(i, v)| rec.get(*i) != Some(v.as_str())) {
            continue;
        }
        if rec.get(it).map(str::trim).unwrap_or("").is_empty() {
            empty += 1;
            continue;
        }
        let num = |i: usize, what: &str| -> Result<f64> {
            let s = rec.get(i).unwrap_or("").trim();
            let v: f64 = s.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: line {line}, column '{what}': '{s}' is not a number",
                    path.display()
                )
            })?;
            if !v.is_finite() {
                bail!(
                    "{}: line {line}, column '{what}': value {v} is not finite",
                    path.display()
                );
            }
            Ok(v)
        };
        let positive = |v: f64, what: &str| -> Result<f64> {
            if v <= 0.0 {
                bail!(
                    "{}: line {line}, column '{what}': {v} must be positive",
                    path.display()
                );
            }
            Ok(v)
        };
        let n = positive(num(in_, &cols.n)?, &cols.n)?;
        let c = positive(num(ic, &cols.c)?, &cols.c)?;
        let d = match id {
            Some(i) => positive(num(i, &cols.d)?, &cols.d)?,
            None => c / (6.0 * n),
        };
        let value = num(it, &cols.target)?;
        let loss = cols.direction.to_loss(value);
        if loss <= 0.0 {
            match cols.direction {
                Direction::Lower => bail!(
                    "{}: line {line}, column '{}': {value} must be positive to fit a loss law in log space",
                    path.display(),
                    cols.target
                ),
                Direction::Higher => bail!(
                    "{}: line {line}, column '{}': {value} must be below 1 (the law is fitted to 1 − value)",
                    path.display(),
                    cols.target
                ),
            }
        }
        points.push(Point {
            n,
            d,
            c,
            value,
            loss,
        });
    }
    Ok((points, empty))
}

/// `scaling fit`: fits both methods, writes fit.json, fit.txt and the plots into the output folder.
pub fn run_fit(args: &FitConfig) -> Result<Fitted> {
    if args.huber_delta <= 0.0 || !args.huber_delta.is_finite() {
        bail!("--huber-delta must be positive, got {}", args.huber_delta);
    }
    if args.budget_tol < 0.0 || !args.budget_tol.is_finite() {
        bail!("--budget-tol must be non-negative, got {}", args.budget_tol);
    }
    if !(args.c_per_nd > 0.0 && args.c_per_nd.is_finite()) {
        bail!("--c-per-nd must be positive, got {}", args.c_per_nd);
    }
    for &b in &args.budget {
        if !(b > 0.0 && b.is_finite()) {
            bail!("--budget must be a positive number of FLOPs, got {b}");
        }
    }
    let cols = args.columns();
    let (mut points, empty) = load_points(&args.results, &cols, &args.filters)?;
    if args.drop_highest > 0 {
        if args.drop_highest >= points.len() {
            bail!(
                "--drop-highest {} would drop all {} rows",
                args.drop_highest,
                points.len()
            );
        }
        points.sort_by(|a, b| b.loss.total_cmp(&a.loss));
        points.drain(..args.drop_highest);
    }
    let (fit_pts, held): (Vec<Point>, Vec<Point>) = match args.holdout_above {
        Some(t) => {
            // Within the budget tolerance, as the iso-FLOP groups: a grid's realised budgets
            // sit a little off the nominal one (D rounded to whole steps), and a cell of the
            // last fitted budget must not fall into the hold-out.
            let upto = t * (1.0 + args.budget_tol);
            let (f, h): (Vec<_>, Vec<_>) = points.iter().cloned().partition(|p| p.c <= upto);
            if h.is_empty() {
                bail!(
                    "--holdout-above {t:e}: no row has a larger budget (largest is {:e})",
                    points.iter().map(|p| p.c).fold(0.0, f64::max)
                );
            }
            (f, h)
        }
        None => (points.clone(), Vec::new()),
    };
    if fit_pts.len() < 6 {
        bail!(
            "{}: {} usable rows to fit (after filters, drops and hold-out; {empty} rows had no '{}' value); \
             the parametric law has 5 parameters and needs at least 6",
            args.results.display(),
            fit_pts.len(),
            cols.target
        );
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args.target.column();
        args.results
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("scaling-{stem}"))
    });

    let opts = parametric::FitOptions {
        huber_delta: args.huber_delta,
        ..Default::default()
    };
    let obs: Vec<parametric::Obs> = fit_pts
        .iter()
        .map(|p| parametric::Obs {
            n: p.n,
            d: p.d,
            loss: p.loss,
        })
        .collect();
    eprintln!("fitting L(N, D) to {} rows from {} starts...", obs.len(), {
        opts.alpha_grid.len()
            * opts.beta_grid.len()
            * opts.e_grid.len()
            * opts.a_grid.len()
            * opts.b_grid.len()
    });
    let spinner = crate::core::progress::spinner;
    let t0 = std::time::Instant::now();
    let sp = spinner("L-BFGS from every start of the grid".into());
    let pfit = parametric::fit(&obs, &opts)?;
    sp.finish_and_clear();
    eprintln!("  best of the grid in {:.1}s", t0.elapsed().as_secs_f64());
    let boots = if args.bootstrap > 0 {
        let t0 = std::time::Instant::now();
        let sp = spinner(format!(
            "{} bootstrap refits (seed {})",
            args.bootstrap, args.seed
        ));
        let b = parametric::bootstrap(&obs, &opts, &pfit.law, args.bootstrap, args.seed);
        sp.finish_and_clear();
        eprintln!(
            "  {} bootstrap refits (seed {}) in {:.1}s",
            args.bootstrap,
            args.seed,
            t0.elapsed().as_secs_f64()
        );
        b
    } else {
        Vec::new()
    };
    let col = |f: fn(&parametric::Law) -> f64| -> Vec<f64> { boots.iter().map(f).collect() };
    let mut ci = BTreeMap::new();
    if !boots.is_empty() {
        ci.insert("E".into(), interval(&col(|l| l.e)));
        ci.insert("A".into(), interval(&col(|l| l.a)));
        ci.insert("B".into(), interval(&col(|l| l.b)));
        ci.insert("alpha".into(), interval(&col(|l| l.alpha)));
        ci.insert("beta".into(), interval(&col(|l| l.beta)));
    }
    let (pa, pb) = pfit.law.allocation_exponents();
    let nonempty = |v: Vec<f64>| (!v.is_empty()).then(|| interval(&v));
    let parametric = ParametricReport {
        ci,
        a: pa,
        b: pb,
        ci_a: nonempty(col(|l| l.allocation_exponents().0)),
        ci_b: nonempty(col(|l| l.allocation_exponents().1)),
        bootstrap_replicates: boots.len(),
        fit: pfit,
    };

    let runs: Vec<isoflop::Run> = fit_pts
        .iter()
        .map(|p| isoflop::Run {
            c: p.c,
            n: p.n,
            d: p.d,
            loss: p.loss,
        })
        .collect();
    let mut groups = isoflop::group_by_budget(&runs, args.budget_tol);
    let all_groups = groups.clone();
    if let Some(k) = args.isoflop_window {
        if k < 3 {
            bail!("--isoflop-window {k}: a parabola needs at least 3 runs");
        }
        groups = isoflop::narrow_groups(&runs, &groups, k);
    }
    let iso = isoflop::fit(&runs, &groups);
    let iso_boot = if args.bootstrap > 0 && iso.n_opt.is_some() {
        isoflop::bootstrap(&runs, &groups, args.bootstrap, args.seed)
    } else {
        Vec::new()
    };
    let isoflop = IsoFlopReport {
        ci_a: nonempty(iso_boot.iter().map(|v| v.0).collect()),
        ci_b: nonempty(iso_boot.iter().map(|v| v.1).collect()),
        bootstrap_replicates: iso_boot.len(),
        fit: iso,
    };

    // Bracketing and noise look at every run of a budget, whatever window the parabolas use.
    let diagnostics = diagnostics::diagnose(
        &obs,
        &runs,
        &all_groups,
        &parametric.fit.law,
        &boots,
        &opts,
        args.seed,
        isoflop.fit.n_opt.map(|p| p.exponent),
        isoflop.ci_a,
    );

    let budgets = args
        .budget
        .iter()
        .map(|&c| {
            let k = args.c_per_nd;
            let (n, d) = parametric.fit.law.optimal_k(c, k);
            let opt: Vec<(f64, f64)> = boots.iter().map(|l| l.optimal_k(c, k)).collect();
            BudgetReport {
                budget: c,
                n_opt: n,
                d_opt: d,
                predicted: cols.direction.from_loss(parametric.fit.law.predict(n, d)),
                ci_n_opt: nonempty(opt.iter().map(|v| v.0).collect()),
                ci_d_opt: nonempty(opt.iter().map(|v| v.1).collect()),
                isoflop_n_opt: isoflop.fit.n_opt.map(|p| p.at(c)),
                isoflop_d_opt: isoflop.fit.d_opt.map(|p| p.at(c)),
            }
        })
        .collect();

    let holdout = args.holdout_above.map(|above| {
        holdout_report(
            above,
            &fit_pts,
            &held,
            &cols,
            &parametric,
            &isoflop,
            args.budget_tol,
            args.isoflop_window,
        )
    });

    let report = FitReport {
        input: args.results.display().to_string(),
        fitted_quantity: match cols.direction {
            Direction::Lower => cols.target.clone(),
            Direction::Higher => format!("1 - {}", cols.target),
        },
        columns: cols.clone(),
        points: fit_pts.len(),
        skipped_empty: empty,
        dropped_highest: args.drop_highest,
        huber_delta: args.huber_delta,
        seed: args.seed,
        isoflop,
        parametric,
        budgets,
        holdout,
        c_per_nd: args.c_per_nd,
        diagnostics: Some(diagnostics),
    };
    let text = render_text(&report);
    crate::core::io::write_json(&out.join("fit.json"), &report)?;
    crate::core::io::write_bytes(&out.join("fit.txt"), text.as_bytes())?;
    let mut written = vec![out.join("fit.json"), out.join("fit.txt")];
    if !args.no_plots {
        written.extend(plot::draw_all(&out, &report, &fit_pts, &held)?);
    }
    Ok(Fitted {
        report,
        text,
        written,
    })
}

/// A finished `scaling fit`: the report, its text (also in fit.txt) and the files written.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub report: FitReport,
    pub text: String,
    pub written: Vec<PathBuf>,
}

fn holdout_report(
    above: f64,
    fit_pts: &[Point],
    held: &[Point],
    cols: &Columns,
    par: &ParametricReport,
    iso: &IsoFlopReport,
    tol: f64,
    window: Option<usize>,
) -> HoldoutReport {
    let law = &par.fit.law;
    let rows: Vec<HoldoutRow> = held
        .iter()
        .map(|p| HoldoutRow {
            n: p.n,
            d: p.d,
            c: p.c,
            observed: p.value,
            predicted: cols.direction.from_loss(law.predict(p.n, p.d)),
        })
        .collect();
    let k = rows.len() as f64;
    let rmse = (rows
        .iter()
        .map(|r| (r.predicted - r.observed).powi(2))
        .sum::<f64>()
        / k)
        .sqrt();
    let mae = rows
        .iter()
        .map(|r| (r.predicted - r.observed).abs())
        .sum::<f64>()
        / k;
    let mape = held
        .iter()
        .map(|p| (law.predict(p.n, p.d) - p.loss).abs() / p.loss)
        .sum::<f64>()
        / k;
    let runs: Vec<isoflop::Run> = held
        .iter()
        .map(|p| isoflop::Run {
            c: p.c,
            n: p.n,
            d: p.d,
            loss: p.loss,
        })
        .collect();
    let mut groups = isoflop::group_by_budget(&runs, tol);
    if let Some(k) = window {
        groups = isoflop::narrow_groups(&runs, &groups, k);
    }
    let mut iso_rows = Vec::new();
    if let Some(pl) = iso.fit.n_opt {
        for g in &groups {
            if let Ok(prof) = isoflop::fit_profile(&runs, g) {
                iso_rows.push([prof.budget, prof.n_opt, pl.at(prof.budget)]);
            }
        }
    }
    HoldoutReport {
        above,
        fit_points: fit_pts.len(),
        rows,
        rmse,
        mean_abs_error: mae,
        mape_loss: mape,
        isoflop_n_opt: iso_rows,
    }
}
