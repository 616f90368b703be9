//! Scale benchmarks: `brainscale bench run GRID.toml` runs every cell of a grid (data sizes ×
//! model configs × precisions × seeds; every cell encodes the grid's subjects) and keeps one
//! results row per cell in OUT/results.csv.
//!
//! Resumable by construction: a cell's row is written atomically to OUT/cells/ID/row.json when
//! the cell finishes, results.csv is rebuilt from those files deduplicated by cell id, and a
//! rerun skips every cell that has a row with the same config hash. A process killed mid-cell
//! loses only that cell's unfinished attempt. Executors: `local` (N cells at once) and `slurm`
//! (one sbatch job array per submission, one task per cell; see slurm.rs).
//!
//! Files, bottom-up: cell.rs (one cell's settings and the [`cell::CellWork`] trait),
//! command_cell.rs, pipeline_cell.rs and biosignal_cell.rs (the kinds of cell), grid.rs (grid files, their
//! cells, and which kind a grid runs), results.rs (rows and results.csv), slurm.rs (the SLURM
//! executor), downstream.rs (`bench downstream`: fine-tuned scores of a finished biosignal
//! grid's checkpoints), this file (the runner).
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
use clap::{Args, Subcommand};
use grid::{ExecutorKind, Grid};
use results::Row;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Run (or submit) every unfinished cell of a grid.
    Run(RunArgs),
    /// Merge finished rows, then show which cells are done, failed, queued or running.
    Status(GridArgs),
    /// Merge finished cells' rows into OUT/results.csv.
    Collect(GridArgs),
    /// Fine-tune every finished cell of a `biosignal` grid in a low-data regime and add its
    /// downstream score to OUT/results.csv (downstream.rs).
    Downstream(downstream::DownstreamArgs),
    /// Run one cell (what each SLURM array task calls).
    #[command(hide = true)]
    RunCell(RunCellArgs),
}

#[derive(Args, Debug, Clone)]
pub struct GridArgs {
    /// The grid file (TOML).
    pub grid: PathBuf,
    /// Results folder (default: the grid's `out`, else results/bench/NAME).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub g: GridArgs,
    /// Override the grid's executor.
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// Cells run at once by the local executor (overrides executor.parallel).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// List the cells with N, D and FLOPs and what is left to run, without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// slurm: wait for the job array to leave the queue, then collect.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RunCellArgs {
    #[command(flatten)]
    pub g: GridArgs,
    /// Cell id.
    #[arg(long)]
    pub cell: String,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Run(a) => run_grid(&a).map(|_| ()),
        BenchCommand::Status(a) => status(&a),
        BenchCommand::Downstream(a) => downstream::run_downstream(&a).map(|_| ()),
        BenchCommand::Collect(a) => {
            let grid = Grid::load(&a.grid)?;
            let out = grid.out_dir(a.out.as_deref());
            let (n, added) = results::merge(&out)?;
            println!(
                "{}: {n} rows ({added} added)",
                results::results_path(&out).display()
            );
            Ok(())
        }
        BenchCommand::RunCell(a) => {
            let grid = Grid::load(&a.g.grid)?;
            let out = absolute(&grid.out_dir(a.g.out.as_deref()))?;
            let cells = grid.cells()?;
            let cell = cells.iter().find(|c| c.id == a.cell).with_context(|| {
                format!("grid {} has no cell '{}'", grid.path.display(), a.cell)
            })?;
            if results::finished(&out)?.get(&cell.id) == Some(&cell.config_hash) {
                println!("cell {} already has a row; nothing to do", cell.id);
                return Ok(());
            }
            let work = grid::work_for(&grid)?;
            let row = run_cell(&grid, cell, &out, work.as_ref())?;
            println!("cell {} done in {:.1}s", row.cell_id, row.wall_s);
            Ok(())
        }
    }
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

/// A lock on OUT for one `bench run` at a time on this machine (a stale lock from a killed
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
                    "another bench run (pid {pid}) is using {}; wait for it or stop it (lock file {})",
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
    pub cells: usize,
    pub skipped: usize,
    pub ran: usize,
    pub failed: Vec<String>,
    pub submitted_job: Option<String>,
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

