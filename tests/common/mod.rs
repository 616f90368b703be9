//! Shared test fixtures: one tiny synthetic dataset per test binary, copied when a test needs
//! to damage it.
#![allow(dead_code)]
use brainscale::fmri::dataset::synth::{self, SynthConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The tiny synthetic dataset (seed 0), generated once per test binary.
pub fn tiny() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("brainscale-tiny-")
            .tempdir()
            .unwrap()
            .keep();
        let root = dir.join("synth-tiny");
        synth::generate(&SynthConfig::preset(synth::Size::Tiny, 0), &root)
            .expect("generate tiny dataset");
        root
    })
}

/// A private copy of the tiny dataset that a test may modify.
pub fn tiny_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("synth-tiny");
    let ok = Command::new("cp")
        .arg("-r")
        .arg(tiny())
        .arg(&dst)
        .status()
        .unwrap()
        .success();
    assert!(ok, "copying the tiny dataset");
    (dir, dst)
}

/// Runs the brainscale binary; returns (success, stdout, stderr).
pub fn brainscale(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_brainscale"))
        .args(args)
        .output()
        .expect("run brainscale");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs brainscale expecting failure: a non-zero exit, no panic, and an error message that
/// contains every one of `needles`.
pub fn expect_error(args: &[&str], needles: &[&str]) -> String {
    let (ok, _out, err) = brainscale(args);
    assert!(!ok, "expected failure for {args:?}, stderr: {err}");
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    for n in needles {
        assert!(
            err.contains(n),
            "error for {args:?} should mention {n:?}, got: {err}"
        );
    }
    err
}

/// The rows of OUT/results.csv (what `brainscale bench` writes), as column → value maps.
pub fn read_rows(out: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(out.join("results.csv")).unwrap();
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            h.iter()
                .cloned()
                .zip(rec.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}
