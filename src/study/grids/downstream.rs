//! `brainscale grid downstream GRID.toml`: the fine-tuned downstream score of every finished
//! cell of a `biosignal` grid, added to its results.csv so `scaling fit --target
//! downstream_error` fits the same laws to transfer as to the pretraining loss (issue 14,
//! "beyond the thesis").
//!
//! A post-hoc step: the grid's pretraining is not rerun. For each finished cell, the final
//! checkpoint of its pretraining (`cells/ID/train/`, written by the engine; its step must be the
//! cell's last) initialises a supervised BIOT ([`crate::biosignal::finetune::finetune`]: every
//! tensor but `head.*`, i.e. BIOT's contrastive `encoder.*`), which is fine-tuned in full in one
//! low-data regime (default `k5`: five labelled windows per class) with several seeds and scored
//! on a held-out labelled set; each model is also fine-tuned from scratch (same regime and seeds)
//! as the reference that says what the pretraining adds.
//!
//! Data: the cell's own generator (its `data_seed`, modality, rate and window length), labelled
//! streams `train` (the regime draws from its first `train_windows`) and `test` (the first
//! `test_windows`), both disjoint from the pretraining stream and normalised per channel by the
//! 95th percentile of |x| as in pretraining. Every cell sees the same two sets; the seed picks the
//! regime's subset and the head's initialisation.
//!
//! Outputs: `cells/ID/downstream.json` (settings, checkpoint, per-seed scores and their means;
//! written atomically) and, in results.csv, the columns `downstream_balanced_accuracy`,
//! `downstream_auroc` (means over seeds), their `_sd` (sample sd over seeds), `downstream_error`
//! (= 1 − mean balanced accuracy: lower is better, fitted like a loss), the from-scratch means
//! `downstream_scratch_balanced_accuracy` and `downstream_scratch_auroc`, and `downstream_regime`.
//! Idempotent: a cell whose downstream.json holds the same settings is not fine-tuned again, and
//! results.csv is rewritten (atomically) only when a value changes. Different settings for an
//! already scored grid are an error (one set of downstream columns per results file). A cell
//! whose folder is gone (cells/ is not tracked: a later checkout has only results.csv) keeps the
//! score its row holds, checked only for its regime, the one setting the row records; one
//! without a score cannot be scored (an error, or left out with `--skip-unfinished`).
use crate::biosignal::finetune::{finetune, FinetuneOptions, MeanSd, Mode, Regime};
use crate::biosignal::synth::SynthSplit;
use crate::biosignal::{Norm, Windows};
use crate::exec::local::run_tasks;
use crate::models::registry::BioModelConfig;
use crate::study::grids::biosignal_cell::{biot_config, BiosignalCell};
use crate::study::grids::cell::Cell;
use crate::study::grids::grid::{CellConfig, Grid};
use crate::study::grids::{results, GridPlace};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `grid downstream`'s settings (defaults in `cli::study`).
#[derive(Debug, Clone)]
pub struct DownstreamOptions {
    pub g: GridPlace,
    /// Labelled data regime: `kN` windows per class, or a share of `train_windows` (`10%`).
    pub regime: String,
    /// Fine-tuning seeds (regime subset and head initialisation); scores are their mean.
    pub seeds: Vec<u64>,
    /// Fine-tuning optimizer steps.
    pub steps: u64,
    /// Windows per fine-tuning step (drawn with replacement from the regime's subset).
    pub batch_size: usize,
    /// Peak learning rate of the fine-tuning (AdamW, 10% warm-up, cosine to lr/10).
    pub lr: f64,
    /// Labelled training windows the regime draws from (balanced: window i has class i mod K).
    pub train_windows: usize,
    /// Held-out labelled windows the score is computed on.
    pub test_windows: usize,
    /// Score the finished cells only, instead of failing when some are unfinished (or
    /// finished without a score and without their checkpoint, which cannot be scored).
    pub skip_unfinished: bool,
    /// Fine-tuning runs at a time (≥ 1): threads of one libtorch thread each. Every run seeds
    /// its own draws ([`crate::nn::Trainer`] takes libtorch's RNG in turns), so the scores do
    /// not depend on it.
    pub jobs: usize,
}

/// Everything a score depends on besides the checkpoint (compared on reruns).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub regime: String,
    pub seeds: Vec<u64>,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub mode: String,
    pub train_windows: usize,
    pub test_windows: usize,
    /// The labelled sets' generator: modality, rate, window length and seed.
    pub data: String,
}

