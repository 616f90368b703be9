//! The parametric law L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3), fitted as
//! in Besiroglu et al. 2024: log L is predicted as logsumexp(a − α log N, b − β log D, e) with
//! A = eᵃ, B = eᵇ, E = eᵉ, and the sum of Huber(δ) losses of the log residuals is minimised with
//! L-BFGS from a grid of starts, keeping the best. Bootstrap refits start from the best fit.
use crate::study::scaling::lbfgs::{self, Options};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One observation: parameters N, tokens D, and a positive loss-like target L.
#[derive(Debug, Clone, Copy)]
pub struct Obs {
    pub n: f64,
    pub d: f64,
    pub loss: f64,
}

/// The fitted law in natural units.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Law {
    #[serde(rename = "E")]
    pub e: f64,
    #[serde(rename = "A")]
    pub a: f64,
    #[serde(rename = "B")]
    pub b: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl Law {
    pub fn predict(&self, n: f64, d: f64) -> f64 {
        self.e + self.a / n.powf(self.alpha) + self.b / d.powf(self.beta)
    }

    /// Compute-optimal (N, D) for budget `c` under C = 6·N·D (the replication's closed form):
    /// G = (αA/(βB))^(1/(α+β)), N = G (C/6)^(β/(α+β)), D = (C/6)^(α/(α+β)) / G.
    pub fn optimal(&self, c: f64) -> (f64, f64) {
        let s = self.alpha + self.beta;
        let g = (self.alpha * self.a / (self.beta * self.b)).powf(1.0 / s);
        (
            g * (c / 6.0).powf(self.beta / s),
            (c / 6.0).powf(self.alpha / s) / g,
        )
    }

    /// Compute-optimal (N, D) under C = k·N·D (k = 6 is [`Law::optimal`]; a BIOT contrastive
    /// grid has its own k, e.g. `scaling validate` estimates it from the rows).
    pub fn optimal_k(&self, c: f64, k: f64) -> (f64, f64) {
        self.optimal(c * 6.0 / k)
    }

    /// Exponents of N_opt ∝ C^a and D_opt ∝ C^b implied by the law.
    pub fn allocation_exponents(&self) -> (f64, f64) {
        let s = self.alpha + self.beta;
        (self.beta / s, self.alpha / s)
    }

    fn from_x(x: &[f64]) -> Self {
        Law {
            a: x[0].exp(),
            b: x[1].exp(),
            e: x[2].exp(),
            alpha: x[3],
            beta: x[4],
        }
    }

    fn to_x(self) -> [f64; 5] {
        [self.a.ln(), self.b.ln(), self.e.ln(), self.alpha, self.beta]
    }
}

/// Fit settings; defaults are the replication's recipe.
#[derive(Debug, Clone)]
pub struct FitOptions {
    pub huber_delta: f64,
    /// Starts: every combination of these (α, β, e, a, b) values.
    pub alpha_grid: Vec<f64>,
    pub beta_grid: Vec<f64>,
    pub e_grid: Vec<f64>,
    pub a_grid: Vec<f64>,
    pub b_grid: Vec<f64>,
    pub lbfgs: Options,
    /// Hold e = ln E at this value instead of fitting it (E profiled out; see [`E_ZERO_LOG`]).
    pub fixed_log_e: Option<f64>,
}

/// ln E standing for E = 0 (e^-60 ≈ 1e-26: below any loss) when E is profiled out.
pub const E_ZERO_LOG: f64 = -60.0;

impl Default for FitOptions {
    fn default() -> Self {
        let steps = |lo: f64, hi: f64, step: f64| -> Vec<f64> {
            let k = ((hi - lo) / step).round() as usize;
            (0..=k).map(|i| lo + step * i as f64).collect()
        };
        Self {
            huber_delta: 1e-3,
            alpha_grid: steps(0.0, 2.0, 0.5),
            beta_grid: steps(0.0, 2.0, 0.5),
            e_grid: steps(-1.0, 1.0, 0.5),
            a_grid: steps(0.0, 25.0, 5.0),
            b_grid: steps(0.0, 25.0, 5.0),
            lbfgs: Options::default(),
            fixed_log_e: None,
        }
    }
}

/// Points pre-transformed to logs once (the objective runs millions of times).
struct LogObs {
    ln_n: Vec<f64>,
    ln_d: Vec<f64>,
    ln_l: Vec<f64>,
}

impl LogObs {
    fn new(obs: &[Obs]) -> Self {
        Self {
            ln_n: obs.iter().map(|o| o.n.ln()).collect(),
            ln_d: obs.iter().map(|o| o.d.ln()).collect(),
            ln_l: obs.iter().map(|o| o.loss.ln()).collect(),
        }
    }
}

/// Σ Huber_δ(pred − log L) and its gradient for x = (a, b, e, α, β).
fn objective(p: &LogObs, delta: f64, x: &[f64], g: &mut [f64]) -> f64 {
    let (a, b, e, al, be) = (x[0], x[1], x[2], x[3], x[4]);
    g.iter_mut().for_each(|v| *v = 0.0);
    let mut f = 0.0;
    for i in 0..p.ln_l.len() {
        let t1 = a - al * p.ln_n[i];
        let t2 = b - be * p.ln_d[i];
        let m = t1.max(t2).max(e);
        let (x1, x2, x3) = ((t1 - m).exp(), (t2 - m).exp(), (e - m).exp());
        let s = x1 + x2 + x3;
        let r = m + s.ln() - p.ln_l[i];
        let (h, dh) = if r.abs() <= delta {
            (0.5 * r * r, r)
        } else {
            (delta * (r.abs() - 0.5 * delta), delta * r.signum())
        };
        f += h;
        let (w1, w2, w3) = (dh * x1 / s, dh * x2 / s, dh * x3 / s);
        g[0] += w1;
        g[1] += w2;
        g[2] += w3;
        g[3] -= w1 * p.ln_n[i];
        g[4] -= w2 * p.ln_d[i];
    }
    f
}

