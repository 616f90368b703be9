//! `brainscale bench-ridge --bands`: times banded ridge (random search over band weights ×
//! alphas, grouped CV, refit, R² split) on generated two-band data, against this machine's
//! GEMM peak and, with `--himalaya`, against himalaya's `BandedRidgeCV` (numpy backend, the
//! same candidates, alphas and run folds) run on the same data in the same process tree.
//!
//! Presets: `cpu` n=5000, bands of 256 and 256, v=10000, 20 candidates × 10 alphas, 5 run
//! folds (the 2-core target: ≥ 10× himalaya); `gpu` n=20000, bands of 512 and 1024, v=50000,
//! 20 candidates × 10 alphas, 5 run folds.
use crate::perf::ridge::{generate, machine, process_cpu_seconds, Machine, Preset};
use crate::ridge::banded::{fit_banded, Band, BandedOptions, BandedProblem, Candidates};
use crate::ridge::{bench_alphas, CvScore, RidgeOptions, RidgeProblem};
use anyhow::{bail, Context, Result};
use ndarray::{s, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;
use std::time::Instant;

/// One banded benchmark size.
#[derive(Debug, Clone, Copy)]
pub struct BandedSize {
    /// Training rows.
    pub n: usize,
    /// Features of the two bands.
    pub widths: [usize; 2],
    /// Voxels.
    pub v: usize,
    /// Band-weight candidates (Dirichlet random search).
    pub candidates: usize,
    /// Number of alphas (log-spaced from 0.1 to 1e6).
    pub alphas: usize,
    /// Runs (leave-one-run-out folds).
    pub folds: usize,
}

impl BandedSize {
    /// The size of a preset (see the module doc).
    pub fn preset(p: Preset) -> Self {
        match p {
            Preset::Cpu => BandedSize {
                n: 5000,
                widths: [256, 256],
                v: 10000,
                candidates: 20,
                alphas: 10,
                folds: 5,
            },
            Preset::Gpu => BandedSize {
                n: 20000,
                widths: [512, 1024],
                v: 50000,
                candidates: 20,
                alphas: 10,
                folds: 5,
            },
        }
    }
}

/// What `bench-ridge --bands` times.
#[derive(Debug, Clone)]
pub struct BandedBench {
    pub size: BandedSize,
    /// Test rows (default n/10, at least 2).
    pub n_test: Option<usize>,
    pub seed: u64,
    /// Timed repetitions (the fastest is reported).
    pub repeats: usize,
    /// Solver options; the alphas are set from the size.
    pub ridge: RidgeOptions,
    /// Also time himalaya's BandedRidgeCV (numpy backend, same candidates, alphas and folds)
    /// through .venv/bin/python (or $PYTHON).
    pub himalaya: bool,
}

/// himalaya's time on the same problem and how its choices compare.
#[derive(Debug, Clone)]
pub struct HimalayaRun {
    pub seconds: f64,
    pub cpu_seconds: f64,
    /// Share of voxels where both chose the same candidate.
    pub same_candidate: f64,
    /// Largest |Δ test r| over those voxels.
    pub max_dr: f64,
}

/// What `bench-ridge --bands` measured.
#[derive(Debug, Clone)]
pub struct BandedReport {
    pub machine: Machine,
    pub size: BandedSize,
    /// Candidates actually searched.
    pub n_candidates: usize,
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub flops: f64,
    pub mean_test_r: f64,
    pub himalaya: Option<HimalayaRun>,
}

impl BandedReport {
    /// Achieved GFLOP/s of the fastest fit.
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
}

/// Runs the banded benchmark `b`. Errors: fewer than 2 folds or rows per fold, invalid
/// options, the fit's, and a failed himalaya reference.
pub fn run(b: &BandedBench) -> Result<BandedReport> {
    let size = b.size;
    if size.folds < 2 || size.n < 2 * size.folds {
        bail!("need at least 2 folds and 2 rows per fold");
    }
    let ridge = RidgeOptions {
        alphas: bench_alphas(size.alphas),
        ..b.ridge.clone()
    };
    crate::ridge::check_options(&ridge)?;
    let opts = BandedOptions {
        ridge,
        candidates: Candidates::Random {
            n: size.candidates,
            concentrations: vec![0.1, 1.0],
            seed: b.seed,
        },
        partition: false,
    };
    let machine = machine(&opts.ridge)?;
    let a = b;

    // Two bands; voxel j takes band 0 with weight cos θ_j and band 1 with sin θ_j.
    let p = size.widths[0] + size.widths[1];
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let scale = 1.0 / (p as f32).sqrt();
    let mut w = Array2::from_shape_simple_fn((p, size.v), || {
        let z: f32 = StandardNormal.sample(&mut rng);
        z * scale
    });
    for j in 0..size.v {
        let t: f32 = rng.gen_range(0.0..std::f32::consts::FRAC_PI_2);
        w.slice_mut(s![..size.widths[0], j])
            .mapv_inplace(|x| x * t.cos() * 2f32.sqrt());
        w.slice_mut(s![size.widths[0].., j])
            .mapv_inplace(|x| x * t.sin() * 2f32.sqrt());
    }
    let n_test = a.n_test.unwrap_or(size.n / 10).max(2);
    let (x, y) = generate(size.n, p, &w, a.seed.wrapping_add(1));
    let (xt, yt) = generate(n_test, p, &w, a.seed.wrapping_add(2));
    let groups: Vec<usize> = (0..size.n).map(|i| i * size.folds / size.n).collect();
    let bands = [
        Band {
            name: "a".into(),
            features: size.widths[0],
        },
        Band {
            name: "b".into(),
            features: size.widths[1],
        },
    ];
    let prob = BandedProblem {
        ridge: RidgeProblem {
            x_train: x.view(),
            y_train: y.view(),
            groups: &groups,
            x_test: xt.view(),
            y_test: yt.view(),
        },
        bands: &bands,
    };
    let mut best = f64::INFINITY;
    let mut cpu = 0.0;
    let mut fit = None;
    for _ in 0..a.repeats.max(1) {
        let c0 = process_cpu_seconds();
        let t = Instant::now();
        let f = fit_banded(&prob, &opts)?;
        let wall = t.elapsed().as_secs_f64();
        if wall < best {
            best = wall;
            cpu = process_cpu_seconds() - c0;
        }
        fit = Some(f);
    }
    let fit = fit.expect("at least one repeat");
    let mut report = BandedReport {
        machine,
        size,
        n_candidates: fit.candidates.nrows(),
        seconds: best,
        cpu_seconds: cpu,
        flops: fit.flops,
        mean_test_r: fit.test_r.mean().unwrap_or(f64::NAN),
        himalaya: None,
    };
    if a.himalaya {
        let dir = tempfile_dir()?;
        let d = dir.as_path();
        write_npy(&d.join("x_train.npy"), &x)?;
        write_npy(&d.join("y_train.npy"), &y)?;
        write_npy(&d.join("x_test.npy"), &xt)?;
        write_npy(&d.join("y_test.npy"), &yt)?;
        let g = Array2::from_shape_fn((groups.len(), 1), |(i, _)| groups[i] as f32);
        write_npy(&d.join("groups.npy"), &g)?;
        write_npy(
            &d.join("candidates.npy"),
            &fit.candidates.mapv(|t| t as f32),
        )?;
        let al = Array2::from_shape_fn((fit.alphas.len(), 1), |(i, _)| fit.alphas[i] as f32);
        write_npy(&d.join("alphas.npy"), &al)?;
        let cfg = serde_json::json!({
            "widths": size.widths,
            "score": if opts.ridge.score == CvScore::R { "r" } else { "r2" },
            "dtype": "float32",
        });
        std::fs::write(d.join("config.json"), cfg.to_string())?;
        let python = std::env::var("PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/himalaya_banded.py");
        eprintln!("running himalaya BandedRidgeCV (numpy backend) on the same problem ...");
        let out = std::process::Command::new(&python)
            .arg(script)
            .arg(d)
            .output()
            .with_context(|| format!("running {python} {script}"))?;
        let _ = std::fs::remove_dir_all(d);
        if !out.status.success() {
            bail!(
                "himalaya reference failed (is himalaya installed? make deps): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("reading the himalaya script's output")?;
        let hs = v["seconds"].as_f64().context("himalaya seconds")?;
        let hc = v["cpu_seconds"].as_f64().context("himalaya CPU seconds")?;
        let hb: Vec<usize> = serde_json::from_value(v["best_candidate"].clone())?;
        let hr: Vec<f64> = serde_json::from_value(v["test_r"].clone())?;
        let agree: Vec<usize> = (0..size.v)
            .filter(|&j| hb[j] == fit.best_candidate[j])
            .collect();
        let max_dr = agree
            .iter()
            .map(|&j| (hr[j] - fit.test_r[j]).abs())
            .fold(0.0, f64::max);
        report.himalaya = Some(HimalayaRun {
            seconds: hs,
            cpu_seconds: hc,
            same_candidate: agree.len() as f64 / size.v as f64,
            max_dr,
        });
    }
    Ok(report)
}

/// A fresh temporary folder (removed by the caller).
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "brainscale-bench-bands-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Writes a row-major f32 matrix as a NumPy .npy file (format 1.0).
fn write_npy(path: &Path, a: &Array2<f32>) -> Result<()> {
    use std::io::Write;
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        a.nrows(),
        a.ncols()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for x in a.as_standard_layout().iter() {
        f.write_all(&x.to_le_bytes())?;
    }
    f.flush()?;
    Ok(())
}
