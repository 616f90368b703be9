//! `brainscale bench-ridge`: times the CV ridge fit on generated data and compares the
//! achieved FLOP rate with this machine's matrix-product peak, measured in the same run.
//! Typed options in, a report out; `cli::perf` parses the flags and prints the table.
use crate::ridge::{bench_alphas, fit_cv, Backend, Dtype, RidgeOptions, RidgeProblem};
use anyhow::{bail, Result};
use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::time::Instant;

/// A standard set of sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// n=5000, p=512, v=10000, 10 alphas, 5 run folds (the 2-core CPU target).
    Cpu,
    /// The GPU sizes: n=20000 with p=1024 and p=4096 at v=50000 (10 alphas), and the whole
    /// brain n=20000, p=1000, v=200000 with 20 alphas; 5 run folds each.
    Gpu,
}

impl Preset {
    /// The sizes this preset times, in order.
    pub fn sizes(self) -> Vec<Size> {
        let size = |n, p, v, alphas| Size {
            n,
            p,
            v,
            alphas,
            folds: 5,
        };
        match self {
            Preset::Cpu => vec![size(5000, 512, 10000, 10)],
            Preset::Gpu => vec![
                size(20000, 1024, 50000, 10),
                size(20000, 4096, 50000, 10),
                size(20000, 1000, 200000, 20),
            ],
        }
    }
}

/// One benchmark size.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Training rows (TRs).
    pub n: usize,
    /// Features.
    pub p: usize,
    /// Voxels.
    pub v: usize,
    /// Number of alphas (log-spaced from 0.1 to 1e6, [`bench_alphas`]).
    pub alphas: usize,
    /// Runs, i.e. leave-one-run-out folds.
    pub folds: usize,
}

/// What `bench-ridge` times.
#[derive(Debug, Clone)]
pub struct RidgeBench {
    pub sizes: Vec<Size>,
    /// Test rows (default: n/10, at least 2).
    pub n_test: Option<usize>,
    pub seed: u64,
    /// Timed repetitions of each fit (the fastest is reported), at least 1.
    pub repeats: usize,
    /// Solver options; the alphas are set per size.
    pub ridge: RidgeOptions,
}

/// The machine a benchmark ran on, measured in the same run.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Threads of the backend (rayon for cpu, libtorch for torch).
    pub threads: usize,
    /// Best GFLOP/s of square matrix products on the fit's backend, device and dtype.
    pub peak_gflops: f64,
    /// The 1-minute load average before the fits (other work skews timings).
    pub load: Option<f64>,
    /// Logical CPUs.
    pub cpus: usize,
}

/// Threads, GEMM peak and load for the options `o`. Errors: an unavailable device.
pub fn machine(o: &RidgeOptions) -> Result<Machine> {
    let threads = match o.backend {
        Backend::Cpu => rayon::current_num_threads(),
        Backend::Torch => tch::get_num_threads() as usize,
    };
    Ok(Machine {
        threads,
        peak_gflops: gemm_peak(o)?,
        load: load_average(),
        cpus: num_cpus(),
    })
}

/// What `bench-ridge` measured.
#[derive(Debug, Clone)]
pub struct RidgeBenchReport {
    pub machine: Machine,
    pub rows: Vec<BenchRow>,
}

/// Times every size of `b`. Errors: invalid options, fewer than 2 folds or 2 rows per fold,
/// no repeats, and those of the fit.
pub fn run(b: &RidgeBench) -> Result<RidgeBenchReport> {
    crate::ridge::check_options(&b.ridge)?;
    if b.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let machine = machine(&b.ridge)?;
    let mut rows = Vec::with_capacity(b.sizes.len());
    for &s in &b.sizes {
        let o = RidgeOptions {
            alphas: bench_alphas(s.alphas),
            ..b.ridge.clone()
        };
        rows.push(bench_one(
            s,
            b.n_test.unwrap_or(s.n / 10).max(2),
            b.seed,
            b.repeats,
            &o,
            machine.peak_gflops,
        )?);
    }
    Ok(RidgeBenchReport { machine, rows })
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
    /// Achieved GFLOP/s of the fastest fit.
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
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

/// Times one size: generated X, W and Y from `seed`, the fastest of `repeats` fits.
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
        Backend::Cpu => Ok(match o.dtype {
            Dtype::F32 => cpu_peak::<f32>(),
            Dtype::F64 => cpu_peak::<f64>(),
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
        best = best.max(crate::ridge::plan::gemm_flops(m, m, m) / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}
