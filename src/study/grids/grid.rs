//! Grid files (TOML): the axes of a scale benchmark (data sizes × model configs × precisions ×
//! seeds), the subjects every cell encodes, what a cell runs, and where it runs.
//!
//! ```toml
//! name = "smoke"
//! out = "results/bench/smoke"        # optional; default results/bench/NAME
//! [axes]
//! tokens = [4096, 16384]             # D, training tokens, and/or
//! budgets = [1e9, 4e9]               # compute budgets C in FLOPs: D = C / (FLOPs per token)
//!                                    # of each model, so every model meets each budget
//!                                    # (an iso-FLOP design for `scaling fit`)
//! models = ["tiny", "models/s.toml"] # [models.NAME] tables or model TOML files
//! precisions = ["fp32"]              # fp32 | bf16 | fp16
//! seeds = [0]                        # optional, default [0]: several seeds give mean ± sd
//! # [[axes.ladders]]                 # optional: each budget its own model ladder (the models
//! # budget = 1e9                     # of axes.models it runs), so every iso-FLOP sweep can
//! # models = ["models/s.toml"]       # be centred on its own N_opt (`scaling plan`)
//! subjects = ["sub-01"]              # optional: every row must report these subjects
//! [models.tiny]
//! n_layer = 1
//! n_head = 2
//! d_model = 32
//! ctx = 16
//! vocab = 64
//! [cell]
//! kind = "command"                   # see command_cell.rs; or "pipeline" (pipeline_cell.rs)
//! steps = ["..."]
//! metrics = "metrics.json"
//! [executor]
//! kind = "local"                     # local | slurm
//! parallel = 1
//! [slurm]                            # used by the slurm executor
//! time = "01:00:00"
//! ```
pub use crate::exec::slurm::SlurmConfig;
use crate::study::grids::biosignal_cell::BiosignalCell;
use crate::study::grids::cell::{fnv1a, Cell, CellWork, ModelSpec};
use crate::study::grids::command_cell::CommandCell;
use crate::study::grids::pipeline_cell::{PipelineCell, PipelineConfig};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axes {
    #[serde(default)]
    pub tokens: Vec<u64>,
    /// Training budgets in FLOPs; each model gets the tokens that spend it.
    #[serde(default)]
    pub budgets: Vec<f64>,
    pub models: Vec<String>,
    pub precisions: Vec<String>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Per-budget model ladders: when given, a model runs only at the budgets whose ladder
    /// lists it (every budget needs one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ladders: Vec<Ladder>,
}

/// The models one budget runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    pub budget: f64,
    pub models: Vec<String>,
}

impl Axes {
    /// Whether model `m` runs at budget `b` (always, without ladders).
    pub fn runs_at(&self, m: &str, b: f64) -> bool {
        self.ladders.is_empty()
            || self
                .ladders
                .iter()
                .any(|l| l.budget == b && l.models.iter().any(|x| x == m))
    }
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// What a cell runs. `command` runs shell steps (command_cell.rs); `pipeline` is the built-in
/// pretrain → extract → encode cell, whose settings are passed through untouched; `biosignal`
/// is BIOT's contrastive pretraining on one synthetic modality (biosignal_cell.rs), whose
/// `axes.models` are BIOT model files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CellConfig {
    Command(CommandCell),
    Pipeline(BTreeMap<String, toml::Value>),
    Biosignal(BiosignalCell),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    #[serde(default)]
    pub kind: ExecutorKind,
    /// Cells run at once by the local executor.
    #[serde(default = "one")]
    pub parallel: usize,
}

fn one() -> usize {
    1
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            kind: ExecutorKind::Local,
            parallel: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub name: String,
    pub out: Option<PathBuf>,
    pub axes: Axes,
    #[serde(default)]
    pub models: BTreeMap<String, ModelSpec>,
    pub cell: CellConfig,
    #[serde(default)]
    pub executor: ExecutorConfig,
    #[serde(default)]
    pub slurm: SlurmConfig,
    /// The grid file (absolute), set on load.
    #[serde(skip)]
    pub path: PathBuf,
}

pub const PRECISIONS: &[&str] = &["fp32", "bf16", "fp16"];

