//! Plotting primitives every figure shares: the font, and line/point figures as plain data
//! ([`Figure`] → [`Panel`] → [`Series`], the exact points plotted, which tests check) drawn to PNG
//! by one renderer ([`draw`], plotters), optionally with per-point error bars
//! ([`Series::errors`]; [`Series::mean_sd`] makes mean ± sd points). The stat maps (`fmri::maps::statmap`), the study's figure
//! set (`study::figures`), the scaling fits' plots and the transfer study's figures build on it.

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

/// Fonts tried in order; `BRAINSCALE_FONT` overrides. fonts-dejavu-core is installed by
/// scripts/install-deps.sh.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers one TTF as "sans-serif" once per process (plotters' ab_glyph backend, so no
/// fontconfig is needed). Errors name every path tried and how to fix it.
pub fn ensure_font() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut tried = Vec::new();
        let env = std::env::var("BRAINSCALE_FONT").ok();
        for p in env.iter().map(String::as_str).chain(FONT_PATHS.iter().copied()) {
            tried.push(p.to_string());
            if let Ok(bytes) = std::fs::read(p) {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{p} is not a usable TrueType font"));
            }
        }
        Err(format!(
            "no font for figure labels (tried {}): install fonts-dejavu-core (scripts/install-deps.sh), \
             set BRAINSCALE_FONT=/path/to/font.ttf, or pass --no-plots",
            tried.join(", ")
        ))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// plotters' errors as anyhow errors.
pub(crate) fn e<T: std::fmt::Display>(x: T) -> anyhow::Error {
    anyhow!("{x}")
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// Markers joined by a line.
    Line,
    /// Markers only.
    Points,
    /// A dashed curve without markers (fits).
    Dashed,
}

/// One line or set of markers of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    /// (x, y) in data units, sorted by x.
    pub points: Vec<(f64, f64)>,
    /// Per point, the interval drawn as a vertical error bar, (low, high) in y units, or None
    /// for no bar. Empty when the series has no bars, else as long as `points`.
    pub errors: Vec<Option<(f64, f64)>>,
    pub style: Style,
}

