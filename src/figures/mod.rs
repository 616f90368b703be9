//! Publication-style figures: statistical maps over an anatomical background
//! ([`statmap`], after nilearn's `plot_stat_map`) and the study's figure set from bench results
//! ([`study`], after arXiv 2410.19810). Each figure is first computed as a plain data struct
//! (ranges, thresholds, points, coordinates) that tests check, then drawn with plotters.
//!
//! Figure code depends downward only: it reads volumes, affines and CSV rows; the maps stage,
//! `scaling plots` and `report` call it.
pub mod statmap;
pub mod study;

use anyhow::{anyhow, Result};
use plotters::style::FontStyle;
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
