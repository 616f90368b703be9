//! PNG plots of a scaling fit (plotters, bitmap backend, text drawn with ab_glyph from a TTF
//! file so no fontconfig is needed): the target against data size per model, against model
//! size per data size, the iso-FLOP profiles with their minima, and the compute-optimal
//! frontier. Held-out rows are drawn as hollow markers; the rows of one cell (its seeds) as one
//! marker at their mean with a ±1 sd bar ([`seed_means`]).
use crate::study::scaling::report::{FitReport, ValidateReport};
use crate::study::scaling::{Direction, Point};
use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

pub(super) const W: u32 = 1100;
pub(super) const H: u32 = 750;

use crate::core::plot::{ensure_font, BarPoint};

/// Draws every plot into `out`; returns the files written.
pub fn draw_all(out: &Path, r: &FitReport, fit: &[Point], held: &[Point]) -> Result<Vec<PathBuf>> {
    ensure_font()?;
    let mut files = Vec::new();
    let f = out.join("target_vs_data.png");
    draw_vs(&f, r, fit, held, Axis::Data).with_context(|| format!("drawing {}", f.display()))?;
    files.push(f);
    let f = out.join("target_vs_model.png");
    draw_vs(&f, r, fit, held, Axis::Model).with_context(|| format!("drawing {}", f.display()))?;
    files.push(f);
    if !r.isoflop.fit.profiles.is_empty() {
        let f = out.join("isoflop.png");
        draw_isoflop(&f, r, fit).with_context(|| format!("drawing {}", f.display()))?;
        files.push(f);
    }
    let f = out.join("frontier.png");
    draw_frontier(&f, r, fit, held).with_context(|| format!("drawing {}", f.display()))?;
    files.push(f);
    Ok(files)
}

/// Renders through a temporary PNG renamed into place.
pub(super) fn render<F>(path: &Path, draw: F) -> Result<()>
where
    F: FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
{
    crate::core::io::write_atomic(path, |tmp| {
        let root = BitMapBackend::new(tmp, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        draw(root.clone())?;
        root.present().map_err(|e| anyhow!("{e}"))?;
        Ok(())
    })
}

pub(super) fn color(i: usize, k: usize) -> RGBColor {
    // Evenly spaced along viridis-like stops, readable on white.
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (220.0, 190.0, 30.0),
    ];
    let t = if k <= 1 {
        0.0
    } else {
        i as f64 / (k - 1) as f64
    } * (STOPS.len() - 1) as f64;
    let j = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - j as f64;
    let lerp = |a: f64, b: f64| (a + f * (b - a)).round() as u8;
    RGBColor(
        lerp(STOPS[j].0, STOPS[j + 1].0),
        lerp(STOPS[j].1, STOPS[j + 1].1),
        lerp(STOPS[j].2, STOPS[j + 1].2),
    )
}

/// Distinct values (relative tolerance 1e-6) in increasing order.
fn levels(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.dedup_by(|a, b| (*a - *b).abs() <= 1e-6 * b.abs());
    v
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(a.abs())
}

pub(super) fn log_range(v: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = v.fold((f64::INFINITY, 0.0f64), |(l, h), x| (l.min(x), h.max(x)));
    lo / 1.3..hi * 1.3
}

pub(super) fn lin_range(v: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    let pad = ((hi - lo) * 0.08).max(1e-6 * hi.abs().max(1e-12));
    lo - pad..hi + pad
}

/// Curves fall with compute for losses and rise for correlations: put the legend where they
/// are not.
fn legend_pos(r: &FitReport) -> SeriesLabelPosition {
    match r.columns.direction {
        crate::study::scaling::Direction::Lower => SeriesLabelPosition::UpperRight,
        crate::study::scaling::Direction::Higher => SeriesLabelPosition::LowerRight,
    }
}

pub(super) fn sci(v: &f64) -> String {
    format!("{v:.0e}")
}

pub(super) fn e<T: std::fmt::Display>(x: T) -> anyhow::Error {
    anyhow!("{x}")
}

enum Axis {
    Data,
    Model,
}