/// One seed's fine-tuning result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeedScore {
    pub seed: u64,
    /// Labelled windows the regime kept.
    pub n_train: usize,
    pub train_loss: f64,
    pub balanced_accuracy: f64,
    pub auroc: f64,
    pub macro_f1: f64,
    pub kappa: f64,
}

/// `cells/ID/downstream.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Downstream {
    pub settings: Settings,
    /// The pretrained weights fine-tuned from (relative to the cell folder) and their step.
    pub checkpoint: String,
    pub checkpoint_step: u64,
    pub runs: Vec<SeedScore>,
    pub balanced_accuracy: Stat,
    pub auroc: Stat,
    /// The same model, regime and seeds fine-tuned from a random initialisation (the reference
    /// that says what the pretraining adds).
    pub scratch_balanced_accuracy: Stat,
    pub scratch_auroc: Stat,
    pub wall_s: f64,
}

/// Mean and sample sd over seeds (0 for one seed).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub sd: f64,
}

impl Stat {
    fn of(v: &[f64]) -> Self {
        let m = MeanSd::of(v);
        Stat {
            mean: m.mean,
            sd: m.sd,
        }
    }
}

impl Downstream {
    /// The results.csv columns this score fills.
    pub fn columns(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "downstream_balanced_accuracy",
                self.balanced_accuracy.mean.to_string(),
            ),
            (
                "downstream_balanced_accuracy_sd",
                self.balanced_accuracy.sd.to_string(),
            ),
            ("downstream_auroc", self.auroc.mean.to_string()),
            ("downstream_auroc_sd", self.auroc.sd.to_string()),
            (
                "downstream_error",
                (1.0 - self.balanced_accuracy.mean).to_string(),
            ),
            (
                "downstream_scratch_balanced_accuracy",
                self.scratch_balanced_accuracy.mean.to_string(),
            ),
            (
                "downstream_scratch_auroc",
                self.scratch_auroc.mean.to_string(),
            ),
            ("downstream_regime", self.settings.regime.clone()),
        ]
    }
}

pub fn downstream_path(out: &Path, id: &str) -> PathBuf {
    results::cell_dir(out, id).join("downstream.json")
}

/// What a run did.
#[derive(Debug, Default)]
pub struct DownstreamSummary {
    /// Cells fine-tuned by this run.
    pub scored: Vec<String>,
    /// Cells already scored with the same settings.
    pub kept: usize,
    /// Unfinished cells left out (with --skip-unfinished).
    pub unfinished: usize,
    /// Finished cells left out (with --skip-unfinished) that have no score and whose
    /// pretraining checkpoint is gone (a folder deleted, or trained in another checkout).
    pub lost: Vec<String>,
    /// Whether results.csv was rewritten.
    pub results_changed: bool,
    /// The grid's name and its results.csv.
    pub name: String,
    pub results: PathBuf,
    /// Per budget: the loss-optimal and the transfer-optimal model.
    pub optima: Vec<BudgetOptima>,
}

/// At one budget of the grid: the model with the lowest held-out pretraining loss and the one
/// with the highest downstream balanced accuracy, each as (N, eval loss, balanced accuracy).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetOptima {
    pub budget: f64,
    pub min_loss: (f64, f64, f64),
    pub max_accuracy: (f64, f64, f64),
}

fn kind_name(c: &CellConfig) -> &'static str {
    match c {
        CellConfig::Command(_) => "command",
        CellConfig::Pipeline(_) => "pipeline",
        CellConfig::Biosignal(_) => "biosignal",
    }
}

/// A labelled synthetic set of the cell's modality and window shape, normalised as in
/// pretraining.
fn labelled(b: &BiosignalCell, split: SynthSplit, n: usize) -> Result<Windows> {
    let mut d = b.generator()?.dataset(b.modality, split, 0, n, true);
    d.normalise(Norm::P95);
    Ok(d)
}

/// The final checkpoint of a finished cell's pretraining: `cells/ID/train/step-*/
/// model.safetensors`, whose step must be the cell's last (D / tokens per step).
fn final_weights(b: &BiosignalCell, cell: &Cell, out: &Path) -> Result<(PathBuf, u64)> {
    let train = results::cell_dir(out, &cell.id).join("train");
    let ckpt = crate::nn::trainer::latest_checkpoint(&train)
        .with_context(|| format!("cell {}: its pretraining checkpoint", cell.id))?;
    let state: serde_json::Value = crate::core::io::read_json(&ckpt.join("state.json"))?;
    let step = state["step"]
        .as_u64()
        .with_context(|| format!("{}: no 'step'", ckpt.join("state.json").display()))?;
    let per_step = b.costs(&cell.model, &cell.model_name)?.tokens_per_step;
    let steps = cell.tokens / per_step;
    if step != steps {
        bail!(
            "cell {}: the latest checkpoint {} is at step {step}, the cell trains {steps} steps (an unfinished or foreign checkpoint)",
            cell.id,
            ckpt.display()
        );
    }
    let w = ckpt.join("model.safetensors");
    if !w.exists() {
        bail!("cell {}: {} is missing", cell.id, w.display());
    }
    Ok((w, step))
}

