//! `brainscale scaling plan`: the next budget's grid, designed to bracket its minimum.
//!
//! From the cells so far (a results CSV), fit the parametric law L(N, D) = E + A/N^α + B/D^β
//! ([`parametric`]), predict N_opt at the next budget (C = K·N·D, K the geometric mean of
//! C/(N·D) over the rows, as `scaling validate` does), and write a grid TOML for that budget
//! alone whose model ladder is centred on N_opt: `steps` sizes each side in √2 ratios (±4× by
//! default). Each rung takes the grid's existing BIOT model nearest in N when within a quarter
//! of a √2 step (|ln ratio| < ln√2 / 2), else a generated config ([`shapes`]: the nearest N,
//! the first model file as template) written beside the grid's models. The new
//! grid keeps the source grid's cell, seeds, executor and `out` (its rows join the same
//! results) and is read back with the grid loader before it is renamed into place, so a plan
//! whose cells break a rule (e.g. `min_steps`) is refused with the reason and writes no grid.
use crate::models::biot::BiotConfig;
use crate::models::ModelConfig;
use crate::study::grids::grid::{CellConfig, Grid};
use crate::study::scaling::parametric::{self, FitOptions, Obs};
use crate::study::scaling::stats::sig;
use crate::study::scaling::{load_points, Columns};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What `scaling plan` plans.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// Results so far (one row per cell).
    pub results: PathBuf,
    /// The grid those rows came from (a `biosignal` grid: its cell and model files are reused).
    pub grid: PathBuf,
    /// The next budget in FLOPs.
    pub budget: f64,
    /// Rungs each side of N_opt, √2 apart (4: ±4×).
    pub steps: usize,
    /// Where the new grid goes (default: GRID-C<budget>.toml beside the grid).
    pub out: Option<PathBuf>,
    /// Where generated model configs go (default: the folder of the grid's first model file).
    pub models_dir: Option<PathBuf>,
    pub columns: Columns,
    pub filters: Vec<String>,
    pub huber_delta: f64,
}

/// One rung of the ladder.
#[derive(Debug, Clone)]
pub struct Rung {
    pub target_n: f64,
    /// The grid entry (path as written in the new grid).
    pub model: String,
    pub n: f64,
    pub generated: bool,
}

/// A written plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub n_opt: f64,
    pub c_per_nd: f64,
    pub law: parametric::Law,
    pub rungs: Vec<Rung>,
    pub grid: PathBuf,
    pub cells: usize,
    pub text: String,
}

/// Per-token parameters (the grids' N) of a BIOT config.
fn n_of(c: &BiotConfig) -> f64 {
    c.param_counts().per_token as f64
}

/// The shapes generated configs may take, as the shipped ladder grows (head dim min(d, 32),
/// deeper only once wider): even widths up to 32 with one head and depth 1–2; multiples of 8 up
/// to 128 with ⌈d/32⌉ heads (d divisible by them) and depth 2–4; wider, depth 4 (up to 512).
pub fn shapes() -> Vec<(i64, i64, i64)> {
    let mut v = Vec::new();
    for d in (2..=512).step_by(2) {
        let h = (d + 31) / 32;
        if d % h != 0 || (d > 32 && d % 8 != 0) {
            continue;
        }
        let depths: &[i64] = if d <= 32 {
            &[1, 2]
        } else if d <= 128 {
            &[2, 3, 4]
        } else {
            &[4]
        };
        for &l in depths {
            v.push((d, l, h));
        }
    }
    v
}

/// The config of [`shapes`] nearest to `target` in ln N, from template `t` (ties to fewer
/// layers).
fn generate(t: &BiotConfig, target: f64) -> BiotConfig {
    let mut best: Option<(f64, BiotConfig)> = None;
    for (d, l, h) in shapes() {
        let c = BiotConfig {
            name: format!("biot-d{d}-l{l}"),
            d_model: d,
            n_layer: l,
            n_head: h,
            ..t.clone()
        };
        let score = (n_of(&c) / target).ln().abs() + 1e-3 * l as f64;
        if best.as_ref().is_none_or(|(s, _)| score < *s) {
            best = Some((score, c));
        }
    }
    best.expect("non-empty search").1
}

