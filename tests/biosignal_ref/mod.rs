//! Shared helpers of the bio-signal test binaries: data paths and the Python reference script.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn data(rel: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/biosignal"
    ))
    .join(rel)
}

pub fn python() -> PathBuf {
    std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Runs the reference script; panics with its stderr (missing packages: run
/// scripts/install-deps.sh).
pub fn reference(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/biosignal_reference.py"
        ))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "reference script {args:?} failed (run scripts/install-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
