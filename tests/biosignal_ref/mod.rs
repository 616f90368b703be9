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

/// One signal of a hand-built EDF file (see [`edf_bytes`]): the label as raw bytes (16 bytes,
/// padded with spaces when shorter, so NULs and latin-1 can be tested), its physical
/// dimension, ranges, samples per record and digital samples (records × spr).
pub struct EdfSig {
    pub label: Vec<u8>,
    pub unit: String,
    pub phys: (f64, f64),
    pub dig: (i32, i32),
    pub spr: usize,
    pub digital: Vec<i16>,
}

impl EdfSig {
    /// A signal whose physical value equals `scale` × digital (digital range ±1000, short
    /// enough that the physical range fits the 8-character fields).
    pub fn linear(label: &str, unit: &str, spr: usize, digital: Vec<i16>, scale: f64) -> Self {
        EdfSig {
            label: label.as_bytes().to_vec(),
            unit: unit.into(),
            phys: (-1000.0 * scale, 1000.0 * scale),
            dig: (-1000, 1000),
            spr,
            digital,
        }
    }
}

fn put(b: &mut Vec<u8>, raw: &[u8], len: usize) {
    let mut f = raw.to_vec();
    f.truncate(len);
    f.resize(len, b' ');
    b.extend_from_slice(&f);
}

/// Builds an EDF / EDF+ file: `reserved` (`""`, `"EDF+C"`, `"EDF+D"`), `record_s` (the record
/// duration field, as text), `n_records`, `signals`, and with `tals` an `EDF Annotations`
/// channel of `tal_bytes` bytes per record holding `tals[r]` (zero-padded).
pub fn edf_bytes(
    reserved: &str,
    record_s: &str,
    n_records: usize,
    signals: &[EdfSig],
    tals: Option<(&[Vec<u8>], usize)>,
) -> Vec<u8> {
    let ns = signals.len() + tals.is_some() as usize;
    let mut b = Vec::new();
    put(&mut b, b"0", 8);
    put(&mut b, b"X X X X", 80);
    put(&mut b, b"Startdate 01-JAN-2020 X X X", 80);
    put(&mut b, b"01.01.20", 8);
    put(&mut b, b"10.00.00", 8);
    put(&mut b, (256 * (ns + 1)).to_string().as_bytes(), 8);
    put(&mut b, reserved.as_bytes(), 44);
    put(&mut b, n_records.to_string().as_bytes(), 8);
    put(&mut b, record_s.as_bytes(), 8);
    put(&mut b, ns.to_string().as_bytes(), 4);
    let annot_label = b"EDF Annotations".to_vec();
    let mut labels: Vec<&[u8]> = signals.iter().map(|s| s.label.as_slice()).collect();
    if tals.is_some() {
        labels.push(&annot_label);
    }
    for l in &labels {
        put(&mut b, l, 16);
    }
    for _ in 0..ns {
        put(&mut b, b"", 80);
    }
    let mut fields: Vec<[String; 5]> = signals
        .iter()
        .map(|s| {
            [
                s.unit.clone(),
                format!("{}", s.phys.0),
                format!("{}", s.phys.1),
                s.dig.0.to_string(),
                s.dig.1.to_string(),
            ]
        })
        .collect();
    if tals.is_some() {
        fields.push([
            "".into(),
            "-1".into(),
            "1".into(),
            "-32768".into(),
            "32767".into(),
        ]);
    }
    for (k, len) in [(0, 8), (1, 8), (2, 8), (3, 8), (4, 8)] {
        for f in &fields {
            put(&mut b, f[k].as_bytes(), len);
        }
    }
    for _ in 0..ns {
        put(&mut b, b"", 80);
    }
    for s in signals {
        put(&mut b, s.spr.to_string().as_bytes(), 8);
    }
    if let Some((_, bytes)) = tals {
        put(&mut b, (bytes / 2).to_string().as_bytes(), 8);
    }
    for _ in 0..ns {
        put(&mut b, b"", 32);
    }
    for r in 0..n_records {
        for s in signals {
            for v in &s.digital[r * s.spr..(r + 1) * s.spr] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        if let Some((t, bytes)) = tals {
            let mut f = t[r].clone();
            f.resize(bytes, 0);
            b.extend_from_slice(&f);
        }
    }
    b
}

/// A record's time-keeping TAL `+onset\x14\x14\0`, then optional event TALs.
pub fn tal(onset: f64, events: &[(f64, &str)]) -> Vec<u8> {
    let mut v = format!("+{onset}\x14\x14\0").into_bytes();
    for (o, text) in events {
        v.extend_from_slice(format!("+{o}\x14{text}\x14\0").as_bytes());
    }
    v
}
