//! The transfer study's summaries, printed tables and figures ([`crate::biosignal::transfer`]):
//! every group of fine-tuning runs (dataset, variant, alignment, regime) becomes one row with
//! its mean and its spread split by source — over pretraining seeds (the sd of the
//! per-pretraining-seed means) and over fine-tuning seeds (the within-pretraining-seed sd,
//! pooled) — beside the sd over all (pretraining, fine-tuning) pairs, and a 95% Wilson
//! interval for the balanced accuracy read as a proportion of the test windows (Wilson 1927;
//! the test-set sampling noise, which seeds do not show).
use crate::biosignal::finetune::{summarise, MeanSd};
use crate::biosignal::metrics::Scores;
use crate::core::plot::{draw, Figure, Panel, Series, Style};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One fine-tuning run, a row of `runs.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRow {
    pub dataset: String,
    /// Model and initialisation, e.g. "citrus ← mae-freq (synthetic EEG)".
    pub variant: String,
    /// Alignment method of the downstream set.
    pub alignment: String,
    pub regime: String,
    /// Seed of the pretraining run fine-tuned (0 from scratch; rows written before the column
    /// existed read as 0, the only pretraining seed then).
    #[serde(default)]
    pub pretrain_seed: u64,
    /// Fine-tuning seed.
    pub seed: u64,
    pub n_train: usize,
    /// Test windows scored (0 in rows written before the column existed).
    #[serde(default)]
    pub n_test: usize,
    pub balanced_accuracy: f64,
    pub auroc: f64,
    pub macro_f1: f64,
    pub kappa: f64,
}

impl RunRow {
    /// The run's identity: a rerun skips rows with a key already in `runs.csv`.
    pub fn key(&self) -> RunKey {
        (
            self.dataset.clone(),
            self.variant.clone(),
            self.alignment.clone(),
            self.regime.clone(),
            self.pretrain_seed,
            self.seed,
        )
    }
}

/// (dataset, variant, alignment, regime, pretraining seed, fine-tuning seed).
pub type RunKey = (String, String, String, String, u64, u64);

/// A summarised row of `transfer-*.csv` / `alignment.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    pub dataset: String,
    pub variant: String,
    pub alignment: String,
    pub regime: String,
    pub n_train: usize,
    /// Pretraining seeds in the group (1 for a model trained from scratch).
    pub pretrain_seeds: usize,
    /// Distinct fine-tuning seeds in the group.
    pub finetune_seeds: usize,
    /// Fine-tuning runs summarised (pretraining × fine-tuning seeds).
    pub runs: usize,
    /// Mean ± sd over all runs.
    pub balanced_accuracy: String,
    pub auroc: String,
    pub macro_f1: String,
    pub kappa: String,
    pub balanced_accuracy_mean: f64,
    /// Sample sd over all runs.
    pub balanced_accuracy_sd: f64,
    /// Sample sd of the per-pretraining-seed means (none for one pretraining seed).
    pub balanced_accuracy_sd_pretrain: Option<f64>,
    /// Within-pretraining-seed sample sd over fine-tuning seeds, pooled (root mean variance;
    /// none with one fine-tuning seed).
    pub balanced_accuracy_sd_finetune: Option<f64>,
    pub auroc_mean: f64,
    pub auroc_sd: f64,
    /// Test windows (0 for rows written before it was recorded).
    pub n_test: usize,
    /// 95% Wilson interval of the mean balanced accuracy read as a proportion of `n_test`.
    pub balanced_accuracy_binomial_lo: Option<f64>,
    pub balanced_accuracy_binomial_hi: Option<f64>,
    /// Mean spectral error of the alignment method on known sines (alignment rows only).
    pub sine_spectral_error: Option<f64>,
}

impl SummaryRow {
    /// "mean ± sd_pre / sd_ft" of the balanced accuracy ("–" for a missing sd).
    pub fn balanced_accuracy_split(&self) -> String {
        let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
        format!(
            "{:.3} ± {}/{}",
            self.balanced_accuracy_mean,
            f(self.balanced_accuracy_sd_pretrain),
            f(self.balanced_accuracy_sd_finetune)
        )
    }
}

/// The 95% Wilson score interval of a proportion `p` of `n` trials (none for n = 0).
pub fn wilson(p: f64, n: usize) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (n, z) = (n as f64, 1.959_963_984_540_054);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    Some((centre - half, centre + half))
}