/// A curve's markers: the rows of `pts` sharing an x (a cell's seeds) as one point at their
/// mean target, with a ±1 sample-sd bar (low, high) when there are several, as the fit's
/// diagnostics summarise cells (`diagnostics::cells`); sorted by x.
fn seed_means(pts: &[&Point], x_of: fn(&Point) -> f64) -> Vec<BarPoint> {
    levels(pts.iter().map(|p| x_of(p)))
        .into_iter()
        .filter_map(|x| {
            let v: Vec<f64> = pts
                .iter()
                .filter(|p| same(x_of(p), x))
                .map(|p| p.value)
                .collect();
            let (m, sd) = crate::core::plot::mean_sd(&v)?;
            Some((x, m, sd.map(|s| (m - s, m + s))))
        })
        .collect()
}

/// Vertical error bars at `pts` (those with one), in colour `col`.
fn bars(
    pts: &[BarPoint],
    col: RGBColor,
) -> Vec<ErrorBar<f64, f64, plotters::element::ErrorBarOrientV<f64, f64>>> {
    pts.iter()
        .filter_map(|&(x, y, b)| {
            b.map(|(lo, hi)| ErrorBar::new_vertical(x, lo, y, hi, col.stroke_width(1), 8))
        })
        .collect()
}

/// Target against D (one curve per model size) or against N (one curve per data size), with
/// the parametric law's prediction dashed in the same colour.
fn draw_vs(path: &Path, r: &FitReport, fit: &[Point], held: &[Point], axis: Axis) -> Result<()> {
    let all: Vec<&Point> = fit.iter().chain(held).collect();
    let (x_of, key_of, xname, keyname): (fn(&Point) -> f64, fn(&Point) -> f64, &str, &str) =
        match axis {
            Axis::Data => (|p| p.d, |p| p.n, "training tokens D", "N"),
            Axis::Model => (|p| p.n, |p| p.d, "parameters N", "D"),
        };
    let keys = levels(all.iter().map(|p| key_of(p)));
    let law = r.parametric.fit.law;
    let dir = r.columns.direction;
    // Per key: the fitted rows' and the held-out rows' markers (seeds as mean ± sd).
    let curves: Vec<_> = keys
        .iter()
        .map(|&k| {
            let of = |set: &[Point]| -> Vec<BarPoint> {
                let v: Vec<&Point> = set.iter().filter(|p| same(key_of(p), k)).collect();
                seed_means(&v, x_of)
            };
            (of(fit), of(held))
        })
        .collect();
    let xr = log_range(all.iter().map(|p| x_of(p)));
    let yr = lin_range(curves.iter().flat_map(|(f, h)| {
        f.iter()
            .chain(h)
            .flat_map(|&(_, y, b)| [y, b.map_or(y, |b| b.0), b.map_or(y, |b| b.1)])
    }));
    let title = format!("{} vs {}, per {}", r.columns.target, xname, keyname);
    render(path, |root| {
        let (main, foot) = root.split_vertically(H - 26);
        let mut ch = ChartBuilder::on(&main)
            .caption(title, ("sans-serif", 26))
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(xr.clone().log_scale(), yr.clone())
            .map_err(e)?;
        ch.configure_mesh()
            .x_desc(xname)
            .y_desc(r.columns.target.as_str())
            .x_label_formatter(&sci)
            .light_line_style(RGBColor(238, 238, 238))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(e)?;
        let legend = keys.len() <= 14;
        for (i, (&k, (fitted, heldp))) in keys.iter().zip(&curves).enumerate() {
            let col = color(i, keys.len());
            let mut pts: Vec<(f64, f64)> = fitted
                .iter()
                .chain(heldp)
                .map(|&(x, y, _)| (x, y))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if pts.len() >= 2 {
                ch.draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
                    .map_err(e)?;
            }
            ch.draw_series(bars(fitted, col).into_iter().chain(bars(heldp, col)))
                .map_err(e)?;
            let s = ch
                .draw_series(
                    fitted
                        .iter()
                        .map(|&(x, y, _)| Circle::new((x, y), 4, col.filled())),
                )
                .map_err(e)?;
            if legend {
                s.label(format!("{keyname} = {k:.2e}"))
                    .legend(move |(x, y)| Circle::new((x + 8, y), 5, col.filled()));
            }
            ch.draw_series(
                heldp
                    .iter()
                    .map(|&(x, y, _)| Circle::new((x, y), 5, col.stroke_width(2))),
            )
            .map_err(e)?;
            // The law along this curve (over the plotted x range, 60 points).
            if pts.len() >= 2 {
                let (x0, x1) = (pts[0].0.ln(), pts[pts.len() - 1].0.ln());
                let curve = (0..60).map(|j| {
                    let x = (x0 + (x1 - x0) * j as f64 / 59.0).exp();
                    let y = match axis {
                        Axis::Data => law.predict(k, x),
                        Axis::Model => law.predict(x, k),
                    };
                    (x, dir.from_loss(y))
                });
                let curve: Vec<(f64, f64)> = curve.filter(|(_, y)| yr.contains(y)).collect();
                ch.draw_series(DashedLineSeries::new(curve, 6, 4, col.stroke_width(1)))
                    .map_err(e)?;
            }
        }
        if legend {
            ch.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(legend_pos(r))
                .draw()
                .map_err(e)?;
        }
        let note = "solid: runs (a cell's seeds: mean, bar ±1 sd)   dashed: fitted L(N,D)   hollow: held out";
        foot.draw_text(note, &("sans-serif", 14).into_text_style(&foot), (80, 4))
            .map_err(e)?;
        Ok(())
    })
}

