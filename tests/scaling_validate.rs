//! `scaling validate` (fit on budgets up to C, predict the compute-optimal model at 5C, compare
//! with a measured sweep there) against rows that follow a known law L(N, D): written directly
//! with C = 6ND (exact closed-form optimum), and produced by a grid of toy command cells
//! (bench/toy-cell.sh) through `bench run`.
mod common;
use assert_cmd::Command;
use brainscale::study::scaling::parametric::Law;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> Command {
    Command::cargo_bin("brainscale").unwrap()
}

/// bench/toy-cell.sh's law.
const TOY: Law = Law {
    e: 1.7,
    a: 40.0,
    b: 60.0,
    alpha: 0.34,
    beta: 0.30,
};

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn prediction<'a>(v: &'a serde_json::Value, method: &str) -> &'a serde_json::Value {
    v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["method"] == method)
        .unwrap_or_else(|| panic!("no {method} prediction in {v}"))
}

#[test]
fn validate_recovers_the_optimum_of_a_known_law_at_5x() {
    // Rows on iso-FLOP sweeps (C = 6ND exactly) at four budgets spanning 8x and a 5x sweep above
    // the third: 11 model sizes, log-spaced around each budget's true optimum.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    let mut text = String::from("cell_id,n_params,tokens,flops,eval_loss\n");
    let budgets = [1e15, 2e15, 4e15, 8e15, 2e16];
    for (bi, &c) in budgets.iter().enumerate() {
        let (n0, _) = TOY.optimal(c);
        for j in 0..11 {
            let n = n0 * 10f64.powf((j as f64 - 5.0) * 0.2);
            let d = c / (6.0 * n);
            text += &format!("b{bi}m{j},{n},{d},{c},{}\n", TOY.predict(n, d));
        }
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.path().join("val");
    bin()
        .args(["scaling", "validate"])
        .arg(&csv)
        .args(["--fit-upto", "4e15", "--bootstrap", "10", "--out"])
        .arg(&out)
        .assert()
        .success();
    let v = read_json(&out.join("validate.json"));
    assert_eq!(
        v["at"].as_f64().unwrap(),
        2e16,
        "default: 5x the fitted budget"
    );
    assert_eq!(
        v["fit_rows"].as_u64().unwrap(),
        33,
        "8e15 and 2e16 are held out"
    );
    // K of C = K·N·D from the rows: exactly 6.
    assert!((v["c_per_nd"].as_f64().unwrap() - 6.0).abs() < 1e-9);
    let (n_true, d_true) = TOY.optimal(2e16);
    let par = prediction(&v, "parametric");
    let n_pred = par["n_opt"].as_f64().unwrap();
    assert!(
        (n_pred / n_true).ln().abs() < 0.02,
        "parametric N_opt {n_pred} vs the law's {n_true}"
    );
    assert!((par["d_opt"].as_f64().unwrap() / d_true).ln().abs() < 0.02);
    // The exponents of the law: a = β/(α+β), b = α/(α+β).
    let pe = v["parametric_exponents"].as_array().unwrap();
    assert!(
        (pe[0].as_f64().unwrap() - 0.30 / 0.64).abs() < 0.01,
        "{pe:?}"
    );
    // The measured reference is the sweep's parabola vertex, close to the true optimum.
    let m = &v["measured"];
    assert_eq!(m["reference"], "vertex");
    assert!(
        (m["n_ref"].as_f64().unwrap() / n_true).ln().abs() < 0.1,
        "{m}"
    );
    for method in ["iso-FLOP", "parametric"] {
        let p = prediction(&v, method);
        assert!(
            p["log_ratio_n"].as_f64().unwrap().abs() < 0.15,
            "{method}: {p}"
        );
        assert!(p["excess"].as_f64().unwrap().abs() < 0.002, "{method}: {p}");
    }
    // The law's predicted loss at its optimum vs the best run of the sweep.
    assert!(par["predicted_value_error"].as_f64().unwrap().abs() < 0.002);
    for f in [
        "validate.txt",
        "check_5x.png",
        "allocation.png",
        "fit/fit.json",
        "fit/isoflop.png",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // Parabolas on the 5 runs around each budget's best run find the same optimum.
    let w = dir.path().join("val-w5");
    bin()
        .args(["scaling", "validate"])
        .arg(&csv)
        .args([
            "--fit-upto",
            "4e15",
            "--isoflop-window",
            "5",
            "--bootstrap",
            "0",
            "--no-plots",
            "--out",
        ])
        .arg(&w)
        .assert()
        .success();
    let v5 = read_json(&w.join("validate.json"));
    assert!(
        (v5["measured"]["n_ref"].as_f64().unwrap() / n_true)
            .ln()
            .abs()
            < 0.05
    );
    for method in ["iso-FLOP", "parametric"] {
        let p = prediction(&v5, method);
        assert!(
            p["log_ratio_n"].as_f64().unwrap().abs() < 0.1,
            "{method}: {p}"
        );
    }
    // Errors name the fault.
    bin()
        .args(["scaling", "validate"])
        .arg(&csv)
        .args(["--fit-upto", "4e15", "--at", "3e16", "--out"])
        .arg(dir.path().join("bad"))
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "a sweep needs at least 3 model sizes",
        ));
}

