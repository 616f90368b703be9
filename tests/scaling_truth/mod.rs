//! Ground truth for the scaling machinery (issue 19, item 6): synthetic grid rows drawn from a
//! known law L(N, D) = E + A/N^α + B/D^β at C = 6·N·D, each cell with several seeds whose loss
//! carries log-normal noise of a chosen sd (the ~2% seed noise of the recorded BIOT cells).
#![allow(dead_code)]
use brainscale::study::scaling::parametric::Law;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::path::Path;

/// One synthetic row.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub n: f64,
    pub d: f64,
    pub c: f64,
    pub seed: u64,
    pub loss: f64,
}

/// What the loss of a cell is, before noise.
#[derive(Debug, Clone, Copy)]
pub enum Truth {
    /// The law itself.
    Law(Law),
    /// Loss independent of N on every iso-FLOP sweep: the law's value at its own optimum for
    /// the budget (so loss still falls with C, but the model size does not matter).
    FlatInN(Law),
}

impl Truth {
    pub fn loss(&self, n: f64, d: f64, c: f64) -> f64 {
        match self {
            Truth::Law(l) => l.predict(n, d),
            Truth::FlatInN(l) => {
                let (no, dopt) = l.optimal(c);
                l.predict(no, dopt)
            }
        }
    }
}

/// A ladder of `k` sizes log-spaced by `step` (ratio) centred on `centre` (times `shift`).
pub fn ladder(centre: f64, k: usize, step: f64, shift: f64) -> Vec<f64> {
    (0..k)
        .map(|j| centre * shift * step.powf(j as f64 - (k as f64 - 1.0) / 2.0))
        .collect()
}

/// Rows of an iso-FLOP grid: for each budget, each size of `sizes(c)`, each seed, the truth's
/// loss times exp(noise·z), z ~ N(0, 1) from ChaCha8(rng_seed).
pub fn rows(
    truth: Truth,
    budgets: &[f64],
    sizes: impl Fn(f64) -> Vec<f64>,
    seeds: usize,
    noise: f64,
    rng_seed: u64,
) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let z = Normal::new(0.0, 1.0).unwrap();
    let mut out = Vec::new();
    for &c in budgets {
        for n in sizes(c) {
            let d = c / (6.0 * n);
            for s in 0..seeds {
                let loss = truth.loss(n, d, c) * (noise * z.sample(&mut rng)).exp();
                out.push(Row {
                    n,
                    d,
                    c,
                    seed: s as u64,
                    loss,
                });
            }
        }
    }
    out
}

/// Writes rows as a results CSV with the grid's column names (n_params, tokens, flops,
/// eval_loss, seed).
pub fn write_csv(path: &Path, rows: &[Row]) {
    let mut t = String::from("cell_id,n_params,tokens,flops,seed,eval_loss\n");
    for (i, r) in rows.iter().enumerate() {
        t += &format!("r{i},{},{},{},{},{}\n", r.n, r.d, r.c, r.seed, r.loss);
    }
    std::fs::write(path, t).unwrap();
}

/// `count` budgets log-spaced from `lo` to `hi`.
pub fn budgets(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    (0..count)
        .map(|i| lo * (hi / lo).powf(i as f64 / (count - 1) as f64))
        .collect()
}