/// Plans and writes the next budget's grid.
pub fn run_plan(p: &PlanConfig) -> Result<Plan> {
    if !(p.budget > 0.0 && p.budget.is_finite()) {
        bail!(
            "--budget must be a positive number of FLOPs, got {}",
            p.budget
        );
    }
    if p.steps == 0 || p.steps > 12 {
        bail!(
            "--steps {} must be in 1..=12 (rungs each side of N_opt)",
            p.steps
        );
    }
    let grid = Grid::load(&p.grid)?;
    let CellConfig::Biosignal(_) = &grid.cell else {
        bail!(
            "grid file {}: `scaling plan` designs ladders of BIOT model files (a biosignal grid)",
            p.grid.display()
        );
    };
    let (points, _) = load_points(&p.results, &p.columns, &p.filters)?;
    if points.len() < 6 {
        bail!(
            "{}: {} usable rows; the law has 5 parameters and needs at least 6",
            p.results.display(),
            points.len()
        );
    }
    let obs: Vec<Obs> = points
        .iter()
        .map(|q| Obs {
            n: q.n,
            d: q.d,
            loss: q.loss,
        })
        .collect();
    let fit = parametric::fit(
        &obs,
        &FitOptions {
            huber_delta: p.huber_delta,
            ..Default::default()
        },
    )?;
    let k =
        (points.iter().map(|q| (q.c / (q.n * q.d)).ln()).sum::<f64>() / points.len() as f64).exp();
    let n_opt = fit.law.optimal_k(p.budget, k).0;
    if !(n_opt.is_finite() && n_opt > 0.0) {
        bail!(
            "{}: the fitted law gives no finite N_opt at {:e} (alpha = {}, beta = {}); the rows cannot place the next ladder",
            p.results.display(),
            p.budget,
            fit.law.alpha,
            fit.law.beta
        );
    }

    let base = p.grid.parent().unwrap_or(Path::new(".")).to_path_buf();
    let first = &grid.axes.models[0];
    let template = BiotConfig::load(&base.join(first))?;
    let first_dir = Path::new(first).parent().unwrap_or(Path::new(""));
    let models_dir = p.models_dir.clone().unwrap_or_else(|| base.join(first_dir));
    let out = p.out.clone().unwrap_or_else(|| {
        let stem = p
            .grid
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        base.join(format!("{stem}-C{:e}.toml", p.budget))
    });
    let out_dir = out.parent().unwrap_or(Path::new(".")).to_path_buf();
    let same_dir = std::path::absolute(&out_dir)? == std::path::absolute(&base)?;
    // A grid entry for a model file at `path`: relative as the source grid wrote it when the
    // new grid sits beside it, else absolute.
    let entry = |path: &Path, as_written: Option<&str>| -> Result<String> {
        Ok(match as_written {
            Some(s) if same_dir => s.to_string(),
            _ if same_dir && p.models_dir.is_none() => {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                first_dir.join(&*name).to_string_lossy().into_owned()
            }
            _ => std::path::absolute(path)?.to_string_lossy().into_owned(),
        })
    };
    let mut known: Vec<(String, PathBuf, f64)> = Vec::new();
    for m in &grid.axes.models {
        let path = base.join(m);
        known.push((m.clone(), path.clone(), n_of(&BiotConfig::load(&path)?)));
    }
    let tol = 0.5 * 2f64.sqrt().ln();
    let mut rungs: Vec<Rung> = Vec::new();
    for j in -(p.steps as i32)..=(p.steps as i32) {
        let target = n_opt * 2f64.sqrt().powi(j);
        let near = known
            .iter()
            .min_by(|a, b| {
                (a.2 / target)
                    .ln()
                    .abs()
                    .total_cmp(&(b.2 / target).ln().abs())
            })
            .filter(|m| (m.2 / target).ln().abs() < tol);
        let (model, n, generated) = match near {
            Some((w, path, n)) => (entry(path, Some(w))?, *n, false),
            None => {
                let c = generate(&template, target);
                c.validate()
                    .with_context(|| format!("generated config {}", c.name))?;
                let path = models_dir.join(format!("{}.toml", c.name));
                if !path.exists() {
                    let text = format!(
                        "# Generated by `brainscale scaling plan` for N ≈ {} (per-token parameters {}).\n{}",
                        sig(target),
                        n_of(&c),
                        c.to_toml().context("serialising a generated BIOT config")?
                    );
                    crate::core::io::write_bytes(&path, text.as_bytes())?;
                }
                let n = n_of(&c);
                let e = entry(&path, None)?;
                known.push((e.clone(), path, n));
                (e, n, true)
            }
        };
        if rungs.iter().any(|r| r.model == model) {
            continue;
        }
        rungs.push(Rung {
            target_n: target,
            model,
            n,
            generated,
        });
    }

    let text = std::fs::read_to_string(&p.grid)
        .with_context(|| format!("reading grid file {}", p.grid.display()))?;
    let mut t: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing grid file {}", p.grid.display()))?;
    t.insert(
        "name".into(),
        toml::Value::String(format!("{}-C{:e}", grid.name, p.budget)),
    );
    if !same_dir {
        if let Some(o) = grid.out.as_ref() {
            t.insert(
                "out".into(),
                toml::Value::String(std::path::absolute(o)?.to_string_lossy().into_owned()),
            );
        }
    }
    let axes = t
        .get_mut("axes")
        .and_then(|a| a.as_table_mut())
        .context("grid without [axes]")?;
    axes.remove("ladders");
    axes.remove("tokens");
    axes.insert("budgets".into(), toml::Value::Array(vec![p.budget.into()]));
    axes.insert(
        "models".into(),
        toml::Value::Array(
            rungs
                .iter()
                .map(|r| toml::Value::String(r.model.clone()))
                .collect(),
        ),
    );
    let body = format!(
        "# Planned by `brainscale scaling plan` from {} ({} rows): N_opt({:e}) = {} under the fitted\n# law (C = {}·N·D); ladder ±{}× in √2 steps around it.\n{}",
        p.results.display(),
        points.len(),
        p.budget,
        sig(n_opt),
        sig(k),
        sig(2f64.sqrt().powi(p.steps as i32)),
        toml::to_string(&t).context("serialising the planned grid")?
    );
    let mut cells = 0;
    crate::core::io::write_atomic(&out, |tmp| {
        std::fs::write(tmp, &body)?;
        // Read back with the grid rules (min_steps, model files) before it takes the name.
        let g = Grid::load(tmp).with_context(|| format!("the planned grid {}", out.display()))?;
        cells = g.cells()?.len();
        Ok(())
    })?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for C = {:e}: N_opt = {} (parametric law from {} rows, C = {}·N·D; a = {})",
        p.budget,
        sig(n_opt),
        points.len(),
        sig(k),
        sig(fit.law.allocation_exponents().0)
    );
    for r in &rungs {
        let _ = writeln!(
            s,
            "  target N {:>10}  {:>10}  {}{}",
            sig(r.target_n),
            sig(r.n),
            r.model,
            if r.generated { "  (generated)" } else { "" }
        );
    }
    let _ = writeln!(s, "wrote {} ({cells} cells)", out.display());
    Ok(Plan {
        n_opt,
        c_per_nd: k,
        law: fit.law,
        rungs,
        grid: out,
        cells,
        text: s,
    })
}
