//! Scale-benchmark machinery: grids, rows, resume after a kill, errors, and the SLURM executor
//! against a real slurmctld + slurmd started on loopback by the test.
mod common;
#[path = "support/slurm_cluster.rs"]
mod slurm_cluster;
use assert_cmd::Command;
use common::read_rows;
use predicates::str::contains;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> Command {
    Command::cargo_bin("brainscale").unwrap()
}

fn f(r: &BTreeMap<String, String>, k: &str) -> f64 {
    r[k].parse()
        .unwrap_or_else(|_| panic!("column {k}: '{}'", r[k]))
}

#[test]
fn smoke_grid_runs_once_and_feeds_the_scaling_fit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoke");
    let grid = repo().join("bench/smoke.toml");
    bin()
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("9 cells ran, 0 failed"));
    bin()
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("all 9 cells already have rows"));
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 9);
    let ids: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r["cell_id"]).collect();
    assert_eq!(ids.len(), 9, "one row per cell");
    for r in &rows {
        // The FLOP count is src/core/flops.rs's formula on the architecture's counts.
        let (l, d, ctx, v) = (f(r, "n_layer"), f(r, "d_model"), f(r, "ctx"), f(r, "vocab"));
        let n = l * (12.0 * d * d + 13.0 * d) + 2.0 * d;
        assert_eq!(f(r, "n_params"), n);
        assert_eq!(f(r, "n_params_total"), n + v * d + ctx * d);
        let want = brainscale::core::flops::train_flops(
            (n + v * d) as u64,
            l as u64,
            ctx as u64,
            d as u64,
            f(r, "tokens") as u64,
        );
        assert!((f(r, "flops") / want - 1.0).abs() < 1e-9);
        // The toy cell's known law and subject scores come through.
        let loss = 1.7 + 40.0 / n.powf(0.34) + 60.0 / f(r, "tokens").powf(0.30);
        assert!((f(r, "eval_loss") - loss).abs() < 1e-6 * loss);
        assert!((f(r, "r_mean:sub-02") - (1.0 - loss / 20.0 - 0.02)).abs() < 1e-6);
        assert!((f(r, "encoding_r") - (1.0 - loss / 20.0 - 0.015)).abs() < 1e-6);
        assert!((f(r, "encoding_r_top10") - (1.0 - loss / 40.0)).abs() < 1e-6);
        assert_eq!(r["precision"], "fp32");
        assert_eq!(r["device"], "cpu");
    }
    // The rows feed the fitter, which finds the toy law back.
    let fit = dir.path().join("fit");
    bin()
        .args(["scaling", "fit"])
        .arg(out.join("results.csv"))
        .args(["--bootstrap", "0", "--no-plots", "--out"])
        .arg(&fit)
        .assert()
        .success();
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fit.join("fit.json")).unwrap()).unwrap();
    let law = &rep["parametric"]["fit"]["law"];
    assert!((law["E"].as_f64().unwrap() - 1.7).abs() < 1e-3, "{law}");
    assert!(
        (law["alpha"].as_f64().unwrap() - 0.34).abs() < 1e-3,
        "{law}"
    );
    assert!((law["beta"].as_f64().unwrap() - 0.30).abs() < 1e-3, "{law}");
}

#[test]
fn budget_axis_gives_every_model_the_same_compute_and_isoflop_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("iso");
    bin()
        .args(["bench", "run"])
        .arg(repo().join("bench/smoke-isoflop.toml"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 15);
    for budget in [1e11, 1e12, 1e13] {
        let group: Vec<&BTreeMap<String, String>> = rows
            .iter()
            .filter(|r| r["cell_id"].contains(&format!("-C{budget:e}-")))
            .collect();
        assert_eq!(group.len(), 5, "five models per budget");
        for r in group {
            // Tokens are rounded to whole tokens: C is met to within one token's FLOPs.
            let per_token = f(r, "flops") / f(r, "tokens");
            assert!(
                (f(r, "flops") - budget).abs() <= per_token,
                "{} at {budget:e}",
                r["flops"]
            );
        }
    }
    let fit = dir.path().join("fit");
    bin()
        .args(["scaling", "fit"])
        .arg(out.join("results.csv"))
        .args(["--bootstrap", "0", "--no-plots", "--out"])
        .arg(&fit)
        .assert()
        .success();
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fit.join("fit.json")).unwrap()).unwrap();
    let profiles = rep["isoflop"]["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 3, "{}", rep["isoflop"]);
    assert!(profiles
        .iter()
        .all(|p| p["runs"] == 5 && p["inside_range"] == true));
    // Larger budgets want larger models.
    let n: Vec<f64> = profiles
        .iter()
        .map(|p| p["n_opt"].as_f64().unwrap())
        .collect();
    assert!(n[0] < n[1] && n[1] < n[2], "{n:?}");
}

