//! `bench-train`, `bench-ridge` (with `--bands`) and `bench-whole-brain`: their flags (the
//! ridge solver's flags flattened from [`SolverArgs`]), their typed options, and the tables
//! they print. The measuring is `perf::*`'s.
use crate::cli::args::{ByteSize, SolverArgs};
use crate::core::io;
use crate::core::memory::human_bytes;
use crate::exec::shards::Shard;
use crate::models::gpt::{GptConfig, Precision};
use crate::models::ModelConfig;
use crate::nn::{parse_device, reexec_for_precision};
use crate::perf::biosignal::{run_bench_bio, BenchBioArgs};
use crate::perf::ridge::{Machine, Preset, RidgeBench, Size};
use crate::perf::ridge_banded::{BandedBench, BandedSize};
use crate::perf::train::{bench_train as measure_train, BenchPreset};
use crate::perf::whole_brain::{self, WholeBrain};
use crate::ridge::{Backend, CvScore, RidgeDevice, RidgeOptions};
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

/// `brainscale bench-train`: training throughput of one model / precision / batch / device.
#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// A named case (model, precision, batch); explicit flags below override it.
    #[arg(long, value_enum)]
    pub preset: Option<BenchPreset>,
    /// Model config TOML instead of a preset.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Sequence length (default: the model's ctx).
    #[arg(long)]
    pub ctx: Option<i64>,
    /// Timed optimizer steps (after the warm-up ones).
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Append the result row to this CSV (created with a header).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Bio-signal cases: channels per window.
    #[arg(long)]
    pub channels: Option<i64>,
    /// Bio-signal cases: samples per channel at the model rate.
    #[arg(long)]
    pub samples: Option<i64>,
    /// BIOT on the CPU: also time the same configuration in PyTorch eager
    /// (`bench/biot_torch.py`) and print the ratio.
    #[arg(long)]
    pub torch: bool,
    /// Bio-signal cases: alternate brainscale and PyTorch this many times; medians reported.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
}

/// A bio-signal case: a bio preset, or a bio-signal model file (`model = "biot"`, ...).
fn bio_case(a: &BenchTrainArgs) -> Option<BenchBioArgs> {
    let by_file = a
        .model
        .as_ref()
        .is_some_and(|m| crate::models::BioModelConfig::is_signal_config(m));
    let preset = a.preset.and_then(BenchPreset::bio);
    (preset.is_some() || by_file).then(|| BenchBioArgs {
        preset,
        model: a.model.clone(),
        batch_size: a.batch_size,
        channels: a.channels,
        samples: a.samples,
        steps: a.steps,
        warmup: a.warmup,
        device: a.device.clone(),
        torch: a.torch,
        repeats: a.repeats,
        csv: a.csv.clone(),
    })
}

/// `bench-train`: measures, prints the row and appends it to `--csv`.
pub fn bench_train(a: &BenchTrainArgs) -> Result<()> {
    if let Some(b) = bio_case(a) {
        let precision = a.precision.unwrap_or(Precision::Fp32);
        if reexec_for_precision(precision)? {
            return Ok(());
        }
        let r = run_bench_bio(&b, parse_device(&a.device)?, precision)?;
        println!("{}", crate::perf::biosignal::describe(&r));
        return Ok(());
    }
    if a.channels.is_some() || a.samples.is_some() || a.torch {
        bail!("--channels, --samples and --torch apply to the bio-signal cases (biot-*, citrus-*)");
    }
    let preset = a.preset;
    let (mut cfg, mut precision, mut batch) = preset.unwrap_or(BenchPreset::CpuSmall).case();
    if let Some(m) = &a.model {
        cfg = GptConfig::load(m)?;
    } else if a.preset.is_none() {
        bail!("give --preset or --model");
    }
    precision = a.precision.unwrap_or(precision);
    batch = a.batch_size.unwrap_or(batch);
    let ctx = a.ctx.unwrap_or(cfg.ctx);
    if reexec_for_precision(precision)? {
        return Ok(());
    }
    let device = parse_device(&a.device)?;
    let r = measure_train(&cfg, precision, batch, ctx, a.steps, a.warmup, device)?;
    println!(
        "{} ({} params, {} in matmuls) d{} L{} H{} ctx {} batch {} vocab {} {} on {}:\n  {:.0} tokens/s, {:.4} TFLOP/s achieved, peak matmul {:.4} TFLOP/s (measured now), MFU {:.1}%",
        r.model, r.params_total, r.params_matmul, r.d_model, r.n_layer, r.n_head, r.ctx, r.batch_size, r.vocab, r.precision, r.device,
        r.tokens_per_s, r.tflops, r.peak_matmul_tflops, 100.0 * r.mfu
    );
    if let Some(path) = &a.csv {
        io::append_csv(path, r)?;
    }
    Ok(())
}