/// Each budget's runs (target against N), its parabola and the vertex (a cross).
fn draw_isoflop(path: &Path, r: &FitReport, fit: &[Point]) -> Result<()> {
    let profs = &r.isoflop.fit.profiles;
    let dir = r.columns.direction;
    let xr = log_range(fit.iter().map(|p| p.n).chain(profs.iter().map(|p| p.n_opt)));
    let yr = lin_range(
        fit.iter()
            .map(|p| p.value)
            .chain(profs.iter().map(|p| dir.from_loss(p.loss_opt))),
    );
    let tol = 0.6; // colour runs by the nearest profile budget in log space
    render(path, |root| {
        let (main, foot) = root.split_vertically(H - 26);
        let mut ch = ChartBuilder::on(&main)
            .caption(
                format!("iso-FLOP profiles of {}", r.columns.target),
                ("sans-serif", 26),
            )
            .margin(14)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(xr.clone().log_scale(), yr.clone())
            .map_err(e)?;
        ch.configure_mesh()
            .x_desc("parameters N")
            .y_desc(r.columns.target.as_str())
            .x_label_formatter(&sci)
            .light_line_style(RGBColor(238, 238, 238))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(e)?;
        for (i, pr) in profs.iter().enumerate() {
            let col = color(i, profs.len());
            let runs: Vec<&Point> = fit
                .iter()
                .filter(|p| {
                    let nearest = profs
                        .iter()
                        .min_by(|a, b| {
                            (a.budget.ln() - p.c.ln())
                                .abs()
                                .total_cmp(&(b.budget.ln() - p.c.ln()).abs())
                        })
                        .unwrap();
                    std::ptr::eq(nearest, pr) && (pr.budget.ln() - p.c.ln()).abs() < tol
                })
                .collect();
            ch.draw_series(
                runs.iter()
                    .map(|p| Circle::new((p.n, p.value), 4, col.filled())),
            )
            .map_err(e)?
            .label(format!("C = {:.1e}", pr.budget))
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, col.filled()));
            let (lo, hi) = runs
                .iter()
                .fold((pr.n_opt.ln(), pr.n_opt.ln()), |(l, h), p| {
                    (l.min(p.n.ln()), h.max(p.n.ln()))
                });
            let curve: Vec<(f64, f64)> = (0..80)
                .map(|j| {
                    let x = lo + (hi - lo) * j as f64 / 79.0;
                    let y = pr.coef[0] + pr.coef[1] * x + pr.coef[2] * x * x;
                    (x.exp(), dir.from_loss(y))
                })
                .filter(|(_, y)| yr.contains(y))
                .collect();
            ch.draw_series(LineSeries::new(curve, col.stroke_width(2)))
                .map_err(e)?;
            ch.draw_series(std::iter::once(Cross::new(
                (pr.n_opt, dir.from_loss(pr.loss_opt)),
                8,
                BLACK.stroke_width(3),
            )))
            .map_err(e)?;
        }
        if profs.len() <= 14 {
            ch.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(legend_pos(r))
                .draw()
                .map_err(e)?;
        }
        foot.draw_text(
            "lines: parabola in log N per budget   crosses: its optimum (compute-optimal N)",
            &("sans-serif", 14).into_text_style(&foot),
            (80, 4),
        )
        .map_err(e)?;
        Ok(())
    })
}