fn write_grid(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, format!("name = \"{name}\"\n{body}")).unwrap();
    p
}

const MODEL: &str = "[models.m]\nn_layer = 1\nn_head = 1\nd_model = 8\nctx = 4\nvocab = 16\n";

fn attempts(dir: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join("attempts.log"))
        .unwrap_or_default()
        .lines()
    {
        *m.entry(l.to_string()).or_default() += 1;
    }
    m
}

#[test]
fn a_run_killed_mid_cell_completes_on_rerun_with_each_cell_once() {
    let dir = tempfile::tempdir().unwrap();
    let grid = write_grid(
        dir.path(),
        "resume",
        &format!(
            r#"[axes]
tokens = [1000, 2000, 3000]
models = ["m"]
precisions = ["fp32"]
{MODEL}
[cell]
kind = "command"
steps = [
  "echo {{cell_id}} >> {{grid_dir}}/attempts.log",
  "if [ {{tokens}} = 2000 ] && [ ! -e {{grid_dir}}/go ]; then sleep 60; fi",
  "printf '{{{{\"eval_loss\": %s}}}}' {{tokens}} > {{cell_dir}}/metrics.json",
]
"#
        ),
    );
    let out = dir.path().join("out");
    // Run in its own process group so the kill takes the cell's shell steps with it.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("brainscale"));
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !attempts(dir.path()).contains_key("m-D2000-fp32-s0") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the second cell never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let pgid = child.id();
    std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    child.wait().unwrap();
    // Killed mid-cell: the first cell's row is kept, the second has none.
    let rows = read_rows(&out);
    assert_eq!(
        rows.iter()
            .map(|r| r["cell_id"].as_str())
            .collect::<Vec<_>>(),
        ["m-D1000-fp32-s0"]
    );
    assert!(!out.join("cells/m-D2000-fp32-s0/row.json").exists());
    bin()
        .args(["bench", "status"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("1 done"));

    std::fs::write(dir.path().join("go"), "").unwrap();
    bin()
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("2 cells ran, 0 failed, 1 skipped"));
    let rows = read_rows(&out);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["cell_id"].as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["m-D1000-fp32-s0", "m-D2000-fp32-s0", "m-D3000-fp32-s0"]
    );
    for r in &rows {
        assert_eq!(
            f(r, "eval_loss"),
            f(r, "tokens"),
            "each row holds its own cell's metrics"
        );
    }
    let a = attempts(dir.path());
    assert_eq!(a["m-D1000-fp32-s0"], 1, "a finished cell is never rerun");
    assert_eq!(a["m-D2000-fp32-s0"], 2, "the killed cell ran again");
    assert_eq!(a["m-D3000-fp32-s0"], 1);

    // results.csv lost (e.g. killed between a row file and the merge): rebuilt from the row
    // files without rerunning anything.
    std::fs::remove_file(out.join("results.csv")).unwrap();
    bin()
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("all 3 cells already have rows"));
    assert_eq!(read_rows(&out).len(), 3);
    assert_eq!(attempts(dir.path()).values().sum::<usize>(), 4);
}

