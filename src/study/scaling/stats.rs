//! Small shared pieces of the scaling reports: bootstrap intervals and number formatting (a
//! leaf module, so the reports and the diagnostics that feed them import it, not each other).
use crate::study::scaling::parametric;

/// A bootstrap interval [2.5%, 97.5%].
pub type Interval = [f64; 2];

/// The 95% percentile interval of bootstrap values (non-finite values ignored).
pub(crate) fn interval(v: &[f64]) -> Interval {
    [
        parametric::percentile(v, 2.5),
        parametric::percentile(v, 97.5),
    ]
}

/// Four significant digits, scientific for large or small magnitudes.
pub fn sig(v: f64) -> String {
    if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        format!("{:.4}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.3e}")
    }
}