impl Grid {
    /// Reads and validates a grid file; model entries ending in `.toml` are read relative to
    /// the grid file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading grid file {}", path.display()))?;
        let mut g: Grid = toml::from_str(&text)
            .with_context(|| format!("parsing grid file {}", path.display()))?;
        g.path =
            std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
        let ctx = |msg: String| anyhow::anyhow!("grid file {}: {msg}", path.display());
        if g.name.is_empty()
            || !g
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ctx(format!(
                "name '{}' must be non-empty and use only letters, digits, '-', '_', '.'",
                g.name
            )));
        }
        let a = &g.axes;
        for (what, empty) in [
            (
                "axes.tokens and axes.budgets",
                a.tokens.is_empty() && a.budgets.is_empty(),
            ),
            ("axes.models", a.models.is_empty()),
            ("axes.precisions", a.precisions.is_empty()),
            ("axes.seeds", a.seeds.is_empty()),
        ] {
            if empty {
                return Err(ctx(format!("{what} is empty")));
            }
        }
        if let Some(t) = a.tokens.iter().find(|&&t| t == 0) {
            return Err(ctx(format!("axes.tokens: {t} must be positive")));
        }
        if let Some(b) = a.budgets.iter().find(|b| !(b.is_finite() && **b > 0.0)) {
            return Err(ctx(format!(
                "axes.budgets: {b} must be a positive number of FLOPs"
            )));
        }
        for p in &a.precisions {
            if !PRECISIONS.contains(&p.as_str()) {
                return Err(ctx(format!(
                    "axes.precisions: '{p}' is not one of {}",
                    PRECISIONS.join(", ")
                )));
            }
        }
        for (what, list) in [
            ("axes.models", &a.models),
            ("axes.precisions", &a.precisions),
            ("axes.subjects", &a.subjects),
        ] {
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = list.iter().find(|v| !seen.insert(v.as_str())) {
                return Err(ctx(format!("{what}: '{dup}' is listed twice")));
            }
        }
        if !a.ladders.is_empty() {
            for l in &a.ladders {
                if !a.budgets.contains(&l.budget) {
                    return Err(ctx(format!(
                        "axes.ladders: budget {:e} is not in axes.budgets",
                        l.budget
                    )));
                }
                if let Some(m) = l.models.iter().find(|m| !a.models.contains(m)) {
                    return Err(ctx(format!(
                        "axes.ladders: the ladder of budget {:e} names '{m}', which is not in axes.models",
                        l.budget
                    )));
                }
            }
            if let Some(b) = a
                .budgets
                .iter()
                .find(|&&b| !a.ladders.iter().any(|l| l.budget == b))
            {
                return Err(ctx(format!(
                    "axes.ladders: budget {b:e} has no ladder (with ladders, every budget needs one)"
                )));
            }
        }
        let base = g.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut models = BTreeMap::new();
        for m in &a.models {
            if let CellConfig::Biosignal(b) = &g.cell {
                if !m.ends_with(".toml") {
                    return Err(ctx(format!(
                        "axes.models: '{m}': a biosignal grid lists BIOT model files (e.g. \"../models/biot-d32-l4.toml\"), not [models] tables"
                    )));
                }
                let p = base.join(m);
                let spec = b.load_model(&p).map_err(|e| ctx(format!("{e:#}")))?;
                models.insert(m.clone(), spec);
                continue;
            }
            let spec = if m.ends_with(".toml") {
                let p = base.join(m);
                let t = std::fs::read_to_string(&p).with_context(|| {
                    format!(
                        "grid file {}: reading model file {}",
                        path.display(),
                        p.display()
                    )
                })?;
                toml::from_str::<ModelSpec>(&t)
                    .with_context(|| format!("parsing model file {}", p.display()))?
            } else {
                g.models.get(m).cloned().ok_or_else(|| {
                    ctx(format!("axes.models names '{m}' but there is no [models.{m}] table (or give a .toml path)"))
                })?
            };
            spec.validate(m).map_err(|e| ctx(e.to_string()))?;
            models.insert(m.clone(), spec);
        }
        g.models = models;
        if g.executor.parallel == 0 {
            return Err(ctx("executor.parallel must be at least 1".into()));
        }
        match &g.cell {
            CellConfig::Command(c) => c.validate().map_err(|e| ctx(e.to_string()))?,
            CellConfig::Biosignal(b) => b.validate().map_err(|e| ctx(format!("{e:#}")))?,
            CellConfig::Pipeline(t) => {
                PipelineConfig::from_table(t).map_err(|e| ctx(format!("{e:#}")))?;
                for (name, m) in &g.models {
                    m.gpt_config(name, true)
                        .map_err(|e| ctx(format!("{e:#}")))?;
                }
            }
        }
        // Expanding checks placeholders against every cell up front, not mid-run.
        g.cells()?;
        Ok(g)
    }

    /// The results folder: `--out`, else the grid's `out`, else results/bench/NAME.
    pub fn out_dir(&self, over: Option<&Path>) -> PathBuf {
        over.map(Path::to_path_buf)
            .or_else(|| self.out.clone())
            .unwrap_or_else(|| PathBuf::from("results/bench").join(&self.name))
    }

    /// Every cell, in a fixed order (models, then data sizes — tokens, then budgets —,
    /// precisions, seeds).
    pub fn cells(&self) -> Result<Vec<Cell>> {
        let mut cells = Vec::new();
        for m in &self.axes.models {
            let model = self.models[m].clone();
            // Parameter counts, FLOPs per token, and the tokens of one optimizer step when a
            // cell trains whole steps (D is rounded to a multiple of it).
            let (counts, per_token, quantum) = match &self.cell {
                CellConfig::Biosignal(b) => {
                    let c = b
                        .costs(&model, m)
                        .with_context(|| format!("grid file {}", self.path.display()))?;
                    (c.counts, c.flops_per_token, c.tokens_per_step)
                }
                _ => {
                    let counts = model.counts(m)?;
                    let per_token = crate::core::flops::train_flops_per_token(
                        counts.matmul,
                        model.n_layer,
                        model.ctx,
                        model.d_model,
                    );
                    (counts, per_token, 1)
                }
            };
            let whole_steps = |t: u64| ((t as f64 / quantum as f64).round() as u64) * quantum;
            let mut sizes: Vec<(u64, String)> = self
                .axes
                .tokens
                .iter()
                .map(|&t| (whole_steps(t).max(quantum), format!("D{t}")))
                .collect();
            for &b in &self.axes.budgets {
                if !self.axes.runs_at(m, b) {
                    continue;
                }
                let tokens = whole_steps((b / per_token).round() as u64);
                if tokens == 0 {
                    bail!(
                        "grid file {}: budget {b:e} FLOPs is less than one {} of model '{m}' ({:e} FLOPs)",
                        self.path.display(),
                        if quantum > 1 { "optimizer step" } else { "token" },
                        per_token * quantum as f64
                    );
                }
                sizes.push((tokens, format!("C{b:e}")));
            }
            if let CellConfig::Biosignal(b) = &self.cell {
                if let Some(m) = b.lr_by_model.keys().find(|k| !self.axes.models.contains(k)) {
                    bail!(
                        "grid file {}: [cell] lr_by_model names '{m}', which is not in axes.models",
                        self.path.display()
                    );
                }
                let min = b.min_steps();
                if let Some((t, size)) = sizes.iter().find(|(t, _)| t / quantum < min) {
                    bail!(
                        "grid file {}: the cell of model '{m}' at {size} would train {} optimizer steps of {quantum} tokens, fewer than min_steps = {min}: its loss would mostly measure warmup. Raise the budget, drop the model from this budget, lower batch_size, or set [cell] min_steps",
                        self.path.display(),
                        t / quantum
                    );
                }
            }
            for (tokens, size) in sizes {
                for p in &self.axes.precisions {
                    for &seed in &self.axes.seeds {
                        let id = format!("{}-{size}-{p}-s{seed}", sanitize(m));
                        let flops = per_token * tokens as f64;
                        let mut cell = Cell {
                            id,
                            model_name: m.clone(),
                            model: model.clone(),
                            tokens,
                            precision: p.clone(),
                            seed,
                            subjects: self.axes.subjects.clone(),
                            counts,
                            flops,
                            config_hash: String::new(),
                        };
                        let key = serde_json::json!({
                            "model": cell.model, "tokens": tokens, "precision": p, "seed": seed,
                            "subjects": cell.subjects, "cell": self.cell,
                        });
                        cell.config_hash = format!("{:016x}", fnv1a(key.to_string().as_bytes()));
                        if let CellConfig::Command(c) = &self.cell {
                            c.check_placeholders(&cell)
                                .with_context(|| format!("grid file {}", self.path.display()))?;
                        }
                        cells.push(cell);
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &cells {
            if !seen.insert(c.id.clone()) {
                bail!("grid file {}: two cells get the id '{}' (model names differ only in characters replaced by '_')", self.path.display(), c.id);
            }
        }
        Ok(cells)
    }
}

/// The work a grid's `[cell]` table describes.
pub fn work_for(grid: &Grid) -> Result<Box<dyn CellWork>> {
    match &grid.cell {
        CellConfig::Command(c) => Ok(Box::new(c.clone())),
        CellConfig::Biosignal(b) => Ok(Box::new(b.clone())),
        CellConfig::Pipeline(t) => Ok(Box::new(PipelineCell::new(
            t,
            &grid.path,
            &grid.axes.subjects,
            &grid.models,
        )?)),
    }
}

/// Keeps ids usable as folder names and shell words.
fn sanitize(s: &str) -> String {
    let stem = s.strip_suffix(".toml").unwrap_or(s);
    let stem = Path::new(stem)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