#[test]
fn failures_and_bad_grids_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let axes = "[axes]\ntokens = [1000, 2000]\nmodels = [\"m\"]\nprecisions = [\"fp32\"]\nsubjects = [\"sub-01\"]\n";
    // A failing step: error names the cell, the step and its log; no row; others still run.
    std::fs::write(
        d.join("m.json"),
        r#"{"subjects": {"sub-01": {"mean_r": 0.1, "top10_r": 0.3}}}"#,
    )
    .unwrap();
    let g = write_grid(
        d,
        "fail",
        &format!(
            "{axes}{MODEL}[cell]\nkind = \"command\"\nsteps = [\"if [ {{tokens}} = 2000 ] && [ ! -e {{grid_dir}}/fixed ]; then echo boom >&2; exit 3; fi\", \"cp {{grid_dir}}/m.json {{cell_dir}}/metrics.json\"]\n"
        ),
    );
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("step 1 of cell m-D2000-fp32-s0 failed"))
        .stderr(contains("boom"))
        .stderr(contains("1 of 2 cells failed"));
    assert_eq!(read_rows(&out).len(), 1);
    bin()
        .args(["bench", "status"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("1 failed"));
    std::fs::write(d.join("fixed"), "").unwrap();
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r["encoding_r"] == "0.1" && r["eval_loss"].is_empty()));
    assert!(!out.join("cells/m-D2000-fp32-s0/error.txt").exists());

    // Editing the grid under the same out folder is caught, not silently mixed.
    let changed = std::fs::read_to_string(&g)
        .unwrap()
        .replace("d_model = 8", "d_model = 16");
    std::fs::write(&g, changed).unwrap();
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("different configuration"));

    // Metrics missing a listed subject, and out-of-range r.
    std::fs::write(d.join("empty.json"), "{}").unwrap();
    let g = write_grid(d, "nosub", &format!("{axes}{MODEL}[cell]\nkind = \"command\"\nsteps = [\"cp {{grid_dir}}/empty.json {{cell_dir}}/metrics.json\"]\n"));
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(d.join("o2"))
        .assert()
        .failure()
        .stderr(contains("no scores for subject(s) [\"sub-01\"]"));
    let g = write_grid(
        d,
        "nometrics",
        &format!("{axes}{MODEL}[cell]\nkind = \"command\"\nsteps = [\"true\"]\n"),
    );
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(d.join("o3"))
        .assert()
        .failure()
        .stderr(contains("metrics.json"));

    // Grid-file errors, each before anything runs.
    let cases = [
        (
            format!("{axes}{MODEL}[cell]\nkind = \"command\"\nsteps = [\"echo {{nope}}\"]\n"),
            "unknown placeholder {nope}",
        ),
        (
            format!("{axes}[cell]\nkind = \"command\"\nsteps = [\"true\"]\n"),
            "no [models.m] table",
        ),
        (
            format!(
                "{}{MODEL}[cell]\nkind = \"command\"\nsteps = [\"true\"]\n",
                axes.replace("fp32", "fp8")
            ),
            "'fp8' is not one of fp32, bf16, fp16",
        ),
        (
            format!(
                "{axes}{}[cell]\nkind = \"command\"\nsteps = [\"true\"]\n",
                MODEL.replace("n_head = 1", "n_head = 3")
            ),
            "not divisible by n_head 3",
        ),
        (
            format!(
                "{}{MODEL}[cell]\nkind = \"command\"\nsteps = [\"true\"]\n",
                axes.replace("[1000, 2000]", "[0]")
            ),
            "must be positive",
        ),
        (
            format!("{axes}{MODEL}[cell]\nkind = \"command\"\nsteps = []\n"),
            "at least one entry in steps",
        ),
        (
            format!("{axes}{MODEL}[cell]\nkind = \"magic\"\n"),
            "parsing grid file",
        ),
        (
            format!("{axes}{MODEL}[cell]\nkind = \"pipeline\"\n"),
            "missing field `dataset`",
        ),
    ];
    for (i, (body, msg)) in cases.iter().enumerate() {
        let g = write_grid(d, &format!("bad{i}"), body);
        bin()
            .args(["bench", "run"])
            .arg(&g)
            .arg("--out")
            .arg(d.join(format!("bad{i}")))
            .assert()
            .failure()
            .stderr(contains(*msg));
    }
    bin()
        .args(["bench", "run"])
        .arg(d.join("absent.toml"))
        .assert()
        .failure()
        .stderr(contains("absent.toml"));
}

#[test]
fn paper_grid_has_the_papers_axes() {
    let out = tempfile::tempdir().unwrap();
    bin()
        .args(["bench", "run", "--dry-run"])
        .arg(repo().join("bench/paper.toml"))
        .arg("--out")
        .arg(out.path())
        .assert()
        .success()
        .stdout(contains("paper: 56 cells"))
        .stdout(contains("w512-D60000000-fp16-s0"));
}

// ---------------------------------------------------------------------------------------------
// SLURM: a real controller and node on loopback (recipe: shared/notes/slurm-local.md).

