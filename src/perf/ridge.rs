//! `brainscale bench-ridge`: times the CV ridge fit on generated data and compares the
//! achieved FLOP rate with this machine's matrix-product peak, measured in the same run.
use crate::ridge::{
    fit_cv, parse_bytes, Backend, CvScore, Folds, Precision, RidgeDevice, RidgeOptions,
    RidgeProblem,
};
use anyhow::{bail, Context, Result};
use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// n=5000, p=512, v=10000, 10 alphas, 5 run folds (the 2-core CPU target).
    Cpu,
    /// The GPU sizes: n=20000 with p=1024 and p=4096 at v=50000 (10 alphas), and the whole
    /// brain n=20000, p=1000, v=200000 with 20 alphas; 5 run folds each.
    Gpu,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A standard set of sizes (overrides --n/--p/--v/--alphas/--folds).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// Training rows (TRs).
    #[arg(long, default_value_t = 5000)]
    pub n: usize,
    /// Features.
    #[arg(long, default_value_t = 512)]
    pub p: usize,
    /// Voxels.
    #[arg(long, default_value_t = 10000)]
    pub v: usize,
    /// Number of alphas (log-spaced from 0.1 to 1e6).
    #[arg(long, default_value_t = 10)]
    pub alphas: usize,
    /// Runs, i.e. leave-one-run-out folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Test rows (default: n/10).
    #[arg(long)]
    pub n_test: Option<usize>,
    /// Default: torch for `--preset gpu`, else cpu.
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// cpu, cuda or cuda:N (torch backend). Default: cuda for `--preset gpu`, else cpu.
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    #[arg(long)]
    pub tf32: bool,
    #[arg(long, value_enum, default_value_t = CvScore::R)]
    pub cv_score: CvScore,
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Per-alpha f32 products for the validation norms instead of partial fractions.
    #[arg(long)]
    pub no_partial_fractions: bool,
    /// Timed repetitions of each fit (the fastest is reported).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Banded ridge: two bands of p features each (presets: see `bench_banded`).
    #[arg(long)]
    pub bands: bool,
    /// With --bands: band-weight candidates (Dirichlet random search).
    #[arg(long, default_value_t = 20)]
    pub candidates: usize,
    /// With --bands: also time himalaya's BandedRidgeCV (numpy backend, same candidates,
    /// alphas and folds) through .venv/bin/python (or $PYTHON) and report the ratio.
    #[arg(long, requires = "bands")]
    pub himalaya: bool,
}

/// One benchmark size.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub n: usize,
    pub p: usize,
    pub v: usize,
    pub alphas: usize,
    pub folds: usize,
}

/// One measured row.
#[derive(Debug, Clone)]
pub struct BenchRow {
    pub size: Size,
    pub seconds: f64,
    pub flops: f64,
    pub peak_gflops: f64,
    pub mean_test_r: f64,
    /// Process CPU time (user + system, all threads) of the fastest fit: on a shared machine,
    /// CPU time / cores bounds what the wall time would be without the other load.
    pub cpu_seconds: f64,
}

impl BenchRow {
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
}

pub fn run(a: &BenchArgs) -> Result<()> {
    if a.bands {
        bail!("--bands: run through `bench_banded::run`");
    }
    let sizes = match a.preset {
        None => vec![Size {
            n: a.n,
            p: a.p,
            v: a.v,
            alphas: a.alphas,
            folds: a.folds,
        }],
        Some(Preset::Cpu) => vec![Size {
            n: 5000,
            p: 512,
            v: 10000,
            alphas: 10,
            folds: 5,
        }],
        Some(Preset::Gpu) => vec![
            Size {
                n: 20000,
                p: 1024,
                v: 50000,
                alphas: 10,
                folds: 5,
            },
            Size {
                n: 20000,
                p: 4096,
                v: 50000,
                alphas: 10,
                folds: 5,
            },
            Size {
                n: 20000,
                p: 1000,
                v: 200000,
                alphas: 20,
                folds: 5,
            },
        ],
    };
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
    let mut o = RidgeOptions {
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
    crate::ridge::check_options(&o)?;
    if a.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let threads = match backend {
        Backend::Cpu => rayon::current_num_threads(),
        Backend::Torch => tch::get_num_threads() as usize,
    };
    println!(
        "bench-ridge: backend {} on {} ({} CPU threads), precision {}{}",
        backend,
        device,
        threads,
        a.precision,
        if a.tf32 { " + TF32" } else { "" }
    );
    let peak = gemm_peak(&o)?;
    println!("GEMM peak measured now: {peak:.1} GFLOP/s");
    if let Some(l) = load_average() {
        println!(
            "load average (1 min) before the fits: {l:.2} on {} logical CPUs",
            num_cpus()
        );
    }
    println!("| n | p | v | alphas | folds | seconds | CPU s | GFLOP | GFLOP/s | ratio to GEMM peak | mean test r |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for s in sizes {
        o.alphas = (0..s.alphas)
            .map(|i| 10f64.powf(-1.0 + 7.0 * i as f64 / (s.alphas.max(2) - 1) as f64))
            .collect();
        let row = bench_one(
            s,
            a.n_test.unwrap_or(s.n / 10).max(2),
            a.seed,
            a.repeats,
            &o,
            peak,
        )?;
        println!(
            "| {} | {} | {} | {} | {} | {:.3} | {:.2} | {:.1} | {:.1} | {:.2} | {:.4} |",
            s.n,
            s.p,
            s.v,
            s.alphas,
            s.folds,
            row.seconds,
            row.cpu_seconds,
            row.flops / 1e9,
            row.gflops(),
            row.gflops() / peak,
            row.mean_test_r
        );
    }
    Ok(())
}

pub(super) fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Seeded X (n × p), W (p × v) and Y = XW + noise (per-voxel noise level from 0.5 to 5),
/// generated in parallel by rows with one seeded stream per row.
pub(super) fn generate(
    rows: usize,
    p: usize,
    w: &Array2<f32>,
    seed: u64,
) -> (Array2<f32>, Array2<f32>) {
    let v = w.ncols();
    let mut x = Array2::<f32>::zeros((rows, p));
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            row.iter_mut()
                .for_each(|t| *t = StandardNormal.sample(&mut rng));
        });
    let mut y = x.dot(w);
    y.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            let mut rng =
                ChaCha8Rng::seed_from_u64(!seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            for (j, t) in row.iter_mut().enumerate() {
                let z: f32 = StandardNormal.sample(&mut rng);
                *t += z * (0.5 + 4.5 * j as f32 / v as f32);
            }
        });
    (x, y)
}

