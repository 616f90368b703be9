//! Grids of cells: `brainscale grid run GRID.toml` runs every cell of a grid (data sizes ×
//! model configs × precisions × seeds; an fMRI cell encodes the grid's subjects) and keeps one
//! results row per cell in OUT/results.csv.
//!
//! Resumable by construction: a cell's row is written atomically to OUT/cells/ID/row.json when
//! the cell finishes, results.csv is rebuilt from those files deduplicated by cell id, and a
//! rerun skips every cell that has a row with the same config hash. A process killed mid-cell
//! loses only that cell's unfinished attempt. Executors (`crate::exec`): `local` (N cells at
//! once on threads) and `slurm` (one sbatch job array per submission, one task per cell).
//!
//! Files, bottom-up: cell.rs (one cell's settings and the [`cell::CellWork`] trait),
//! command_cell.rs, pipeline_cell.rs and biosignal_cell.rs (the kinds of cell), grid.rs (grid files, their
//! cells, and which kind a grid runs), results.rs (rows and results.csv), downstream.rs
//! (`grid downstream`: fine-tuned scores of a finished biosignal grid's checkpoints), this file
//! (the runner).
pub mod biosignal_cell;
pub mod cell;
pub mod command_cell;
pub mod downstream;
pub mod grid;
pub mod pipeline_cell;
pub mod pipeline_config;
pub mod results;

use crate::exec::slurm;
use anyhow::{bail, Context, Result};
use cell::Cell;
use cell::{CellEnv, CellWork};
use grid::{ExecutorKind, Grid};
use results::Row;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A grid file and where its results go (default: the grid's `out`, else results/bench/NAME).
#[derive(Debug, Clone)]
pub struct GridPlace {
    pub grid: PathBuf,
    pub out: Option<PathBuf>,
}

/// How `grid run` runs a grid.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub place: GridPlace,
    /// Override the grid's executor.
    pub executor: Option<ExecutorKind>,
    /// Cells run at once by the local executor (overrides executor.parallel).
    pub parallel: Option<usize>,
    /// List the cells with N, D and FLOPs and what is left to run, without running anything.
    pub dry_run: bool,
    /// slurm: wait for the job array to leave the queue, then collect.
    pub wait: bool,
}

/// `grid collect`: merges finished cells' rows into OUT/results.csv; returns (results.csv,
/// rows in it, rows just added).
pub fn collect(p: &GridPlace) -> Result<(PathBuf, usize, usize)> {
    let grid = Grid::load(&p.grid)?;
    let out = grid.out_dir(p.out.as_deref());
    let (n, added) = results::merge(&out)?;
    Ok((results::results_path(&out), n, added))
}

/// What `grid run-cell` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CellOutcome {
    /// The cell already had a row made with its configuration.
    AlreadyDone(String),
    /// The cell ran: its id and wall time in seconds.
    Ran(String, f64),
}

