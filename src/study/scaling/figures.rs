//! `brainscale scaling plots RESULTS.csv`: the study's figure set ([`crate::study::figures`])
//! with the compute-optimal frontier of the parametric law ([`crate::study::scaling::parametric`]) fitted to
//! the held-out pretraining losses.
use crate::study::figures::{self, Figure, Frontier, StudyRow};
use crate::study::scaling::parametric::{self, FitOptions, Obs};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// `brainscale scaling plots`: a bench results CSV and the output folder (default: `figures`
/// beside the results file).
#[derive(Debug, Clone)]
pub struct PlotsConfig {
    pub results: PathBuf,
    pub out: Option<PathBuf>,
}

/// The frontier L*(C) = min over N of L(N, C/6N) of the law fitted to `obs`, on `n_grid`
/// log-spaced budgets over [c_lo, c_hi]; with the law.
pub fn frontier(
    obs: &[Obs],
    c_lo: f64,
    c_hi: f64,
    n_grid: usize,
) -> Result<(parametric::Law, Vec<(f64, f64)>)> {
    if obs.len() < 5 {
        bail!("{} runs: the law has 5 parameters", obs.len());
    }
    let law = parametric::fit(obs, &FitOptions::default())?.law;
    let pts = (0..n_grid)
        .map(|j| {
            let t = j as f64 / (n_grid - 1).max(1) as f64;
            let c = (c_lo.ln() + (c_hi.ln() - c_lo.ln()) * t).exp();
            let (n, d) = law.optimal(c);
            (c, law.predict(n, d))
        })
        .collect();
    Ok((law, pts))
}

/// The figure set of `rows`, the loss figure with its fitted frontier (or a note saying why
/// there is none).
pub fn figure_set(rows: &[StudyRow]) -> Vec<Figure> {
    let sel = figures::loss_rows(rows);
    let obs: Vec<Obs> = sel
        .iter()
        .filter_map(|r| {
            r.eval_loss.map(|l| Obs {
                n: r.n_params,
                d: r.tokens,
                loss: l,
            })
        })
        .collect();
    let (lo, hi) = sel.iter().fold((f64::INFINITY, 0.0f64), |(l, h), r| {
        (l.min(r.flops), h.max(r.flops))
    });
    let fr = match frontier(&obs, lo, hi, 50) {
        Ok((law, points)) => Frontier {
            points,
            note: format!(
                "dashed: min over N of L(N, C/6N), L = {:.3} + {:.3e}/N^{:.3} + {:.3e}/D^{:.3} (Huber fit to {} runs)",
                law.e, law.a, law.alpha, law.b, law.beta, obs.len()
            ),
        },
        Err(e) => Frontier {
            points: Vec::new(),
            note: format!("no frontier: {e:#}"),
        },
    };
    figures::figure_set(rows, Some(&fr).filter(|f| !f.points.is_empty()))
        .into_iter()
        .map(|mut f| {
            if f.name == "loss_vs_flops" && fr.points.is_empty() {
                f.note = fr.note.clone();
            }
            f
        })
        .collect()
}

/// Draws the figure set of a results file into `out`; returns the files written.
pub fn draw_figure_set(results: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let rows = figures::read_rows(results)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Vec::new();
    for f in figure_set(&rows) {
        let p = out.join(format!("{}.png", f.name));
        figures::draw(&p, &f).with_context(|| format!("drawing {}", p.display()))?;
        files.push(p);
    }
    Ok(files)
}

/// `brainscale scaling plots`.
pub fn run_plots(a: &PlotsConfig) -> Result<Vec<PathBuf>> {
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.results.parent().unwrap_or(Path::new(".")).join("figures"));
    draw_figure_set(&a.results, &out)
}