/// N_opt and D_opt against C: iso-FLOP minima, their power-law fits, and the parametric law's
/// allocation, over every run.
fn draw_frontier(path: &Path, r: &FitReport, fit: &[Point], held: &[Point]) -> Result<()> {
    let cs = fit
        .iter()
        .chain(held)
        .map(|p| p.c)
        .chain(r.budgets.iter().map(|b| b.budget));
    let runs: Vec<(f64, f64, f64)> = fit.iter().chain(held).map(|p| (p.c, p.n, p.d)).collect();
    allocation_panels(path, r, log_range(cs), &runs, None)
}

/// A measured optimum to mark on [`allocation_panels`]: C, (N, D) and its legend text.
pub(super) type Measured<'a> = (f64, (f64, f64), &'a str);

/// Two panels, N_opt and D_opt against C over `cr` (log axes): the parametric law's allocation
/// (C = K·N·D), the iso-FLOP minima and their power-law fit, `runs` (C, N, D) as grey dots, and
/// an optional `measured` optimum (green). Used by `scaling fit` (frontier.png) and `scaling
/// validate` (allocation.png).
pub(super) fn allocation_panels(
    path: &Path,
    r: &FitReport,
    cr: std::ops::Range<f64>,
    runs: &[(f64, f64, f64)],
    measured: Option<Measured>,
) -> Result<()> {
    let profs = &r.isoflop.fit.profiles;
    let law = r.parametric.fit.law;
    if !(cr.start > 0.0 && cr.end.is_finite()) {
        bail!("no compute range to plot");
    }
    let grid: Vec<f64> = (0..60)
        .map(|j| (cr.start.ln() + (cr.end.ln() - cr.start.ln()) * j as f64 / 59.0).exp())
        .collect();
    render(path, |root| {
        let (left, right) = root.split_horizontally(W / 2);
        for (k, area) in [left, right].into_iter().enumerate() {
            let pick = |nd: (f64, f64)| if k == 0 { nd.0 } else { nd.1 };
            let name = if k == 0 {
                "N_opt (parameters)"
            } else {
                "D_opt (tokens)"
            };
            let par: Vec<(f64, f64)> = grid
                .iter()
                .map(|&c| (c, pick(law.optimal_k(c, r.c_per_nd))))
                .collect();
            let pts: Vec<(f64, f64)> = profs
                .iter()
                .map(|p| (p.budget, pick((p.n_opt, p.d_opt))))
                .collect();
            let power = if k == 0 {
                r.isoflop.fit.n_opt
            } else {
                r.isoflop.fit.d_opt
            };
            let iso: Vec<(f64, f64)> = power
                .map(|pl| grid.iter().map(|&c| (c, pl.at(c))).collect())
                .unwrap_or_default();
            let runs: Vec<(f64, f64)> = runs.iter().map(|&(c, n, d)| (c, pick((n, d)))).collect();
            let meas = measured.map(|(c, nd, _)| (c, pick(nd)));
            let yr = log_range(
                par.iter()
                    .chain(&pts)
                    .chain(&iso)
                    .chain(&runs)
                    .chain(meas.iter())
                    .map(|v| v.1),
            );
            // Reach down to a power of ten so a range within one decade still gets tick labels.
            let yr = yr.start.min(10f64.powf(yr.start.log10().floor()))..yr.end;
            let mut ch = ChartBuilder::on(&area)
                .caption(
                    format!("compute-optimal {}", if k == 0 { "N" } else { "D" }),
                    ("sans-serif", 24),
                )
                .margin(14)
                .x_label_area_size(48)
                .y_label_area_size(70)
                .build_cartesian_2d(cr.clone().log_scale(), yr.log_scale())
                .map_err(e)?;
            ch.configure_mesh()
                .x_desc("training compute C (FLOPs)")
                .y_desc(name)
                .x_label_formatter(&sci)
                .y_label_formatter(&sci)
                .light_line_style(RGBColor(238, 238, 238))
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .draw()
                .map_err(e)?;
            let grey = RGBColor(170, 170, 170);
            if !runs.is_empty() {
                ch.draw_series(runs.iter().map(|&p| Circle::new(p, 3, grey.filled())))
                    .map_err(e)?
                    .label("runs")
                    .legend(move |(x, y)| Circle::new((x + 8, y), 3, grey.filled()));
            }
            let blue = RGBColor(33, 102, 172);
            ch.draw_series(DashedLineSeries::new(par, 8, 5, blue.stroke_width(2)))
                .map_err(e)?
                .label(format!(
                    "parametric law (C = {}ND): C^{:.3}",
                    crate::study::scaling::sig(r.c_per_nd),
                    if k == 0 {
                        r.parametric.a
                    } else {
                        r.parametric.b
                    }
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], blue.stroke_width(2))
                });
            let red = RGBColor(200, 50, 40);
            if let Some(pl) = power {
                ch.draw_series(LineSeries::new(iso, red.stroke_width(2)))
                    .map_err(e)?
                    .label(format!("iso-FLOP fit: C^{:.3}", pl.exponent))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], red.stroke_width(2))
                    });
            }
            ch.draw_series(pts.iter().map(|&p| Cross::new(p, 7, BLACK.stroke_width(3))))
                .map_err(e)?
                .label("iso-FLOP minima")
                .legend(move |(x, y)| Cross::new((x + 8, y), 5, BLACK.stroke_width(2)));
            if let (Some(m), Some((_, _, label))) = (meas, measured) {
                let green = RGBColor(30, 150, 60);
                ch.draw_series(std::iter::once(Circle::new(m, 8, green.filled())))
                    .map_err(e)?
                    .label(label)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 6, green.filled()));
            }
            ch.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(e)?;
        }
        Ok(())
    })
}