#[test]
fn toy_command_grid_is_recovered_by_the_fit_and_the_5x_validation() {
    let dir = tempfile::tempdir().unwrap();
    let mut models = String::new();
    let names: Vec<String> = [16, 32, 64, 96, 128, 192]
        .iter()
        .map(|d| {
            models += &format!(
                "[models.w{d}]\nn_layer = 2\nn_head = 4\nd_model = {d}\nctx = 16\nvocab = 64\n"
            );
            format!("\"w{d}\"")
        })
        .collect();
    let grid = dir.path().join("toy.toml");
    std::fs::write(
        &grid,
        format!(
            r#"name = "toy-5x"
[axes]
budgets = [1e11, 2e11, 4e11, 1e12, 2e12]
models = [{}]
precisions = ["fp32"]
{models}
[cell]
kind = "command"
steps = ["sh {}/bench/toy-cell.sh {{n_params}} {{tokens}} {{precision}} '' {{cell_dir}}/metrics.json"]
[executor]
parallel = 2
"#,
            names.join(", "),
            repo().display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    bin()
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let rows = common::read_rows(&out);
    assert_eq!(rows.len(), 30);
    let results = out.join("results.csv");
    // The full fit recovers the law's exponents (the rows are exact).
    bin()
        .args(["scaling", "fit"])
        .arg(&results)
        .args(["--bootstrap", "10", "--no-plots", "--out"])
        .arg(dir.path().join("fit"))
        .assert()
        .success();
    let f = read_json(&dir.path().join("fit/fit.json"));
    let law = &f["parametric"]["fit"]["law"];
    assert!(
        (law["alpha"].as_f64().unwrap() - TOY.alpha).abs() < 0.01,
        "{law}"
    );
    assert!(
        (law["beta"].as_f64().unwrap() - TOY.beta).abs() < 0.01,
        "{law}"
    );
    // Fit on C <= 4e11, predict at 2e12 (5x) and compare with the grid's own 2e12 sweep.
    let val = dir.path().join("val");
    bin()
        .args(["scaling", "validate"])
        .arg(&results)
        .args(["--fit-upto", "4e11", "--bootstrap", "10", "--out"])
        .arg(&val)
        .assert()
        .success()
        .stdout(predicates::str::contains("5x"));
    let v = read_json(&val.join("validate.json"));
    assert_eq!(v["fit_rows"].as_u64().unwrap(), 18);
    assert_eq!(v["measured"]["runs"].as_u64().unwrap(), 6);
    // GPT FLOPs add attention and the output head to 6N: K > 6.
    let k = v["c_per_nd"].as_f64().unwrap();
    assert!(k > 6.0 && k < 12.0, "K = {k}");
    for method in ["iso-FLOP", "parametric"] {
        let p = prediction(&v, method);
        // Within a factor 1.5 of the measured optimum, and the loss there within 1% of the best.
        assert!(
            p["log_ratio_n"].as_f64().unwrap().abs() < 0.4,
            "{method}: {p}"
        );
        assert!(p["excess"].as_f64().unwrap().abs() < 0.01, "{method}: {p}");
    }
}
