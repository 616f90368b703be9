//! The iso-FLOP method (Hoffmann et al. 2022, approach 2): runs are grouped by compute budget;
//! in each group a parabola of the target against log N gives the compute-optimal N (its
//! vertex); then log N_opt and log D_opt are regressed on log C to get N_opt ∝ C^a, D_opt ∝ C^b.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One run: compute C, parameters N, tokens D and a loss-like target (lower is better).
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub c: f64,
    pub n: f64,
    pub d: f64,
    pub loss: f64,
}

/// Groups runs whose budgets agree within a relative tolerance: sorted by C, a new group starts
/// when C exceeds the group's first budget by more than `rel_tol`. Returns index lists.
pub fn group_by_budget(runs: &[Run], rel_tol: f64) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..runs.len()).collect();
    idx.sort_by(|&a, &b| runs[a].c.total_cmp(&runs[b].c).then(a.cmp(&b)));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut first_c = f64::NAN;
    for i in idx {
        if groups.is_empty() || runs[i].c > first_c * (1.0 + rel_tol) {
            groups.push(Vec::new());
            first_c = runs[i].c;
        }
        groups.last_mut().unwrap().push(i);
    }
    groups
}

/// Keeps, in every group with more than `window` runs, the `window` runs nearest in ln N to the
/// group's best run (lowest loss; ties to the smaller N): a parabola in ln N is a local model of
/// the iso-FLOP curve around its minimum, and runs far from it (an asymmetric U) pull the vertex.
pub fn narrow_groups(runs: &[Run], groups: &[Vec<usize>], window: usize) -> Vec<Vec<usize>> {
    groups
        .iter()
        .map(|g| {
            if g.len() <= window {
                return g.clone();
            }
            let best = *g
                .iter()
                .min_by(|&&a, &&b| runs[a].loss.total_cmp(&runs[b].loss))
                .expect("groups are non-empty");
            let x0 = runs[best].n.ln();
            let mut v = g.clone();
            v.sort_by(|&a, &b| {
                (runs[a].n.ln() - x0)
                    .abs()
                    .total_cmp(&(runs[b].n.ln() - x0).abs())
                    .then(a.cmp(&b))
            });
            v.truncate(window);
            v.sort();
            v
        })
        .collect()
}

/// The parabola fit of one budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Geometric mean of the group's budgets.
    pub budget: f64,
    pub runs: usize,
    /// y = c0 + c1·x + c2·x², x = ln N.
    pub coef: [f64; 3],
    pub n_opt: f64,
    pub d_opt: f64,
    /// The target at the vertex.
    pub loss_opt: f64,
    /// Whether the vertex lies within the sampled N range (else it is an extrapolation).
    pub inside_range: bool,
}

/// Why a budget group gave no minimum.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub budget: f64,
    pub runs: usize,
    pub reason: String,
}

/// Least squares polynomial of degree 1 or 2 in centred x (for conditioning); returns
/// coefficients in the original x. None when the system is singular.
pub fn polyfit(x: &[f64], y: &[f64], degree: usize) -> Option<Vec<f64>> {
    let k = degree + 1;
    let xm = x.iter().sum::<f64>() / x.len() as f64;
    let mut ata = vec![vec![0.0; k]; k];
    let mut aty = vec![0.0; k];
    for (xi, yi) in x.iter().zip(y) {
        let u = xi - xm;
        let pows: Vec<f64> = (0..k).map(|p| u.powi(p as i32)).collect();
        for r in 0..k {
            aty[r] += pows[r] * yi;
            for c in 0..k {
                ata[r][c] += pows[r] * pows[c];
            }
        }
    }
    let cu = solve(ata, aty)?;
    // Expand p(u) with u = x − xm back into powers of x.
    Some(match degree {
        1 => vec![cu[0] - cu[1] * xm, cu[1]],
        2 => vec![
            cu[0] - cu[1] * xm + cu[2] * xm * xm,
            cu[1] - 2.0 * cu[2] * xm,
            cu[2],
        ],
        _ => unreachable!("degree 1 or 2"),
    })
}

/// Gaussian elimination with partial pivoting for the tiny normal equations.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let scale = a.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() <= 1e-12 * scale {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for r in col + 1..n {
            let f = a[r][col] / a[col][col];
            for c in col..n {
                a[r][c] -= f * a[col][c];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

/// Fits the parabola of one group. D at the vertex comes from a line of ln D against ln N
/// within the group (exactly C/(6N) when D was derived that way; general otherwise).
pub fn fit_profile(runs: &[Run], group: &[usize]) -> Result<Profile, Skipped> {
    let budget = (group.iter().map(|&i| runs[i].c.ln()).sum::<f64>() / group.len() as f64).exp();
    let skip = |reason: String| Skipped {
        budget,
        runs: group.len(),
        reason,
    };
    let x: Vec<f64> = group.iter().map(|&i| runs[i].n.ln()).collect();
    let y: Vec<f64> = group.iter().map(|&i| runs[i].loss).collect();
    let ld: Vec<f64> = group.iter().map(|&i| runs[i].d.ln()).collect();
    let mut distinct = x.clone();
    distinct.sort_by(|a, b| a.total_cmp(b));
    distinct.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    if distinct.len() < 3 {
        return Err(skip(
            "fewer than 3 distinct model sizes (a parabola needs 3)".into(),
        ));
    }
    let c = polyfit(&x, &y, 2).ok_or_else(|| skip("singular parabola fit".into()))?;
    if c[2] <= 0.0 {
        return Err(skip(
            "the parabola opens downwards (no minimum): widen the N range".into(),
        ));
    }
    let x_opt = -c[1] / (2.0 * c[2]);
    let line = polyfit(&x, &ld, 1).ok_or_else(|| skip("singular ln D ~ ln N fit".into()))?;
    Ok(Profile {
        budget,
        runs: group.len(),
        coef: [c[0], c[1], c[2]],
        n_opt: x_opt.exp(),
        d_opt: (line[0] + line[1] * x_opt).exp(),
        loss_opt: c[0] + c[1] * x_opt + c[2] * x_opt * x_opt,
        inside_range: x_opt >= distinct[0] && x_opt <= *distinct.last().unwrap(),
    })
}

/// A power law y = k · C^exponent fitted in log-log.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PowerLaw {
    pub k: f64,
    pub exponent: f64,
}

