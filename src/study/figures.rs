//! The figure set of the scaling study (arXiv 2410.19810) from a bench `results.csv`
//! (`brainscale scaling plots RESULTS.csv`; the loss figure carries the compute-optimal frontier of
//! the parametric law fitted to the held-out pretraining losses, [`frontier`]).
//!
//! | file | what |
//! |---|---|
//! | `r_vs_data.png` | encoding r against pretraining tokens D, one line per model |
//! | `r_vs_shape.png` | encoding r against width, depth and heads (one varied at a time), one line per D |
//! | `r_per_layer.png` | encoding r of each layer's features, one line per model (largest D) |
//! | `precision.png` | pretraining time and encoding r per model, one line per precision (largest D) |
//! | `loss_vs_flops.png` | held-out pretraining loss against training FLOPs, with the compute-optimal frontier of the fitted L(N, D) |
//!
//! Figures are built as [`Figure`] values (the exact points plotted, averaged over seeds when
//! a grid has several) and drawn by one renderer. Model-size and data-size figures use the
//! reference precision (fp32 when the grid has it).
//!
//! Error bars: a point's bar is ±1 sample sd of the values it averages, each subject's mean r
//! of each seed for encoding r (the `r_mean:SUBJECT` columns; the row's mean over subjects
//! where a file has none), each seed's value otherwise (per-layer r, loss, time); a point of
//! one value has none. The sd rather than a standard error or t interval: the subject × seed
//! values are not independent replicates (a subject's seeds share its data), so an interval of
//! the mean from n = subjects × seeds would be too narrow; the sd says how far single runs
//! spread, as the scaling fit's diagnostics give each cell (mean ± sd over seeds).
use crate::study::scaling::parametric::{self, FitOptions, Obs};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use crate::core::plot::{draw, Figure, Panel, Series, Style};

/// One results row, as the figures need it.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRow {
    pub model: String,
    pub n_layer: u64,
    pub n_head: u64,
    pub d_model: u64,
    /// Non-embedding parameters.
    pub n_params: f64,
    pub tokens: f64,
    pub flops: f64,
    pub precision: String,
    pub seed: u64,
    pub wall_s: f64,
    /// Pretraining seconds (pipeline cells, including any wait for another cell's turn at
    /// libtorch); None for other cells.
    pub pretrain_s: Option<f64>,
    /// Training throughput measured inside the training loop (pipeline cells).
    pub tokens_per_s: Option<f64>,
    pub eval_loss: Option<f64>,
    pub encoding_r: Option<f64>,
    /// Each subject's mean r (`r_mean:SUBJECT` columns; empty when the file has none).
    pub subject_r: BTreeMap<String, f64>,
    /// Mean r of each layer's features alone (`r_layer:L` columns; 0 = embeddings).
    pub layer_r: BTreeMap<usize, f64>,
}

/// Reads a bench results CSV. Errors name the file, line and column.
pub fn read_rows(path: &Path) -> Result<Vec<StudyRow>> {
    let mut rdr = csv::Reader::from_path(path)
        .with_context(|| format!("opening results file {}", path.display()))?;
    let header: Vec<String> = rdr
        .headers()
        .with_context(|| format!("reading the header of {}", path.display()))?
        .iter()
        .map(String::from)
        .collect();
    for need in [
        "model",
        "n_layer",
        "n_head",
        "d_model",
        "n_params",
        "tokens",
        "flops",
        "precision",
    ] {
        if !header.iter().any(|h| h == need) {
            bail!(
                "{}: no column '{need}' (not a bench results file?)",
                path.display()
            );
        }
    }
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{}: line {line}", path.display()))?;
        let get = |k: &str| -> &str {
            header
                .iter()
                .position(|h| h == k)
                .and_then(|p| rec.get(p))
                .unwrap_or("")
        };
        let num = |k: &str| -> Result<f64> {
            let s = get(k);
            let v: f64 = s.trim().parse().with_context(|| {
                format!(
                    "{}: line {line}, column {k}: '{s}' is not a number",
                    path.display()
                )
            })?;
            if !v.is_finite() {
                bail!(
                    "{}: line {line}, column {k}: {v} is not finite",
                    path.display()
                );
            }
            Ok(v)
        };
        let opt = |k: &str| -> Result<Option<f64>> {
            if get(k).trim().is_empty() {
                Ok(None)
            } else {
                num(k).map(Some)
            }
        };
        let mut layer_r = BTreeMap::new();
        let mut subject_r = BTreeMap::new();
        for h in &header {
            if let Some(s) = h.strip_prefix("r_mean:") {
                if let Some(v) = opt(h)? {
                    subject_r.insert(s.to_string(), v);
                }
            }
            if let Some(l) = h.strip_prefix("r_layer:") {
                let l: usize = l.parse().with_context(|| {
                    format!(
                        "{}: column '{h}': the layer is not a number",
                        path.display()
                    )
                })?;
                if let Some(v) = opt(h)? {
                    layer_r.insert(l, v);
                }
            }
        }
        rows.push(StudyRow {
            model: get("model").to_string(),
            n_layer: num("n_layer")? as u64,
            n_head: num("n_head")? as u64,
            d_model: num("d_model")? as u64,
            n_params: num("n_params")?,
            tokens: num("tokens")?,
            flops: num("flops")?,
            precision: get("precision").to_string(),
            seed: opt("seed")?.unwrap_or(0.0) as u64,
            wall_s: opt("wall_s")?.unwrap_or(f64::NAN),
            pretrain_s: opt("pretrain_s")?,
            tokens_per_s: opt("tokens_per_s")?,
            eval_loss: opt("eval_loss")?,
            encoding_r: opt("encoding_r")?,
            subject_r,
            layer_r,
        });
    }
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

