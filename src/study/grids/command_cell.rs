//! The `[cell] kind = "command"` cell: user shell steps that write a metrics JSON, so any
//! training or encoding code plugs into the bench machinery (resume, rows, executors).
use crate::study::grids::cell::{Cell, CellEnv, CellOutput, CellWork};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Runs shell steps in order (`sh -c`, in the directory bench was started from), then reads the
/// metrics JSON they wrote. Placeholders in steps and in `metrics`:
/// `{cell_id} {cell_dir} {grid_dir} {out_dir} {model} {n_layer} {n_head} {d_model} {ctx} {vocab}
/// {tokens} {precision} {seed} {subjects} {n_params} {n_params_total} {flops}` and `{model.KEY}`
/// for further model fields. Values with characters other than letters, digits and `-_./:=,+`
/// are single-quoted for the shell, so do not put placeholders inside quotes yourself.
/// The same values are in the environment as BS_CELL_ID, BS_CELL_DIR, BS_TOKENS, ... .
///
/// The metrics file is JSON: `{"eval_loss": 3.2, "train_loss": 3.1, "device": "cuda:0",
/// "subjects": {"sub-01": {"mean_r": 0.12, "top10_r": 0.31}}, ...}`; every key is optional
/// and any other key is kept in the row's JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandCell {
    pub steps: Vec<String>,
    /// Path of the metrics JSON, relative to the cell folder unless absolute.
    #[serde(default = "default_metrics")]
    pub metrics: String,
    /// Extra environment variables for the steps.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_metrics() -> String {
    "metrics.json".into()
}

/// Placeholder values of one cell (and their env names).
fn values(cell: &Cell, env: Option<&CellEnv>) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let m = &cell.model;
    for (k, x) in [
        ("cell_id", cell.id.clone()),
        ("model", cell.model_name.clone()),
        ("n_layer", m.n_layer.to_string()),
        ("n_head", m.n_head.to_string()),
        ("d_model", m.d_model.to_string()),
        ("ctx", m.ctx.to_string()),
        ("vocab", m.vocab.to_string()),
        ("tokens", cell.tokens.to_string()),
        ("precision", cell.precision.clone()),
        ("seed", cell.seed.to_string()),
        ("subjects", cell.subjects.join(",")),
        ("n_params", cell.counts.non_embedding.to_string()),
        ("n_params_total", cell.counts.total.to_string()),
        ("flops", format!("{:e}", cell.flops)),
    ] {
        v.insert(k.to_string(), x);
    }
    for (k, x) in &m.extra {
        let s = match x {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        v.insert(format!("model.{k}"), s);
    }
    // Paths are only known at run time; validation uses stand-ins.
    let path = |p: Option<&Path>| {
        p.map(|p| p.display().to_string())
            .unwrap_or_else(|| "/".into())
    };
    v.insert("cell_dir".into(), path(env.map(|e| e.dir.as_path())));
    v.insert("grid_dir".into(), path(env.map(|e| e.grid_dir.as_path())));
    v.insert("out_dir".into(), path(env.map(|e| e.out_dir.as_path())));
    v
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Replaces `{name}` placeholders; `{{` and `}}` are literal braces (for inline JSON).
fn expand(template: &str, vals: &BTreeMap<String, String>, quote: bool) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let ch = &rest[i..i + 1];
        if rest[i..].starts_with("{{") || rest[i..].starts_with("}}") {
            out.push_str(ch);
            rest = &rest[i + 2..];
            continue;
        }
        if ch == "}" {
            bail!("unmatched '}}' in '{template}' (write '}}}}' for a literal brace)");
        }
        let end = rest[i..]
            .find('}')
            .with_context(|| format!("unclosed '{{' in '{template}'"))?
            + i;
        let key = &rest[i + 1..end];
        let val = vals.get(key).with_context(|| {
            let names: Vec<&str> = vals.keys().map(String::as_str).collect();
            format!(
                "unknown placeholder {{{key}}} in '{template}'; known: {}",
                names.join(", ")
            )
        })?;
        out.push_str(&if quote { shell_word(val) } else { val.clone() });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl CommandCell {
    pub fn validate(&self) -> Result<()> {
        if self.steps.is_empty() {
            bail!("[cell] kind = \"command\" needs at least one entry in steps");
        }
        if self.metrics.is_empty() {
            bail!("[cell] metrics must name the JSON file the steps write");
        }
        Ok(())
    }

    /// Fails on unknown placeholders (checked for every cell when the grid loads).
    pub fn check_placeholders(&self, cell: &Cell) -> Result<()> {
        let v = values(cell, None);
        for s in &self.steps {
            expand(s, &v, true)?;
        }
        expand(&self.metrics, &v, false)?;
        Ok(())
    }

    fn metrics_path(&self, env: &CellEnv) -> Result<PathBuf> {
        let p = PathBuf::from(expand(&self.metrics, &values(env.cell, Some(env)), false)?);
        Ok(if p.is_absolute() { p } else { env.dir.join(p) })
    }
}

impl CellWork for CommandCell {
    fn run(&self, env: &CellEnv) -> Result<CellOutput> {
        let vals = values(env.cell, Some(env));
        let metrics = self.metrics_path(env)?;
        // A metrics file from an interrupted attempt must not be trusted.
        if metrics.exists() {
            std::fs::remove_file(&metrics)
                .with_context(|| format!("removing stale {}", metrics.display()))?;
        }
        for (k, step) in self.steps.iter().enumerate() {
            let cmd = expand(step, &vals, true)?;
            let log = env.dir.join(format!("step-{}.log", k + 1));
            let f = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let mut c = std::process::Command::new("sh");
            c.arg("-c")
                .arg(&cmd)
                .stdin(Stdio::null())
                .stdout(f.try_clone()?)
                .stderr(f);
            for (name, v) in &vals {
                c.env(format!("BS_{}", name.replace('.', "_").to_uppercase()), v);
            }
            c.envs(&self.env);
            let status = c.status().with_context(|| {
                format!("starting step {} of cell {}: {cmd}", k + 1, env.cell.id)
            })?;
            if !status.success() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "step {} of cell {} failed ({status}): {cmd}\n  log {}:\n    {}",
                    k + 1,
                    env.cell.id,
                    log.display(),
                    tail.join("\n    ")
                );
            }
        }
        let out: CellOutput = crate::core::io::read_json(&metrics).with_context(|| {
            format!(
                "cell {}: the steps did not leave usable metrics",
                env.cell.id
            )
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_expand_and_quote() {
        let mut v = BTreeMap::new();
        v.insert("a".to_string(), "1e5".to_string());
        v.insert("p".to_string(), "/tmp/x y".to_string());
        assert_eq!(
            expand("x {a} {p}/m.json {{}}", &v, true).unwrap(),
            "x 1e5 '/tmp/x y'/m.json {}"
        );
        assert!(expand("{nope}", &v, true)
            .unwrap_err()
            .to_string()
            .contains("unknown placeholder {nope}"));
        assert!(expand("{a", &v, true).is_err());
    }
}