/// The sd split of `runs`' balanced accuracies: (sd of the per-pretraining-seed means, pooled
/// within-pretraining-seed sd, number of pretraining seeds, number of fine-tuning seeds).
fn split_sd(runs: &[&RunRow]) -> (Option<f64>, Option<f64>, usize, usize) {
    let mut by_pre: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut ft = std::collections::BTreeSet::new();
    for r in runs {
        by_pre
            .entry(r.pretrain_seed)
            .or_default()
            .push(r.balanced_accuracy);
        ft.insert(r.seed);
    }
    let means: Vec<f64> = by_pre.values().map(|v| MeanSd::of(v).mean).collect();
    let sd_pre = (means.len() > 1).then(|| MeanSd::of(&means).sd);
    let within: Vec<f64> = by_pre
        .values()
        .filter(|v| v.len() > 1)
        .map(|v| MeanSd::of(v).sd.powi(2))
        .collect();
    let sd_ft =
        (!within.is_empty()).then(|| (within.iter().sum::<f64>() / within.len() as f64).sqrt());
    (sd_pre, sd_ft, by_pre.len(), ft.len())
}

fn scores(r: &RunRow) -> Scores {
    Scores {
        n: r.n_test,
        classes: 0,
        balanced_accuracy: r.balanced_accuracy,
        auroc: r.auroc,
        auc_pr: None,
        macro_f1: r.macro_f1,
        weighted_f1: f64::NAN,
        kappa: r.kappa,
    }
}

/// The summaries of `runs` grouped by (dataset, variant, alignment, regime), in first-seen order.
pub fn summarise_runs(runs: &[RunRow]) -> Result<Vec<SummaryRow>> {
    let mut order: Vec<(String, String, String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String, String, String), Vec<&RunRow>> = BTreeMap::new();
    for r in runs {
        let k = (
            r.dataset.clone(),
            r.variant.clone(),
            r.alignment.clone(),
            r.regime.clone(),
        );
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(r);
    }
    order
        .iter()
        .map(|k| {
            let g = &groups[k];
            let sc: Vec<Scores> = g.iter().map(|r| scores(r)).collect();
            let s = summarise(&sc.iter().collect::<Vec<_>>())?;
            let (sd_pre, sd_ft, n_pre, n_ft) = split_sd(g);
            let first = g[0];
            let n_test = g.iter().map(|r| r.n_test).max().unwrap_or(0);
            let ci = wilson(s.balanced_accuracy.mean, n_test);
            Ok(SummaryRow {
                dataset: first.dataset.clone(),
                variant: first.variant.clone(),
                alignment: first.alignment.clone(),
                regime: first.regime.clone(),
                n_train: first.n_train,
                pretrain_seeds: n_pre,
                finetune_seeds: n_ft,
                runs: s.seeds,
                balanced_accuracy: s.balanced_accuracy.to_string(),
                auroc: s.auroc.to_string(),
                macro_f1: s.macro_f1.to_string(),
                kappa: s.kappa.to_string(),
                balanced_accuracy_mean: s.balanced_accuracy.mean,
                balanced_accuracy_sd: s.balanced_accuracy.sd,
                balanced_accuracy_sd_pretrain: sd_pre,
                balanced_accuracy_sd_finetune: sd_ft,
                auroc_mean: s.auroc.mean,
                auroc_sd: s.auroc.sd,
                n_test,
                balanced_accuracy_binomial_lo: ci.map(|c| c.0),
                balanced_accuracy_binomial_hi: ci.map(|c| c.1),
                sine_spectral_error: None,
            })
        })
        .collect()
}

/// The printed tables: balanced accuracy "mean ± sd over pretraining seeds / sd over
/// fine-tuning seeds" and the binomial interval per variant × regime, then alignment.
pub fn render_tables(sets: &[Vec<SummaryRow>], align: &[SummaryRow]) -> String {
    let mut s = String::new();
    for rows in sets {
        let Some(first) = rows.first() else { continue };
        let mut regimes: Vec<String> = Vec::new();
        for r in rows {
            if !regimes.contains(&r.regime) {
                regimes.push(r.regime.clone());
            }
        }
        s += &format!(
            "\n{}: balanced accuracy, mean ± sd over pretraining seeds / sd over fine-tuning seeds \
             [95% binomial interval, n {} test windows]\n{:<48}",
            first.dataset, first.n_test, "model ← pretraining"
        );
        for g in &regimes {
            let n = rows
                .iter()
                .find(|r| &r.regime == g)
                .map_or(0, |r| r.n_train);
            s += &format!("{:>34}", format!("{g} (n {n})"));
        }
        s += "\n";
        let mut variants: Vec<&str> = Vec::new();
        for r in rows {
            if !variants.contains(&r.variant.as_str()) {
                variants.push(&r.variant);
            }
        }
        for v in variants {
            s += &format!("{v:<48}");
            for g in &regimes {
                let cell = rows
                    .iter()
                    .find(|r| r.variant == v && &r.regime == g)
                    .map_or("-".to_string(), |r| {
                        match (
                            r.balanced_accuracy_binomial_lo,
                            r.balanced_accuracy_binomial_hi,
                        ) {
                            (Some(lo), Some(hi)) => {
                                format!("{} [{lo:.2}, {hi:.2}]", r.balanced_accuracy_split())
                            }
                            _ => r.balanced_accuracy_split(),
                        }
                    });
                s += &format!("{cell:>34}");
            }
            s += "\n";
        }
    }
    if !align.is_empty() {
        s += "\nalignment (citrus ← mae-freq, largest regime): balanced accuracy | sine spectral error\n";
        for r in align {
            s += &format!(
                "{:<26}{:<9}{:>24} | {:.3}\n",
                r.dataset,
                r.alignment,
                r.balanced_accuracy_split(),
                r.sine_spectral_error.unwrap_or(f64::NAN)
            );
        }
    }
    s
}