/// Sizes of `bench-ridge --preset` (plain or `--bands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RidgePreset {
    /// n=5000, p=512, v=10000, 10 alphas, 5 run folds (the 2-core CPU target); with
    /// --bands: bands of 256 and 256, 20 candidates.
    Cpu,
    /// n=20000 with p=1024 and p=4096 at v=50000 (10 alphas), and n=20000, p=1000,
    /// v=200000 with 20 alphas, 5 run folds; with --bands: bands of 512 and 1024, v=50000.
    Gpu,
}

impl From<RidgePreset> for Preset {
    fn from(p: RidgePreset) -> Self {
        match p {
            RidgePreset::Cpu => Preset::Cpu,
            RidgePreset::Gpu => Preset::Gpu,
        }
    }
}

/// `brainscale bench-ridge`.
#[derive(Args, Debug, Clone)]
pub struct BenchRidgeArgs {
    /// A standard set of sizes (overrides --n/--p/--v/--alphas/--folds).
    #[arg(long, value_enum)]
    pub preset: Option<RidgePreset>,
    /// Training rows (TRs).
    #[arg(long, default_value_t = 5000)]
    pub n: usize,
    /// Features (per band with --bands).
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
    #[command(flatten)]
    pub solver: SolverArgs,
    #[arg(long, value_enum, default_value_t = CvScore::R)]
    pub cv_score: CvScore,
    /// Timed repetitions of each fit (the fastest is reported).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Banded ridge: two bands of p features each.
    #[arg(long)]
    pub bands: bool,
    /// With --bands: band-weight candidates (Dirichlet random search; default 20).
    #[arg(long, requires = "bands")]
    pub candidates: Option<usize>,
    /// With --bands: also time himalaya's BandedRidgeCV (numpy backend, same candidates,
    /// alphas and folds) through .venv/bin/python (or $PYTHON) and report the ratio.
    #[arg(long, requires = "bands")]
    pub himalaya: bool,
}

impl BenchRidgeArgs {
    /// Solver options: torch on cuda by default for `--preset gpu`.
    fn ridge(&self) -> RidgeOptions {
        let gpu = self.preset == Some(RidgePreset::Gpu);
        let (backend, device) = match gpu {
            true => (Backend::Torch, RidgeDevice::Cuda(0)),
            false => (Backend::default(), RidgeDevice::Cpu),
        };
        let o = RidgeOptions {
            score: self.cv_score,
            progress: false,
            ..RidgeOptions::default()
        };
        self.solver.apply(o, backend, device)
    }
}

fn print_machine(o: &RidgeOptions, m: &Machine, what: &str) {
    println!(
        "{what}: backend {} on {} ({} CPU threads), dtype {}{}",
        o.backend,
        o.device,
        m.threads,
        o.dtype,
        if o.tf32 { " + TF32" } else { "" }
    );
    println!("GEMM peak measured now: {:.1} GFLOP/s", m.peak_gflops);
    if let Some(l) = m.load {
        println!(
            "load average (1 min) before the fits: {l:.2} on {} logical CPUs",
            m.cpus
        );
    }
}

