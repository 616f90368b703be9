//! `brainscale biosignal check | synth | resample | pretrain | finetune | transfer | demo`:
//! argument parsing and printed summaries; the work is done in the sibling modules.
use crate::biosignal::finetune::{finetune, summarise, FinetuneOptions, Mode, Regime};
use crate::biosignal::montage::Montage;
use crate::biosignal::pretrain::{load_pretrained_model, pretrain, Objective, PretrainOptions};
use crate::biosignal::resample::{self, Method};
use crate::biosignal::synth::{Generator, Modality, SynthSplit};
use crate::biosignal::transfer::{self, Preset, RealData};
use crate::biosignal::window::Norm;
use crate::biosignal::{load, LoadOptions, Windows};
use crate::cli::biosignal_check::check;
use crate::models::registry::BioModelConfig;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// A library enum offered on the command line as a fixed set of names (the library stays free
/// of clap; the names are the ones `name()` prints and serde writes).
pub trait Choice: Copy + Send + Sync + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

/// clap's parser for a [`Choice`]: the possible values listed in `--help`, others refused.
pub fn choice<T: Choice>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(T::ALL.iter().map(|v| v.name())).map(|s| {
        *T::ALL
            .iter()
            .find(|v| v.name() == s)
            .expect("clap checked the value")
    })
}

macro_rules! choices {
    ($($t:ty: [$($v:expr),*] by $name:expr;)*) => {$(
        impl Choice for $t {
            const ALL: &'static [Self] = &[$($v),*];
            fn name(self) -> &'static str {
                $name(self)
            }
        }
    )*};
}

choices! {
    Method: [Method::Sinc, Method::Linear, Method::Stretch, Method::Pad] by Method::name;
    Objective: [Objective::MaeTime, Objective::MaeFreq, Objective::Contrastive] by Objective::name;
    Modality: [Modality::Eeg, Modality::Ecg, Modality::Emg, Modality::Accel] by Modality::name;
    SynthSplit: [SynthSplit::Pretrain, SynthSplit::Train, SynthSplit::Val, SynthSplit::Test] by SynthSplit::name;
    Norm: [Norm::None, Norm::P95, Norm::Zscore] by Norm::name;
    Montage: [Montage::Banana16, Montage::Biot18] by Montage::name;
    Mode: [Mode::Full, Mode::Linear] by |m| match m { Mode::Full => "full", Mode::Linear => "linear" };
    Preset: [Preset::Demo, Preset::Full] by |p| match p { Preset::Demo => "demo", Preset::Full => "full" };
}

/// How files become windows (`LoadOptions`). Defaults: EDF/BDF 10-s windows (BIOT's clips),
/// CSV 2.56-s windows (HAR's 128 samples at 50 Hz), hop = window, no normalisation.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Window length in seconds for continuous recordings (EDF/BDF/CSV).
    #[arg(long)]
    pub window: Option<f64>,
    /// Hop between window starts in seconds (default: the window length, no overlap).
    #[arg(long)]
    pub hop: Option<f64>,
    /// Common rate (Hz) for recordings whose channels have different rates: every channel is
    /// resampled to it with the sinc resampler.
    #[arg(long = "common-rate")]
    pub common_rate: Option<f64>,
    /// Keep only these channels (comma-separated labels), in this order.
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<String>>,
    /// Per-channel normalisation of each window.
    #[arg(long, value_parser = choice::<Norm>(), default_value = "none")]
    pub norm: Norm,
    /// Number of classes K: labels must lie in 0..K (overrides file metadata).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Sampling rate (Hz) of tensor files that do not state one in their metadata.
    #[arg(long)]
    pub input_rate: Option<f64>,
    /// Bipolar montage built from an EDF/BDF's channels after label normalisation
    /// ("EEG FP1-REF" → FP1, T3 → T7): banana16 (BIOT's 16 channels) or biot18 (+ C3-A2, C4-A1).
    #[arg(long, value_parser = choice::<Montage>())]
    pub montage: Option<Montage>,
    /// Label EDF windows from a Sleep-EDF hypnogram EDF+ (W, N1, N2, N3 = stages 3+4, REM;
    /// movement and unknown left out); use --window 30 for its epochs.
    #[arg(long)]
    pub hypnogram: Option<PathBuf>,
    /// Label EDF+ windows from the file's own annotations (classes: sorted distinct texts).
    #[arg(long)]
    pub annotation_labels: bool,
}

