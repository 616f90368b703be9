//! The study commands: `bench` (grids of cells: run, status, collect, downstream), `scaling`
//! (fit, validate, plots) and `report`. Flags become the study layer's typed configs here, and
//! what those return is printed here.
use crate::study::figures::{self, PlotsConfig};
use crate::study::grids::downstream::{self, DownstreamOptions};
use crate::study::grids::grid::ExecutorKind;
use crate::study::grids::{self, CellOutcome, GridPlace, RunOptions};
use crate::study::scaling::validate::{self, ValidateConfig};
use crate::study::scaling::{self, Direction, FitConfig, Target};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Run (or submit) every unfinished cell of a grid.
    Run(RunArgs),
    /// Merge finished rows, then show which cells are done, failed, queued or running.
    Status(GridArgs),
    /// Merge finished cells' rows into OUT/results.csv.
    Collect(GridArgs),
    /// Fine-tune every finished cell of a `biosignal` grid in a low-data regime and add its
    /// downstream score to OUT/results.csv (study/grids/downstream.rs).
    Downstream(DownstreamArgs),
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

impl GridArgs {
    fn place(&self) -> GridPlace {
        GridPlace {
            grid: self.grid.clone(),
            out: self.out.clone(),
        }
    }
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

#[derive(Args, Debug, Clone)]
pub struct DownstreamArgs {
    #[command(flatten)]
    pub g: GridArgs,
    /// Labelled data regime: `kN` windows per class, or a share of `--train-windows` (`10%`).
    #[arg(long, default_value = "k5")]
    pub regime: String,
    /// Fine-tuning seeds (regime subset and head initialisation); scores are their mean.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Fine-tuning optimizer steps.
    #[arg(long, default_value_t = 40)]
    pub steps: u64,
    /// Windows per fine-tuning step (drawn with replacement from the regime's subset).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate of the fine-tuning (AdamW, 10% warm-up, cosine to lr/10).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Labelled training windows the regime draws from (balanced: window i has class i mod K).
    #[arg(long, default_value_t = 200)]
    pub train_windows: usize,
    /// Held-out labelled windows the score is computed on.
    #[arg(long, default_value_t = 500)]
    pub test_windows: usize,
    /// Score the finished cells only, instead of failing when some are unfinished (or finished
    /// without a score and without their checkpoint: those are left out with a warning).
    #[arg(long)]
    pub skip_unfinished: bool,
    /// Fine-tuning runs at a time (threads of one libtorch thread each); the scores are the
    /// same for any value.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

/// `bench ...`.
pub fn bench(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Run(a) => run_grid(&a),
        BenchCommand::Status(a) => {
            let s = grids::status(&a.place())?;
            println!(
                "{}: {} cells: {} done, {} failed, {} started/queued, {} not started; {} ({} rows, {} just collected)",
                s.name,
                s.cells,
                s.done,
                s.failed,
                s.started,
                s.waiting,
                s.results.display(),
                s.rows,
                s.added
            );
            for (id, state) in &s.not_done {
                println!("  {id:<40} {state}");
            }
            Ok(())
        }
        BenchCommand::Collect(a) => {
            let (path, n, added) = grids::collect(&a.place())?;
            println!("{}: {n} rows ({added} added)", path.display());
            Ok(())
        }
        BenchCommand::Downstream(a) => run_downstream(a),
        BenchCommand::RunCell(a) => {
            match grids::run_one_cell(&a.g.place(), &a.cell)? {
                CellOutcome::AlreadyDone(id) => {
                    println!("cell {id} already has a row; nothing to do")
                }
                CellOutcome::Ran(id, wall) => println!("cell {id} done in {wall:.1}s"),
            }
            Ok(())
        }
    }
}

fn run_grid(a: &RunArgs) -> Result<()> {
    let s = grids::run_grid(&RunOptions {
        place: a.g.place(),
        executor: a.executor,
        parallel: a.parallel,
        dry_run: a.dry_run,
        wait: a.wait,
    })?;
    if let Some(p) = &s.plan {
        println!(
            "{:<40} {:>12} {:>12} {:>12} {:>11}  state",
            "cell", "N (non-emb)", "N total", "D tokens", "FLOPs"
        );
        for r in &p.rows {
            println!(
                "{:<40} {:>12} {:>12} {:>12} {:>11.3e}  {}",
                r.id, r.n_non_embedding, r.n_total, r.tokens, r.flops, r.state
            );
        }
        println!(
            "{}: {} cells, {:.3e} FLOPs in all, {:.3e} left to run; results in {}",
            s.name,
            s.cells,
            p.total_flops,
            p.left_flops,
            p.out.display()
        );
        return Ok(());
    }
    if s.skipped == s.cells {
        println!(
            "{}: all {} cells already have rows ({})",
            s.name,
            s.cells,
            s.results.display()
        );
        return Ok(());
    }
    let pending = s.cells - s.skipped;
    if let Some(job) = &s.submitted_job {
        println!(
            "{}: submitted SLURM job array {job} ({pending} cells; {} already done); follow it with `brainscale grid status {}`",
            s.name,
            s.skipped,
            a.g.grid.display()
        );
        if let Some((added, n)) = s.collected {
            println!(
                "job {job} finished: {added} rows collected, {n} in {}",
                s.results.display()
            );
        }
    } else {
        println!(
            "{}: {} cells ran, {} failed, {} skipped (already done) in {:.1}s; rows in {}",
            s.name,
            s.ran,
            s.failed.len(),
            s.skipped,
            s.wall_s,
            s.results.display()
        );
    }
    if !s.failed.is_empty() {
        bail!(
            "{} of {pending} cells failed: {} (see {}/ID/error.txt and step logs); rerun to retry them",
            s.failed.len(),
            s.failed.join(", "),
            s.cells_dir.display()
        );
    }
    Ok(())
}

fn run_downstream(a: DownstreamArgs) -> Result<()> {
    let s = downstream::run_downstream(&DownstreamOptions {
        g: a.g.place(),
        regime: a.regime,
        seeds: a.seeds,
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        train_windows: a.train_windows,
        test_windows: a.test_windows,
        skip_unfinished: a.skip_unfinished,
        jobs: a.jobs,
    })?;
    println!(
        "{}: {} cells fine-tuned, {} already scored, {} unfinished left out{}; {} {}",
        s.name,
        s.scored.len(),
        s.kept,
        s.unfinished,
        if s.lost.is_empty() {
            String::new()
        } else {
            format!(", {} without checkpoint left out", s.lost.len())
        },
        s.results.display(),
        if s.results_changed {
            "updated"
        } else {
            "unchanged"
        }
    );
    if !s.optima.is_empty() {
        println!(
            "{:>10} {:>12} {:>10} {:>8} {:>12} {:>10} {:>8}",
            "budget", "N min loss", "loss", "its BA", "N max BA", "its loss", "BA"
        );
        for o in &s.optima {
            let (lo, hi) = (o.min_loss, o.max_accuracy);
            println!(
                "{:>10.3e} {:>12} {:>10.4} {:>8.4} {:>12} {:>10.4} {:>8.4}",
                o.budget, lo.0, lo.1, lo.2, hi.0, hi.1, hi.2
            );
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum ScalingCommand {
    /// Fit iso-FLOP and parametric scaling laws to a results CSV (one row per run).
    Fit(FitArgs),
    /// Fit on budgets up to C, predict the compute-optimal N, D and loss at a larger budget
    /// (default 5C) and compare with the measured iso-FLOP sweep there (validate.rs).
    Validate(ValidateArgs),
    /// The study's figure set from a bench results CSV (study/figures.rs).
    Plots(PlotsArgs),
    /// Write the next budget's grid TOML: a model ladder centred on the law's predicted N_opt
    /// (±4× in √2 steps, configs generated where missing), so its sweep brackets the minimum
    /// (study/scaling/plan.rs).
    Plan(PlanArgs),
}

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Results CSV of the cells so far.
    pub results: PathBuf,
    /// The biosignal grid those cells came from (its cell settings and model files are reused).
    #[arg(long)]
    pub grid: PathBuf,
    /// The next compute budget in FLOPs.
    #[arg(long)]
    pub budget: f64,
    /// Rungs each side of N_opt, √2 apart (4: ±4×).
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// The new grid file (default: GRID-C<budget>.toml beside the grid).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder for generated model configs (default: that of the grid's first model file).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// Column holding the loss (lower is better).
    #[arg(long, default_value = "eval_loss")]
    pub target_col: String,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// Huber delta on the log residuals of the parametric fit.
    #[arg(long, default_value_t = 1e-3)]
    pub huber_delta: f64,
}

#[derive(Args, Debug, Clone)]
pub struct FitArgs {
    /// Results CSV with a header (bench results.csv or any table with N, D, C and a target).
    pub results: PathBuf,
    /// What to fit; picks the default column and direction.
    #[arg(long, value_enum, default_value = "eval_loss")]
    pub target: Target,
    /// Column holding the target (default: the target's own column).
    #[arg(long)]
    pub target_col: Option<String>,
    /// Override the target's direction.
    #[arg(long, value_enum)]
    pub direction: Option<Direction>,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// Derive D = C / (6 N) instead of reading a D column (Chinchilla's convention).
    #[arg(long)]
    pub d_from_flops: bool,
    /// Drop the K rows with the highest loss-like value before fitting (replication recipe: 5).
    #[arg(long, default_value_t = 0)]
    pub drop_highest: usize,
    #[command(flatten)]
    pub fit: FitOptionArgs,
    /// Compute budget(s) in FLOPs for which to report the compute-optimal N and D (repeatable).
    #[arg(long)]
    pub budget: Vec<f64>,
    /// Fit only rows with C <= this budget (within --budget-tol) and report prediction errors on the larger ones.
    #[arg(long)]
    pub holdout_above: Option<f64>,
    /// Fit each iso-FLOP parabola to the K runs nearest (in ln N) to the budget's best run.
    #[arg(long)]
    pub isoflop_window: Option<usize>,
    /// FLOPs per parameter and token for the parametric allocation, C = K·N·D (Chinchilla: 6).
    #[arg(long, default_value_t = 6.0)]
    pub c_per_nd: f64,
    /// Output folder (default: scaling-TARGET beside the results file).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not draw PNG plots.
    #[arg(long)]
    pub no_plots: bool,
}

/// Which results columns hold N, D and C, and which rows to keep (shared by fit and validate).
#[derive(Args, Debug, Clone)]
pub struct ColumnArgs {
    /// Column holding the parameter count N.
    #[arg(long, default_value = "n_params")]
    pub n_col: String,
    /// Column holding the training tokens D.
    #[arg(long, default_value = "tokens")]
    pub d_col: String,
    /// Column holding the training compute C in FLOPs.
    #[arg(long, default_value = "flops")]
    pub c_col: String,
    /// Keep only rows where COLUMN equals VALUE (repeatable), e.g. --where precision=bf16.
    #[arg(long = "where", value_name = "COLUMN=VALUE")]
    pub filters: Vec<String>,
}

/// The fits' numerical settings (shared by fit and validate).
#[derive(Args, Debug, Clone)]
pub struct FitOptionArgs {
    /// Bootstrap resamples for confidence intervals (0: none).
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Runs whose budgets agree within this relative tolerance form one iso-FLOP group.
    #[arg(long, default_value_t = 0.1)]
    pub budget_tol: f64,
    /// Huber delta on the log residuals of the parametric fit.
    #[arg(long, default_value_t = 1e-3)]
    pub huber_delta: f64,
}

#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    /// Results CSV(s) with the same header (e.g. a grid and its 5× sweep), taken together.
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// Fit on the rows whose budget C is at most this many FLOPs.
    #[arg(long)]
    pub fit_upto: f64,
    /// Budget of the measured validation sweep (default: 5 × --fit-upto).
    #[arg(long)]
    pub at: Option<f64>,
    /// Column holding the target (lower is better unless --direction higher).
    #[arg(long, default_value = "eval_loss")]
    pub target_col: String,
    /// Whether lower (losses) or higher (correlations, fitted as 1 − value) is better.
    #[arg(long, value_enum, default_value = "lower")]
    pub direction: Direction,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// Fit every iso-FLOP parabola (the fitted budgets' and the measured sweep's) to the K runs
    /// nearest in ln N to the budget's best run (default: all runs).
    #[arg(long)]
    pub isoflop_window: Option<usize>,
    /// K of C = K·N·D for the parametric allocation (default: estimated from the fitted rows).
    #[arg(long)]
    pub c_per_nd: Option<f64>,
    #[command(flatten)]
    pub fit: FitOptionArgs,
    /// Output folder (default: validate-<fit-upto> beside the first results file).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not draw PNG plots.
    #[arg(long)]
    pub no_plots: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PlotsArgs {
    /// Bench results CSV (`grid run` writes OUT/results.csv).
    pub results: PathBuf,
    /// Output folder (default: `figures` beside the results file).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `scaling ...`.
pub fn scaling(cmd: ScalingCommand) -> Result<()> {
    match cmd {
        ScalingCommand::Fit(a) => {
            let f = scaling::run_fit(&FitConfig {
                results: a.results,
                target: a.target,
                target_col: a.target_col,
                direction: a.direction,
                n_col: a.columns.n_col,
                d_col: a.columns.d_col,
                c_col: a.columns.c_col,
                d_from_flops: a.d_from_flops,
                filters: a.columns.filters,
                drop_highest: a.drop_highest,
                bootstrap: a.fit.bootstrap,
                seed: a.fit.seed,
                budget: a.budget,
                holdout_above: a.holdout_above,
                budget_tol: a.fit.budget_tol,
                isoflop_window: a.isoflop_window,
                c_per_nd: a.c_per_nd,
                huber_delta: a.fit.huber_delta,
                out: a.out,
                no_plots: a.no_plots,
            })?;
            println!("{}", f.text);
            println!("wrote:");
            for w in &f.written {
                println!("  {}", w.display());
            }
        }
        ScalingCommand::Validate(a) => {
            let v = validate::run_validate(&ValidateConfig {
                results: a.results,
                fit_upto: a.fit_upto,
                at: a.at,
                target_col: a.target_col,
                direction: a.direction,
                n_col: a.columns.n_col,
                d_col: a.columns.d_col,
                c_col: a.columns.c_col,
                filters: a.columns.filters,
                isoflop_window: a.isoflop_window,
                c_per_nd: a.c_per_nd,
                bootstrap: a.fit.bootstrap,
                seed: a.fit.seed,
                budget_tol: a.fit.budget_tol,
                huber_delta: a.fit.huber_delta,
                out: a.out,
                no_plots: a.no_plots,
            })?;
            println!("{}", v.text);
            if let [f, g, fit] = v.plots.as_slice() {
                println!(
                    "plots: {}, {}, and {}/",
                    f.display(),
                    g.display(),
                    fit.display()
                );
            }
        }
        ScalingCommand::Plan(a) => {
            let p = scaling::plan::run_plan(&scaling::plan::PlanConfig {
                results: a.results,
                grid: a.grid,
                budget: a.budget,
                steps: a.steps,
                out: a.out,
                models_dir: a.models_dir,
                columns: scaling::Columns {
                    target: a.target_col,
                    direction: Direction::Lower,
                    n: a.columns.n_col,
                    d: a.columns.d_col,
                    c: a.columns.c_col,
                },
                filters: a.columns.filters,
                huber_delta: a.huber_delta,
            })?;
            print!("{}", p.text);
        }
        ScalingCommand::Plots(a) => {
            for f in figures::run_plots(&PlotsConfig {
                results: a.results,
                out: a.out,
            })? {
                println!("{}", f.display());
            }
        }
    }
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Work folder of a run (`--work` of the stages, `demo --out`, or a bench output folder).
    pub work: PathBuf,
    /// Output file (default WORK/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `report WORK`.
pub fn report(a: &ReportArgs) -> Result<()> {
    let rep = crate::study::report::write_report(&a.work, a.out.as_deref())?;
    println!(
        "report of {} subject(s), {} bench result file(s), {} figure(s): {}",
        rep.subjects,
        rep.bench_results,
        rep.images,
        rep.path.display()
    );
    Ok(())
}
