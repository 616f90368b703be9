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
//! seeds = [0]                        # optional, default [0]
//! subjects = ["sub-01"]              # optional: every row must report these subjects
//! [models.tiny]
//! n_layer = 1
//! n_head = 2
//! d_model = 32
//! ctx = 16
//! vocab = 64
//! [cell]
//! kind = "command"                   # see cell.rs; or "pipeline" (pipeline_cell.rs)
//! steps = ["..."]
//! metrics = "metrics.json"
//! [executor]
//! kind = "local"                     # local | slurm
//! parallel = 1
//! [slurm]                            # used by the slurm executor
//! time = "01:00:00"
//! ```
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A GPT-2 style model configuration (nanoGPT names accepted as aliases). Fields the bench does
/// not use itself (dropout, bias, ...) are kept in `extra` and handed to the cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelSpec {
    pub n_layer: u64,
    pub n_head: u64,
    #[serde(alias = "n_embd")]
    pub d_model: u64,
    #[serde(alias = "block_size")]
    pub ctx: u64,
    #[serde(alias = "vocab_size")]
    pub vocab: u64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, toml::Value>,
}

/// Parameter counts: [`crate::models::gpt::GptConfig::param_counts`] is their one source.
pub use crate::models::gpt::ParamCounts;

/// [`GptConfig`](crate::models::gpt::GptConfig) fields a model table may set besides the five
/// above (kept in `extra`); checked against the struct in a test.
pub const GPT_EXTRA_FIELDS: &[&str] = &[
    "name",
    "dropout",
    "attn_dropout",
    "pos",
    "latent_shape",
    "tie_weights",
];

impl ModelSpec {
    /// The model as the GPT code builds it. `strict`: every extra field must be a GptConfig
    /// field (the pipeline cell builds this model); otherwise extra fields that are not (a
    /// command cell's own settings) are left out.
    pub fn gpt_config(&self, name: &str, strict: bool) -> Result<crate::models::gpt::GptConfig> {
        let mut t = toml::Table::new();
        for (k, v) in &self.extra {
            if strict || GPT_EXTRA_FIELDS.contains(&k.as_str()) {
                t.insert(k.clone(), v.clone());
            }
        }
        t.entry("name").or_insert_with(|| name.into());
        for (k, v) in [
            ("d_model", self.d_model),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("ctx", self.ctx),
            ("vocab", self.vocab),
        ] {
            let v = i64::try_from(v)
                .map_err(|_| anyhow::anyhow!("model '{name}': {k} = {v} is too large"))?;
            t.insert(k.into(), toml::Value::Integer(v));
        }
        let cfg: crate::models::gpt::GptConfig = toml::Value::Table(t)
            .try_into()
            .with_context(|| format!("model '{name}' is not a GPT config"))?;
        cfg.validate().with_context(|| format!("model '{name}'"))?;
        Ok(cfg)
    }

    /// Parameter counts of the model (GPT-2 blocks with biases and LayerNorms; the model's
    /// position embedding and weight tying). A cell that builds the real model may report
    /// its own counts, which then take precedence (see cell.rs).
    pub fn counts(&self, name: &str) -> Result<ParamCounts> {
        Ok(self.gpt_config(name, false)?.param_counts())
    }

