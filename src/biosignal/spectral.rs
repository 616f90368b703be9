//! Small spectral tools shared by the resampler's error table, the generator and the tests:
//! Hann-windowed amplitude spectra, spectral peaks and band powers (rustfft).
use rustfft::{num_complex::Complex, FftPlanner};

/// Symmetric Hann window of length `n` (numpy `hanning`): w[i] = 0.5 − 0.5 cos(2π i / (n−1)).
pub fn hann(n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![1.0; n];
    }
    (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos())
        .collect()
}

/// One-sided amplitude spectrum of `x` sampled at `rate` Hz, Hann-windowed and zero-padded to
/// `pad`·len points; calibrated so that a sine of amplitude A at a bin centre reads A
/// (divided by the window's coherent gain). Returns (frequencies in Hz, amplitudes).
pub fn amplitude_spectrum(x: &[f64], rate: f64, pad: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let nfft = (n * pad.max(1)).max(2);
    let w = hann(n);
    let gain: f64 = w.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut buf: Vec<Complex<f64>> = x
        .iter()
        .zip(&w)
        .map(|(&v, &wi)| Complex::new(v * wi, 0.0))
        .collect();
    buf.resize(nfft, Complex::new(0.0, 0.0));
    FftPlanner::new().plan_fft_forward(nfft).process(&mut buf);
    let half = nfft / 2 + 1;
    let freqs = (0..half).map(|k| k as f64 * rate / nfft as f64).collect();
    let amps = (0..half)
        .map(|k| {
            let scale = if k == 0 || (nfft % 2 == 0 && k == nfft / 2) {
                1.0
            } else {
                2.0
            };
            scale * buf[k].norm() / gain
        })
        .collect();
    (freqs, amps)
}

/// The largest spectral peak above `min_hz`: (frequency in Hz, amplitude), refined by a
/// parabola through the peak bin and its neighbours of the 8×-zero-padded Hann spectrum.
/// Frequency error ≲ 0.1 bin, amplitude error ≲ 1% for a clean sine spanning several cycles.
pub fn peak(x: &[f64], rate: f64, min_hz: f64) -> (f64, f64) {
    let (f, a) = amplitude_spectrum(x, rate, 8);
    let mut k = 0;
    let mut best = f64::NEG_INFINITY;
    for (i, (&fi, &ai)) in f.iter().zip(&a).enumerate() {
        if fi >= min_hz && ai > best {
            best = ai;
            k = i;
        }
    }
    if k == 0 || k + 1 >= a.len() {
        return (f[k], a[k]);
    }
    let (l, c, r) = (a[k - 1], a[k], a[k + 1]);
    let denom = l - 2.0 * c + r;
    let delta = if denom.abs() > 0.0 {
        (0.5 * (l - r) / denom).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    let df = f[1] - f[0];
    (f[k] + delta * df, c - 0.25 * (l - r) * delta)
}

/// Power of `x` (rate Hz) in the band [lo, hi) Hz: the sum of the Hann-windowed periodogram's
/// bins in the band, normalised so that the sum over all bins ≈ mean(x²) (arbitrary but fixed
/// units: use for ratios between signals of equal length).
pub fn band_power(x: &[f64], rate: f64, lo: f64, hi: f64) -> f64 {
    let n = x.len();
    if n == 0 {
        return 0.0;
    }
    let w = hann(n);
    let wss: f64 = w.iter().map(|v| v * v).sum::<f64>().max(f64::MIN_POSITIVE);
    let mut buf: Vec<Complex<f64>> = x
        .iter()
        .zip(&w)
        .map(|(&v, &wi)| Complex::new(v * wi, 0.0))
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buf);
    (0..n / 2 + 1)
        .filter(|&k| {
            let f = k as f64 * rate / n as f64;
            f >= lo && f < hi
        })
        .map(|k| {
            let s = if k == 0 || (n % 2 == 0 && k == n / 2) {
                1.0
            } else {
                2.0
            };
            s * buf[k].norm_sqr() / (wss * n as f64)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(f: f64, a: f64, rate: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| a * (2.0 * std::f64::consts::PI * f * i as f64 / rate).sin())
            .collect()
    }

    #[test]
    fn peak_finds_frequency_and_amplitude() {
        for &(f, a) in &[(8.1777, 3.0), (50.0, 0.5), (1.3, 1.0)] {
            let (pf, pa) = peak(&sine(f, a, 200.0, 2000), 200.0, 0.5);
            assert!((pf - f).abs() < 0.01, "{pf} vs {f}");
            assert!((pa / a - 1.0).abs() < 0.01, "{pa} vs {a}");
        }
    }

    #[test]
    fn band_power_total_is_mean_square() {
        let x = sine(10.0, 2.0, 100.0, 1000);
        let total = band_power(&x, 100.0, 0.0, 51.0);
        assert!((total - 2.0).abs() < 0.05, "{total}");
        let inband = band_power(&x, 100.0, 8.0, 12.0);
        assert!(inband / total > 0.99);
    }
}