pub fn run_grid(a: &RunArgs) -> Result<RunSummary> {
    let grid = Grid::load(&a.g.grid)?;
    let out = absolute(&grid.out_dir(a.g.out.as_deref()))?;
    let cells = grid.cells()?;
    let executor = a.executor.unwrap_or(grid.executor.kind);
    if a.dry_run {
        return dry_run(&grid, &cells, &out);
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
        cells: cells.len(),
        skipped,
        ..Default::default()
    };
    if pending.is_empty() {
        println!(
            "{}: all {} cells already have rows ({})",
            grid.name,
            cells.len(),
            results::results_path(&out).display()
        );
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
            println!(
                "{}: submitted SLURM job array {job} ({} cells; {skipped} already done); follow it with `brainscale bench status {}`",
                grid.name,
                pending.len(),
                a.g.grid.display()
            );
            summary.submitted_job = Some(job.clone());
            if a.wait {
                slurm::wait(&job)?;
                let (n, added) = results::merge(&out)?;
                let done = results::finished(&out)?;
                summary.ran = pending.iter().filter(|c| done.contains_key(&c.id)).count();
                summary.failed = pending
                    .iter()
                    .filter(|c| !done.contains_key(&c.id))
                    .map(|c| c.id.clone())
                    .collect();
                println!(
                    "job {job} finished: {added} rows collected, {n} in {}",
                    results::results_path(&out).display()
                );
            }
        }
    }
    if !summary.failed.is_empty() {
        bail!(
            "{} of {} cells failed: {} (see {}/ID/error.txt and step logs); rerun to retry them",
            summary.failed.len(),
            pending.len(),
            summary.failed.join(", "),
            results::cells_dir(&out).display()
        );
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
    let bar = indicatif::ProgressBar::new(pending.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} cells, {elapsed} {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_prefix(grid.name.clone());
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Result<Row>)>();
    let t0 = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..parallel.min(pending.len()) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= pending.len() {
                    break;
                }
                let r = run_cell(grid, &pending[i], out, work);
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            let id = &pending[i].id;
            match r {
                Ok(row) => {
                    s.ran += 1;
                    bar.set_message(format!("last: {id} {:.1}s", row.wall_s));
                    // Single writer: only this thread rebuilds results.csv.
                    results::merge(out)?;
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("cell {id} failed: {e:#}"));
                    s.failed.push(id.clone());
                }
            }
            bar.inc(1);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    println!(
        "{}: {} cells ran, {} failed, {} skipped (already done) in {:.1}s; rows in {}",
        grid.name,
        s.ran,
        s.failed.len(),
        s.skipped,
        t0.elapsed().as_secs_f64(),
        results::results_path(out).display()
    );
    Ok(())
}

fn dry_run(grid: &Grid, cells: &[Cell], out: &Path) -> Result<RunSummary> {
    let done = results::finished(out).unwrap_or_default();
    println!(
        "{:<40} {:>12} {:>12} {:>12} {:>11}  {}",
        "cell", "N (non-emb)", "N total", "D tokens", "FLOPs", "state"
    );
    let mut total = 0.0;
    let mut left = 0.0;
    for c in cells {
        let state = match done.get(&c.id) {
            Some(h) if h == &c.config_hash => "done",
            Some(_) => "done (other config!)",
            None => {
                left += c.flops;
                "to run"
            }
        };
        total += c.flops;
        println!(
            "{:<40} {:>12} {:>12} {:>12} {:>11.3e}  {state}",
            c.id, c.counts.non_embedding, c.counts.total, c.tokens, c.flops
        );
    }
    println!(
        "{}: {} cells, {total:.3e} FLOPs in all, {left:.3e} left to run; results in {}",
        grid.name,
        cells.len(),
        out.display()
    );
    Ok(RunSummary {
        cells: cells.len(),
        ..Default::default()
    })
}

fn status(a: &GridArgs) -> Result<()> {
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
        lines.push(format!("  {:<40} {state}", c.id));
    }
    println!(
        "{}: {} cells: {ok} done, {failed} failed, {started} started/queued, {waiting} not started; {} ({n} rows, {added} just collected)",
        grid.name,
        cells.len(),
        results::results_path(&out).display()
    );
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