impl LoadArgs {
    /// The library's options.
    pub fn opts(&self) -> LoadOptions {
        LoadOptions {
            window: self.window,
            hop: self.hop,
            common_rate: self.common_rate,
            channels: self.channels.clone(),
            norm: self.norm,
            classes: self.classes,
            input_rate: self.input_rate,
            montage: self.montage,
            hypnogram: self.hypnogram.clone(),
            annotation_labels: self.annotation_labels,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum BiosignalCommand {
    /// Report channels, rates, durations, windows and label counts of bio-signal files, and
    /// every fault (corrupt header, record size mismatch, NaN/inf, labels outside the class
    /// set, channel/rate/length mismatch across files); exits non-zero on any fault.
    Check(CheckArgs),
    /// Write synthetic windows with ground truth (TF-C-style safetensors).
    Synth(SynthArgs),
    /// Bring a set to another rate and window length (sinc, linear, stretch or pad).
    Resample(ResampleArgs),
    /// Self-supervised pretraining (masked auto-encoding or BIOT's contrastive objective) on
    /// unlabelled pools; resumes from checkpoints in --out.
    Pretrain(PretrainArgs),
    /// Fine-tune from scratch or from a pretraining folder in several data regimes and seeds,
    /// scored on a test set (mean ± sd of balanced accuracy, AUROC, macro-F1, Cohen's κ).
    Finetune(FinetuneArgs),
    /// The transfer study: scratch vs pretrained (time, frequency, contrastive; single vs
    /// multimodal) on synthetic EEG and the real Epilepsy subset, and the alignment comparison.
    Transfer(TransferArgs),
    /// The transfer study at its smallest (a few minutes on 2 cores), printing its tables.
    Demo(TransferArgs),
}

/// Where pretraining and fine-tuning sets come from and how they are shaped.
#[derive(Args, Debug)]
pub struct ShapeArgs {
    /// Model rate in Hz: every set is resampled to it (default: the pretraining folder's, else
    /// the first set's rate).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Model window length in samples: sets are cropped or zero-padded to it after resampling
    /// (default: the pretraining folder's, else the first set's).
    #[arg(long)]
    pub length: Option<usize>,
    /// How sets are brought to the model rate and length.
    #[arg(long, value_parser = choice::<Method>(), default_value = "sinc")]
    pub align: Method,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// libtorch CPU threads. One by default: these models are small, and on a busy 2-core
    /// machine intra-op threads cost more than they gain (measured: BIOT 2,674 samples/s on one
    /// thread vs 35 on two, at load 8).
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Model config (models/citrus-*.toml or models/biot-*.toml).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_parser = choice::<Objective>(), default_value = "mae-freq")]
    pub objective: Objective,
    /// Pool files (each one pool of a multimodal mixture); --norm applies after alignment.
    #[arg(long = "data")]
    pub data: Vec<PathBuf>,
    /// Synthetic pools streamed from the generator (one per modality given).
    #[arg(long, value_parser = choice::<Modality>())]
    pub synthetic: Vec<Modality>,
    /// Windows of each synthetic pool.
    #[arg(long, default_value_t = 2000)]
    pub windows: usize,
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// A `biosignal pretrain` folder, or one of BIOT's published encoder checkpoints
    /// (`.ckpt`/`.pt`/`.pth`, imported natively: d 256, 8 heads, 200 Hz, 10-s clips, p95
    /// normalisation; see `models::biot_import`). Omit to train from scratch.
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Model config (default: the pretraining folder's); e.g. a conv-only config to start from
    /// a hybrid's stem.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Labelled training windows.
    #[arg(long)]
    pub train: PathBuf,
    /// Labelled test windows.
    #[arg(long)]
    pub test: PathBuf,
    /// Data regimes: percentages, fractions or kN (N windows per class).
    #[arg(long, value_delimiter = ',', default_value = "1%,10%,100%")]
    pub regimes: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    #[arg(long, value_parser = choice::<Mode>(), default_value = "full")]
    pub mode: Mode,
    #[arg(long, default_value_t = 100)]
    pub steps: u64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// Write every run and the summaries to this CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    #[arg(long, value_parser = choice::<Preset>())]
    pub preset: Option<Preset>,
    /// The data folder holding biosignal/epilepsy and biosignal/edf (default: the
    /// BRAINSCALE_DATA environment variable; one of the two is required).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder (default: results/biosignal for transfer, results/biosignal-demo for demo).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override the preset's fine-tuning seeds (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Override the preset's pretraining seeds (comma-separated; full: 0,1,2, demo: 0): every
    /// pretraining method runs once per seed, each fine-tuned with every fine-tuning seed.
    #[arg(long, value_delimiter = ',')]
    pub pretrain_seeds: Option<Vec<u64>>,
    /// libtorch CPU threads (see `biosignal pretrain --threads`).
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// .edf, .bdf, .safetensors, .npy, .npz or .csv files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(long, value_parser = choice::<Modality>())]
    pub modality: Modality,
    /// Number of windows.
    #[arg(long)]
    pub n: usize,
    /// Write a labelled fine-tuning set (split `--split`) instead of an unlabelled pool.
    #[arg(long)]
    pub labelled: bool,
    /// Split of a labelled set (streams never overlap).
    #[arg(long, value_parser = choice::<SynthSplit>(), default_value = "train")]
    pub split: SynthSplit,
    /// Keep the true classes of a pretraining pool as `labels` (for analysis).
    #[arg(long)]
    pub keep_labels: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// First window index in the stream.
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Sampling rate in Hz (default: the modality's).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Window length in samples (default: the modality's).
    #[arg(long)]
    pub length: Option<usize>,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ResampleArgs {
    pub input: PathBuf,
    /// Target rate, Hz.
    #[arg(long)]
    pub rate: f64,
    /// Target window length, samples.
    #[arg(long)]
    pub length: usize,
    #[arg(long, value_parser = choice::<Method>(), default_value = "sinc")]
    pub method: Method,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Runs one `biosignal` subcommand.
pub fn run(cmd: &BiosignalCommand) -> Result<()> {
    match cmd {
        BiosignalCommand::Check(a) => {
            let (text, faults) = check(&a.files, &a.load.opts());
            print!("{text}");
            if !faults.is_empty() {
                for f in &faults {
                    eprintln!("fault: {f}");
                }
                bail!("{} fault(s) found", faults.len());
            }
        }
        BiosignalCommand::Synth(a) => {
            let spec = a.modality.spec();
            let g = Generator::new(a.seed).with_shape(
                a.modality,
                a.rate.unwrap_or(spec.rate),
                a.length.unwrap_or(spec.length),
            )?;
            let split = if a.labelled {
                a.split
            } else {
                SynthSplit::Pretrain
            };
            let ds = g.dataset(a.modality, split, a.start, a.n, a.keep_labels);
            ds.save(&a.out)?;
            println!(
                "wrote {}: {} {} windows [{}, {}, {}] at {} Hz, {}",
                a.out.display(),
                ds.len(),
                a.modality.name(),
                ds.len(),
                ds.n_channels(),
                ds.window_len(),
                g.spec(a.modality).rate,
                if ds.labels.is_some() {
                    format!(
                        "labelled ({}), counts {:?}",
                        split.name(),
                        ds.label_counts()
                    )
                } else {
                    "unlabelled pool".into()
                }
            );
        }
        BiosignalCommand::Pretrain(a) => run_pretrain(a)?,
        BiosignalCommand::Finetune(a) => run_finetune(a)?,
        BiosignalCommand::Transfer(a) => run_transfer(a, Preset::Full, "results/biosignal")?,
        BiosignalCommand::Demo(a) => run_transfer(a, Preset::Demo, "results/biosignal-demo")?,
        BiosignalCommand::Resample(a) => {
            // Normalised after alignment, as pretrain/finetune do (load_aligned): the same
            // flags give the same windows.
            let opts = LoadOptions {
                norm: crate::biosignal::Norm::None,
                ..a.load.opts()
            };
            let ds = load(&a.input, &opts)?;
            let mut out = resample::align(&ds, a.rate, a.length, a.method)?;
            out.normalise(a.load.norm);
            out.save(&a.out)?;
            println!(
                "wrote {}: {} windows [{}, {}] at {} Hz from [{}, {}] at {} ({})",
                a.out.display(),
                out.len(),
                out.n_channels(),
                out.window_len(),
                a.rate,
                ds.n_channels(),
                ds.window_len(),
                crate::biosignal::fmt_rate(ds.rate),
                a.method.name()
            );
        }
    }
    Ok(())
}

fn set_threads(n: i32) -> Result<()> {
    if n < 1 {
        bail!("--threads must be at least 1, got {n}");
    }
    tch::set_num_threads(n);
    Ok(())
}

/// Loads `path` (without normalising), aligns it to (`rate`, `length`) with `method`, then
/// applies `--norm`.
fn load_aligned(
    path: &std::path::Path,
    s: &ShapeArgs,
    rate: f64,
    length: usize,
) -> Result<Windows> {
    let opts = LoadOptions {
        norm: crate::biosignal::Norm::None,
        ..s.load.opts()
    };
    let ds = load(path, &opts)?;
    let mut out = if ds.rate == Some(rate) && ds.window_len() == length {
        ds
    } else {
        resample::align(&ds, rate, length, s.align)?
    };
    if let Some(note) = out.meta.get("aligned_note") {
        eprintln!("note: {}: {note}", path.display());
    }
    out.normalise(s.load.norm);
    Ok(out)
}

/// The model shape: flags, else `fallback`, else the first file's rate and length.
fn model_shape(
    s: &ShapeArgs,
    fallback: Option<(f64, usize)>,
    first: Option<&std::path::Path>,
) -> Result<(f64, usize)> {
    if let (Some(r), Some(l)) = (s.rate, s.length) {
        return Ok((r, l));
    }
    let (r0, l0) = match (fallback, first) {
        (Some(f), _) => f,
        (None, Some(p)) => {
            let d = load(p, &s.load.opts())?;
            let Some(r) = d.rate else {
                bail!(
                    "{}: sampling rate unknown: give --input-rate or --rate",
                    p.display()
                );
            };
            (r, d.window_len())
        }
        (None, None) => bail!("give --rate and --length"),
    };
    Ok((s.rate.unwrap_or(r0), s.length.unwrap_or(l0)))
}

fn run_pretrain(a: &PretrainArgs) -> Result<()> {
    if a.data.is_empty() && a.synthetic.is_empty() {
        bail!("give at least one pool: --data FILE or --synthetic MODALITY");
    }
    let model = BioModelConfig::load(&a.model)?;
    set_threads(a.shape.threads)?;
    let (rate, length) = model_shape(&a.shape, None, a.data.first().map(|p| p.as_path()))?;
    let mut pools = Vec::new();
    for p in &a.data {
        pools.push(load_aligned(p, &a.shape, rate, length)?);
    }
    for &m in &a.synthetic {
        let g = Generator::new(a.seed);
        let mut d = g.dataset(m, SynthSplit::Pretrain, 0, a.windows, false);
        d = resample::align(&d, rate, length, a.shape.align)?;
        d.normalise(a.shape.load.norm);
        pools.push(d);
    }
    let opts = PretrainOptions {
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        device: crate::nn::device::parse_device(&a.shape.device)?,
        progress: true,
    };
    let existed = a.out.exists();
    let s = match pretrain(&model, a.objective, &pools, &opts, &a.out) {
        Ok(s) => s,
        Err(e) => {
            // A failed run leaves no empty --out behind (remove_dir only removes an empty
            // folder: a checkpoint written before the failure is kept for resuming).
            if !existed {
                let _ = std::fs::remove_dir(&a.out);
            }
            return Err(e);
        }
    };
    println!(
        "pretrained {} ({}) on {} pool(s) at {rate} Hz × {length}: {} steps, train loss {:.4}, held-out loss {}\n  checkpoint {}",
        model.name(),
        a.objective.name(),
        pools.len(),
        s.steps,
        s.final_train_loss,
        s.final_eval_loss
            .map_or("-".into(), |v| format!("{v:.4}")),
        s.checkpoint.display()
    );
    Ok(())
}

/// Whether `p` names a PyTorch checkpoint file (`.ckpt`, `.pt`, `.pth`) rather than a
/// `biosignal pretrain` folder.
fn is_torch_checkpoint(p: &std::path::Path) -> bool {
    p.is_file()
        && p.extension().is_some_and(|e| {
            matches!(
                e.to_string_lossy().to_lowercase().as_str(),
                "ckpt" | "pt" | "pth"
            )
        })
}

fn run_finetune(a: &FinetuneArgs) -> Result<()> {
    let mut tmp = None;
    let r = run_finetune_inner(a, &mut tmp);
    if let Some(t) = tmp {
        let _ = std::fs::remove_file(t);
    }
    r
}

fn run_finetune_inner(a: &FinetuneArgs, tmp_out: &mut Option<std::path::PathBuf>) -> Result<()> {
    let regimes = a
        .regimes
        .iter()
        .map(|r| r.parse::<Regime>())
        .collect::<Result<Vec<_>>>()?;
    if a.seeds.is_empty() {
        bail!("give at least one seed");
    }
    // A BIOT checkpoint is imported to brainscale names in a temporary file, removed at the end.
    let mut imported: Option<std::path::PathBuf> = None;
    let (model, init, fallback) = match (&a.pretrained, &a.model) {
        (Some(ckpt), m) if is_torch_checkpoint(ckpt) => {
            let imp = crate::models::biot_import::import(ckpt, None)?;
            let tmp = std::env::temp_dir().join(format!(
                "brainscale-biot-import-{}.safetensors",
                std::process::id()
            ));
            imp.save(&tmp)?;
            imported = Some(tmp.clone());
            let model = match m {
                Some(p) => BioModelConfig::load(p)?,
                None => BioModelConfig::from(imp.config.clone()),
            };
            // BIOT's published models: 200 Hz, 10-s clips.
            (model, Some(tmp), Some((200.0, 2000)))
        }
        (Some(dir), m) => {
            let (pm, info) = load_pretrained_model(dir)?;
            let model = match m {
                Some(p) => BioModelConfig::load(p)?,
                None => pm,
            };
            let w = crate::nn::trainer::latest_checkpoint(dir)?.join("model.safetensors");
            (model, Some(w), Some((info.rate, info.length)))
        }
        (None, Some(p)) => (BioModelConfig::load(p)?, None, None),
        (None, None) => bail!("give --pretrained DIR or --model FILE (from scratch)"),
    };
    *tmp_out = imported;
    set_threads(a.shape.threads)?;
    let (rate, length) = model_shape(&a.shape, fallback, Some(&a.train))?;
    let train = load_aligned(&a.train, &a.shape, rate, length)?;
    let test = load_aligned(&a.test, &a.shape, rate, length)?;
    if a.pretrained.as_deref().is_some_and(is_torch_checkpoint) {
        if let Some(w) = biot_channel_warning(&train.channels) {
            eprintln!("warning: {}: {w}", a.train.display());
        }
    }
    let opts = FinetuneOptions {
        mode: a.mode,
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        device: crate::nn::device::parse_device(&a.shape.device)?,
        ..FinetuneOptions::default()
    };
    let from = a
        .pretrained
        .as_ref()
        .map_or("scratch".to_string(), |d| d.display().to_string());
    println!(
        "{} ← {from}, {} fine-tuning, {} steps; train {} ({} windows), test {} ({} windows) at {rate} Hz × {length}",
        model.name(),
        match a.mode {
            Mode::Full => "full",
            Mode::Linear => "linear-probe",
        },
        a.steps,
        a.train.display(),
        train.len(),
        a.test.display(),
        test.len()
    );
    let mut rows = Vec::new();
    for r in &regimes {
        let mut scores = Vec::new();
        let mut n = 0;
        for &seed in &a.seeds {
            let run = finetune(&model, init.as_deref(), &train, &test, *r, &opts, seed)?;
            n = run.n_train;
            rows.push(transfer::RunRow {
                dataset: a.test.display().to_string(),
                variant: format!("{} ← {from}", model.name()),
                alignment: a.shape.align.name().into(),
                regime: r.to_string(),
                // The pretraining folder is named in `variant`; its seed is not recorded.
                pretrain_seed: 0,
                seed,
                n_train: run.n_train,
                n_test: test.len(),
                balanced_accuracy: run.scores.balanced_accuracy,
                auroc: run.scores.auroc,
                macro_f1: run.scores.macro_f1,
                kappa: run.scores.kappa,
            });
            scores.push(run.scores);
        }
        let s = summarise(&scores.iter().collect::<Vec<_>>())?;
        println!(
            "  {r:>6} (n {n:>5}): balanced accuracy {}, AUROC {}, macro-F1 {}, κ {}  ({} seeds)",
            s.balanced_accuracy, s.auroc, s.macro_f1, s.kappa, s.seeds
        );
    }
    if let Some(path) = &a.csv {
        crate::core::io::write_csv(path, &rows)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// A seed list given as `flag`: at least one seed, none twice.
fn seed_list(flag: &str, seeds: &[u64]) -> Result<Vec<u64>> {
    if seeds.is_empty() {
        bail!("{flag} needs at least one seed");
    }
    for (i, s) in seeds.iter().enumerate() {
        if seeds[..i].contains(s) {
            bail!("{flag}: seed {s} is given twice");
        }
    }
    Ok(seeds.to_vec())
}

/// Where `biosignal transfer` and `biosignal demo` find the real data without `--data`.
pub const DATA_ENV: &str = "BRAINSCALE_DATA";

fn run_transfer(a: &TransferArgs, default: Preset, out: &str) -> Result<()> {
    set_threads(a.threads)?;
    let preset = a.preset.unwrap_or(default);
    let mut plan = preset.plan();
    if let Some(s) = &a.seeds {
        plan.seeds = seed_list("--seeds", s)?;
    }
    if let Some(s) = &a.pretrain_seeds {
        plan.pretrain_seeds = seed_list("--pretrain-seeds", s)?;
    }
    let root = match (&a.data, std::env::var_os(DATA_ENV)) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => PathBuf::from(d),
        (None, None) => bail!(
            "give --data DIR (the folder holding biosignal/epilepsy and biosignal/edf) or set {DATA_ENV}"
        ),
    };
    let data = RealData::under(&root);
    for p in [&data.epilepsy_train, &data.epilepsy_test, &data.edf] {
        if !p.exists() {
            bail!(
                "{}: missing (the real bio-signal data; point --data at the shared data folder)",
                p.display()
            );
        }
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(out));
    let t0 = std::time::Instant::now();
    let table = transfer::run(&plan, &data, &out, true)?;
    println!("{table}");
    println!(
        "wrote {} (transfer-synthetic.csv, transfer-epilepsy.csv, alignment.csv, runs.csv, transfer.png, transfer-linear-probe.png) in {:.0} s",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// BIOT's published checkpoints were trained on the bipolar montages (16 channels: banana16,
/// 18: biot18; Yang et al. 2023, BIOT, NeurIPS). Data whose channel names are not the
/// montage of that size fine-tunes without error but meaninglessly: said, naming what differs.
pub fn biot_channel_warning(channels: &[String]) -> Option<String> {
    let m = match channels.len() {
        16 => Montage::Banana16,
        18 => Montage::Biot18,
        n => {
            return Some(format!(
                "{n} channel(s), but the BIOT checkpoint expects the bipolar montage banana16 \
                 (16) or biot18 (18): build it with --montage"
            ))
        }
    };
    let want = m.channel_names();
    let got: Vec<String> = channels
        .iter()
        .map(|c| crate::biosignal::montage::normalise_label(c))
        .collect();
    if got == want {
        return None;
    }
    let first = got.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(0);
    Some(format!(
        "channels are not the {} montage the BIOT checkpoint expects (channel {} is '{}', \
         expected '{}'): build it with --montage {}",
        m.name(),
        first + 1,
        channels[first],
        want[first],
        m.name()
    ))
}