/// `bench-ridge` (and `--bands`): measures and prints the table.
pub fn bench_ridge(a: &BenchRidgeArgs) -> Result<()> {
    if a.bands {
        return bench_ridge_banded(a);
    }
    let sizes = match a.preset {
        None => vec![Size {
            n: a.n,
            p: a.p,
            v: a.v,
            alphas: a.alphas,
            folds: a.folds,
        }],
        Some(p) => Preset::from(p).sizes(),
    };
    let b = RidgeBench {
        sizes,
        n_test: a.n_test,
        seed: a.seed,
        repeats: a.repeats,
        ridge: a.ridge(),
    };
    let r = crate::perf::ridge::run(&b)?;
    print_machine(&b.ridge, &r.machine, "bench-ridge");
    println!("| n | p | v | alphas | folds | seconds | CPU s | GFLOP | GFLOP/s | ratio to GEMM peak | mean test r |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &r.rows {
        let s = row.size;
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
            row.gflops() / row.peak_gflops,
            row.mean_test_r
        );
    }
    Ok(())
}

fn bench_ridge_banded(a: &BenchRidgeArgs) -> Result<()> {
    let size = match a.preset {
        None => BandedSize {
            n: a.n,
            widths: [a.p, a.p],
            v: a.v,
            candidates: a.candidates.unwrap_or(20),
            alphas: a.alphas,
            folds: a.folds,
        },
        Some(p) => BandedSize::preset(p.into()),
    };
    let b = BandedBench {
        size,
        n_test: a.n_test,
        seed: a.seed,
        repeats: a.repeats,
        ridge: a.ridge(),
        himalaya: a.himalaya,
    };
    let r = crate::perf::ridge_banded::run(&b)?;
    print_machine(&b.ridge, &r.machine, "bench-ridge --bands");
    println!("| n | bands | v | candidates × alphas | folds | seconds | CPU s | GFLOP | GFLOP/s | ratio to GEMM peak | mean test r |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {}+{} | {} | {} × {} | {} | {:.2} | {:.1} | {:.0} | {:.1} | {:.2} | {:.4} |",
        size.n,
        size.widths[0],
        size.widths[1],
        size.v,
        r.n_candidates,
        size.alphas,
        size.folds,
        r.seconds,
        r.cpu_seconds,
        r.flops / 1e9,
        r.gflops(),
        r.gflops() / r.machine.peak_gflops,
        r.mean_test_r
    );
    if let Some(h) = &r.himalaya {
        println!(
            "himalaya: {:.1} s ({:.1} CPU s); brainscale is {:.1}x faster in wall time, {:.1}x in CPU time. Same best candidate on {:.2}% of voxels (max |Δr| there {:.1e})",
            h.seconds,
            h.cpu_seconds,
            h.seconds / r.seconds,
            h.cpu_seconds / r.cpu_seconds,
            100.0 * h.same_candidate,
            h.max_dr
        );
    }
    Ok(())
}

/// bench-whole-brain's default process budget, read by the shared byte-size parser.
const WHOLE_BRAIN_MEMORY: &str = "6GB";