/// The precision the size figures use: fp32 when present, else the most common one.
pub fn reference_precision(rows: &[StudyRow]) -> String {
    if rows.iter().any(|r| r.precision == "fp32") {
        return "fp32".into();
    }
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *count.entry(&r.precision).or_default() += 1;
    }
    count
        .into_iter()
        .max_by_key(|(_, c)| *c)
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// The values of `f` over rows (seeds) grouped by `key`, for [`Series::mean_sd`] (which
/// leaves out non-finite values and groups without any).
fn values_by<K: Ord>(
    rows: &[&StudyRow],
    key: impl Fn(&StudyRow) -> K,
    f: impl Fn(&StudyRow) -> Vec<f64>,
) -> BTreeMap<K, Vec<f64>> {
    let mut acc: BTreeMap<K, Vec<f64>> = BTreeMap::new();
    for r in rows {
        acc.entry(key(r)).or_default().extend(f(r));
    }
    acc
}

/// The values behind a row's encoding r: each subject's mean r, or the row's mean over
/// subjects when the file has no per-subject columns.
fn subject_values(r: &StudyRow) -> Vec<f64> {
    if r.subject_r.is_empty() {
        r.encoding_r.into_iter().collect()
    } else {
        r.subject_r.values().copied().collect()
    }
}

/// What the bars of encoding-r points are over (the figures' notes say it).
const R_BARS: &str = "subjects × seeds";

/// Models in increasing size, as (name, n_params, n_layer, n_head, d_model).
fn models(rows: &[&StudyRow]) -> Vec<(String, f64, u64, u64, u64)> {
    let mut m: Vec<_> = rows
        .iter()
        .map(|r| (r.model.clone(), r.n_params, r.n_layer, r.n_head, r.d_model))
        .collect();
    m.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    m.dedup_by(|a, b| a.0 == b.0);
    m
}

/// "; bars: ±1 sd over `what`" when a series of `panels` has error bars, else nothing: a
/// figure's note names its bars.
fn bars_note(panels: &[Panel], what: &str) -> String {
    let any = panels
        .iter()
        .flat_map(|p| &p.series)
        .any(|s| !s.errors.is_empty());
    if any {
        format!("; bars: ±1 sd over {what}")
    } else {
        String::new()
    }
}

fn tok_label(d: f64) -> String {
    format!("D = {d:.1e}")
}