/// Balanced accuracy vs labelled windows, one panel per dataset: the fully fine-tuned
/// variants, or (`probe`) the linear probes; `note` under the title.
pub fn draw_figure(path: &Path, sets: &[Vec<SummaryRow>], note: &str, probe: bool) -> Result<()> {
    const PROBE: &str = ", linear probe";
    let panels = sets
        .iter()
        .filter_map(|rows| {
            let first = rows.first()?;
            let mut series: Vec<Series> = Vec::new();
            for r in rows.iter().filter(|r| r.variant.ends_with(PROBE) == probe) {
                let label = r.variant.trim_end_matches(PROBE).to_string();
                let p = (r.n_train as f64, r.balanced_accuracy_mean);
                match series.iter_mut().find(|s| s.label == label) {
                    Some(s) => s.points.push(p),
                    None => series.push(Series::new(label, vec![p], Style::Line)),
                }
            }
            for s in &mut series {
                s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            Some(Panel {
                title: first.dataset.clone(),
                x_label: "labelled training windows".into(),
                y_label: "balanced accuracy".into(),
                x_log: true,
                series,
            })
        })
        .collect();
    draw(
        path,
        &Figure {
            name: "transfer".into(),
            title: if probe {
                "Linear probes of randomly initialised vs self-supervised encoders".into()
            } else {
                "Fine-tuning from scratch vs from self-supervised pretraining".into()
            },
            panels,
            note: note.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: &str, pre: u64, seed: u64, ba: f64) -> RunRow {
        RunRow {
            dataset: "d".into(),
            variant: variant.into(),
            alignment: "sinc".into(),
            regime: "100%".into(),
            pretrain_seed: pre,
            seed,
            n_train: 10,
            n_test: 20,
            balanced_accuracy: ba,
            auroc: 0.5,
            macro_f1: 0.5,
            kappa: 0.0,
        }
    }

    /// The split by hand: pretraining seed 0 scores {0.6, 0.8} (mean 0.7, var 0.02), seed 1
    /// {0.8, 1.0} (mean 0.9, var 0.02): sd of the means √0.02, pooled within √0.02, over all
    /// four sd(0.6, 0.8, 0.8, 1.0) = √(0.08/3).
    #[test]
    fn the_sd_is_split_by_pretraining_and_fine_tuning_seed() {
        let runs = vec![
            row("a", 0, 0, 0.6),
            row("a", 0, 1, 0.8),
            row("a", 1, 0, 0.8),
            row("a", 1, 1, 1.0),
            row("scratch", 0, 0, 0.5),
            row("scratch", 0, 1, 0.7),
        ];
        let s = summarise_runs(&runs).unwrap();
        let a = &s[0];
        assert_eq!((a.pretrain_seeds, a.finetune_seeds, a.runs), (2, 2, 4));
        assert!((a.balanced_accuracy_mean - 0.8).abs() < 1e-12);
        assert!((a.balanced_accuracy_sd_pretrain.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        assert!((a.balanced_accuracy_sd_finetune.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        assert!((a.balanced_accuracy_sd - (0.08f64 / 3.0).sqrt()).abs() < 1e-12);
        let b = &s[1];
        assert_eq!(b.balanced_accuracy_sd_pretrain, None);
        assert!((b.balanced_accuracy_sd_finetune.unwrap() - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(b.balanced_accuracy_split(), "0.600 ± –/0.141");
        // Wilson 95% for 0.6 of 20 (R: prop.test(12, 20, correct = FALSE)$conf.int
        // = 0.3865815 0.7811935).
        let (lo, hi) = (
            b.balanced_accuracy_binomial_lo.unwrap(),
            b.balanced_accuracy_binomial_hi.unwrap(),
        );
        assert!((lo - 0.386_581_5).abs() < 1e-6 && (hi - 0.781_193_5).abs() < 1e-6);
        assert_eq!(wilson(0.5, 0), None);
    }
}
