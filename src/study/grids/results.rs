//! Results rows. Each finished cell writes `cells/ID/row.json` atomically (temp + rename), so
//! workers never share a file; `results.csv` (one row per cell) is rebuilt from those files and
//! the rows it already holds, deduplicated by cell id, and renamed into place.
use crate::study::grids::cell::{Cell, CellOutput, SubjectScore};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One results row (row.json); `subjects` becomes r_mean:SUBJECT and r_top10:SUBJECT columns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub grid: String,
    pub cell_id: String,
    pub config_hash: String,
    pub model: String,
    pub n_layer: u64,
    pub n_head: u64,
    pub d_model: u64,
    pub ctx: u64,
    pub vocab: u64,
    /// Non-embedding parameters.
    pub n_params: u64,
    pub n_params_total: u64,
    pub tokens: u64,
    pub flops: f64,
    pub precision: String,
    pub seed: u64,
    pub device: String,
    pub wall_s: f64,
    pub train_loss: Option<f64>,
    pub eval_loss: Option<f64>,
    /// Mean over subjects of each subject's mean r (and of top-10% r).
    pub encoding_r: Option<f64>,
    pub encoding_r_top10: Option<f64>,
    pub finished_unix: u64,
    pub subjects: BTreeMap<String, SubjectScore>,
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The fixed leading columns of results.csv, in order.
pub const COLUMNS: &[&str] = &[
    "grid",
    "cell_id",
    "config_hash",
    "model",
    "n_layer",
    "n_head",
    "d_model",
    "ctx",
    "vocab",
    "n_params",
    "n_params_total",
    "tokens",
    "flops",
    "precision",
    "seed",
    "device",
    "wall_s",
    "train_loss",
    "eval_loss",
    "encoding_r",
    "encoding_r_top10",
    "finished_unix",
];

impl Row {
    /// Builds the row; counts reported by the cell override the architecture formula, and the
    /// FLOPs follow them (src/flops.rs is the only formula).
    pub fn new(grid: &str, cell: &Cell, out: CellOutput, wall_s: f64) -> Self {
        let m = &cell.model;
        let n_params = out.n_params.unwrap_or(cell.counts.non_embedding);
        let n_total = out.n_params_total.unwrap_or(cell.counts.total);
        let matmul = out.n_params_matmul.unwrap_or(if out.n_params.is_some() {
            n_params + m.vocab * m.d_model
        } else {
            cell.counts.matmul
        });
        let k = out.subjects.len() as f64;
        let avg = |f: fn(&SubjectScore) -> f64| {
            (k > 0.0).then(|| out.subjects.values().map(f).sum::<f64>() / k)
        };
        Row {
            grid: grid.to_string(),
            cell_id: cell.id.clone(),
            config_hash: cell.config_hash.clone(),
            model: cell.model_name.clone(),
            n_layer: m.n_layer,
            n_head: m.n_head,
            d_model: m.d_model,
            ctx: m.ctx,
            vocab: m.vocab,
            n_params,
            n_params_total: n_total,
            tokens: cell.tokens,
            // The grid's FLOPs (src/flops.rs per cell kind) unless the cell reported counts.
            flops: if out.n_params.is_some() || out.n_params_matmul.is_some() {
                crate::core::flops::train_flops(matmul, m.n_layer, m.ctx, m.d_model, cell.tokens)
            } else {
                cell.flops
            },
            precision: cell.precision.clone(),
            seed: cell.seed,
            device: out.device.clone().unwrap_or_else(|| "unspecified".into()),
            wall_s,
            train_loss: out.train_loss,
            eval_loss: out.eval_loss,
            encoding_r: avg(|s| s.mean_r),
            encoding_r_top10: avg(|s| s.top10_r),
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            subjects: out.subjects,
            extra: out.extra,
        }
    }