/// One fine-tuning run per seed from `init` (None: from scratch).
fn scores(
    model: &BioModelConfig,
    init: Option<&Path>,
    train: &Windows,
    test: &Windows,
    regime: Regime,
    opts: &FinetuneOptions,
    seeds: &[u64],
) -> Result<Vec<SeedScore>> {
    seeds
        .iter()
        .map(|&seed| {
            let r = finetune(model, init, train, test, regime, opts, seed)
                .with_context(|| format!("fine-tuning seed {seed}"))?;
            Ok(SeedScore {
                seed,
                n_train: r.n_train,
                train_loss: r.train_loss,
                balanced_accuracy: r.scores.balanced_accuracy,
                auroc: r.scores.auroc,
                macro_f1: r.scores.macro_f1,
                kappa: r.scores.kappa,
            })
        })
        .collect()
}

/// Fine-tunes every finished cell of a `biosignal` grid not yet scored with these settings and
/// writes the downstream columns into results.csv. Errors: another cell kind, no results,
/// unfinished cells or finished ones without score and checkpoint (unless `skip_unfinished`:
/// then both are left out, the latter named on stderr), rows made under another
/// configuration, a checkpoint that is not the cell's last, cells scored with other settings,
/// bad options.
pub fn run_downstream(a: &DownstreamOptions) -> Result<DownstreamSummary> {
    let grid = Grid::load(&a.g.grid)?;
    let CellConfig::Biosignal(b) = &grid.cell else {
        bail!(
            "grid file {}: [cell] kind = \"{}\"; `grid downstream` fine-tunes the checkpoints of a \"biosignal\" grid",
            grid.path.display(),
            kind_name(&grid.cell)
        );
    };
    let regime: Regime = a.regime.parse().context("--regime")?;
    if a.seeds.is_empty() {
        bail!("--seeds: give at least one seed");
    }
    if a.steps == 0 || a.batch_size == 0 || a.train_windows == 0 || a.test_windows == 0 {
        bail!("--steps, --batch-size, --train-windows and --test-windows must be positive");
    }
    if !(a.lr > 0.0 && a.lr.is_finite()) {
        bail!("--lr must be positive, got {}", a.lr);
    }
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let out = std::path::absolute(grid.out_dir(a.g.out.as_deref()))?;
    let cells = grid.cells()?;
    if !results::results_path(&out).exists() && results::read_row_files(&out)?.is_empty() {
        bail!(
            "{}: no results of grid '{}' (run `brainscale grid run {}` first)",
            out.display(),
            grid.name,
            a.g.grid.display()
        );
    }
    results::merge(&out)?;
    let done = results::finished(&out)?;
    let stale: Vec<&str> = cells
        .iter()
        .filter(|c| done.get(&c.id).is_some_and(|h| h != &c.config_hash))
        .map(|c| c.id.as_str())
        .collect();
    if !stale.is_empty() {
        bail!(
            "{} holds rows made with a different configuration for cell(s) {} (the grid file changed since they ran)",
            out.display(),
            stale.join(", ")
        );
    }
    let (finished, unfinished): (Vec<&Cell>, Vec<&Cell>) =
        cells.iter().partition(|c| done.contains_key(&c.id));
    if !unfinished.is_empty() && !a.skip_unfinished {
        let ids: Vec<&str> = unfinished.iter().map(|c| c.id.as_str()).collect();
        bail!(
            "grid '{}': {} of {} cells are unfinished ({}{}); finish them with `brainscale grid run {}`, or pass --skip-unfinished",
            grid.name,
            ids.len(),
            cells.len(),
            ids[..ids.len().min(4)].join(", "),
            if ids.len() > 4 { ", ..." } else { "" },
            a.g.grid.display()
        );
    }
    let (_, l) = b.window();
    let settings = Settings {
        regime: regime.to_string(),
        seeds: a.seeds.clone(),
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: FinetuneOptions::default().weight_decay,
        mode: "full".into(),
        train_windows: a.train_windows,
        test_windows: a.test_windows,
        data: format!(
            "synth {} {} Hz x {l} samples, data_seed {}",
            b.modality.name(),
            b.rate,
            b.data_seed
        ),
    };
    let mut summary = DownstreamSummary {
        unfinished: unfinished.len(),
        ..Default::default()
    };
    // Scores already in results.csv: a cell whose folder is gone (ignored by git, so a later
    // checkout or session has only the row) keeps the score its row holds; only the regime is
    // recorded there, so only the regime can be checked.
    let (_, rows) = results::read_results(&out)?;
    let recorded: std::collections::HashMap<&str, &str> = rows
        .iter()
        .filter(|r| {
            r.get("downstream_balanced_accuracy")
                .is_some_and(|v| !v.is_empty())
        })
        .map(|r| {
            (
                r["cell_id"].as_str(),
                r.get("downstream_regime").map_or("", |v| v.as_str()),
            )
        })
        .collect();
    // Cells to fine-tune; a score under other settings stops everything before any work.
    let mut todo = Vec::new();
    for c in &finished {
        let p = downstream_path(&out, &c.id);
        let gone = !results::cell_dir(&out, &c.id).join("train").exists();
        if let (false, true, Some(&regime)) = (p.exists(), gone, recorded.get(c.id.as_str())) {
            if regime != settings.regime {
                bail!(
                    "{}: cell {} was scored in regime {regime} (its row; its folder is gone), \
                     this run asks {}; one set of downstream columns per results file",
                    results::results_path(&out).display(),
                    c.id,
                    settings.regime
                );
            }
            summary.kept += 1;
        } else if p.exists() {
            let d: Downstream = crate::core::io::read_json(&p)?;
            if d.settings != settings {
                bail!(
                    "{} was scored with other settings ({:?}) than these ({:?}); one set of downstream columns per results file: delete the cells' downstream.json to rescore",
                    p.display(),
                    d.settings,
                    settings
                );
            }
            summary.kept += 1;
        } else if gone {
            summary.lost.push(c.id.clone());
        } else {
            todo.push(*c);
        }
    }
    if !summary.lost.is_empty() {
        let ids = &summary.lost;
        let list = format!(
            "{}{}",
            ids[..ids.len().min(4)].join(", "),
            if ids.len() > 4 { ", ..." } else { "" }
        );
        if !a.skip_unfinished {
            bail!(
                "grid '{}': {} finished cell(s) have no downstream score and their pretraining \
                 checkpoint is gone ({list}: cell {}: its pretraining checkpoint {} does not \
                 exist); rerun them (delete their rows from {} and `brainscale grid run {}`), \
                 or pass --skip-unfinished to score the others",
                grid.name,
                ids.len(),
                ids[0],
                results::cell_dir(&out, &ids[0]).join("train").display(),
                results::results_path(&out).display(),
                a.g.grid.display()
            );
        }
        eprintln!(
            "warning: {} finished cell(s) left out: no downstream score and no pretraining \
             checkpoint ({list})",
            ids.len()
        );
    }
    if !todo.is_empty() {
        let device = crate::nn::parse_device(&b.device).context("[cell] device")?;
        // One thread: these ops are small and the cores shared (~10x faster than two).
        tch::set_num_threads(1);
        let train = labelled(b, SynthSplit::Train, a.train_windows)?;
        let test = labelled(b, SynthSplit::Test, a.test_windows)?;
        let opts = FinetuneOptions {
            mode: Mode::Full,
            steps: a.steps,
            batch_size: a.batch_size,
            lr: a.lr,
            device,
            ..FinetuneOptions::default()
        };
        // From scratch the score depends on the model only: once per model, first.
        let mut models: Vec<&Cell> = Vec::new();
        for c in &todo {
            if !models.iter().any(|m| m.model_name == c.model_name) {
                models.push(*c);
            }
        }
        let mut scratch: BTreeMap<String, Vec<SeedScore>> = BTreeMap::new();
        run_tasks(
            models.len(),
            a.jobs,
            |i| {
                let c = models[i];
                let model = BioModelConfig::from(biot_config(&c.model, &c.model_name)?);
                scores(&model, None, &train, &test, regime, &opts, &a.seeds)
                    .with_context(|| format!("model {} from scratch", c.model_name))
            },
            |i, s| {
                scratch.insert(models[i].model_name.clone(), s?);
                Ok(())
            },
        )?;
        let scratch = &scratch;
        let score_cell = |c: &Cell| -> Result<()> {
            let t0 = Instant::now();
            let (weights, step) = final_weights(b, c, &out)?;
            let cfg = biot_config(&c.model, &c.model_name)?;
            let model = BioModelConfig::from(cfg);
            let runs = scores(
                &model,
                Some(&weights),
                &train,
                &test,
                regime,
                &opts,
                &a.seeds,
            )
            .with_context(|| format!("cell {}", c.id))?;
            let of = |runs: &[SeedScore], f: fn(&SeedScore) -> f64| {
                Stat::of(&runs.iter().map(f).collect::<Vec<_>>())
            };
            let s0 = &scratch[&c.model_name];
            let cell_dir = results::cell_dir(&out, &c.id);
            let d = Downstream {
                settings: settings.clone(),
                checkpoint: weights
                    .strip_prefix(&cell_dir)
                    .unwrap_or(&weights)
                    .display()
                    .to_string(),
                checkpoint_step: step,
                balanced_accuracy: of(&runs, |s| s.balanced_accuracy),
                auroc: of(&runs, |s| s.auroc),
                scratch_balanced_accuracy: of(s0, |s| s.balanced_accuracy),
                scratch_auroc: of(s0, |s| s.auroc),
                runs,
                wall_s: t0.elapsed().as_secs_f64(),
            };
            crate::core::io::write_json(&downstream_path(&out, &c.id), &d)?;
            // Progress, one line per cell (the summary and table are the result).
            eprintln!(
                "{}: balanced accuracy {:.3} ± {:.3} (from scratch {:.3}), AUROC {:.3} ± {:.3} ({} seeds, {:.1}s)",
                c.id,
                d.balanced_accuracy.mean,
                d.balanced_accuracy.sd,
                d.scratch_balanced_accuracy.mean,
                d.auroc.mean,
                d.auroc.sd,
                a.seeds.len(),
                d.wall_s
            );
            Ok(())
        };
        run_tasks(
            todo.len(),
            a.jobs,
            |i| score_cell(todo[i]),
            |i, r| {
                r?;
                summary.scored.push(todo[i].id.clone());
                Ok(())
            },
        )?;
    }
    summary.results_changed = write_columns(&out)?;
    summary.name = grid.name.clone();
    summary.results = results::results_path(&out);
    summary.optima = optimum_table(&grid, &out)?;
    Ok(summary)
}