impl PowerLaw {
    pub fn at(&self, c: f64) -> f64 {
        self.k * c.powf(self.exponent)
    }

    fn fit(c: &[f64], y: &[f64]) -> Option<Self> {
        let lc: Vec<f64> = c.iter().map(|v| v.ln()).collect();
        let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
        let p = polyfit(&lc, &ly, 1)?;
        Some(PowerLaw {
            k: p[0].exp(),
            exponent: p[1],
        })
    }
}

/// The result of the iso-FLOP method.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsoFlop {
    pub profiles: Vec<Profile>,
    pub skipped: Vec<Skipped>,
    /// N_opt = k C^a and D_opt = k C^b; None with fewer than two usable budgets.
    pub n_opt: Option<PowerLaw>,
    pub d_opt: Option<PowerLaw>,
}

/// Runs the method over pre-computed groups.
pub fn fit(runs: &[Run], groups: &[Vec<usize>]) -> IsoFlop {
    let (mut profiles, mut skipped) = (Vec::new(), Vec::new());
    for g in groups {
        match fit_profile(runs, g) {
            Ok(p) => profiles.push(p),
            Err(s) => skipped.push(s),
        }
    }
    let (n_opt, d_opt) = if profiles.len() >= 2 {
        let c: Vec<f64> = profiles.iter().map(|p| p.budget).collect();
        let n: Vec<f64> = profiles.iter().map(|p| p.n_opt).collect();
        let d: Vec<f64> = profiles.iter().map(|p| p.d_opt).collect();
        (PowerLaw::fit(&c, &n), PowerLaw::fit(&c, &d))
    } else {
        (None, None)
    };
    IsoFlop {
        profiles,
        skipped,
        n_opt,
        d_opt,
    }
}

/// Bootstrap exponents (a, b): runs resampled with replacement within each budget group, the
/// method refitted; replicates with fewer than two usable budgets are dropped.
pub fn bootstrap(runs: &[Run], groups: &[Vec<usize>], count: usize, seed: u64) -> Vec<(f64, f64)> {
    (0..count)
        .into_par_iter()
        .filter_map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x150F_1095);
            rng.set_stream(i as u64 + 1);
            let mut sample = Vec::with_capacity(runs.len());
            let mut sgroups = Vec::with_capacity(groups.len());
            for g in groups {
                let start = sample.len();
                for _ in 0..g.len() {
                    sample.push(runs[g[rng.gen_range(0..g.len())]]);
                }
                sgroups.push((start..sample.len()).collect::<Vec<_>>());
            }
            let f = fit(&sample, &sgroups);
            Some((f.n_opt?.exponent, f.d_opt?.exponent))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polyfit_recovers_exact_parabola() {
        let x: Vec<f64> = (0..7).map(|i| 10.0 + i as f64 * 0.5).collect();
        let y: Vec<f64> = x.iter().map(|v| 3.0 - 0.5 * v + 0.02 * v * v).collect();
        let c = polyfit(&x, &y, 2).unwrap();
        assert!(
            (c[0] - 3.0).abs() < 1e-8 && (c[1] + 0.5).abs() < 1e-9 && (c[2] - 0.02).abs() < 1e-10
        );
    }

    #[test]
    fn narrowing_keeps_the_runs_around_the_best() {
        let mk = |n: f64, loss: f64| Run {
            c: 1.0,
            n,
            d: 1.0,
            loss,
        };
        let runs = [
            mk(1.0, 3.0),
            mk(2.0, 2.0),
            mk(4.0, 1.0),
            mk(8.0, 1.5),
            mk(64.0, 1.2),
        ];
        let g = narrow_groups(&runs, &[vec![0, 1, 2, 3, 4]], 3);
        assert_eq!(g, vec![vec![1, 2, 3]]);
        assert_eq!(narrow_groups(&runs, &[vec![0, 4]], 3), vec![vec![0, 4]]);
    }

    #[test]
    fn grouping_by_relative_tolerance() {
        let mk = |c| Run {
            c,
            n: 1.0,
            d: 1.0,
            loss: 1.0,
        };
        let runs = [mk(1e18), mk(1.05e18), mk(3e18), mk(0.98e18), mk(3.1e18)];
        let g = group_by_budget(&runs, 0.1);
        assert_eq!(g, vec![vec![3, 0, 1], vec![2, 4]]);
    }
}
