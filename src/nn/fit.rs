//! The training loop around [`Trainer`]: train (or resume) to `max_steps` with periodic
//! evaluation and checkpoints, a loss CSV, a progress bar with throughput and MFU, and a
//! `summary.json`; and [`throughput`], the timed loop behind the `bench-train` figures.
use crate::core::io;
use crate::nn::precision::measure_peak_matmul;
use crate::nn::trainer::{latest_checkpoint, Data, Model, Trainer};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How [`fit`] reports.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Training FLOPs per unit (token or sample) of the model, for TFLOP/s and MFU
    /// (`crate::core::flops`); 0 leaves MFU at 0.
    pub flops_per_unit: f64,
    /// Show a progress bar.
    pub progress: bool,
    /// What the bar counts ("steps", "tokenizer steps").
    pub label: String,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            flops_per_unit: 0.0,
            progress: false,
            label: "steps".into(),
        }
    }
}

/// One row of `loss.csv`: one optimizer step. `parts` are the model's logged loss parts,
/// written as extra columns after the fixed ones.
#[derive(Debug, Clone, PartialEq)]
pub struct LossRow {
    pub step: u64,
    pub tokens: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub eval_loss: Option<f64>,
    pub loss_scale: f64,
    pub skipped: bool,
    pub tokens_per_s: f64,
    pub mfu: f64,
    pub parts: Vec<(String, f64)>,
}

const FIXED: [&str; 9] = [
    "step",
    "tokens",
    "lr",
    "train_loss",
    "eval_loss",
    "loss_scale",
    "skipped",
    "tokens_per_s",
    "mfu",
];

/// Reads the rows of a loss CSV written by [`fit`] with `step ≤ upto` (none if it is absent).
pub fn read_loss_csv(path: &Path, upto: u64) -> Result<Vec<LossRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let ctx = || format!("parsing {}", path.display());
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header: Vec<String> = r
        .headers()
        .with_context(ctx)?
        .iter()
        .map(String::from)
        .collect();
    if header.len() < FIXED.len() || header[..FIXED.len()] != FIXED {
        bail!("{}: not a loss CSV (header {:?})", path.display(), header);
    }
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.with_context(ctx)?;
        let f = |i: usize| -> Result<f64> {
            rec[i].parse::<f64>().with_context(|| {
                format!(
                    "{}: column {} value '{}'",
                    path.display(),
                    header[i],
                    &rec[i]
                )
            })
        };
        let row = LossRow {
            step: f(0)? as u64,
            tokens: f(1)? as u64,
            lr: f(2)?,
            train_loss: f(3)?,
            eval_loss: if rec[4].is_empty() { None } else { Some(f(4)?) },
            loss_scale: f(5)?,
            skipped: &rec[6] == "true",
            tokens_per_s: f(7)?,
            mfu: f(8)?,
            parts: (FIXED.len()..header.len())
                .map(|i| Ok((header[i].clone(), f(i)?)))
                .collect::<Result<_>>()?,
        };
        if row.step <= upto {
            rows.push(row);
        }
    }
    Ok(rows)
}

fn write_loss_csv(path: &Path, rows: &[LossRow]) -> Result<()> {
    io::write_atomic(path, |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        let names: Vec<String> = rows
            .last()
            .map(|r| r.parts.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let mut header: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
        header.extend(names.iter().cloned());
        w.write_record(&header)?;
        for r in rows {
            let mut rec = vec![
                r.step.to_string(),
                r.tokens.to_string(),
                r.lr.to_string(),
                r.train_loss.to_string(),
                r.eval_loss.map_or(String::new(), |e| e.to_string()),
                r.loss_scale.to_string(),
                r.skipped.to_string(),
                r.tokens_per_s.to_string(),
                r.mfu.to_string(),
            ];
            for n in &names {
                let v = r
                    .parts
                    .iter()
                    .find(|(m, _)| m == n)
                    .map_or(f64::NAN, |p| p.1);
                rec.push(v.to_string());
            }
            w.write_record(&rec)?;
        }
        w.flush()?;
        Ok(())
    })
}

/// Summary of a finished run (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: u64,
    /// Units (tokens or samples) processed.
    pub tokens: u64,
    pub final_train_loss: f64,
    pub final_eval_loss: Option<f64>,
    pub tokens_per_s: f64,
    pub mfu: f64,
    pub checkpoint: PathBuf,
}

