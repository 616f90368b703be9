//! The one place where Pearson r, z-scoring and summary statistics are computed.
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Pearson r between matching columns of `a` and `b` (time × voxels). A column with zero
/// variance on either side gets r = 0 (nothing is predicted), never NaN.
pub fn pearson_columns(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array1<f64> {
    assert_eq!(a.dim(), b.dim(), "pearson_columns: shapes differ");
    let n = a.nrows() as f64;
    let mut out = Array1::zeros(a.ncols());
    ndarray::Zip::from(&mut out)
        .and(a.axis_iter(Axis(1)))
        .and(b.axis_iter(Axis(1)))
        .par_for_each(|r, x, y| *r = pearson(x, y, n));
    out
}

fn pearson(x: ArrayView1<f32>, y: ArrayView1<f32>, n: f64) -> f64 {
    let (mut sx, mut sy) = (0.0f64, 0.0f64);
    for (&a, &b) in x.iter().zip(y.iter()) {
        sx += a as f64;
        sy += b as f64;
    }
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx, mut syy) = (0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in x.iter().zip(y.iter()) {
        let (da, db) = (a as f64 - mx, b as f64 - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx <= f64::EPSILON * n || syy <= f64::EPSILON * n {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Coefficient of determination of `pred` for `truth`, per column (1 - SSE/SST; 0 for a
/// constant column).
pub fn r2_columns(truth: ArrayView2<f32>, pred: ArrayView2<f32>) -> Array1<f64> {
    let mut out = Array1::zeros(truth.ncols());
    ndarray::Zip::from(&mut out)
        .and(truth.axis_iter(Axis(1)))
        .and(pred.axis_iter(Axis(1)))
        .par_for_each(|r, t, p| {
            let m = t.iter().map(|&v| v as f64).sum::<f64>() / t.len() as f64;
            let sst: f64 = t.iter().map(|&v| (v as f64 - m).powi(2)).sum();
            let sse: f64 = t
                .iter()
                .zip(p.iter())
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            *r = if sst <= f64::EPSILON {
                0.0
            } else {
                1.0 - sse / sst
            };
        });
    out
}

/// Z-scores each column in place (mean 0, population std 1). Returns the indices of constant
/// columns, which are set to 0.
pub fn zscore_columns(a: &mut Array2<f32>) -> Vec<usize> {
    let n = a.nrows() as f64;
    let mut constant = Vec::new();
    for (j, mut col) in a.axis_iter_mut(Axis(1)).enumerate() {
        let m = col.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = col.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
        let sd = var.sqrt();
        if sd <= 1e-12 * (1.0 + m.abs()) {
            col.fill(0.0);
            constant.push(j);
        } else {
            col.mapv_inplace(|v| ((v as f64 - m) / sd) as f32);
        }
    }
    constant
}

/// Summary of a voxel r map, as written in results rows.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct RSummary {
    pub mean_r: f64,
    pub top10_mean_r: f64,
    pub frac_r_above_0_1: f64,
}

/// Mean r, mean r of the best 10% of voxels (at least one), and the fraction with r > 0.1.
pub fn summarize_r(r: ArrayView1<f64>) -> RSummary {
    let n = r.len();
    if n == 0 {
        return RSummary {
            mean_r: f64::NAN,
            top10_mean_r: f64::NAN,
            frac_r_above_0_1: f64::NAN,
        };
    }
    let mut sorted: Vec<f64> = r.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let k = (n / 10).max(1);
    RSummary {
        mean_r: sorted.iter().sum::<f64>() / n as f64,
        top10_mean_r: sorted[..k].iter().sum::<f64>() / k as f64,
        frac_r_above_0_1: sorted.iter().filter(|&&v| v > 0.1).count() as f64 / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn pearson_matches_closed_form() {
        let a = array![[1.0f32, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]];
        let b = array![[2.0f32, 0.0], [4.0, 1.0], [6.5, 2.0], [8.0, 3.0]];
        let r = pearson_columns(a.view(), b.view());
        // x = 1..4, y = 2,4,6.5,8: r = sxy / sqrt(sxx syy)
        let (mx, my) = (2.5, 5.125);
        let ys = [2.0, 4.0, 6.5, 8.0];
        let sxy: f64 = (0..4).map(|i| (i as f64 + 1.0 - mx) * (ys[i] - my)).sum();
        let sxx: f64 = (0..4).map(|i| (i as f64 + 1.0 - mx).powi(2)).sum();
        let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
        assert!((r[0] - sxy / (sxx * syy).sqrt()).abs() < 1e-12);
        assert_eq!(r[1], 0.0, "constant column gives r = 0");
    }

    #[test]
    fn zscore_and_summary() {
        let mut a = array![[1.0f32, 5.0], [3.0, 5.0]];
        let c = zscore_columns(&mut a);
        assert_eq!(c, vec![1]);
        assert_eq!(a.column(0).to_vec(), vec![-1.0, 1.0]);
        let r = Array1::from_vec((0..20).map(|i| i as f64 / 100.0).collect());
        let s = summarize_r(r.view());
        assert!((s.mean_r - 0.095).abs() < 1e-12);
        assert!((s.top10_mean_r - 0.185).abs() < 1e-12);
        assert!((s.frac_r_above_0_1 - 0.45).abs() < 1e-12);
    }
}