/// `brainscale bench-whole-brain`.
#[derive(Args, Debug, Clone)]
pub struct WholeBrainArgs {
    /// TRs in all (training and test rows).
    #[arg(long, default_value_t = 60000)]
    pub n: usize,
    /// Features.
    #[arg(long, default_value_t = 512)]
    pub p: usize,
    /// Voxels.
    #[arg(long, default_value_t = 100000)]
    pub v: usize,
    /// Share of the TRs held out as the test run (the last rows).
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Training runs (leave-one-run-out folds).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Number of alphas (log-spaced from 0.1 to 1e6).
    #[arg(long, default_value_t = 10)]
    pub alphas: usize,
    /// Voxels per streamed block.
    #[arg(long, default_value_t = 4096)]
    pub block_voxels: usize,
    /// The solver's flags (--max-memory: the ridge's voxel-chunk budget, as in `encode`).
    #[command(flatten)]
    pub solver: SolverArgs,
    /// Memory budget of the whole process (X, the prepared X side, a block, outputs and the
    /// ridge's chunks), as `encode --stream --process-memory`.
    #[arg(long, value_name = "SIZE", default_value = WHOLE_BRAIN_MEMORY)]
    pub process_memory: ByteSize,
    /// Fit only the first K blocks (a quick look at the rate; the table says so).
    #[arg(long, conflicts_with = "out")]
    pub max_blocks: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the per-voxel results (test r, test R², best alpha, CV scores per alpha) to
    /// DIR/whole-brain.safetensors, or with --voxel-shard to DIR/parts/part-k-of-K.safetensors.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fit only shard k of K (k = 0..K-1): a contiguous share of the voxel blocks.
    #[arg(long, requires = "out")]
    pub voxel_shard: Option<Shard>,
    /// Join the K parts in --out into whole-brain.safetensors (no fit); refuses a missing
    /// part or one made with other arguments, naming it.
    #[arg(
        long,
        value_name = "K",
        requires = "out",
        conflicts_with = "voxel_shard"
    )]
    pub merge: Option<usize>,
    /// Fit the K shards as one SLURM job array (the shards whose part is missing or stale);
    /// with --wait, then merge them.
    #[arg(long, value_name = "K", requires = "out", conflicts_with_all = ["voxel_shard", "merge"])]
    pub slurm_shards: Option<usize>,
    /// With --slurm-shards: an #SBATCH option for the job array (repeatable), e.g.
    /// --sbatch=--gres=gpu:1 for one GPU per shard.
    #[arg(long, requires = "slurm_shards", allow_hyphen_values = true)]
    pub sbatch: Vec<String>,
    /// With --slurm-shards: wait for the array to finish, then merge the parts.
    #[arg(long, requires = "slurm_shards")]
    pub wait: bool,
}

impl WholeBrainArgs {
    /// The typed options of the fit.
    fn options(&self) -> Result<WholeBrain> {
        let o = self.solver.apply(
            RidgeOptions::default(),
            Backend::default(),
            RidgeDevice::Cpu,
        );
        Ok(WholeBrain {
            n: self.n,
            p: self.p,
            v: self.v,
            test_fraction: self.test_fraction,
            folds: self.folds,
            alphas: self.alphas,
            block_voxels: self.block_voxels,
            process_memory: self.process_memory.0,
            chunk_memory: self.solver.max_memory.map(|b| b.0),
            backend: o.backend,
            device: o.device,
            dtype: o.dtype,
            tf32: o.tf32,
            partial_fractions: o.partial_fractions,
            max_blocks: self.max_blocks,
            seed: self.seed,
            out: self.out.clone(),
            shard: self.voxel_shard,
        })
    }
}