pub fn bench_one(
    s: Size,
    n_test: usize,
    seed: u64,
    repeats: usize,
    o: &RidgeOptions,
    peak: f64,
) -> Result<BenchRow> {
    if s.folds < 2 || s.n < 2 * s.folds {
        bail!(
            "need at least 2 folds and 2 rows per fold (n={}, folds={})",
            s.n,
            s.folds
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = 1.0 / (s.p as f32).sqrt();
    let w = Array2::from_shape_simple_fn((s.p, s.v), || {
        let z: f32 = StandardNormal.sample(&mut rng);
        z * scale
    });
    let (x, y) = generate(s.n, s.p, &w, seed.wrapping_add(1));
    let (xt, yt) = generate(n_test, s.p, &w, seed.wrapping_add(2));
    let groups: Vec<usize> = (0..s.n).map(|i| i * s.folds / s.n).collect();
    let prob = RidgeProblem {
        x_train: x.view(),
        y_train: y.view(),
        groups: &groups,
        x_test: xt.view(),
        y_test: yt.view(),
    };
    let mut best = f64::INFINITY;
    let mut cpu = f64::INFINITY;
    let mut fit = None;
    for _ in 0..repeats {
        let c0 = process_cpu_seconds();
        let t = Instant::now();
        let f = fit_cv(&prob, o)?;
        let wall = t.elapsed().as_secs_f64();
        if wall < best {
            best = wall;
            cpu = process_cpu_seconds() - c0;
        }
        fit = Some(f);
    }
    let fit = fit.expect("repeats >= 1");
    Ok(BenchRow {
        size: s,
        seconds: best,
        flops: fit.flops,
        peak_gflops: peak,
        mean_test_r: fit.test_r.mean().unwrap_or(f64::NAN),
        cpu_seconds: cpu,
    })
}

/// User + system CPU time of this process so far (all threads).
pub(super) fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The 1-minute load average (other work on the machine skews timings).
pub(super) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Best GFLOP/s of square matrix products on the fit's backend, device and precision.
pub fn gemm_peak(o: &RidgeOptions) -> Result<f64> {
    match o.backend {
        #[cfg(feature = "cpu-linalg")]
        Backend::Cpu => Ok(match o.precision {
            Precision::F32 => cpu_peak::<f32>(),
            Precision::F64 => cpu_peak::<f64>(),
        }),
        #[cfg(not(feature = "cpu-linalg"))]
        Backend::Cpu => bail!("this build has no cpu backend"),
        Backend::Torch => crate::ridge::torch::matmul_peak(o),
    }
}

#[cfg(feature = "cpu-linalg")]
fn cpu_peak<T: crate::ridge::blas::Real>() -> f64 {
    let m = 2048;
    let a = Array2::from_shape_fn((m, m), |(i, j)| {
        T::from_f64(((i * 7 + j * 3) % 11) as f64 * 0.1)
    });
    let b = a.t().to_owned();
    let mut c = Array2::<T>::zeros((m, m));
    let mut best = 0.0f64;
    for _ in 0..4 {
        let t = Instant::now();
        crate::ridge::blas::gemm(T::one(), a.view(), b.view(), T::zero(), c.view_mut());
        best = best.max(crate::ridge::gemm_flops(m, m, m) / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}