/// Encoding r against pretraining tokens, one line per model (reference precision).
pub fn r_vs_data(rows: &[StudyRow]) -> Option<Figure> {
    let prec = reference_precision(rows);
    let sel: Vec<&StudyRow> = rows.iter().filter(|r| r.precision == prec).collect();
    let series: Vec<Series> = models(&sel)
        .into_iter()
        .filter_map(|(name, n, l, h, d)| {
            let m: Vec<&StudyRow> = sel.iter().copied().filter(|r| r.model == name).collect();
            let pts = values_by(&m, |r| r.tokens.to_bits(), subject_values);
            let s = Series::mean_sd(
                format!("{name} (N {n:.1e}; d{d} L{l} H{h})"),
                pts.into_iter().map(|(k, v)| (f64::from_bits(k), v)),
                Style::Line,
            );
            (!s.points.is_empty()).then_some(s)
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let panels = vec![Panel {
        title: String::new(),
        x_label: "pretraining tokens D".into(),
        y_label: "encoding r (mean over subjects and seeds)".into(),
        x_log: true,
        series,
    }];
    Some(Figure {
        name: "r_vs_data".into(),
        title: format!("Encoding r vs pretraining data ({prec})"),
        note: format!(
            "one line per model; r = mean over subjects and seeds of each subject's mean test r{}",
            bars_note(&panels, R_BARS)
        ),
        panels,
    })
}

/// The models of the grid that vary `attr` (0 width, 1 depth, 2 heads) with the other two
/// fixed: the largest such family (ties: the family with the most rows).
pub fn family(rows: &[StudyRow], attr: usize) -> Vec<String> {
    let ms = models(&rows.iter().collect::<Vec<_>>());
    let key = |m: &(String, f64, u64, u64, u64)| [m.4, m.2, m.3]; // width, depth, heads
    let mut groups: BTreeMap<Vec<u64>, Vec<&(String, f64, u64, u64, u64)>> = BTreeMap::new();
    for m in &ms {
        let k: Vec<u64> = (0..3).filter(|&a| a != attr).map(|a| key(m)[a]).collect();
        groups.entry(k).or_default().push(m);
    }
    let count = |g: &Vec<&(String, f64, u64, u64, u64)>| {
        let vals: BTreeSet<u64> = g.iter().map(|m| key(m)[attr]).collect();
        let n_rows = rows
            .iter()
            .filter(|r| g.iter().any(|m| m.0 == r.model))
            .count();
        (vals.len(), n_rows)
    };
    let best = groups
        .values()
        .filter(|g| count(g).0 >= 2)
        .max_by_key(|g| count(g));
    let mut out: Vec<&(String, f64, u64, u64, u64)> = best.cloned().unwrap_or_default();
    out.sort_by_key(|m| key(m)[attr]);
    out.into_iter().map(|m| m.0.clone()).collect()
}

/// Encoding r against width, depth and heads, each varied alone; one line per data size.
pub fn r_vs_shape(rows: &[StudyRow]) -> Option<Figure> {
    let prec = reference_precision(rows);
    let sel: Vec<StudyRow> = rows
        .iter()
        .filter(|r| r.precision == prec)
        .cloned()
        .collect();
    let names = ["width d_model", "depth n_layer", "heads n_head"];
    let mut panels = Vec::new();
    let mut fixed = Vec::new();
    for (attr, name) in names.iter().enumerate() {
        let fam = family(&sel, attr);
        if fam.is_empty() {
            continue;
        }
        let m: Vec<&StudyRow> = sel.iter().filter(|r| fam.contains(&r.model)).collect();
        let value = |r: &StudyRow| [r.d_model, r.n_layer, r.n_head][attr] as f64;
        let tokens: BTreeSet<u64> = m.iter().map(|r| r.tokens.to_bits()).collect();
        let series = tokens
            .into_iter()
            .map(|t| {
                let at: Vec<&StudyRow> = m
                    .iter()
                    .copied()
                    .filter(|r| r.tokens.to_bits() == t)
                    .collect();
                let pts = values_by(&at, |r| value(r).to_bits(), subject_values);
                Series::mean_sd(
                    tok_label(f64::from_bits(t)),
                    pts.into_iter().map(|(k, v)| (f64::from_bits(k), v)),
                    Style::Line,
                )
            })
            .filter(|s| !s.points.is_empty())
            .collect::<Vec<_>>();
        let r0 = m[0];
        let others: Vec<String> = [("d", r0.d_model), ("L", r0.n_layer), ("H", r0.n_head)]
            .iter()
            .enumerate()
            .filter(|(a, _)| *a != attr)
            .map(|(_, (k, v))| format!("{k}{v}"))
            .collect();
        fixed.push(format!(
            "{}: {}",
            name.split(' ').next().unwrap_or(""),
            others.join(" ")
        ));
        panels.push(Panel {
            title: format!("vs {name} ({})", others.join(", ")),
            x_label: name.to_string(),
            y_label: "encoding r".into(),
            x_log: false,
            series,
        });
    }
    (!panels.is_empty()).then(|| Figure {
        name: "r_vs_shape".into(),
        title: format!("Encoding r vs model shape, one dimension varied at a time ({prec})"),
        note: format!("fixed: {}{}", fixed.join("; "), bars_note(&panels, R_BARS)),
        panels,
    })
}

/// The data size at which the most models have rows passing `keep` (ties: the largest D), so
/// a partly run grid still compares models.
pub fn widest_d(rows: &[&StudyRow], keep: impl Fn(&[&StudyRow]) -> bool) -> Option<f64> {
    let ds: BTreeSet<u64> = rows.iter().map(|r| r.tokens.to_bits()).collect();
    ds.into_iter()
        .map(|d| {
            let at: Vec<&StudyRow> = rows
                .iter()
                .copied()
                .filter(|r| r.tokens.to_bits() == d)
                .collect();
            let names: BTreeSet<&str> = at.iter().map(|r| r.model.as_str()).collect();
            let n = names
                .into_iter()
                .filter(|m| {
                    keep(
                        &at.iter()
                            .copied()
                            .filter(|r| r.model == *m)
                            .collect::<Vec<_>>(),
                    )
                })
                .count();
            (n, f64::from_bits(d))
        })
        .filter(|(n, _)| *n > 0)
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(_, d)| d)
}

/// r of each layer's features alone, one line per model, at the data size where the most
/// models have them (the largest D in a complete grid).
pub fn r_per_layer(rows: &[StudyRow]) -> Option<Figure> {
    let prec = reference_precision(rows);
    let sel: Vec<&StudyRow> = rows
        .iter()
        .filter(|r| r.precision == prec && !r.layer_r.is_empty())
        .collect();
    let dmax = widest_d(&sel, |_| true)?;
    let sel: Vec<&StudyRow> = sel.into_iter().filter(|r| r.tokens == dmax).collect();
    let series: Vec<Series> = models(&sel)
        .into_iter()
        .map(|(name, _, l, h, d)| {
            let m: Vec<&StudyRow> = sel.iter().copied().filter(|r| r.model == name).collect();
            let layers: BTreeSet<usize> =
                m.iter().flat_map(|r| r.layer_r.keys().copied()).collect();
            let pts = layers.into_iter().map(|l| {
                let v: Vec<f64> = m
                    .iter()
                    .filter_map(|r| r.layer_r.get(&l).copied())
                    .collect();
                (l as f64, v)
            });
            Series::mean_sd(format!("{name} (d{d} L{l} H{h})"), pts, Style::Line)
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let panels = vec![Panel {
        title: String::new(),
        x_label: "layer (0 = embeddings)".into(),
        y_label: "encoding r of that layer's features".into(),
        x_log: false,
        series,
    }];
    Some(Figure {
        name: "r_per_layer".into(),
        title: format!("Encoding r per layer (D = {dmax:.1e}, {prec})"),
        note: format!(
            "each layer's hidden states, averaged per clip, encoded alone (r: mean over subjects){}",
            bars_note(&panels, "seeds")
        ),
        panels,
    })
}

/// Pretraining time and encoding r per model, one line per precision, at the data size where
/// the most models ran in every precision (the largest D in a complete grid).
pub fn precision(rows: &[StudyRow]) -> Option<Figure> {
    let precs: BTreeSet<&str> = rows.iter().map(|r| r.precision.as_str()).collect();
    if precs.len() < 2 {
        return None;
    }
    let all: Vec<&StudyRow> = rows.iter().collect();
    let dmax = widest_d(&all, |m| {
        precs.iter().all(|p| m.iter().any(|r| r.precision == *p))
    })?;
    let sel: Vec<&StudyRow> = rows.iter().filter(|r| r.tokens == dmax).collect();
    // Training seconds from the loop's own throughput when known: parallel cells wait for each
    // other's turn at libtorch, which pretrain_s includes.
    let time = |r: &StudyRow| {
        r.tokens_per_s
            .filter(|t| *t > 0.0)
            .map(|t| r.tokens / t)
            .or(r.pretrain_s)
            .or(Some(r.wall_s))
    };
    let per = |f: &dyn Fn(&StudyRow) -> Vec<f64>| -> Vec<Series> {
        precs
            .iter()
            .map(|p| {
                let m: Vec<&StudyRow> = sel.iter().copied().filter(|r| r.precision == *p).collect();
                // One point per model (mean over seeds) at its N: models of the same N (other
                // heads) stay two points rather than being averaged into one.
                let pts = values_by(&m, |r| (r.n_params.to_bits(), r.model.clone()), f);
                Series::mean_sd(
                    p.to_string(),
                    pts.into_iter().map(|((k, _), v)| (f64::from_bits(k), v)),
                    Style::Line,
                )
            })
            .collect()
    };
    let timed = if sel.iter().all(|r| r.tokens_per_s.is_some()) {
        "training time (s) = D / measured tokens per s"
    } else if sel.iter().all(|r| r.pretrain_s.is_some()) {
        "pretraining time (s)"
    } else {
        "cell wall time (s)"
    };
    let panels = vec![
        Panel {
            title: "training time".into(),
            x_label: "parameters N (non-embedding)".into(),
            y_label: timed.into(),
            x_log: true,
            series: per(&|r: &StudyRow| time(r).into_iter().collect()),
        },
        Panel {
            title: "encoding r".into(),
            x_label: "parameters N (non-embedding)".into(),
            y_label: "encoding r".into(),
            x_log: true,
            series: per(&subject_values),
        },
    ];
    Some(Figure {
        name: "precision".into(),
        title: format!("fp32 vs 16-bit training (D = {dmax:.1e})"),
        note: format!(
            "same models, data and seeds, only the precision differs; one point per model (equal-N models share an x){}",
            bars_note(&panels, "seeds (time), subjects × seeds (r)")
        ),
        panels,
    })
}

/// A compute-optimal frontier to draw: (C, loss) points and what they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Frontier {
    pub points: Vec<(f64, f64)>,
    pub note: String,
}

/// The rows of [`loss_vs_flops`]: reference precision, with a held-out loss.
pub fn loss_rows(rows: &[StudyRow]) -> Vec<&StudyRow> {
    let prec = reference_precision(rows);
    rows.iter()
        .filter(|r| r.precision == prec && r.eval_loss.is_some())
        .collect()
}

/// Held-out pretraining loss against FLOPs, points per model, and the fitted frontier
/// ([`frontier`] fits it to [`loss_rows`]).
pub fn loss_vs_flops(rows: &[StudyRow], frontier: Option<&Frontier>) -> Option<Figure> {
    let prec = reference_precision(rows);
    let sel = loss_rows(rows);
    if sel.is_empty() {
        return None;
    }
    let mut series: Vec<Series> = models(&sel)
        .into_iter()
        .map(|(name, n, ..)| {
            let m: Vec<&StudyRow> = sel.iter().copied().filter(|r| r.model == name).collect();
            let pts = values_by(
                &m,
                |r| r.flops.to_bits(),
                |r| r.eval_loss.into_iter().collect(),
            );
            Series::mean_sd(
                format!("{name} (N {n:.1e})"),
                pts.into_iter().map(|(k, v)| (f64::from_bits(k), v)),
                Style::Points,
            )
        })
        .collect();
    let note = match frontier {
        Some(f) => {
            series.push(Series::new(
                "frontier of fitted L(N, D)",
                f.points.clone(),
                Style::Dashed,
            ));
            f.note.clone()
        }
        None => NO_FRONTIER.into(),
    };
    let panels = vec![Panel {
        title: String::new(),
        x_label: "training FLOPs C".into(),
        y_label: "held-out loss (nats per code)".into(),
        x_log: true,
        series,
    }];
    Some(Figure {
        name: "loss_vs_flops".into(),
        title: format!("Held-out pretraining loss vs training compute ({prec})"),
        note: format!("{note}{}", bars_note(&panels, "seeds")),
        panels,
    })
}

/// The loss figure's note without a frontier ([`figure_set`] says why there is none).
const NO_FRONTIER: &str = "no frontier fitted";

/// Every figure the rows allow, in the order of the module docs.
pub fn figure_set_with(rows: &[StudyRow], frontier: Option<&Frontier>) -> Vec<Figure> {
    [
        r_vs_data(rows),
        r_vs_shape(rows),
        r_per_layer(rows),
        precision(rows),
        loss_vs_flops(rows, frontier),
    ]
    .into_iter()
    .flatten()
    .collect()
}

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
    let sel = loss_rows(rows);
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
    figure_set_with(rows, Some(&fr).filter(|f| !f.points.is_empty()))
        .into_iter()
        .map(|mut f| {
            if f.name == "loss_vs_flops" && fr.points.is_empty() {
                f.note = f.note.replacen(NO_FRONTIER, &fr.note, 1);
            }
            f
        })
        .collect()
}

/// Draws the figure set of a results file into `out`; returns the files written.
pub fn draw_figure_set(results: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let rows = read_rows(results)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Vec::new();
    for f in figure_set(&rows) {
        let p = out.join(format!("{}.png", f.name));
        draw(&p, &f).with_context(|| format!("drawing {}", p.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, d: u64, tokens: f64, prec: &str, r: f64) -> StudyRow {
        StudyRow {
            model: model.into(),
            n_layer: 2,
            n_head: 2,
            d_model: d,
            n_params: (24 * d * d) as f64,
            tokens,
            flops: 1.0,
            precision: prec.into(),
            seed: 0,
            wall_s: 1.0,
            pretrain_s: Some(1.0),
            tokens_per_s: None,
            eval_loss: None,
            encoding_r: Some(r),
            subject_r: BTreeMap::new(),
            layer_r: [(0, r / 2.0), (1, r)].into_iter().collect(),
        }
    }

    #[test]
    fn precision_keeps_models_of_equal_size_apart() {
        // Two shapes of the same N (other head counts): two points each, never their mean.
        let mut rows = Vec::new();
        for p in ["fp32", "bf16"] {
            rows.push(row("h2", 64, 8e5, p, 0.20));
            rows.push(row("h4", 64, 8e5, p, 0.30));
        }
        let f = precision(&rows).unwrap();
        let n = (24 * 64 * 64) as f64;
        for s in &f.panels[1].series {
            let mut ys: Vec<f64> = s.points.iter().map(|q| q.1).collect();
            ys.sort_by(f64::total_cmp);
            assert_eq!(ys, vec![0.20, 0.30], "{}", s.label);
            assert!(s.points.iter().all(|q| q.0 == n));
        }
    }

    #[test]
    fn a_partly_run_grid_compares_models_where_most_ran() {
        // The base model at three D in both precisions, the others only at D = 2e5 in fp32.
        let mut rows = Vec::new();
        for t in [5e4, 2e5, 8e5] {
            for p in ["fp32", "bf16"] {
                rows.push(row("base", 64, t, p, 0.2));
            }
        }
        rows.push(row("wide", 128, 2e5, "fp32", 0.3));
        rows.push(row("narrow", 32, 2e5, "fp32", 0.1));
        let f = r_per_layer(&rows).unwrap();
        assert!(f.title.contains("2.0e5"), "{}", f.title);
        assert_eq!(f.panels[0].series.len(), 3);
        // Precision: only the base model ran both; the largest D where it did.
        let f = precision(&rows).unwrap();
        assert!(f.title.contains("8.0e5"), "{}", f.title);
        assert_eq!(
            f.panels[1].series[0].points,
            vec![((24 * 64 * 64) as f64, 0.2)]
        );
        // Training time from the measured throughput when the rows have it.
        let mut with_tps = rows.clone();
        for r in &mut with_tps {
            r.tokens_per_s = Some(if r.precision == "fp32" {
                4000.0
            } else {
                2000.0
            });
        }
        let f = precision(&with_tps).unwrap();
        let t = &f.panels[0];
        assert!(t.y_label.contains("tokens per s"));
        assert_eq!(t.series[0].label, "bf16");
        assert_eq!(
            t.series[0].points,
            vec![((24 * 64 * 64) as f64, 8e5 / 2000.0)]
        );
        assert_eq!(
            t.series[1].points,
            vec![((24 * 64 * 64) as f64, 8e5 / 4000.0)]
        );
        // No second precision: no precision figure.
        let fp32: Vec<StudyRow> = rows.into_iter().filter(|r| r.precision == "fp32").collect();
        assert!(precision(&fp32).is_none());
        assert_eq!(family(&fp32, 0), vec!["narrow", "base", "wide"]);
        assert!(family(&fp32, 1).is_empty(), "depth is not varied");
    }
}
