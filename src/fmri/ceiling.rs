//! Noise ceiling from repeated presentations of one stimulus.
//!
//! With R repeats y_1..y_R of a voxel's response to the same movie (each run trimmed and
//! z-scored as `encode` prepares it), the variance of the stimulus-driven signal (the
//! "signal power") is estimated without bias by Sahani & Linden (2003, NIPS 15, "How
//! linear are auditory cortical responses?") as
//!
//!   SP = (Var(Σ_r y_r) − Σ_r Var(y_r)) / (R (R − 1)),
//!
//! the estimator behind the normalised correlation CC_norm of Schoppe et al. (2016, Front.
//! Comput. Neurosci. 10:10, "Measuring the performance of neural models"). The largest r a
//! model can reach against one repeat (what `encode` scores: r against single test runs) is
//! the correlation of the signal with one noisy repeat,
//!
//!   ceiling = sqrt(SP / mean_r Var(y_r)),
//!
//! clamped to [0, 1] (SP ≤ 0: no reliable signal, ceiling 0). For R = 2 this is sqrt of the
//! split-half correlation. The normalised r of a voxel is test r / ceiling (undefined, NaN,
//! where the ceiling is below [`MIN_CEILING`]).
use anyhow::{bail, Result};
use ndarray::{Array1, ArrayView2, Axis};

/// Voxels whose ceiling is below this get no normalised r (NaN): the ratio is noise.
pub const MIN_CEILING: f64 = 0.1;

/// Signal power and mean total variance per voxel of `reps` (each [TRs, voxels], same
/// shape), as [`ceiling`] combines them. Errors: fewer than 2 repeats, shapes that differ.
pub fn signal_power(reps: &[ArrayView2<f32>]) -> Result<(Array1<f64>, Array1<f64>)> {
    let r = reps.len();
    if r < 2 {
        bail!("a noise ceiling from repeats needs at least 2 repeats, got {r}");
    }
    let dim = reps[0].dim();
    if let Some(b) = reps.iter().find(|a| a.dim() != dim) {
        bail!(
            "repeats differ in shape: {:?} vs {:?} (repeated runs must have the same TRs)",
            dim,
            b.dim()
        );
    }
    let var = |a: ArrayView2<f64>| -> Array1<f64> {
        let m = a.mean_axis(Axis(0)).expect("rows");
        let n = a.nrows() as f64;
        (&a - &m).mapv(|x| x * x).sum_axis(Axis(0)) / n
    };
    let mut sum = ndarray::Array2::<f64>::zeros(dim);
    let mut var_sum = Array1::<f64>::zeros(dim.1);
    for a in reps {
        let a = a.mapv(|x| x as f64);
        var_sum = var_sum + var(a.view());
        sum = sum + a;
    }
    let rf = r as f64;
    let sp = (var(sum.view()) - &var_sum) / (rf * (rf - 1.0));
    Ok((sp, var_sum / rf))
}

/// The ceiling of r against one repeat, per voxel (see the module docs).
pub fn ceiling(reps: &[ArrayView2<f32>]) -> Result<Array1<f64>> {
    let (sp, tot) = signal_power(reps)?;
    Ok(ceiling_from(&sp, &tot))
}

/// sqrt(SP / total variance), clamped to [0, 1]; 0 where the total variance is 0.
pub fn ceiling_from(sp: &Array1<f64>, tot: &Array1<f64>) -> Array1<f64> {
    ndarray::Zip::from(sp).and(tot).map_collect(|&s, &t| {
        if t > 0.0 {
            (s / t).clamp(0.0, 1.0).sqrt()
        } else {
            0.0
        }
    })
}

/// test r / ceiling, NaN where the ceiling is below [`MIN_CEILING`].
pub fn normalised(r: &Array1<f64>, ceiling: &Array1<f64>) -> Array1<f64> {
    ndarray::Zip::from(r)
        .and(ceiling)
        .map_collect(|&r, &c| if c >= MIN_CEILING { r / c } else { f64::NAN })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn two_repeats_give_sqrt_of_split_half_r() {
        // Two z-scored repeats: SP = cov(y1, y2), so the ceiling is sqrt(r12).
        let y1 = array![[1.0f32], [-1.0], [1.0], [-1.0]];
        let y2 = array![[1.0f32], [-1.0], [-1.0], [1.0]];
        // r12 = 0 → ceiling 0; identical repeats → 1.
        assert_eq!(ceiling(&[y1.view(), y2.view()]).unwrap()[0], 0.0);
        assert!((ceiling(&[y1.view(), y1.view()]).unwrap()[0] - 1.0).abs() < 1e-12);
        let e = ceiling(&[y1.view()]).unwrap_err().to_string();
        assert!(e.contains("at least 2 repeats"), "{e}");
    }
}