/// A fit: the law, its objective value and how many starts converged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fit {
    pub law: Law,
    pub objective: f64,
    pub starts: usize,
    pub starts_converged: usize,
}

fn fit_from(p: &LogObs, opt: &FitOptions, x0: &[f64]) -> lbfgs::Minimum {
    let delta = opt.huber_delta;
    match opt.fixed_log_e {
        None => lbfgs::minimize(|x, g| objective(p, delta, x, g), x0, opt.lbfgs),
        Some(e) => {
            // A zero gradient in e keeps L-BFGS from ever moving it.
            let mut x = x0.to_vec();
            x[2] = e;
            let f = |x: &[f64], g: &mut [f64]| {
                let v = objective(p, delta, x, g);
                g[2] = 0.0;
                v
            };
            lbfgs::minimize(f, &x, opt.lbfgs)
        }
    }
}

/// Fits the law from every start of the grid (in parallel) and keeps the lowest objective; ties
/// go to the earliest start so the result does not depend on thread scheduling.
pub fn fit(obs: &[Obs], opt: &FitOptions) -> anyhow::Result<Fit> {
    let p = LogObs::new(obs);
    let mut starts = Vec::new();
    let e_grid = match opt.fixed_log_e {
        Some(e) => vec![e],
        None => opt.e_grid.clone(),
    };
    for &al in &opt.alpha_grid {
        for &be in &opt.beta_grid {
            for &e in &e_grid {
                for &a in &opt.a_grid {
                    for &b in &opt.b_grid {
                        starts.push([a, b, e, al, be]);
                    }
                }
            }
        }
    }
    let results: Vec<lbfgs::Minimum> = starts.par_iter().map(|x0| fit_from(&p, opt, x0)).collect();
    let converged = results.iter().filter(|m| m.converged).count();
    let best = results
        .into_iter()
        .filter(|m| m.f.is_finite() && m.x.iter().all(|v| v.is_finite()))
        .reduce(|best, m| if m.f < best.f { m } else { best })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the parametric fit found no finite optimum from any of {} starts",
                starts.len()
            )
        })?;
    Ok(Fit {
        law: Law::from_x(&best.x),
        objective: best.f,
        starts: starts.len(),
        starts_converged: converged,
    })
}

/// Refits one law from a given start (used by bootstraps and hold-out checks).
pub fn refit(obs: &[Obs], opt: &FitOptions, start: &Law) -> Law {
    let p = LogObs::new(obs);
    Law::from_x(&fit_from(&p, opt, &start.to_x()).x)
}

/// Bootstrap laws: `count` resamples of the points with replacement, each refitted from `start`.
/// Resample i draws from its own ChaCha8 stream (seed, i), so results are identical whatever
/// the number of threads.
pub fn bootstrap(obs: &[Obs], opt: &FitOptions, start: &Law, count: usize, seed: u64) -> Vec<Law> {
    (0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64 + 1);
            let sample: Vec<Obs> = (0..obs.len())
                .map(|_| obs[rng.gen_range(0..obs.len())])
                .collect();
            refit(&sample, opt, start)
        })
        .collect()
}

/// Linear-interpolated percentile (numpy's default) of unsorted values, `q` in [0, 100].
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < v.len() {
        v[i] + frac * (v[i + 1] - v[i])
    } else {
        v[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let obs: Vec<Obs> = (0..30)
            .map(|i| {
                let n = 1e6 * 1.5f64.powi(i % 7);
                let d = 1e8 * 1.7f64.powi(i / 5);
                Obs {
                    n,
                    d,
                    loss: 2.0 + 0.05 * ((i * 37 % 11) as f64),
                }
            })
            .collect();
        let p = LogObs::new(&obs);
        // Large delta so residuals fall on both sides of the Huber kink at this point.
        let delta = 0.05;
        let x = [5.0, 6.0, 0.5, 0.3, 0.35];
        let mut g = [0.0; 5];
        objective(&p, delta, &x, &mut g);
        for k in 0..5 {
            let h = 1e-6;
            let (mut xp, mut xm) = (x, x);
            xp[k] += h;
            xm[k] -= h;
            let mut tmp = [0.0; 5];
            let num = (objective(&p, delta, &xp, &mut tmp) - objective(&p, delta, &xm, &mut tmp))
                / (2.0 * h);
            assert!(
                (num - g[k]).abs() < 1e-6 * (1.0 + num.abs()),
                "d/dx{k}: {num} vs {}",
                g[k]
            );
        }
    }

    #[test]
    fn optimal_allocation_satisfies_budget_and_minimises_loss() {
        let law = Law {
            e: 1.8,
            a: 480.0,
            b: 2000.0,
            alpha: 0.35,
            beta: 0.37,
        };
        let c = 1e21;
        let (n, d) = law.optimal(c);
        assert!((6.0 * n * d / c - 1.0).abs() < 1e-12);
        let best = law.predict(n, d);
        for f in [0.9, 1.1] {
            assert!(law.predict(n * f, c / (6.0 * n * f)) > best);
        }
    }

    #[test]
    fn percentile_matches_numpy() {
        let v = [3.0, 1.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert!((percentile(&v, 25.0) - 1.75).abs() < 1e-12);
    }
}