/// `bench-whole-brain`: the fit (whole or one shard), the merge of parts, or a SLURM array
/// of the shards; prints the table or what was merged/submitted.
pub fn bench_whole_brain(a: &WholeBrainArgs) -> Result<()> {
    let w = a.options()?;
    let dir = a.out.clone().unwrap_or_default();
    if let Some(n) = a.slurm_shards {
        let tasks = whole_brain::missing_parts(&w, &dir, n)?;
        super::submit_shard_array(
            &dir.join("slurm"),
            &a.sbatch,
            "whole-brain-shards",
            n,
            &tasks,
            a.wait,
        )?;
        if a.wait || tasks.is_empty() {
            let p = whole_brain::merge_parts(&w, &dir, n)?;
            println!("{n} parts merged into {}", p.display());
        }
        return Ok(());
    }
    if let Some(n) = a.merge {
        let p = whole_brain::merge_parts(&w, &dir, n)?;
        println!("{n} parts merged into {}", p.display());
        return Ok(());
    }
    let r = whole_brain::run(&w)?;
    println!(
        "bench-whole-brain: n = {} TRs ({} training in {} runs, {} test), p = {}, v = {}: Y is {} of f32 (generated block by block, never stored); backend {} on {} ({} CPU threads), {}",
        w.n,
        r.n_train,
        w.folds,
        r.n_test,
        w.p,
        w.v,
        human_bytes(r.y_bytes),
        w.backend,
        w.device,
        r.machine.threads,
        w.dtype
    );
    println!(
        "GEMM peak measured now: {:.1} GFLOP/s",
        r.machine.peak_gflops
    );
    if let Some(l) = r.machine.load {
        println!(
            "load average (1 min) before the fit: {l:.2} on {} logical CPUs",
            r.machine.cpus
        );
    }
    let gflops = r.flops / r.fit_s() / 1e9;
    println!("| n | p | v fitted | block | blocks | wall s | generation s | fit s | CPU s | GFLOP | GFLOP/s (fit) | ratio to GEMM peak | peak RSS | mean test r | expected r |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.2} | {} | {:.4} | {:.4} |",
        w.n,
        w.p,
        if r.v_fit - r.v0 < w.v {
            format!("{}..{} of {}", r.v0, r.v_fit, w.v)
        } else {
            w.v.to_string()
        },
        w.block_voxels,
        r.blocks,
        r.wall_s,
        r.generation_s,
        r.fit_s(),
        r.cpu_s,
        r.flops / 1e9,
        gflops,
        gflops / r.machine.peak_gflops,
        r.peak_rss.map_or("n/a".into(), human_bytes),
        r.mean_r,
        r.expected_r
    );
    if let Some(p) = &r.written {
        println!("per-voxel results: {}", p.display());
    }
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct BenchSignificanceArgs {
    /// Voxels (columns of predictions and BOLD).
    #[arg(long, default_value_t = 20_000)]
    pub voxels: usize,
    /// Test TRs.
    #[arg(long, default_value_t = 200)]
    pub trs: usize,
    #[arg(long, default_value_t = 1000)]
    pub permutations: usize,
    /// Block length of the permutations and the bootstrap, TRs.
    #[arg(long, default_value_t = 10)]
    pub perm_block: usize,
    /// Bootstrap resamples (0: not timed).
    #[arg(long, default_value_t = crate::fmri::bootstrap::DEFAULT_RESAMPLES)]
    pub bootstrap: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `brainscale bench-significance`: one line of figures (and the JSON row).
pub fn bench_significance(a: &BenchSignificanceArgs) -> Result<()> {
    let r = crate::perf::significance::run(&crate::perf::significance::SigBenchOptions {
        voxels: a.voxels,
        trs: a.trs,
        perm: crate::fmri::significance::PermOptions {
            n_perm: a.permutations,
            block: a.perm_block,
            seed: a.seed,
            required: true,
        },
        n_boot: a.bootstrap,
    })?;
    println!(
        "significance: {} voxels x {} TRs, {} permutations of {}-TR blocks: {:.3} s = {:.1} r passes; bootstrap {} resamples: {:.3} s = {:.1} r passes; anchor: one r pass over the same data {:.2} ms; {} threads; inputs {}, memory added {}; q < 0.05 on null data: {:.4}",
        r.voxels,
        r.trs,
        r.permutations,
        r.block,
        r.null_s,
        r.null_in_anchors,
        r.resamples,
        r.bootstrap_s,
        r.bootstrap_in_anchors,
        r.anchor_s * 1e3,
        r.threads,
        human_bytes(r.input_bytes),
        r.added_rss_bytes.map_or("n/a".into(), human_bytes),
        r.frac_q_below_0_05
    );
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// `brainscale bench-tokenize`.
#[derive(Args, Debug)]
pub struct BenchTokenizeArgs {
    /// Frame side in pixels.
    #[arg(long, default_value_t = 64)]
    pub resolution: i64,
    /// Clips encoded in the timed loop (after one warm-up batch).
    #[arg(long, default_value_t = 24)]
    pub clips: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// libtorch CPU threads (the reference gets the same).
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    /// Alternate brainscale and the reference this many times; medians reported.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Also time the reference PyTorch encoder (`tests/fixtures/videogpt_reference.py bench`,
    /// in `.venv`).
    #[arg(long)]
    pub reference: bool,
}

/// `brainscale bench-tokenize`: prints the timings and the ratio to the reference.
pub fn bench_tokenize(a: &BenchTokenizeArgs) -> Result<()> {
    let b = crate::perf::video::TokenizeBench {
        resolution: a.resolution,
        clips: a.clips,
        batch: a.batch,
        threads: a.threads,
        repeats: a.repeats,
        reference: a.reference,
    };
    let r = crate::perf::video::bench_tokenize(&b)?;
    println!("{}", crate::perf::video::describe(&b, &r));
    Ok(())
}