#[test]
fn slurm_script_carries_resources_and_one_task_per_cell() {
    let dir = tempfile::tempdir().unwrap();
    let g = write_grid(
        dir.path(),
        "res",
        &format!(
            "[axes]\ntokens = [10, 20, 30]\nmodels = [\"m\"]\nprecisions = [\"fp16\"]\n{MODEL}[cell]\nkind = \"command\"\nsteps = [\"true\"]\n\
             [slurm]\npartition = \"gpu\"\naccount = \"lab\"\ntime = \"01:30:00\"\ngres = \"gpu:1\"\nmem = \"8G\"\ncpus_per_task = 4\n\
             extra = [\"--constraint=h100\"]\nsetup = [\"module load cuda\"]\n"
        ),
    );
    let grid = brainscale::study::grids::grid::Grid::load(&g).unwrap();
    let cells = grid.cells().unwrap();
    let out = dir.path().join("it's out");
    let job = brainscale::exec::slurm::GridJob {
        name: &grid.name,
        grid_file: &grid.path,
        slurm: &grid.slurm,
        cells: cells.iter().map(|c| c.id.clone()).collect(),
    };
    let s = brainscale::exec::slurm::script(
        &job,
        &out,
        Path::new("/opt/bs/brainscale"),
        Path::new("/work"),
    );
    for want in [
        "#SBATCH --array=0-2\n",
        "#SBATCH --partition=gpu\n",
        "#SBATCH --account=lab\n",
        "#SBATCH --time=01:30:00\n",
        "#SBATCH --gres=gpu:1\n",
        "#SBATCH --mem=8G\n",
        "#SBATCH --cpus-per-task=4\n",
        "#SBATCH --constraint=h100\n",
        "#SBATCH --chdir=/work\n",
        "module load cuda\n",
        "CELLS=( 'm-D10-fp16-s0' 'm-D20-fp16-s0' 'm-D30-fp16-s0' )",
        "exec '/opt/bs/brainscale' grid run-cell",
        "--out '",
        "it'\\''s out",
        "--cell \"${CELLS[$SLURM_ARRAY_TASK_ID]}\"",
    ] {
        assert!(s.contains(want), "{want:?} missing from\n{s}");
    }
    // Without SLURM's tools the executor says what is missing.
    let empty = dir.path().join("nobin");
    std::fs::create_dir(&empty).unwrap();
    bin()
        .args(["bench", "run", "--executor", "slurm"])
        .arg(&g)
        .arg("--out")
        .arg(dir.path().join("o"))
        .env("PATH", &empty)
        .assert()
        .failure()
        .stderr(contains("slurm-client"));
}

#[test]
fn slurm_executor_runs_a_two_cell_grid_through_sbatch() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let Some((daemons, conf)) = slurm_cluster::start(t) else {
        return;
    };

    let grid = write_grid(
        t,
        "slurm2",
        &format!(
            "[axes]\ntokens = [4096, 16384]\nmodels = [\"m\"]\nprecisions = [\"bf16\"]\nsubjects = [\"sub-01\"]\n{MODEL}\
             [cell]\nkind = \"command\"\nsteps = [\"sh {} {{n_params}} {{tokens}} {{precision}} {{subjects}} {{cell_dir}}/metrics.json\"]\n\
             [executor]\nkind = \"slurm\"\n[slurm]\ntime = \"00:05:00\"\ncpus_per_task = 1\nmem = \"100M\"\nmax_parallel = 2\n\
             setup = [\"echo task $SLURM_ARRAY_TASK_ID on $(hostname)\"]\n",
            repo().join("bench/toy-cell.sh").display()
        ),
    );
    let out = t.join("out");
    bin()
        .args(["bench", "run", "--wait"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .env("SLURM_CONF", &conf)
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .stdout(contains("submitted SLURM job array"))
        .stdout(contains("2 rows collected"));
    let rows = read_rows(&out);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["cell_id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["m-D16384-bf16-s0", "m-D4096-bf16-s0"]);
    assert!(rows
        .iter()
        .all(|r| r["precision"] == "bf16" && !r["eval_loss"].is_empty()));
    // The job-array script carries the grid's resources, one task per cell.
    let script = std::fs::read_dir(out.join("slurm"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "sbatch"))
        .unwrap();
    let text = std::fs::read_to_string(script).unwrap();
    for want in [
        "#SBATCH --array=0-1%2",
        "#SBATCH --time=00:05:00",
        "#SBATCH --mem=100M",
        "#SBATCH --cpus-per-task=1",
        "grid run-cell",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    let task_logs: Vec<String> = std::fs::read_dir(out.join("slurm/logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(task_logs.len(), 2);
    assert!(
        task_logs
            .iter()
            .all(|l| l.contains("on ") && l.contains("done in")),
        "{task_logs:?}"
    );
    // collect rebuilds results.csv from the tasks' row files; status reports every cell done.
    std::fs::remove_file(out.join("results.csv")).unwrap();
    bin()
        .args(["bench", "collect"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .env("SLURM_CONF", &conf)
        .assert()
        .success()
        .stdout(contains("2 rows (2 added)"));
    bin()
        .args(["bench", "status"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .env("SLURM_CONF", &conf)
        .assert()
        .success()
        .stdout(contains("2 cells: 2 done"));
    // Resubmitting a finished grid submits nothing.
    bin()
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .env("SLURM_CONF", &conf)
        .assert()
        .success()
        .stdout(contains("all 2 cells already have rows"));
    drop(daemons);
}