    /// The row as CSV cells by column name.
    pub fn to_record(&self) -> BTreeMap<String, String> {
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        let mut r = BTreeMap::new();
        let fixed = [
            self.grid.clone(),
            self.cell_id.clone(),
            self.config_hash.clone(),
            self.model.clone(),
            self.n_layer.to_string(),
            self.n_head.to_string(),
            self.d_model.to_string(),
            self.ctx.to_string(),
            self.vocab.to_string(),
            self.n_params.to_string(),
            self.n_params_total.to_string(),
            self.tokens.to_string(),
            format!("{:e}", self.flops),
            self.precision.clone(),
            self.seed.to_string(),
            self.device.clone(),
            format!("{:.3}", self.wall_s),
            opt(self.train_loss),
            opt(self.eval_loss),
            opt(self.encoding_r),
            opt(self.encoding_r_top10),
            self.finished_unix.to_string(),
        ];
        for (k, v) in COLUMNS.iter().zip(fixed) {
            r.insert(k.to_string(), v);
        }
        // The tokens a cell really trained, when it reports them (the pipeline cell rounds D
        // up to whole optimizer steps).
        if let Some(t) = self.extra.get("tokens_trained").and_then(|v| v.as_u64()) {
            r.insert("tokens_trained".into(), t.to_string());
        }
        // Stage times and per-layer r of pipeline cells (the study's figures read them).
        for (k, v) in &self.extra {
            let wanted = ["pretrain_s", "features_s", "encode_s", "tokens_per_s"]
                .contains(&k.as_str())
                || k.starts_with("r_layer:");
            if let (true, Some(x)) = (wanted, v.as_f64()) {
                r.insert(k.clone(), x.to_string());
            }
        }
        for (s, sc) in &self.subjects {
            r.insert(format!("r_mean:{s}"), sc.mean_r.to_string());
            r.insert(format!("r_top10:{s}"), sc.top10_r.to_string());
        }
        r
    }
}

pub fn cells_dir(out: &Path) -> PathBuf {
    out.join("cells")
}

pub fn cell_dir(out: &Path, id: &str) -> PathBuf {
    cells_dir(out).join(id)
}

pub fn row_path(out: &Path, id: &str) -> PathBuf {
    cell_dir(out, id).join("row.json")
}

pub fn results_path(out: &Path) -> PathBuf {
    out.join("results.csv")
}

/// Rows of results.csv as (column → value) maps, in file order; empty when absent.
pub fn read_results(out: &Path) -> Result<(Vec<String>, Vec<BTreeMap<String, String>>)> {
    let path = results_path(out);
    if !path.exists() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut rdr =
        csv::Reader::from_path(&path).with_context(|| format!("opening {}", path.display()))?;
    let header: Vec<String> = rdr
        .headers()
        .with_context(|| format!("reading {}", path.display()))?
        .iter()
        .map(String::from)
        .collect();
    if !header.iter().any(|h| h == "cell_id") {
        bail!(
            "{} has no cell_id column: not a bench results file",
            path.display()
        );
    }
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        rows.push(
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect(),
        );
    }
    Ok((header, rows))
}

/// Row files present under cells/ (unreadable ones are reported, not trusted).
pub fn read_row_files(out: &Path) -> Result<Vec<Row>> {
    let dir = cells_dir(out);
    let mut rows = Vec::new();
    if !dir.exists() {
        return Ok(rows);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("row.json")))
        .filter(|p| p.exists())
        .collect();
    entries.sort();
    for p in entries {
        rows.push(crate::core::io::read_json::<Row>(&p)?);
    }
    Ok(rows)
}

/// Finished cells: id → config hash, from results.csv and the row files.
pub fn finished(out: &Path) -> Result<BTreeMap<String, String>> {
    let mut done = BTreeMap::new();
    let (_, rows) = read_results(out)?;
    for r in rows {
        done.insert(
            r["cell_id"].clone(),
            r.get("config_hash").cloned().unwrap_or_default(),
        );
    }
    for r in read_row_files(out)? {
        done.insert(r.cell_id, r.config_hash);
    }
    Ok(done)
}

/// Merges row files into results.csv (one row per cell id; rows already there are kept as
/// they are) and renames the new file into place. Returns (rows in file, rows added).
pub fn merge(out: &Path) -> Result<(usize, usize)> {
    let (header, mut rows) = read_results(out)?;
    let have: BTreeSet<String> = rows.iter().map(|r| r["cell_id"].clone()).collect();
    let mut new: Vec<Row> = read_row_files(out)?
        .into_iter()
        .filter(|r| !have.contains(&r.cell_id))
        .collect();
    new.sort_by(|a, b| (a.finished_unix, &a.cell_id).cmp(&(b.finished_unix, &b.cell_id)));
    let added = new.len();
    if added == 0 && results_path(out).exists() {
        return Ok((rows.len(), 0));
    }
    rows.extend(new.iter().map(Row::to_record));
    // Columns: the fixed ones, then what the file had, then new subject columns (sorted).
    let mut cols: Vec<String> = COLUMNS.iter().map(|s| s.to_string()).collect();
    for h in &header {
        if !cols.contains(h) {
            cols.push(h.clone());
        }
    }
    let extra: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r.keys().cloned())
        .filter(|k| !cols.contains(k))
        .collect();
    cols.extend(extra);
    let path = results_path(out);
    crate::core::io::write_atomic(&path, |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        w.write_record(&cols)?;
        for r in &rows {
            w.write_record(
                cols.iter()
                    .map(|c| r.get(c).map(String::as_str).unwrap_or("")),
            )?;
        }
        w.flush()?;
        Ok(())
    })?;
    Ok((rows.len(), added))
}
