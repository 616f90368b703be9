//! Block-bootstrap 95% intervals on a subject's summary of held-out r (mean r, mean r of the
//! top 10% of voxels, fraction of voxels with r > 0.1, fraction significant at BH q < 0.05).
//!
//! The test rows are cut into the same consecutive blocks as the permutation null
//! (`fmri::significance`, 10 TRs by default, each run's tail kept in every resample) and
//! resampled with replacement — the non-overlapping block bootstrap of Carlstein (1986, Ann.
//! Stat. 14:1171), the moving-block bootstrap of Künsch (1989, Ann. Stat. 17:1217) restricted
//! to block starts on the grid — the same blocks for every voxel, so that the correlation
//! between voxels (shared stimulus, shared noise) is kept. Each resample recomputes every
//! voxel's Pearson r from the resampled rows of prediction and BOLD (the predictions stay
//! fixed: no refit) and the subject's summaries; the interval is the 2.5th–97.5th percentile
//! of the resampled summaries. It covers sampling variability of the test run(s) only, not
//! that of the training data or the choice of voxels.
//!
//! Fraction significant: a resample cannot redo the permutation null (P nulls per resample),
//! so each voxel keeps the threshold of the original null — the r at which its block-
//! permutation p reaches the subject's BH cut-off p* (`significance::q05_thresholds`), i.e.
//! the r that put it at q < 0.05 — and a resample counts the voxels whose resampled r exceeds
//! their threshold. On the original rows this count is exactly the fraction at q < 0.05; the
//! interval shows how much that fraction moves with the test TRs, with the multiplicity
//! correction held fixed (it does not re-run BH on each resample). Its interval is the
//! normal one, fraction ± 1.96 × the standard deviation of the resampled fractions
//! ([`normal_interval95`]), not the percentile one: a resample adds its own noise to each
//! voxel's already noisy r, so where most voxels near their thresholds lie below them (the
//! no-signal voxels) more cross upward than downward and the resampled fractions sit above the
//! observed one (on the synthetic data with oracle features: percentile interval [0.711,
//! 0.745] around an observed 0.709). The spread is what the resamples measure; the same double
//! noise widens it (conservative: in `tests/significance.rs` the half-width is about twice the
//! spread of the fraction over independent datasets).
//!
//! Cost: per voxel five sums per block, then n_b adds per resample and voxel; memory: the
//! resampled r of every voxel, [resamples, voxels] f32 (200 × 100k voxels = 80 MB).
use crate::fmri::significance::PermOptions;
use anyhow::{bail, Result};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Resamples of the block bootstrap (`encode --bootstrap B`; 0: none).
pub const DEFAULT_RESAMPLES: usize = 200;

/// The resampled summaries of one subject, one value per resample.
#[derive(Debug, Clone)]
pub struct BootSummaries {
    pub mean_r: Array1<f64>,
    pub top10_r: Array1<f64>,
    pub frac_r_0_1: Array1<f64>,
    /// Fraction of voxels above their q < 0.05 threshold (None without thresholds).
    pub frac_q05: Option<Array1<f64>>,
}

/// The blocks (start rows, `block` long) and the rows kept in place, as the permutations.
fn blocks(run_lengths: &[usize], block: usize) -> (Vec<usize>, Vec<usize>) {
    let (mut starts, mut fixed, mut off) = (vec![], vec![], 0usize);
    for &n in run_lengths {
        let k = n / block;
        starts.extend((0..k).map(|i| off + i * block));
        fixed.extend(off + k * block..off + n);
        off += n;
    }
    (starts, fixed)
}

/// Resampled r of every voxel, [resamples, voxels] (f32): `n_boot` block resamples of the
/// rows of `pred` and `y` [test rows, voxels], blocks of `o.block` TRs per run of
/// `run_lengths`, seeded by `o.seed`. Errors: shapes that differ, fewer than 4 blocks.
pub fn resampled_r(
    pred: ArrayView2<f32>,
    y: ArrayView2<f32>,
    run_lengths: &[usize],
    n_boot: usize,
    o: &PermOptions,
) -> Result<Array2<f32>> {
    if pred.dim() != y.dim() || run_lengths.iter().sum::<usize>() != pred.nrows() {
        bail!(
            "bootstrap: predictions {:?}, BOLD {:?} and test runs of {:?} rows do not match",
            pred.dim(),
            y.dim(),
            run_lengths
        );
    }
    let block = o.block.max(1);
    let (starts, fixed) = blocks(run_lengths, block);
    let nb = starts.len();
    if nb < 4 {
        bail!("bootstrap: {nb} block(s) of {block} TRs in the test runs; at least 4 are needed");
    }
    // The draws: the same block indices for every voxel (seed offset from the permutations').
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed ^ 0xB007_5742);
    let draws: Vec<Vec<u32>> = (0..n_boot)
        .map(|_| (0..nb).map(|_| rng.gen_range(0..nb as u32)).collect())
        .collect();
    let v = pred.ncols();
    let mut out = Array2::<f32>::zeros((n_boot, v));
    let cols: Vec<Vec<f32>> = (0..v)
        .into_par_iter()
        .map(|j| {
            let (p, q) = (pred.index_axis(Axis(1), j), y.index_axis(Axis(1), j));
            // Per block: Σp, Σy, Σp², Σy², Σpy (f64), and the same over the fixed rows.
            let sums = |rows: &mut dyn Iterator<Item = usize>| {
                let mut s = [0.0f64; 5];
                for t in rows {
                    let (a, b) = (p[t] as f64, q[t] as f64);
                    s[0] += a;
                    s[1] += b;
                    s[2] += a * a;
                    s[3] += b * b;
                    s[4] += a * b;
                }
                s
            };
            let per: Vec<[f64; 5]> = starts
                .iter()
                .map(|&s0| sums(&mut (s0..s0 + block)))
                .collect();
            let base = sums(&mut fixed.iter().copied());
            let n = p.len() as f64;
            draws
                .iter()
                .map(|d| {
                    let mut s = base;
                    for &i in d {
                        for (a, b) in s.iter_mut().zip(&per[i as usize]) {
                            *a += b;
                        }
                    }
                    let sxx = s[2] - s[0] * s[0] / n;
                    let syy = s[3] - s[1] * s[1] / n;
                    let sxy = s[4] - s[0] * s[1] / n;
                    if sxx <= 1e-12 * n || syy <= 1e-12 * n {
                        0.0
                    } else {
                        (sxy / (sxx * syy).sqrt()) as f32
                    }
                })
                .collect()
        })
        .collect();
    for (j, c) in cols.into_iter().enumerate() {
        out.column_mut(j).assign(&Array1::from(c));
    }
    Ok(out)
}

