//! `brainscale bench-ridge --bands`: times banded ridge (random search over band weights ×
//! alphas, grouped CV, refit, R² split) on generated two-band data, against this machine's
//! GEMM peak and, with `--himalaya`, against himalaya's `BandedRidgeCV` (numpy backend, the
//! same candidates, alphas and run folds) run on the same data in the same process tree.
//!
//! Presets: `cpu` n=5000, bands of 256 and 256, v=10000, 20 candidates × 10 alphas, 5 run
//! folds (the 2-core target: ≥ 10× himalaya); `gpu` n=20000, bands of 512 and 1024, v=50000,
//! 20 candidates × 10 alphas, 5 run folds.
use crate::perf::ridge::{
    gemm_peak, generate, load_average, num_cpus, process_cpu_seconds, BenchArgs, Preset,
};
use crate::ridge::banded::{fit_banded, Band, BandedOptions, BandedProblem, Candidates};
use crate::ridge::{parse_bytes, Backend, Folds, RidgeDevice, RidgeOptions, RidgeProblem};
use anyhow::{bail, Context, Result};
use ndarray::{s, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;
use std::time::Instant;

/// One banded benchmark size.
#[derive(Debug, Clone, Copy)]
struct Size {
    n: usize,
    widths: [usize; 2],
    v: usize,
    candidates: usize,
    alphas: usize,
    folds: usize,
}

/// Runs the banded benchmark described by `a` (`a.bands` set) and prints its table.
pub fn run(a: &BenchArgs) -> Result<()> {
    let size = match a.preset {
        None => Size {
            n: a.n,
            widths: [a.p, a.p],
            v: a.v,
            candidates: a.candidates,
            alphas: a.alphas,
            folds: a.folds,
        },
        Some(Preset::Cpu) => Size {
            n: 5000,
            widths: [256, 256],
            v: 10000,
            candidates: 20,
            alphas: 10,
            folds: 5,
        },
        Some(Preset::Gpu) => Size {
            n: 20000,
            widths: [512, 1024],
            v: 50000,
            candidates: 20,
            alphas: 10,
            folds: 5,
        },
    };
    if size.folds < 2 || size.n < 2 * size.folds {
        bail!("need at least 2 folds and 2 rows per fold");
    }
    let gpu = a.preset == Some(Preset::Gpu);
    let backend = a.backend.unwrap_or(if gpu {
        Backend::Torch
    } else {
        Backend::default()
    });
    let device: RidgeDevice = match &a.device {
        Some(d) => d.parse().context("--device")?,
        None if gpu => RidgeDevice::Cuda(0),
        None => RidgeDevice::Cpu,
    };
    let ridge = RidgeOptions {
        alphas: (0..size.alphas)
            .map(|i| 10f64.powf(-1.0 + 7.0 * i as f64 / (size.alphas.max(2) - 1) as f64))
            .collect(),
        score: a.cv_score,
        backend,
        device,
        precision: a.precision,
        tf32: a.tf32,
        max_memory: a
            .max_memory
            .as_deref()
            .map(parse_bytes)
            .transpose()
            .context("--max-memory")?,
        folds: Folds::LeaveOneRunOut,
        progress: false,
        partial_fractions: !a.no_partial_fractions,
        ..RidgeOptions::default()
    };
    crate::ridge::check_options(&ridge)?;
    let opts = BandedOptions {
        ridge,
        candidates: Candidates::Random {
            n: size.candidates,
            concentrations: vec![0.1, 1.0],
            seed: a.seed,
        },
        partition: false,
    };
    println!(
        "bench-ridge --bands: backend {backend} on {device}, precision {}{}",
        a.precision,
        if a.tf32 { " + TF32" } else { "" }
    );
    let peak = gemm_peak(&opts.ridge)?;
    println!("GEMM peak measured now: {peak:.1} GFLOP/s");
    if let Some(l) = load_average() {
        println!(
            "load average (1 min) before the fits: {l:.2} on {} logical CPUs",
            num_cpus()
        );
    }

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
    let gflops = fit.flops / best / 1e9;
    println!("| n | bands | v | candidates × alphas | folds | seconds | CPU s | GFLOP | GFLOP/s | ratio to GEMM peak | mean test r |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {}+{} | {} | {} × {} | {} | {:.2} | {:.1} | {:.0} | {:.1} | {:.2} | {:.4} |",
        size.n,
        size.widths[0],
        size.widths[1],
        size.v,
        fit.candidates.nrows(),
        size.alphas,
        size.folds,
        best,
        cpu,
        fit.flops / 1e9,
        gflops,
        gflops / peak,
        fit.test_r.mean().unwrap_or(f64::NAN)
    );

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
            "score": if a.cv_score == crate::ridge::CvScore::R { "r" } else { "r2" },
            "dtype": "float32",
        });
        std::fs::write(d.join("config.json"), cfg.to_string())?;
        let python = std::env::var("PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/himalaya_banded.py");
        println!("running himalaya BandedRidgeCV (numpy backend) on the same problem ...");
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
        println!(
            "himalaya: {hs:.1} s ({hc:.1} CPU s); brainscale is {:.1}x faster in wall time, {:.1}x in CPU time. Same best candidate on {:.2}% of voxels (max |Δr| there {max_dr:.1e})",
            hs / best,
            hc / cpu,
            100.0 * agree.len() as f64 / size.v as f64
        );
    }
    Ok(())
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