/// `grid run-cell` (what each SLURM array task calls): runs the cell with id `cell`.
pub fn run_one_cell(p: &GridPlace, cell: &str) -> Result<CellOutcome> {
    let grid = Grid::load(&p.grid)?;
    let out = absolute(&grid.out_dir(p.out.as_deref()))?;
    let cells = grid.cells()?;
    let cell = cells
        .iter()
        .find(|c| c.id == cell)
        .with_context(|| format!("grid {} has no cell '{cell}'", grid.path.display()))?;
    if results::finished(&out)?.get(&cell.id) == Some(&cell.config_hash) {
        return Ok(CellOutcome::AlreadyDone(cell.id.clone()));
    }
    let work = grid::work_for(&grid)?;
    let row = run_cell(&grid, cell, &out, work.as_ref())?;
    Ok(CellOutcome::Ran(row.cell_id, row.wall_s))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

/// Runs one cell: its work in OUT/cells/ID, then row.json written atomically. A failure leaves
/// OUT/cells/ID/error.txt (removed when the cell later succeeds) and no row.
pub fn run_cell(grid: &Grid, cell: &Cell, out: &Path, work: &dyn CellWork) -> Result<Row> {
    let dir = results::cell_dir(out, &cell.id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let env = CellEnv {
        cell,
        dir: dir.clone(),
        grid_dir: grid.path.parent().unwrap_or(Path::new("/")).to_path_buf(),
        out_dir: out.to_path_buf(),
    };
    // The cell's full configuration beside its outputs (the row holds the summary).
    crate::core::io::write_json(&dir.join("cell.json"), cell)?;
    let err_path = dir.join("error.txt");
    let t0 = Instant::now();
    let result = work.run(&env).and_then(|o| {
        cell::validate_output(&o, cell, &format!("cell {}", cell.id))?;
        Ok(o)
    });
    match result {
        Ok(o) => {
            let row = Row::new(&grid.name, cell, o, t0.elapsed().as_secs_f64());
            crate::core::io::write_json(&results::row_path(out, &cell.id), &row)?;
            let _ = std::fs::remove_file(&err_path);
            Ok(row)
        }
        Err(e) => {
            let _ = crate::core::io::write_bytes(&err_path, format!("{e:#}\n").as_bytes());
            Err(e)
        }
    }
}

/// A lock on OUT for one `grid run` at a time on this machine (a stale lock from a killed
/// run is taken over).
struct OutLock(PathBuf);

impl OutLock {
    fn take(out: &Path) -> Result<Self> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let path = out.join(".bench.lock");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let pid: u32 = text.trim().parse().unwrap_or(0);
            if pid != 0 && pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
            {
                bail!(
                    "another grid run (pid {pid}) is using {}; wait for it or stop it (lock file {})",
                    out.display(),
                    path.display()
                );
            }
        }
        crate::core::io::write_bytes(&path, std::process::id().to_string().as_bytes())?;
        Ok(OutLock(path))
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// The grid's name.
    pub name: String,
    pub cells: usize,
    pub skipped: usize,
    pub ran: usize,
    pub failed: Vec<String>,
    pub submitted_job: Option<String>,
    /// slurm with `wait`: (rows just collected, rows in results.csv) once the array finished.
    pub collected: Option<(usize, usize)>,
    /// Wall time of the local run, seconds.
    pub wall_s: f64,
    pub results: PathBuf,
    /// Where failed cells leave their error.txt (OUT/cells).
    pub cells_dir: PathBuf,
    /// Without `dry_run`: the plan (every cell, its size and whether it is still to run).
    pub plan: Option<Plan>,
}

/// One cell of a dry run.
#[derive(Debug, Clone)]
pub struct PlanRow {
    pub id: String,
    pub n_non_embedding: u64,
    pub n_total: u64,
    pub tokens: u64,
    pub flops: f64,
    /// "done", "done (other config!)" or "to run".
    pub state: &'static str,
}

/// `grid run --dry-run`: the cells with N, D and FLOPs, what is left to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rows: Vec<PlanRow>,
    /// Training FLOPs of every cell, and of those still to run.
    pub total_flops: f64,
    pub left_flops: f64,
    pub out: PathBuf,
}

/// Splits cells into finished and pending; a row made under another config is an error.
fn pending_cells(cells: &[Cell], out: &Path) -> Result<(Vec<Cell>, usize)> {
    let done = results::finished(out)?;
    let stale: Vec<&str> = cells
        .iter()
        .filter(|c| done.get(&c.id).is_some_and(|h| h != &c.config_hash))
        .map(|c| c.id.as_str())
        .collect();
    if !stale.is_empty() {
        bail!(
            "{} holds rows made with a different configuration for cell(s) {} (the grid file changed); \
             use another --out, or delete those rows and cells/ID folders",
            out.display(),
            stale.join(", ")
        );
    }
    let pending: Vec<Cell> = cells
        .iter()
        .filter(|c| !done.contains_key(&c.id))
        .cloned()
        .collect();
    let skipped = cells.len() - pending.len();
    Ok((pending, skipped))
}

/// `grid run`: runs (local) or submits (slurm) every unfinished cell of a grid. Failed cells
/// are listed in the summary (the caller reports them); errors are for what stops the run.
pub fn run_grid(a: &RunOptions) -> Result<RunSummary> {
    let grid = Grid::load(&a.place.grid)?;
    let out = absolute(&grid.out_dir(a.place.out.as_deref()))?;
    let cells = grid.cells()?;
    let executor = a.executor.unwrap_or(grid.executor.kind);
    if a.dry_run {
        return Ok(RunSummary {
            name: grid.name.clone(),
            cells: cells.len(),
            results: results::results_path(&out),
            cells_dir: results::cells_dir(&out),
            plan: Some(plan(&cells, &out)),
            ..Default::default()
        });
    }
    let _lock = OutLock::take(&out)?;
    crate::core::provenance::record_command(&out)?;
    // JSON sidecar of results.csv: the resolved grid and every cell's configuration.
    crate::core::io::write_json(
        &out.join("grid.json"),
        &serde_json::json!({ "grid": grid, "cells": cells }),
    )?;
    // Rows left in cells/ by an earlier, interrupted run join results.csv first.
    results::merge(&out)?;
    let (pending, skipped) = pending_cells(&cells, &out)?;
    let mut summary = RunSummary {
        name: grid.name.clone(),
        cells: cells.len(),
        skipped,
        results: results::results_path(&out),
        cells_dir: results::cells_dir(&out),
        ..Default::default()
    };
    if pending.is_empty() {
        return Ok(summary);
    }
    // Check the cell kind before starting anything.
    let work = grid::work_for(&grid)?;
    match executor {
        ExecutorKind::Local => {
            let parallel = a.parallel.unwrap_or(grid.executor.parallel);
            if parallel == 0 {
                bail!("--parallel must be at least 1");
            }
            run_local(&grid, &pending, &out, work.as_ref(), parallel, &mut summary)?;
        }
        ExecutorKind::Slurm => {
            let job = slurm::submit(
                &slurm::GridJob {
                    name: &grid.name,
                    grid_file: &grid.path,
                    slurm: &grid.slurm,
                    cells: pending.iter().map(|c| c.id.clone()).collect(),
                },
                &out,
            )?;
            summary.submitted_job = Some(job.clone());
            if a.wait {
                eprintln!(
                    "{}: submitted SLURM job array {job} ({} cells); waiting for it",
                    grid.name,
                    pending.len()
                );
                slurm::wait(&job)?;
                let (n, added) = results::merge(&out)?;
                let done = results::finished(&out)?;
                summary.ran = pending.iter().filter(|c| done.contains_key(&c.id)).count();
                summary.failed = pending
                    .iter()
                    .filter(|c| !done.contains_key(&c.id))
                    .map(|c| c.id.clone())
                    .collect();
                summary.collected = Some((added, n));
            }
        }
    }
    Ok(summary)
}