    fn validate(&self, name: &str) -> Result<()> {
        for (k, v) in [
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("d_model", self.d_model),
            ("ctx", self.ctx),
            ("vocab", self.vocab),
        ] {
            if v == 0 {
                bail!("model '{name}': {k} must be positive");
            }
        }
        if self.d_model % self.n_head != 0 {
            bail!(
                "model '{name}': d_model {} is not divisible by n_head {}",
                self.d_model,
                self.n_head
            );
        }
        self.gpt_config(name, false)?;
        Ok(())
    }
}

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
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// What a cell runs. `command` runs shell steps (cell.rs); `pipeline` is the built-in
/// pretrain → extract → encode cell, whose settings are passed through untouched.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CellConfig {
    Command(super::cell::CommandCell),
    Pipeline(BTreeMap<String, toml::Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
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

/// Resources and environment of the sbatch job array (one task per cell).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Wall-clock limit per cell, e.g. "02:00:00".
    pub time: Option<String>,
    pub cpus_per_task: Option<u32>,
    /// Memory per task, e.g. "32G".
    pub mem: Option<String>,
    /// Generic resources, e.g. "gpu:1".
    pub gres: Option<String>,
    /// At most this many array tasks at once (`--array=0-K%P`).
    pub max_parallel: Option<u32>,
    /// Further `#SBATCH` options, e.g. ["--constraint=a100"].
    #[serde(default)]
    pub extra: Vec<String>,
    /// Shell lines run before the cell (module loads, environment).
    #[serde(default)]
    pub setup: Vec<String>,
    /// The brainscale binary the tasks run (default: the one submitting).
    pub brainscale: Option<PathBuf>,
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

/// One cell of the grid, fully resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub id: String,
    pub model_name: String,
    pub model: ModelSpec,
    pub tokens: u64,
    pub precision: String,
    pub seed: u64,
    pub subjects: Vec<String>,
    pub counts: ParamCounts,
    /// Training FLOPs from src/flops.rs with the architecture's counts.
    pub flops: f64,
    /// Hash of everything that defines the cell's result (model, data, precision, seed, what
    /// runs): a rerun only trusts rows with the same hash.
    pub config_hash: String,
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
        let base = g.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut models = BTreeMap::new();
        for m in &a.models {
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
            CellConfig::Pipeline(t) => {
                super::pipeline_cell::PipelineConfig::from_table(t)
                    .map_err(|e| ctx(format!("{e:#}")))?;
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
            let counts = model.counts(m)?;
            let per_token = crate::flops::train_flops_per_token(
                counts.matmul,
                model.n_layer,
                model.ctx,
                model.d_model,
            );
            let mut sizes: Vec<(u64, String)> = self
                .axes
                .tokens
                .iter()
                .map(|&t| (t, format!("D{t}")))
                .collect();
            for &b in &self.axes.budgets {
                let tokens = (b / per_token).round() as u64;
                if tokens == 0 {
                    bail!(
                        "grid file {}: budget {b:e} FLOPs is less than one token of model '{m}' ({per_token:e} FLOPs per token)",
                        self.path.display()
                    );
                }
                sizes.push((tokens, format!("C{b:e}")));
            }
            for (tokens, size) in sizes {
                for p in &self.axes.precisions {
                    for &seed in &self.axes.seeds {
                        let id = format!("{}-{size}-{p}-s{seed}", sanitize(m));
                        let flops = crate::flops::train_flops(
                            counts.matmul,
                            model.n_layer,
                            model.ctx,
                            model.d_model,
                            tokens,
                        );
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

/// FNV-1a, 64 bit: a stable hash (std's hasher may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_small_parameter_counts() {
        // GPT-2 small (124M with its 50257 vocab): nanoGPT reports 123.65M without the
        // position embedding (get_num_params(non_embedding=True)) = 124.44M total - 1024·768.
        let m = ModelSpec {
            n_layer: 12,
            n_head: 12,
            d_model: 768,
            ctx: 1024,
            vocab: 50257,
            extra: Default::default(),
        };
        let c = m.counts("gpt2").unwrap();
        assert_eq!(c.total, 124_439_808);
        assert_eq!(c.total - 50257 * 768 - 1024 * 768, c.non_embedding);
        assert_eq!(c.non_embedding, 85_056_000);
    }

    #[test]
    fn gpt_extra_fields_are_the_config_fields() {
        let cfg = ModelSpec {
            n_layer: 1,
            n_head: 1,
            d_model: 8,
            ctx: 8,
            vocab: 8,
            extra: [(
                "latent_shape".to_string(),
                toml::Value::try_from([2, 2, 2]).unwrap(),
            )]
            .into(),
        }
        .gpt_config("x", true)
        .unwrap();
        let t: toml::Table = toml::Value::try_from(&cfg).unwrap().try_into().unwrap();
        let mut keys: Vec<&str> = t
            .keys()
            .map(String::as_str)
            .filter(|k| !["d_model", "n_layer", "n_head", "ctx", "vocab"].contains(k))
            .collect();
        keys.sort();
        let mut want = GPT_EXTRA_FIELDS.to_vec();
        want.sort();
        assert_eq!(keys, want);
        // Strict conversion rejects what the GPT code would not use.
        let mut m = ModelSpec {
            extra: Default::default(),
            ..cfg_spec()
        };
        m.extra.insert("bias".into(), toml::Value::Boolean(false));
        assert!(m.gpt_config("x", true).is_err());
        assert!(m.gpt_config("x", false).is_ok());
    }

    fn cfg_spec() -> ModelSpec {
        ModelSpec {
            n_layer: 2,
            n_head: 2,
            d_model: 16,
            ctx: 16,
            vocab: 32,
            extra: Default::default(),
        }
    }
}
