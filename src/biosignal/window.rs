//! Fixed-length windows with a hop over continuous recordings, and per-channel normalisation.
//!
//! Normalisation is per window and per channel ([`Norm`]):
//! - `p95`: divide by the 95th percentile of |x| plus 1e-8, as BIOT's loaders do
//!   (`x / (np.quantile(np.abs(x), 0.95, axis=-1, keepdims=True) + 1e-8)`, numpy's default
//!   linear quantile; ycq091044/BIOT).
//! - `zscore`: subtract the mean and divide by the (population) standard deviation plus 1e-8.
//! - `none`: physical units unchanged.
use ndarray::{s, Array3, ArrayView2, ArrayViewMut1, Axis};

/// Per-channel normalisation of each window (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    #[default]
    None,
    P95,
    Zscore,
}

impl Norm {
    pub fn name(self) -> &'static str {
        match self {
            Norm::None => "none",
            Norm::P95 => "p95",
            Norm::Zscore => "zscore",
        }
    }
}

/// Added to the divisor so that flat (all-zero) channels stay finite (BIOT's constant).
pub const NORM_EPS: f64 = 1e-8;

/// Number of windows of `len` samples with hop `hop` in `total` samples:
/// ⌊(total − len)/hop⌋ + 1, or 0 when `total < len`.
pub fn window_count(total: usize, len: usize, hop: usize) -> usize {
    if len == 0 || hop == 0 || total < len {
        0
    } else {
        (total - len) / hop + 1
    }
}

/// Cuts a continuous recording `x` [C, T] into windows [N, C, len], window i starting at
/// sample i·hop; a tail shorter than `len` is dropped.
pub fn windows(x: ArrayView2<f32>, len: usize, hop: usize) -> Array3<f32> {
    let (c, t) = x.dim();
    let n = window_count(t, len, hop);
    let mut out = Array3::zeros((n, c, len));
    for i in 0..n {
        out.index_axis_mut(Axis(0), i)
            .assign(&x.slice(s![.., i * hop..i * hop + len]));
    }
    out
}

/// The `q`-quantile (0 ≤ q ≤ 1) of `v` by linear interpolation between order statistics
/// (numpy's default method): position q·(n−1). Reorders `v` in place (a selection, not a full
/// sort: the two order statistics are the same values); NaN if empty.
pub fn quantile_linear(v: &mut [f32], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let p = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let i = p.floor() as usize;
    let t = p - i as f64;
    let (_, lo, above) = v.select_nth_unstable_by(i, |a, b| a.total_cmp(b));
    let lo = *lo as f64;
    match above.iter().min_by(|a, b| a.total_cmp(b)) {
        Some(&hi) => lo + t * (hi as f64 - lo),
        None => lo,
    }
}

fn normalise_channel(mut x: ArrayViewMut1<f32>, norm: Norm) {
    match norm {
        Norm::None => {}
        Norm::P95 => {
            let mut a: Vec<f32> = x.iter().map(|v| v.abs()).collect();
            let d = quantile_linear(&mut a, 0.95) + NORM_EPS;
            x.mapv_inplace(|v| (v as f64 / d) as f32);
        }
        Norm::Zscore => {
            let n = x.len().max(1) as f64;
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let d = var.sqrt() + NORM_EPS;
            x.mapv_inplace(|v| ((v as f64 - mean) / d) as f32);
        }
    }
}

/// Normalises every channel of every window of `samples` [N, C, L] in place.
pub fn normalise(samples: &mut Array3<f32>, norm: Norm) {
    if norm == Norm::None {
        return;
    }
    for mut w in samples.axis_iter_mut(Axis(0)) {
        for ch in w.axis_iter_mut(Axis(0)) {
            normalise_channel(ch, norm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn counts_and_positions() {
        assert_eq!(window_count(10, 4, 2), 4);
        assert_eq!(window_count(3, 4, 1), 0);
        let x = Array2::from_shape_fn((2, 10), |(c, t)| (c * 100 + t) as f32);
        let w = windows(x.view(), 4, 3);
        assert_eq!(w.dim(), (3, 2, 4));
        assert_eq!(w[[2, 1, 0]], 106.0);
        assert_eq!(w[[1, 0, 3]], 6.0);
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        // np.quantile(np.arange(1, 101), 0.95) = 95.05
        let mut v: Vec<f32> = (1..=100).rev().map(|i| i as f32).collect();
        assert!((quantile_linear(&mut v, 0.95) - 95.05).abs() < 1e-9);
        // np.quantile([3, 1, 2], 0.5) = 2; 0.25 → 1.5
        assert_eq!(quantile_linear(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile_linear(&mut [3.0, 1.0, 2.0], 0.25), 1.5);
    }

    /// The selection gives the same bits as interpolating between the sorted order statistics,
    /// with ties, one element and q at the ends.
    #[test]
    fn quantile_selection_equals_the_sorted_definition() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in [1usize, 2, 3, 10, 101, 1000] {
            for q in [0.0, 0.25, 0.5, 0.95, 0.999, 1.0] {
                let v: Vec<f32> = (0..n)
                    .map(|_| (rng.gen_range(0..20) as f32 * 0.37).abs())
                    .collect();
                let mut sorted = v.clone();
                sorted.sort_by(|a, b| a.total_cmp(b));
                let p = q * (n - 1) as f64;
                let i = p.floor() as usize;
                let lo = sorted[i] as f64;
                let want = if i + 1 < n {
                    lo + (p - i as f64) * (sorted[i + 1] as f64 - lo)
                } else {
                    lo
                };
                let got = quantile_linear(&mut v.clone(), q);
                assert_eq!(got.to_bits(), want.to_bits(), "n {n}, q {q}");
            }
        }
    }

    #[test]
    fn normalisations() {
        let mut s = Array3::from_shape_fn((1, 2, 100), |(_, c, t)| {
            (if c == 0 { 1.0 } else { -3.0 }) * (t + 1) as f32
        });
        let mut z = s.clone();
        normalise(&mut s, Norm::P95);
        // |x| of channel 1 is 3·(1..100): its 95th percentile is 3·95.05.
        assert!((s[[0, 1, 99]] as f64 + 300.0 / (3.0 * 95.05)).abs() < 1e-5);
        assert!((s[[0, 0, 0]] as f64 - 1.0 / 95.05).abs() < 1e-7);
        normalise(&mut z, Norm::Zscore);
        for c in 0..2 {
            let row = z.slice(s![0, c, ..]);
            let m = row.mean().unwrap() as f64;
            let v = row.mapv(|x| (x as f64 - m).powi(2)).mean().unwrap();
            assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4);
        }
    }
}
