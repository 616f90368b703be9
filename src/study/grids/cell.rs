//! One cell of a grid: its resolved settings (model, data size, precision, seed, subjects),
//! the [`CellWork`] trait that each kind of cell implements (command_cell.rs, pipeline_cell.rs)
//! and what a cell reports.
use crate::models::ModelConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// its own counts, which then take precedence (see [`CellOutput`]).
    pub fn counts(&self, name: &str) -> Result<ParamCounts> {
        Ok(self.gpt_config(name, false)?.param_counts())
    }

    /// Checks the sizes (positive, d_model divisible by n_head) and that the GPT code accepts
    /// the model; errors name the model.
    pub fn validate(&self, name: &str) -> Result<()> {
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

/// FNV-1a, 64 bit: a stable hash (std's hasher may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Encoding scores of one subject (from src/stats.rs `summarize_r` in the real cell).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubjectScore {
    pub mean_r: f64,
    pub top10_r: f64,
}

/// What a cell reports. Counts given here (from the real model) override the architecture
/// formula; `extra` keeps anything else for the row's JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CellOutput {
    pub train_loss: Option<f64>,
    pub eval_loss: Option<f64>,
    pub device: Option<String>,
    pub n_params: Option<u64>,
    pub n_params_total: Option<u64>,
    /// Matmul parameters for the FLOP count, when the cell knows them exactly.
    pub n_params_matmul: Option<u64>,
    #[serde(default)]
    pub subjects: BTreeMap<String, SubjectScore>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Where a cell runs: its folder (created, kept between attempts so the work can reuse
/// checkpoints) and the grid's context.
pub struct CellEnv<'a> {
    pub cell: &'a Cell,
    pub dir: PathBuf,
    pub grid_dir: PathBuf,
    pub out_dir: PathBuf,
}

/// One cell's work. Implementations must be restartable: a cell killed midway is run again
/// from the start (it may reuse what it finished, e.g. a checkpoint, in `env.dir`).
pub trait CellWork: Send + Sync {
    fn run(&self, env: &CellEnv) -> Result<CellOutput>;
}

/// Checks a cell's output: finite numbers, and every subject the grid lists.
pub fn validate_output(out: &CellOutput, cell: &Cell, source: &str) -> Result<()> {
    for (k, v) in [("train_loss", out.train_loss), ("eval_loss", out.eval_loss)] {
        if let Some(v) = v {
            if !v.is_finite() {
                bail!("{source}: {k} is {v}");
            }
        }
    }
    for (s, sc) in &out.subjects {
        if !(sc.mean_r.is_finite() && sc.top10_r.is_finite())
            || sc.mean_r.abs() > 1.0
            || sc.top10_r.abs() > 1.0
        {
            bail!("{source}: subject {s}: r values must be finite and within [-1, 1], got {sc:?}");
        }
    }
    let missing: Vec<&String> = cell
        .subjects
        .iter()
        .filter(|s| !out.subjects.contains_key(*s))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{source}: no scores for subject(s) {:?} listed in the grid's axes.subjects",
            missing
        );
    }
    Ok(())
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
