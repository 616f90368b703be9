//! Training throughput of the bio-signal models (`bench-train` presets `biot-*`, `citrus-*`):
//! samples/s, achieved TFLOP/s ([`crate::core::flops`] through the models' `train_flops_per_sample`) and
//! MFU against the peak dense matmul measured in the same run; for BIOT on the CPU, the same
//! configuration in PyTorch eager (`bench/biot_torch.py bench`) timed right after, and the ratio.
//!
//! A step is the engine's full optimizer step ([`crate::nn::Trainer::train_step`]) on random
//! windows: forward, loss (BIOT: cross-entropy of the classifier, as BIOT's supervised runs;
//! CiTrus: the masked auto-encoding loss), backward, gradient norm, AdamW.
use crate::biosignal::train::InMemorySignals;
use crate::models::biot::BiotConfig;
use crate::models::registry::{ArchVisitor, BioModelConfig};
use crate::models::signal::{Pretraining, SignalArch, Supervised, Task};
use crate::models::ModelConfig;
use crate::nn::{Model, Precision, TrainConfig, Trainer};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Named cases: model config, batch, channels, samples per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BioBenchPreset {
    /// BIOT reference (d256 L4 H8, 3.2 M), 16 channels × 10 s at 200 Hz, batch 8 (CPU).
    BiotCpu,
    /// Same model, 18 channels, batch 256 (GPU).
    BiotGpu,
    /// citrus-small (MAE, freq target), 1 channel × 200 samples, batch 32 (CPU).
    CitrusCpu,
    /// citrus-small, 1 channel × 200 samples, batch 2048 (GPU).
    CitrusGpu,
}

