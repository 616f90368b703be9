//! The canonical haemodynamic response function (SPM's double gamma): the align stage's `hrf`
//! lag model convolves features with it, and the synthetic dataset makes its BOLD with it.

/// SPM's canonical HRF sampled every `tr` seconds over 32 s, normalised to sum 1:
/// Γ(6) peak minus Γ(16) undershoot / 6.
pub fn canonical_hrf(tr: f64) -> Vec<f64> {
    let gamma_pdf = |t: f64, k: u32| {
        let fact: f64 = (1..k).map(|i| i as f64).product();
        t.powi(k as i32 - 1) * (-t).exp() / fact
    };
    let n = (32.0 / tr).floor() as usize + 1;
    let h: Vec<f64> = (0..n)
        .map(|i| i as f64 * tr)
        .map(|t| gamma_pdf(t, 6) - gamma_pdf(t, 16) / 6.0)
        .collect();
    let sum: f64 = h.iter().sum();
    h.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrf_peaks_at_five_seconds_and_sums_to_one() {
        let h = canonical_hrf(0.1);
        let peak = h
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as f64
            * 0.1;
        assert!((peak - 5.0).abs() < 0.11, "peak at {peak}");
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(h.iter().any(|&v| v < 0.0), "has an undershoot");
    }
}