/// The sweep at the validation budget: runs, parabola, vertex, and each method's predicted N_opt.
pub fn draw_check(path: &Path, r: &ValidateReport, dir: Direction) -> Result<()> {
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
pub fn draw_allocation(path: &Path, r: &ValidateReport, fit: &FitReport) -> Result<()> {
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
    allocation_panels(
        path,
        fit,
        log_range([lo, r.at].into_iter()),
        &[],
        Some(measured),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(n: f64, d: f64, value: f64) -> Point {
        Point {
            n,
            d,
            c: 6.0 * n * d,
            value,
            loss: 1.0 - value,
        }
    }

    #[test]
    fn seeds_of_a_cell_are_one_point_with_a_bar() {
        // Three seeds at D = 1e5 (0.1, 0.2, 0.3: mean 0.2, sample sd 0.1), one at D = 1e6.
        let rows = [
            pt(1e4, 1e6, 0.4),
            pt(1e4, 1e5, 0.3),
            pt(1e4, 1e5, 0.1),
            pt(1e4, 1e5 * (1.0 + 1e-9), 0.2),
        ];
        let refs: Vec<&Point> = rows.iter().collect();
        let m = seed_means(&refs, |p| p.d);
        assert_eq!(m.len(), 2);
        let (x, y, b) = m[0];
        assert!((x - 1e5).abs() < 1.0 && (y - 0.2).abs() < 1e-12);
        let (lo, hi) = b.unwrap();
        assert!(
            (lo - 0.1).abs() < 1e-12 && (hi - 0.3).abs() < 1e-12,
            "{lo} {hi}"
        );
        assert_eq!(m[1], (1e6, 0.4, None), "one seed: no bar");
        assert_eq!(bars(&m, BLACK).len(), 1);
    }
}