/// The subject's summaries in each resample (rows of `r` [resamples, voxels]); with
/// `q05_thr` (per voxel, `significance::q05_thresholds`) also the fraction of voxels whose
/// resampled r exceeds it.
pub fn summaries(r: &Array2<f32>, q05_thr: Option<&Array1<f64>>) -> BootSummaries {
    let rows: Vec<crate::core::stats::RSummary> = r
        .axis_iter(Axis(0))
        .into_par_iter()
        .map(|row| crate::core::stats::summarize_r(row.mapv(|x| x as f64).view()))
        .collect();
    BootSummaries {
        mean_r: rows.iter().map(|s| s.mean_r).collect(),
        top10_r: rows.iter().map(|s| s.top10_mean_r).collect(),
        frac_r_0_1: rows.iter().map(|s| s.frac_r_above_0_1).collect(),
        frac_q05: q05_thr.map(|t| {
            r.axis_iter(Axis(0))
                .into_par_iter()
                .map(|row| {
                    let n = row.iter().zip(t).filter(|(&x, &t)| x as f64 > t).count();
                    n as f64 / row.len().max(1) as f64
                })
                .collect::<Vec<f64>>()
                .into()
        }),
    }
}

/// The 2.5th and 97.5th percentiles (linear interpolation) of `v`; NaN when empty.
pub fn interval95(v: &Array1<f64>) -> (f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    s.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let x = p * (s.len() - 1) as f64;
        let (i, f) = (x.floor() as usize, x - x.floor());
        s[i] + f * (s[(i + 1).min(s.len() - 1)] - s[i])
    };
    (q(0.025), q(0.975))
}

/// The normal bootstrap interval `estimate` ± 1.96 × the standard deviation of `v` (finite
/// values), clipped to [0, 1] (for fractions); NaN when fewer than two values.
pub fn normal_interval95(estimate: f64, v: &Array1<f64>) -> (f64, f64) {
    let x: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if x.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let m = x.iter().sum::<f64>() / x.len() as f64;
    let sd = (x.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt();
    (
        (estimate - 1.96 * sd).clamp(0.0, 1.0),
        (estimate + 1.96 * sd).clamp(0.0, 1.0),
    )
}

impl BootSummaries {
    /// The tensors of ridge.safetensors: `boot_mean_r`, `boot_top10_r`, `boot_frac_r_0_1`
    /// and, with thresholds, `boot_frac_q05`.
    pub fn tensors(self) -> Vec<(&'static str, crate::core::io::Tensor)> {
        use crate::core::io::Tensor;
        let q05 = self
            .frac_q05
            .map(|f| ("boot_frac_q05", Tensor::F64(f.into_dyn())));
        let mut t = vec![
            ("boot_mean_r", Tensor::F64(self.mean_r.into_dyn())),
            ("boot_top10_r", Tensor::F64(self.top10_r.into_dyn())),
            ("boot_frac_r_0_1", Tensor::F64(self.frac_r_0_1.into_dyn())),
        ];
        t.extend(q05);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let v = Array1::from_iter((0..=100).map(|i| i as f64));
        assert_eq!(interval95(&v), (2.5, 97.5));
    }

    #[test]
    fn normal_interval_is_centred_on_the_estimate() {
        // sd of [0.1, 0.2, 0.3] = 0.1.
        let (lo, hi) = normal_interval95(0.5, &Array1::from(vec![0.1, 0.2, 0.3]));
        assert!((lo - 0.304).abs() < 1e-12 && (hi - 0.696).abs() < 1e-12);
        assert_eq!(
            normal_interval95(0.05, &Array1::from(vec![0.0, 0.2])).0,
            0.0
        );
    }
}
