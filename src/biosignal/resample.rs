//! Rate and length alignment of downstream windows to a pretraining set (CiTrus-style
//! transfer): resample to the pretraining rate, then crop or pad to the pretraining length.
//!
//! Methods ([`Method`]):
//! - `sinc`: band-limited resampling by the FFT (zero-padding or truncating the spectrum, the
//!   Nyquist bin split or joined), exactly `scipy.signal.resample`, which BIOT uses to bring
//!   every recording to 200 Hz. It is ideal (periodic) sinc interpolation: components above the
//!   new Nyquist frequency are removed, so downsampling does not alias. It treats the window as
//!   one period, so a window whose ends differ rings near its edges.
//! - `linear`: linear interpolation at the new sampling times (no anti-aliasing filter): the
//!   naive rate conversion baseline.
//! - `stretch`: linear interpolation of the window to the target length, ignoring rates (what
//!   `F.interpolate(size=L, align_corners=True)` does); frequencies scale by the length ratio.
//! - `pad`: no resampling, only crop or zero-pad to the length; rates left mismatched.
//!
//! Crop keeps the first `length` samples; padding appends zeros at the end.
use crate::biosignal::spectral;
use crate::biosignal::Windows;
use anyhow::{bail, Result};
use ndarray::{Array2, Array3, ArrayView1, ArrayView2, Axis};
use rustfft::{num_complex::Complex, FftPlanner};

/// How a window is brought to another rate and length (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Sinc,
    Linear,
    Stretch,
    Pad,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Sinc, Method::Linear, Method::Stretch, Method::Pad];
    pub fn name(self) -> &'static str {
        match self {
            Method::Sinc => "sinc",
            Method::Linear => "linear",
            Method::Stretch => "stretch",
            Method::Pad => "pad",
        }
    }
}

/// Number of samples a window of `n` samples at `rate_in` has at `rate_out`:
/// round(n · rate_out / rate_in).
pub fn resampled_len(n: usize, rate_in: f64, rate_out: f64) -> usize {
    ((n as f64) * rate_out / rate_in).round().max(1.0) as usize
}

/// Band-limited FFT resampling of `x` to `num` samples (`scipy.signal.resample(x, num)`).
pub fn fft_resample(x: &[f64], num: usize) -> Vec<f64> {
    let nx = x.len();
    if nx == 0 || num == 0 {
        return vec![0.0; num];
    }
    if num == nx {
        return x.to_vec();
    }
    let mut planner = FftPlanner::<f64>::new();
    let mut xf: Vec<Complex<f64>> = x.iter().map(|&v| Complex::new(v, 0.0)).collect();
    planner.plan_fft_forward(nx).process(&mut xf);
    // One-sided output spectrum Y[0..=num/2], filled as scipy does for real input.
    let n = num.min(nx);
    let nyq = n / 2 + 1;
    let mut y = vec![Complex::new(0.0, 0.0); num / 2 + 1];
    y[..nyq].copy_from_slice(&xf[..nyq]);
    if n.is_multiple_of(2) {
        if num < nx {
            // Downsampling: the new Nyquist bin gathers +N/2 and −N/2.
            y[n / 2] *= 2.0;
        } else {
            // Upsampling: the old Nyquist bin is split between +N/2 and −N/2.
            y[n / 2] *= 0.5;
        }
    }
    // Hermitian full spectrum (irfft ignores the imaginary parts of DC and Nyquist).
    let mut full = vec![Complex::new(0.0, 0.0); num];
    full[0] = Complex::new(y[0].re, 0.0);
    for k in 1..y.len() {
        if num.is_multiple_of(2) && k == num / 2 {
            full[k] = Complex::new(y[k].re, 0.0);
        } else {
            full[k] = y[k];
            full[num - k] = y[k].conj();
        }
    }
    planner.plan_fft_inverse(num).process(&mut full);
    // numpy's irfft divides by num; scipy then multiplies by num / nx.
    full.iter().map(|c| c.re / nx as f64).collect()
}

/// Linear interpolation of `x` (at `rate_in`) at times k / rate_out, k < num; times past the
/// last sample hold it.
pub fn linear_resample(x: &[f64], rate_in: f64, rate_out: f64, num: usize) -> Vec<f64> {
    let ratio = rate_in / rate_out;
    (0..num).map(|k| interp(x, k as f64 * ratio)).collect()
}