/// Trains `t` until `t.cfg.max_steps`, evaluating every `eval_every` steps and at the end,
/// checkpointing every `checkpoint_every` steps and at the end into `out` (with `loss.csv`
/// and `summary.json`). A trainer resumed from `out` ([`Trainer::open`]) continues its loss
/// CSV; one already at `max_steps` only rewrites the summary.
pub fn fit<M: Model>(
    t: &mut Trainer<M>,
    data: &dyn Data<M::Batch>,
    out: &Path,
    opts: &FitOptions,
) -> Result<TrainSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cfg = t.cfg.clone();
    let csv_path = out.join("loss.csv");
    let mut rows = read_loss_csv(&csv_path, t.step)?;
    // MFU needs the device's peak (a few seconds of matmuls on a CPU): only measured when asked.
    let peak = if opts.flops_per_unit > 0.0 {
        measure_peak_matmul(t.device, cfg.precision.kind())
    } else {
        f64::INFINITY
    };
    let bar = crate::core::progress::progress_if(opts.progress, cfg.max_steps, &opts.label);
    bar.set_position(t.step);
    let (mut tok_s, mut mfu, mut trained) = (0.0, 0.0, false);
    let run_start = Instant::now();
    let tokens_at_start = t.tokens;
    while t.step < cfg.max_steps {
        let t0 = Instant::now();
        let before = t.tokens;
        let s = t.train_step(data)?;
        tok_s = (t.tokens - before) as f64 / t0.elapsed().as_secs_f64();
        mfu = tok_s * opts.flops_per_unit / peak;
        let last_step = t.step == cfg.max_steps;
        let eval = if (cfg.eval_every > 0 && t.step % cfg.eval_every == 0) || last_step {
            t.eval_loss(data)?
        } else {
            None
        };
        let parts: String = s
            .parts
            .iter()
            .map(|(n, v)| format!(" {n} {v:.4}"))
            .collect();
        bar.set_message(format!(
            "loss {:.4}{parts}{} | {:.0} units/s | MFU {:.1}%{}",
            s.loss,
            eval.map_or(String::new(), |e| format!(" eval {e:.4}")),
            tok_s,
            100.0 * mfu,
            if s.skipped {
                " | overflow: step skipped"
            } else {
                ""
            }
        ));
        rows.push(LossRow {
            step: s.step,
            tokens: s.tokens,
            lr: s.lr,
            train_loss: s.loss,
            eval_loss: eval,
            loss_scale: s.loss_scale,
            skipped: s.skipped,
            tokens_per_s: tok_s,
            mfu,
            parts: s.parts,
        });
        bar.set_position(t.step);
        trained = true;
        if (cfg.checkpoint_every > 0 && t.step % cfg.checkpoint_every == 0) || last_step {
            // The CSV first: a kill between the two writes leaves rows past the checkpoint in
            // force, which the resumed run drops (it reads rows up to its step), never a
            // checkpoint whose rows are missing.
            write_loss_csv(&csv_path, &rows)?;
            t.save(out)?;
        }
    }
    bar.finish_and_clear();
    write_loss_csv(&csv_path, &rows)?;
    let ck = if trained {
        t.save(out)?
    } else {
        latest_checkpoint(out).or_else(|_| t.save(out))?
    };
    let elapsed = run_start.elapsed().as_secs_f64();
    if trained && elapsed > 0.0 {
        tok_s = (t.tokens - tokens_at_start) as f64 / elapsed;
        mfu = tok_s * opts.flops_per_unit / peak;
    }
    let summary = TrainSummary {
        steps: t.step,
        tokens: t.tokens,
        final_train_loss: rows.last().map_or(f64::NAN, |r| r.train_loss),
        final_eval_loss: rows.iter().rev().find_map(|r| r.eval_loss),
        tokens_per_s: tok_s,
        mfu,
        checkpoint: ck,
    };
    io::write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Training throughput measured by [`throughput`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Units (tokens or samples) per second over the timed steps.
    pub units_per_s: f64,
    /// Achieved training FLOP/s (`units_per_s × flops_per_unit`).
    pub flops: f64,
    /// Peak dense matmul FLOP/s of the device in the run's precision, measured in the same run.
    pub peak_flops: f64,
    /// Model FLOPs utilisation: `flops / peak_flops`.
    pub mfu: f64,
}

/// Times `steps` optimizer steps after `warmup` untimed ones (each step reads its loss back,
/// a device sync); FLOPs from `flops_per_unit` ([`crate::core::flops`]).
pub fn throughput<M: Model>(
    t: &mut Trainer<M>,
    data: &dyn Data<M::Batch>,
    steps: u64,
    warmup: u64,
    flops_per_unit: f64,
) -> Result<Throughput> {
    if steps == 0 {
        bail!("--steps must be positive");
    }
    for _ in 0..warmup {
        t.train_step(data)?;
    }
    let (t0, before) = (Instant::now(), t.tokens);
    for _ in 0..steps {
        t.train_step(data)?;
    }
    let units_per_s = (t.tokens - before) as f64 / t0.elapsed().as_secs_f64();
    let peak_flops = measure_peak_matmul(t.device, t.cfg.precision.kind());
    let flops = units_per_s * flops_per_unit;
    Ok(Throughput {
        units_per_s,
        flops,
        peak_flops,
        mfu: flops / peak_flops,
    })
}