impl BioBenchPreset {
    /// (model, batch, channels, samples per channel).
    pub fn case(self) -> (BioModelConfig, usize, i64, i64) {
        let biot = BioModelConfig::from(BiotConfig {
            name: "biot-d256-l4".into(),
            ..BiotConfig::default()
        });
        let citrus = BioModelConfig::parse(
            include_str!("../../models/citrus-small.toml"),
            "models/citrus-small.toml",
        )
        .expect("citrus-small.toml parses");
        match self {
            Self::BiotCpu => (biot, 8, 16, 2000),
            Self::BiotGpu => (biot, 256, 18, 2000),
            Self::CitrusCpu => (citrus, 32, 1, 200),
            Self::CitrusGpu => (citrus, 2048, 1, 200),
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BioBenchRow {
    pub model: String,
    pub device: String,
    pub precision: String,
    pub threads: i64,
    pub params: u64,
    pub batch_size: usize,
    pub channels: i64,
    pub samples: i64,
    pub steps: u64,
    pub samples_per_s: f64,
    pub tflops: f64,
    pub peak_matmul_tflops: f64,
    pub mfu: f64,
    /// PyTorch eager samples/s on the same case (BIOT on CPU only), and ours / theirs.
    pub torch_samples_per_s: Option<f64>,
    pub ratio_vs_torch: Option<f64>,
}

/// Seconds for `steps` engine steps after `warmup` ones.
fn time_steps<M: Model<Batch = crate::models::objectives::SignalBatch>>(
    cfg: &M::Config,
    tc: &TrainConfig,
    data: &InMemorySignals,
    steps: u64,
    warmup: u64,
    device: Device,
) -> Result<f64> {
    let mut t = Trainer::<M>::new(cfg, tc, device)?;
    for _ in 0..warmup {
        t.train_step(data)?;
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        t.train_step(data)?; // reads the loss back: a device sync
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// The generic body of [`bench_biosignal`]: (parameters, FLOPs per sample, seconds).
struct Timed<'a> {
    /// Random windows drawn (4 batches).
    n: i64,
    tc: &'a TrainConfig,
    channels: i64,
    samples: i64,
    steps: u64,
    warmup: u64,
    device: Device,
}

impl ArchVisitor for Timed<'_> {
    type Out = Result<(u64, f64, f64)>;
    fn visit<A: SignalArch>(self, cfg: &A) -> Self::Out {
        let (n, task) = (self.n, cfg.bench_task());
        // Seed and draws under the engine's RNG lock: trainers in other threads seed the same
        // process-global RNG (and the trainer below takes the lock itself).
        let (x, y) = {
            let _rng = crate::nn::rng_turn();
            tch::manual_seed(0);
            let x = Tensor::randn([n, self.channels, self.samples], (Kind::Float, Device::Cpu));
            let y = (task == Task::Supervised)
                .then(|| Tensor::randint(cfg.n_classes(), [n], (Kind::Int64, Device::Cpu)));
            (x, y)
        };
        let data = InMemorySignals::new(
            x.shallow_clone(),
            y.as_ref().map(|y| y.shallow_clone()),
            x,
            y,
        )?;
        let run = (self.tc, &data, self.steps, self.warmup, self.device);
        let secs = match task {
            Task::Supervised => {
                time_steps::<Supervised<A>>(cfg, run.0, run.1, run.2, run.3, run.4)?
            }
            Task::Pretext => time_steps::<Pretraining<A>>(cfg, run.0, run.1, run.2, run.3, run.4)?,
        };
        let flops = cfg.train_flops_per_sample(self.channels, self.samples, task == Task::Pretext);
        Ok((cfg.param_count(), flops, secs))
    }
}

/// Times `steps` training steps (after `warmup`) of `model` through the engine on random windows
/// [batch, channels, samples] at `precision` on `device`; `peak` is the device's dense-matmul
/// FLOP/s in that precision (for MFU; [`crate::nn::measure_peak_matmul`]).
#[allow(clippy::too_many_arguments)]
pub fn bench_biosignal(
    model: &BioModelConfig,
    batch: usize,
    channels: i64,
    samples: i64,
    steps: u64,
    warmup: u64,
    device: Device,
    precision: Precision,
    peak: f64,
) -> Result<BioBenchRow> {
    if steps == 0 || batch == 0 {
        bail!("steps and batch size must be positive");
    }
    let tc = TrainConfig {
        precision,
        batch_size: batch,
        max_steps: steps + warmup,
        lr: 1e-4,
        min_lr: 1e-5,
        warmup_steps: 1,
        ..TrainConfig::default()
    };
    let (params, flops_per_sample, secs) = model.visit(Timed {
        n: (4 * batch) as i64,
        tc: &tc,
        channels,
        samples,
        steps,
        warmup,
        device,
    })?;
    let sps = (steps as usize * batch) as f64 / secs;
    Ok(BioBenchRow {
        model: model.name().into(),
        device: format!("{device:?}"),
        precision: precision.name().into(),
        threads: tch::get_num_threads() as i64,
        params,
        batch_size: batch,
        channels,
        samples,
        steps,
        samples_per_s: sps,
        tflops: sps * flops_per_sample / 1e12,
        peak_matmul_tflops: peak / 1e12,
        mfu: sps * flops_per_sample / peak,
        torch_samples_per_s: None,
        ratio_vs_torch: None,
    })
}

/// Runs `bench/biot_torch.py bench` (PyTorch eager, CPU, same thread count) on the same BIOT case
/// and returns its samples/s. `python` is the interpreter (the project's `.venv/bin/python`).
pub fn torch_biot_samples_per_s(
    python: &Path,
    script: &Path,
    cfg: &BiotConfig,
    batch: usize,
    channels: i64,
    samples: i64,
    steps: u64,
    warmup: u64,
) -> Result<f64> {
    let dir = tempfile_dir()?;
    let toml = dir.join("biot.toml");
    std::fs::write(&toml, cfg.to_toml()?)?;
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["bench", "--config"])
        .arg(&toml)
        .args([
            "--batch",
            &batch.to_string(),
            "--channels",
            &channels.to_string(),
        ])
        .args([
            "--samples",
            &samples.to_string(),
            "--steps",
            &steps.to_string(),
        ])
        .args([
            "--warmup",
            &warmup.to_string(),
            "--threads",
            &tch::get_num_threads().to_string(),
        ])
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or(""))
        .with_context(|| format!("parsing the output of {}: {line}", script.display()))?;
    v["samples_per_s"]
        .as_f64()
        .ok_or_else(|| anyhow!("no samples_per_s in {line}"))
}

fn tempfile_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("brainscale-biobench-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// Prints a row the way `bench-train` does.
pub fn describe(r: &BioBenchRow) -> String {
    let mut s = format!(
        "{} ({} params) batch {} × {} ch × {} samples, {} on {} ({} threads):\n  {:.1} samples/s, {:.4} TFLOP/s achieved, peak matmul {:.4} TFLOP/s (measured now), MFU {:.1}%",
        r.model, r.params, r.batch_size, r.channels, r.samples, r.precision, r.device, r.threads,
        r.samples_per_s, r.tflops, r.peak_matmul_tflops, 100.0 * r.mfu
    );
    if let (Some(t), Some(q)) = (r.torch_samples_per_s, r.ratio_vs_torch) {
        s += &format!("\n  PyTorch eager (bench/biot_torch.py): {t:.1} samples/s; brainscale / PyTorch = {q:.2} (medians)");
    }
    s
}

/// Options of the bio-signal `bench-train` cases (flags override the preset).
#[derive(Debug, Clone)]
pub struct BenchBioArgs {
    pub preset: Option<BioBenchPreset>,
    /// A bio-signal model config (`model = "biot"`, ...) instead of the preset's model.
    pub model: Option<PathBuf>,
    pub batch_size: Option<usize>,
    pub channels: Option<i64>,
    /// Samples per channel at the model rate.
    pub samples: Option<i64>,
    pub steps: u64,
    pub warmup: u64,
    pub device: String,
    /// Also time PyTorch eager (`bench/biot_torch.py`, BIOT on CPU only) and print the ratio.
    pub torch: bool,
    /// Alternate brainscale and PyTorch this many times and report medians (a shared machine's
    /// load drifts: pairs measured close together compare fairly).
    pub repeats: usize,
    /// Append the row to this CSV (created with a header).
    pub csv: Option<PathBuf>,
}

/// `bench-train --preset biot-*|citrus-*`: runs one case and returns it (print it with
/// [`describe`]), optionally appending it to a CSV.
/// The caller resolves the device and precision (and re-executes for TF32 as `bench-train` does).
pub fn run_bench_bio(
    a: &BenchBioArgs,
    device: Device,
    precision: Precision,
) -> Result<BioBenchRow> {
    let (mut model, mut batch, mut ch, mut samples) =
        a.preset.unwrap_or(BioBenchPreset::BiotCpu).case();
    if let Some(p) = &a.model {
        model = BioModelConfig::load(p)?;
    } else if a.preset.is_none() {
        bail!("give --preset or --model");
    }
    batch = a.batch_size.unwrap_or(batch);
    ch = a.channels.unwrap_or(ch);
    samples = a.samples.unwrap_or(samples);
    let peak = crate::nn::measure_peak_matmul(device, precision.kind());
    if a.repeats == 0 {
        bail!("--repeats must be positive");
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        }
    };
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut r = None;
    for _ in 0..a.repeats {
        let row = bench_biosignal(
            &model, batch, ch, samples, a.steps, a.warmup, device, precision, peak,
        )?;
        ours.push(row.samples_per_s);
        if a.torch {
            let BioModelConfig::Biot(cfg) = &model else {
                bail!("--torch compares BIOT only")
            };
            if device != Device::Cpu || precision != Precision::Fp32 {
                bail!("--torch compares fp32 on the CPU only");
            }
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let t = torch_biot_samples_per_s(
                &root.join(".venv/bin/python"),
                &root.join("bench/biot_torch.py"),
                cfg,
                batch,
                ch,
                samples,
                a.steps,
                a.warmup,
            )?;
            theirs.push(t);
            ratios.push(row.samples_per_s / t);
        }
        r = Some(row);
    }
    let mut r = r.expect("at least one repeat");
    let scale = median(ours) / r.samples_per_s;
    r.samples_per_s *= scale;
    r.tflops *= scale;
    r.mfu *= scale;
    if a.torch {
        r.torch_samples_per_s = Some(median(theirs));
        r.ratio_vs_torch = Some(median(ratios));
    }
    if let Some(path) = &a.csv {
        crate::core::io::append_csv(path, r.clone())?;
    }
    Ok(r)
}