/// Linear interpolation of `x` to exactly `num` samples with both end samples kept
/// (`align_corners=True`), ignoring rates.
pub fn stretch(x: &[f64], num: usize) -> Vec<f64> {
    if num == 1 || x.len() == 1 {
        return vec![x[0]; num];
    }
    let step = (x.len() - 1) as f64 / (num - 1) as f64;
    (0..num).map(|k| interp(x, k as f64 * step)).collect()
}

fn interp(x: &[f64], p: f64) -> f64 {
    let last = x.len() - 1;
    if p >= last as f64 {
        return x[last];
    }
    let i = p.floor() as usize;
    let t = p - i as f64;
    x[i] * (1.0 - t) + x[i + 1] * t
}

/// Crops to the first `len` samples or appends zeros up to `len`.
pub fn crop_or_pad(mut x: Vec<f64>, len: usize) -> Vec<f64> {
    x.resize(len, 0.0);
    x
}

/// Aligns one channel: `x` at `rate_in` Hz → `length` samples meant at `rate_out` Hz.
pub fn align_channel(
    x: ArrayView1<f32>,
    rate_in: f64,
    rate_out: f64,
    length: usize,
    method: Method,
) -> Vec<f64> {
    let v: Vec<f64> = x.iter().map(|&s| s as f64).collect();
    let num = resampled_len(v.len(), rate_in, rate_out);
    match method {
        Method::Sinc => crop_or_pad(fft_resample(&v, num), length),
        Method::Linear => crop_or_pad(linear_resample(&v, rate_in, rate_out, num), length),
        Method::Stretch => stretch(&v, length),
        Method::Pad => crop_or_pad(v, length),
    }
}

/// What aligning `len_in` samples at `rate_in` Hz to `length` samples at `rate_out` Hz drops
/// or pads: the resampled window (sinc, linear: `len_in`·`rate_out`/`rate_in` samples; pad:
/// `len_in`) is cropped or zero-padded to `length`. `None` when nothing is cropped or padded
/// (and for `stretch`, which maps the whole window onto `length`). E.g. 30-s windows at 100 Hz
/// to 200 Hz × 2000: "each window cropped from 6000 to 2000 samples (20.000 s of 30.000 s dropped)".
pub fn crop_note(
    len_in: usize,
    rate_in: f64,
    rate_out: f64,
    length: usize,
    method: Method,
) -> Option<String> {
    let produced = match method {
        Method::Stretch => return None,
        Method::Pad => len_in,
        Method::Sinc | Method::Linear => resampled_len(len_in, rate_in, rate_out),
    };
    let secs = |n: usize| n as f64 / rate_out;
    match produced.cmp(&length) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some(format!(
            "each window cropped from {produced} to {length} samples ({:.3} s of {:.3} s dropped)",
            secs(produced - length),
            secs(produced)
        )),
        std::cmp::Ordering::Less => Some(format!(
            "each window zero-padded from {produced} to {length} samples ({:.3} s of {:.3} s are padding)",
            secs(length - produced),
            secs(length)
        )),
    }
}

/// Aligns one window [C, L_in] at `rate_in` to [C, length] at `rate_out`.
pub fn align_window(
    x: ArrayView2<f32>,
    rate_in: f64,
    rate_out: f64,
    length: usize,
    method: Method,
) -> Array2<f32> {
    let mut out = Array2::zeros((x.nrows(), length));
    for (c, row) in x.axis_iter(Axis(0)).enumerate() {
        for (o, v) in out
            .row_mut(c)
            .iter_mut()
            .zip(align_channel(row, rate_in, rate_out, length, method))
        {
            *o = v as f32;
        }
    }
    out
}

/// Aligns every window of `ds` to (`rate`, `length`). The dataset must know its rate.
/// Labels, channels and classes are kept; the result's rate is `rate` (for `pad` and `stretch`
/// too: that is the rate the downstream model will assume).
pub fn align(ds: &Windows, rate: f64, length: usize, method: Method) -> Result<Windows> {
    let Some(rate_in) = ds.rate else {
        bail!(
            "{}: sampling rate unknown (no `sampling_rate_hz` metadata): cannot resample",
            ds.source
        );
    };
    if !(rate.is_finite() && rate > 0.0) || length == 0 {
        bail!("target rate {rate} Hz and length {length} must be positive");
    }
    let (n, c, _) = ds.samples.dim();
    let mut out = Array3::zeros((n, c, length));
    for (i, w) in ds.samples.axis_iter(Axis(0)).enumerate() {
        out.index_axis_mut(Axis(0), i)
            .assign(&align_window(w, rate_in, rate, length, method));
    }
    let mut res = ds.clone();
    res.samples = out;
    res.rate = Some(rate);
    // The source window length (not the window count) belongs here.
    let len_in = ds.window_len();
    res.meta.insert(
        "aligned".into(),
        format!(
            "{} from {rate_in} Hz x {len_in} to {rate} Hz x {length}",
            method.name()
        ),
    );
    if let Some(note) = crop_note(len_in, rate_in, rate, length, method) {
        res.meta.insert("aligned_note".into(), note);
    }
    Ok(res)
}