/// Copies every cell's downstream.json into results.csv's downstream columns (appended after
/// the existing ones); rewrites the file atomically only when something changed.
fn write_columns(out: &Path) -> Result<bool> {
    let (mut header, mut rows) = results::read_results(out)?;
    let mut changed = false;
    for r in rows.iter_mut() {
        let p = downstream_path(out, &r["cell_id"]);
        if !p.exists() {
            continue;
        }
        let d: Downstream = crate::core::io::read_json(&p)?;
        for (k, v) in d.columns() {
            if !header.iter().any(|h| h == k) {
                header.push(k.to_string());
            }
            if r.get(k) != Some(&v) {
                r.insert(k.to_string(), v);
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(false);
    }
    crate::core::io::write_atomic(&results::results_path(out), |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        w.write_record(&header)?;
        for r in &rows {
            w.write_record(
                header
                    .iter()
                    .map(|c| r.get(c).map(String::as_str).unwrap_or("")),
            )?;
        }
        w.flush()?;
        Ok(())
    })?;
    Ok(true)
}

/// Per budget of the grid: the model with the lowest held-out pretraining loss and the one with
/// the highest downstream balanced accuracy (is the loss-optimal N also best for transfer?).
fn optimum_table(grid: &Grid, out: &Path) -> Result<Vec<BudgetOptima>> {
    let (_, rows) = results::read_results(out)?;
    let num = |r: &BTreeMap<String, String>, k: &str| r.get(k).and_then(|v| v.parse::<f64>().ok());
    let mut by_budget: BTreeMap<usize, Vec<(f64, f64, f64)>> = BTreeMap::new();
    for r in &rows {
        let (Some(c), Some(n), Some(loss), Some(ba)) = (
            num(r, "flops"),
            num(r, "n_params"),
            num(r, "eval_loss"),
            num(r, "downstream_balanced_accuracy"),
        ) else {
            continue;
        };
        // The grid budget nearest in ln C (rows hold the exact C of whole steps).
        let Some(i) = (0..grid.axes.budgets.len()).min_by(|&i, &j| {
            let d = |k: usize| (c / grid.axes.budgets[k]).ln().abs();
            d(i).total_cmp(&d(j))
        }) else {
            return Ok(Vec::new());
        };
        by_budget.entry(i).or_default().push((n, loss, ba));
    }
    Ok(by_budget
        .into_iter()
        .map(|(i, v)| BudgetOptima {
            budget: grid.axes.budgets[i],
            min_loss: *v
                .iter()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("non-empty"),
            max_accuracy: *v
                .iter()
                .max_by(|a, b| a.2.total_cmp(&b.2))
                .expect("non-empty"),
        })
        .collect())
}
