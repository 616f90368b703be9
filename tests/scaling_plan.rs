//! `scaling plan` on ground truth (issue 19, item 5): rows from a known law (tests/scaling_truth)
//! → the next budget's grid, whose ladder is centred on the law's N_opt, spans ±4× in √2 steps
//! with generated BIOT configs where the grid has none, and obeys the grid rules.
mod scaling_truth;
use brainscale::models::biot::BiotConfig;
use brainscale::models::ModelConfig;
use brainscale::study::grids::grid::Grid;
use brainscale::study::scaling::parametric::Law;
use brainscale::study::scaling::plan::{run_plan, PlanConfig};
use brainscale::study::scaling::{Columns, Direction};
use scaling_truth::{budgets, ladder, rows, write_csv, Truth};
use std::path::{Path, PathBuf};

/// a = 0.5 and N_opt(2e11) ≈ 1.0e4 at C = 6ND.
const LAW: Law = Law {
    e: 1.5,
    a: 52.4,
    b: 400.0,
    alpha: 0.35,
    beta: 0.35,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn source_grid(dir: &Path, budget: f64, min_steps: u64) -> PathBuf {
    let m = repo().join("models");
    let p = dir.join(format!("src-{min_steps}.toml"));
    std::fs::write(
        &p,
        format!(
            "name = \"plan-src\"\nout = \"{out}\"\n[axes]\nbudgets = [{budget:e}]\nmodels = [\"{m}/biot-d8-l1.toml\", \"{m}/biot-d16-l1.toml\", \"{m}/biot-d32-l2.toml\"]\nprecisions = [\"fp32\"]\nseeds = [0, 1, 2]\n[cell]\nkind = \"biosignal\"\nmodality = \"eeg\"\nbatch_size = 8\neval_windows = 16\nmin_steps = {min_steps}\n",
            out = dir.join("out").display(),
            m = m.display()
        ),
    )
    .unwrap();
    p
}

fn config(dir: &Path, grid: PathBuf, out: &str) -> PlanConfig {
    let csv = dir.join("rows.csv");
    let r = rows(
        Truth::Law(LAW),
        &budgets(2e9, 6e10, 7),
        |c| ladder(LAW.optimal(c).0, 9, 2f64.sqrt(), 1.0),
        3,
        0.02,
        5,
    );
    write_csv(&csv, &r);
    PlanConfig {
        results: csv,
        grid,
        budget: 2e11,
        steps: 4,
        out: Some(dir.join(out)),
        models_dir: Some(dir.join("models")),
        columns: Columns {
            target: "eval_loss".into(),
            direction: Direction::Lower,
            n: "n_params".into(),
            d: "tokens".into(),
            c: "flops".into(),
        },
        filters: vec![],
        huber_delta: 1e-3,
    }
}

#[test]
fn plan_centres_a_sqrt2_ladder_on_the_predicted_optimum() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    let g = source_grid(dir.path(), 1e12, 100);
    let p = run_plan(&config(dir.path(), g, "next.toml")).unwrap();
    let truth = LAW.optimal(2e11).0;
    assert!(
        (p.n_opt / truth).ln().abs() < 0.25,
        "N_opt {} vs {truth}\n{}",
        p.n_opt,
        p.text
    );
    assert!(p.rungs.len() >= 8, "{}", p.text);
    let ns: Vec<f64> = p.rungs.iter().map(|r| r.n).collect();
    let (lo, hi) = (
        ns.iter().cloned().fold(f64::INFINITY, f64::min),
        ns.iter().cloned().fold(0.0, f64::max),
    );
    assert!(hi / lo >= 10.0, "ladder spans {}×\n{}", hi / lo, p.text);
    let centre = (ns.iter().map(|n| n.ln()).sum::<f64>() / ns.len() as f64).exp();
    assert!(
        (centre / p.n_opt).ln().abs() < 2f64.sqrt().ln(),
        "{}",
        p.text
    );
    for r in &p.rungs {
        assert!((r.n / r.target_n).ln().abs() < 0.35, "{r:?}");
    }
    // Generated configs are real BIOT files with the N the rung says.
    let gen: Vec<_> = p.rungs.iter().filter(|r| r.generated).collect();
    assert!(!gen.is_empty());
    for r in gen {
        let c = BiotConfig::load(Path::new(&r.model)).unwrap();
        assert_eq!(c.param_counts().per_token as f64, r.n);
    }
    let grid = Grid::load(&dir.path().join("next.toml")).unwrap();
    assert_eq!(grid.axes.budgets, vec![2e11]);
    assert_eq!(grid.axes.seeds, vec![0, 1, 2]);
    assert_eq!(grid.cells().unwrap().len(), 3 * p.rungs.len());
    assert_eq!(grid.out, Some(dir.path().join("out")));
}

#[test]
fn a_plan_whose_cells_train_too_few_steps_is_refused_and_writes_no_grid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    // The source grid's own cells (at 1e12) pass 2000 steps; the ladder's largest models at
    // 2e11 do not.
    let g = source_grid(dir.path(), 1e12, 2000);
    let err = run_plan(&config(dir.path(), g, "next.toml")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("min_steps = 2000"), "{msg}");
    assert!(msg.contains("optimizer steps"), "{msg}");
    assert!(!dir.path().join("next.toml").exists());
}
