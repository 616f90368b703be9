//! `brainscale bench-ridge` end to end on a tiny problem, and its argument errors.
use assert_cmd::Command;
use predicates::prelude::*;

#[test]
fn bench_ridge_prints_a_row_with_flops_and_peak_ratio() {
    for backend in ["cpu", "torch"] {
        Command::cargo_bin("brainscale")
            .unwrap()
            .args(["bench-ridge", "--n", "200", "--p", "16", "--v", "50", "--alphas", "3", "--folds", "4"])
            .args(["--backend", backend])
            .assert()
            .success()
            .stdout(predicate::str::contains("GEMM peak measured now"))
            .stdout(predicate::str::is_match(r"\| 200 \| 16 \| 50 \| 3 \| 4 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 0\.[0-9]+ \|").unwrap());
    }
}

#[test]
fn bench_ridge_rejects_bad_arguments() {
    let run = |args: &[&str]| {
        Command::cargo_bin("brainscale")
            .unwrap()
            .arg("bench-ridge")
            .args(args)
            .assert()
            .failure()
    };
    run(&["--n", "200", "--p", "8", "--v", "10", "--folds", "1"])
        .stderr(predicate::str::contains("at least 2 folds"));
    run(&["--n", "200", "--p", "8", "--v", "10", "--alphas", "0"])
        .stderr(predicate::str::contains("no alphas"));
    run(&["--device", "cuda:0"])
        .stderr(predicate::str::contains("cpu backend runs on the CPU only"));
    run(&["--max-memory", "12 furlongs"]).stderr(predicate::str::contains("--max-memory"));
}

/// Flags that mean nothing together are refused by the parser, naming the flag they need or
/// exclude, before any work.
#[test]
fn bench_ridge_refuses_meaningless_combinations() {
    let refused = |args: &[&str], says: &str| {
        Command::cargo_bin("brainscale")
            .unwrap()
            .arg("bench-ridge")
            .args(args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(says))
            .stdout(predicate::str::contains("GEMM peak").not());
    };
    refused(&["--candidates", "5"], "--bands");
    refused(&["--himalaya"], "--bands");
    refused(&["--tf32"], "tf32");
    refused(
        &["--dtype", "f64", "--precision", "f32"],
        "cannot be used multiple times",
    );
}