fn run_local(
    grid: &Grid,
    pending: &[Cell],
    out: &Path,
    work: &dyn CellWork,
    parallel: usize,
    s: &mut RunSummary,
) -> Result<()> {
    let bar =
        crate::core::progress::progress(pending.len() as u64, &format!("{} cells", grid.name));
    let t0 = Instant::now();
    crate::exec::local::run_tasks(
        pending.len(),
        parallel,
        |i| run_cell(grid, &pending[i], out, work),
        |i, r| {
            let id = &pending[i].id;
            match r {
                Ok(row) => {
                    s.ran += 1;
                    bar.set_message(format!("last: {id} {:.1}s", row.wall_s));
                    // Single writer: only the collector rebuilds results.csv.
                    results::merge(out)?;
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("cell {id} failed: {e:#}"));
                    s.failed.push(id.clone());
                }
            }
            bar.inc(1);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    s.wall_s = t0.elapsed().as_secs_f64();
    Ok(())
}

fn plan(cells: &[Cell], out: &Path) -> Plan {
    let done = results::finished(out).unwrap_or_default();
    let mut p = Plan {
        rows: Vec::new(),
        total_flops: 0.0,
        left_flops: 0.0,
        out: out.to_path_buf(),
    };
    for c in cells {
        let state = match done.get(&c.id) {
            Some(h) if h == &c.config_hash => "done",
            Some(_) => "done (other config!)",
            None => {
                p.left_flops += c.flops;
                "to run"
            }
        };
        p.total_flops += c.flops;
        p.rows.push(PlanRow {
            id: c.id.clone(),
            n_non_embedding: c.counts.non_embedding,
            n_total: c.counts.total,
            tokens: c.tokens,
            flops: c.flops,
            state,
        });
    }
    p
}

/// `grid status`: merged rows and the state of every cell.
#[derive(Debug, Clone)]
pub struct Status {
    pub name: String,
    pub cells: usize,
    pub done: usize,
    pub failed: usize,
    /// Started or queued.
    pub started: usize,
    pub waiting: usize,
    pub results: PathBuf,
    /// Rows in results.csv, rows just collected.
    pub rows: usize,
    pub added: usize,
    /// (cell id, state) of every cell not done.
    pub not_done: Vec<(String, String)>,
}

/// `grid status`: merges finished rows, then says which cells are done, failed, queued or running.
pub fn status(a: &GridPlace) -> Result<Status> {
    let grid = Grid::load(&a.grid)?;
    let out = absolute(&grid.out_dir(a.out.as_deref()))?;
    let cells = grid.cells()?;
    let (n, added) = results::merge(&out)?;
    let done = results::finished(&out)?;
    let queue = slurm::queue_states(&out).unwrap_or_default();
    let (mut ok, mut failed, mut started, mut waiting) = (0, 0, 0, 0);
    let mut lines = Vec::new();
    for c in &cells {
        let dir = results::cell_dir(&out, &c.id);
        let state = if done.get(&c.id) == Some(&c.config_hash) {
            ok += 1;
            continue;
        } else if let Some(q) = queue.get(&c.id) {
            started += 1;
            format!("slurm: {q}")
        } else if dir.join("error.txt").exists() {
            failed += 1;
            let e = std::fs::read_to_string(dir.join("error.txt")).unwrap_or_default();
            format!("failed: {}", e.lines().next().unwrap_or(""))
        } else if dir.exists() {
            started += 1;
            "started, no row (running, or interrupted)".to_string()
        } else {
            waiting += 1;
            "not started".to_string()
        };
        lines.push((c.id.clone(), state));
    }
    Ok(Status {
        name: grid.name.clone(),
        cells: cells.len(),
        done: ok,
        failed,
        started,
        waiting,
        results: results::results_path(&out),
        rows: n,
        added,
        not_done: lines,
    })
}