/// One row of the alignment comparison on a known sine (see [`alignment_spectral_errors`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlignmentRow {
    pub method: Method,
    /// Frequency of the unit-amplitude input sine, Hz.
    pub freq_hz: f64,
    pub rate_in: f64,
    pub len_in: usize,
    pub rate_out: f64,
    pub len_out: usize,
    /// Frequency (Hz, read at `rate_out`) and amplitude of the output's largest spectral peak.
    pub peak_hz: f64,
    pub peak_amplitude: f64,
    /// ‖|S(y)| − |S(r)|‖₂ / ‖|S(u)|‖₂ over the samples the input covers: S = Hann-windowed
    /// amplitude spectrum, y = aligned output, r = the ideal output (the sine sampled at
    /// `rate_out`, or zero if above its Nyquist frequency: an ideal resampler removes it),
    /// u = a unit sine at `rate_out` (so rows are comparable when r = 0).
    pub spectral_error: f64,
    /// Root-mean-square difference y − r over the same samples.
    pub rmse: f64,
}

/// Spectral error of each method on unit sines at `freqs` Hz, sampled at `rate_in` for
/// `len_in` samples and aligned to (`rate_out`, `len_out`). The comparison is made over the
/// first min(len_out, round(len_in·rate_out/rate_in)) output samples (those the input covers).
pub fn alignment_spectral_errors(
    freqs: &[f64],
    rate_in: f64,
    len_in: usize,
    rate_out: f64,
    len_out: usize,
    methods: &[Method],
) -> Vec<AlignmentRow> {
    let tau = 2.0 * std::f64::consts::PI;
    let covered = len_out.min(resampled_len(len_in, rate_in, rate_out));
    let mut rows = Vec::new();
    for &f in freqs {
        let x = ndarray::Array1::from_iter(
            (0..len_in).map(|i| (tau * f * i as f64 / rate_in).sin() as f32),
        );
        let in_band = f < rate_out / 2.0;
        let reference: Vec<f64> = (0..covered)
            .map(|i| {
                if in_band {
                    (tau * f * i as f64 / rate_out).sin()
                } else {
                    0.0
                }
            })
            .collect();
        let unit_f = if in_band { f } else { rate_out / 4.0 };
        let unit: Vec<f64> = (0..covered)
            .map(|i| (tau * unit_f * i as f64 / rate_out).sin())
            .collect();
        let (_, su) = spectral::amplitude_spectrum(&unit, rate_out, 1);
        let (_, sr) = spectral::amplitude_spectrum(&reference, rate_out, 1);
        let norm_u = su.iter().map(|v| v * v).sum::<f64>().sqrt();
        for &m in methods {
            let y = align_channel(x.view(), rate_in, rate_out, len_out, m);
            let y = &y[..covered];
            let (_, sy) = spectral::amplitude_spectrum(y, rate_out, 1);
            let err = sy
                .iter()
                .zip(&sr)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt()
                / norm_u;
            let rmse = (y
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                / covered as f64)
                .sqrt();
            let (peak_hz, peak_amplitude) = spectral::peak(y, rate_out, 0.0);
            rows.push(AlignmentRow {
                method: m,
                freq_hz: f,
                rate_in,
                len_in,
                rate_out,
                len_out,
                peak_hz,
                peak_amplitude,
                spectral_error: err,
                rmse,
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_resample_identity_and_dc() {
        let x = vec![1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(fft_resample(&x, 5), x);
        let c = fft_resample(&[2.0; 7], 12);
        assert!(c.iter().all(|v| (v - 2.0).abs() < 1e-12));
    }

    #[test]
    fn crop_pad_and_stretch() {
        assert_eq!(crop_or_pad(vec![1.0, 2.0, 3.0], 2), vec![1.0, 2.0]);
        assert_eq!(crop_or_pad(vec![1.0], 3), vec![1.0, 0.0, 0.0]);
        assert_eq!(stretch(&[0.0, 2.0], 3), vec![0.0, 1.0, 2.0]);
        assert_eq!(
            linear_resample(&[0.0, 2.0, 4.0], 1.0, 2.0, 6),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 4.0]
        );
    }
}