impl Series {
    /// A series without error bars.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, style: Style) -> Self {
        Self {
            label: label.into(),
            points,
            errors: Vec::new(),
            style,
        }
    }

    /// A series of means with ±1 sd bars: one point per `(x, values)` group at the mean of its
    /// (finite) values, its bar mean ± the sample sd (n − 1) when the group has ≥ 2 values and
    /// none with one; groups without a finite value are left out; sorted by x.
    pub fn mean_sd(
        label: impl Into<String>,
        groups: impl IntoIterator<Item = (f64, Vec<f64>)>,
        style: Style,
    ) -> Self {
        let mut pts: Vec<BarPoint> = groups
            .into_iter()
            .filter_map(|(x, v)| {
                let (m, sd) = mean_sd(&v)?;
                Some((x, m, sd.map(|sd| (m - sd, m + sd))))
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let errors = if pts.iter().any(|p| p.2.is_some()) {
            pts.iter().map(|p| p.2).collect()
        } else {
            Vec::new()
        };
        Self {
            label: label.into(),
            points: pts.iter().map(|p| (p.0, p.1)).collect(),
            errors,
            style,
        }
    }
}

/// A point with its error bar: (x, y, Some((low, high)) or None).
pub type BarPoint = (f64, f64, Option<(f64, f64)>);

/// Mean and sample standard deviation (n − 1 denominator) of the finite values of `v`: None
/// when there is none, the sd None with one value.
pub fn mean_sd(v: &[f64]) -> Option<(f64, Option<f64>)> {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len() as f64;
    if v.is_empty() {
        return None;
    }
    let m = v.iter().sum::<f64>() / n;
    let sd =
        (v.len() >= 2).then(|| (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((m, sd))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub series: Vec<Series>,
}

/// One figure file: panels side by side, and a note under them.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// File stem, e.g. "r_vs_data".
    pub name: String,
    pub title: String,
    pub panels: Vec<Panel>,
    pub note: String,
}

const W: u32 = 1300;
const H: u32 = 620;

fn colour(i: usize, k: usize) -> RGBColor {
    // Tableau 10: distinct on white for up to 10 series.
    const T: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let _ = k;
    let c = T[i % T.len()];
    RGBColor(c.0, c.1, c.2)
}

fn range(v: impl Iterator<Item = f64>, pad: f64) -> std::ops::Range<f64> {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let p = ((hi - lo) * pad).max(1e-3 * hi.abs().max(1e-3));
    lo - p..hi + p
}

/// Draws a figure to PNG (temp + rename).
pub fn draw(path: &Path, fig: &Figure) -> Result<()> {
    crate::core::plot::ensure_font()?;
    crate::core::io::write_atomic(path, |tmp| {
        let root = BitMapBackend::new(tmp, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(crate::core::plot::e)?;
        let (head, rest) = root.split_vertically(44);
        let (body, foot) = rest.split_vertically(H - 44 - 28);
        head.draw_text(
            &fig.title,
            &("sans-serif", 24).into_text_style(&head),
            (16, 10),
        )
        .map_err(crate::core::plot::e)?;
        foot.draw_text(
            &fig.note,
            &("sans-serif", 14).into_text_style(&foot),
            (16, 6),
        )
        .map_err(crate::core::plot::e)?;
        let areas = body.split_evenly((1, fig.panels.len().max(1)));
        for (p, area) in fig.panels.iter().zip(areas) {
            draw_panel(&area, p)?;
        }
        root.present().map_err(crate::core::plot::e)?;
        Ok(())
    })
}

fn draw_panel(area: &DrawingArea<BitMapBackend, plotters::coord::Shift>, p: &Panel) -> Result<()> {
    let tx = |x: f64| if p.x_log { x.log10() } else { x };
    let pts = || p.series.iter().flat_map(|s| s.points.iter());
    let xr = range(pts().map(|q| tx(q.0)), 0.06);
    // The y range holds the error bars too.
    let bars = p
        .series
        .iter()
        .flat_map(|s| s.errors.iter().flatten().flat_map(|&(lo, hi)| [lo, hi]));
    let yr = range(pts().map(|q| q.1).chain(bars), 0.08);
    let span = xr.end - xr.start;
    // Integer x (layers, depth, heads, width): whole-number ticks.
    let ints = !p.x_log && pts().all(|q| q.0.fract() == 0.0);
    let xfmt = |v: &f64| {
        if ints {
            format!("{v:.0}")
        } else if p.x_log {
            log_tick_label(*v)
        } else if span < 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.0}")
        }
    };
    // The legend goes to the corner with the fewest points under it (ties: upper right, then
    // lower right, upper left, lower left), so it hides as little data as possible.
    let corner = {
        let (xs, ys) = (xr.end - xr.start, yr.end - yr.start);
        let norm: Vec<(f64, f64)> = pts()
            .map(|q| ((tx(q.0) - xr.start) / xs, (q.1 - yr.start) / ys))
            .collect();
        // Points in the corner's box: the outer 45% of the width, 40% of the height.
        let under = |right: bool, upper: bool| {
            norm.iter()
                .filter(|(x, y)| {
                    let in_x = if right { *x > 0.55 } else { *x < 0.45 };
                    let in_y = if upper { *y > 0.6 } else { *y < 0.4 };
                    in_x && in_y
                })
                .count()
        };
        [
            (SeriesLabelPosition::UpperRight, under(true, true)),
            (SeriesLabelPosition::LowerRight, under(true, false)),
            (SeriesLabelPosition::UpperLeft, under(false, true)),
            (SeriesLabelPosition::LowerLeft, under(false, false)),
        ]
        .into_iter()
        .min_by_key(|c| c.1)
        .map(|c| c.0)
        .expect("four corners")
    };
    let mut ch = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xr, yr)
        .map_err(crate::core::plot::e)?;
    ch.configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_label_formatter(&xfmt)
        .x_labels(if ints && span < 12.0 {
            span.floor() as usize + 1
        } else if p.x_log {
            6
        } else {
            10
        })
        .light_line_style(RGBColor(238, 238, 238))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(crate::core::plot::e)?;
    let k = p.series.len();
    for (i, s) in p.series.iter().enumerate() {
        let col = if s.style == Style::Dashed {
            BLACK
        } else {
            colour(i, k)
        };
        let xy: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (tx(x), y)).collect();
        ch.draw_series(
            xy.iter()
                .zip(&s.errors)
                .filter_map(|(&(x, y), e)| e.map(|(lo, hi)| (x, y, lo, hi)))
                .map(|(x, y, lo, hi)| ErrorBar::new_vertical(x, lo, y, hi, col.stroke_width(1), 8)),
        )
        .map_err(crate::core::plot::e)?;
        match s.style {
            Style::Dashed => {
                ch.draw_series(DashedLineSeries::new(xy, 8, 5, col.stroke_width(2)))
                    .map_err(crate::core::plot::e)?
                    .label(&s.label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2))
                    });
            }
            Style::Line | Style::Points => {
                if s.style == Style::Line && xy.len() >= 2 {
                    ch.draw_series(LineSeries::new(xy.clone(), col.stroke_width(2)))
                        .map_err(crate::core::plot::e)?;
                }
                ch.draw_series(xy.iter().map(|&q| Circle::new(q, 4, col.filled())))
                    .map_err(crate::core::plot::e)?
                    .label(&s.label)
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.filled()));
            }
        }
    }
    if k > 0 {
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 13))
            .position(corner)
            .draw()
            .map_err(crate::core::plot::e)?;
    }
    Ok(())
}

/// The label of a tick at log10 value `v` of a log axis: 10^v to two significant digits, so
/// a label names where its tick is (ticks sit at round log10 values: 10^5.4 is 2.5e5, which a
/// one-digit label would call 3e5).
fn log_tick_label(v: f64) -> String {
    let x = 10f64.powf(v);
    if !(1e-2..1e4).contains(&x) {
        return format!("{x:.1e}");
    }
    let digits = (1 - x.log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_sd_points_carry_their_bars() {
        // Known sd: {1, 2, 3} has mean 2 and sample sd 1; one value has no bar.
        let s = Series::mean_sd(
            "a",
            [
                (10.0, vec![3.0, 1.0, 2.0]),
                (1.0, vec![5.0]),
                (5.0, vec![f64::NAN]),
            ],
            Style::Line,
        );
        assert_eq!(s.points, vec![(1.0, 5.0), (10.0, 2.0)]);
        assert_eq!(s.errors, vec![None, Some((1.0, 3.0))]);
        // No group with two values: no bars at all.
        let s = Series::mean_sd("b", [(1.0, vec![0.5]), (2.0, vec![0.7])], Style::Points);
        assert!(s.errors.is_empty());
        assert_eq!(mean_sd(&[]), None);
        let (m, sd) = mean_sd(&[0.1, 0.3]).unwrap();
        assert!((m - 0.2).abs() < 1e-12 && (sd.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn log_axis_labels_name_the_tick_positions() {
        assert_eq!(log_tick_label(5.0), "1.0e5");
        assert_eq!(log_tick_label(5.4), "2.5e5");
        assert_eq!(log_tick_label(4.8), "6.3e4");
        assert_eq!(log_tick_label(2.8), "631");
        assert_eq!(log_tick_label(0.8), "6.3");
        assert_eq!(log_tick_label(-1.2), "0.063");
    }
}
