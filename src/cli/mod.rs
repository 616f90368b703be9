//! Command-line interface: one subcommand per pipeline stage. Stage logic lives in the stage
//! modules; this file parses arguments and prints summaries.

pub mod args;
pub mod biosignal;
pub mod perf;
use crate::cli::args::RidgeArgs;
use crate::fmri::align::{self, AlignOptions, Lag};
use crate::fmri::dataset::{synth, Dataset};
use crate::fmri::demo::{self, DemoOptions};
use crate::fmri::features::{self, ExtractorKind, FeaturesOptions};
use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "brainscale",
    version,
    about = "Video transformers, fMRI encoding models and scaling laws"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make or inspect datasets.
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Decode a dataset's movies (or given files) to cached RGB frames.
    Decode(DecodeArgs),
    /// Extract features from a dataset's movies.
    Features(FeaturesArgs),
    /// Align features to each run's TR grid (FIR delays or HRF).
    Align(AlignArgs),
    /// Cross-validated ridge per voxel, tested on held-out runs.
    Encode(EncodeArgs),
    /// Write r maps (NIfTI, PNG) and the per-subject summary.
    Maps(MapsArgs),
    /// The whole pipeline on the embedded synthetic dataset.
    Demo(DemoArgs),
    /// Train the VQ-VAE video tokenizer.
    #[command(subcommand)]
    Tokenizer(crate::fmri::tokenize::TokenizerCommand),
    /// Turn movies into VQ-VAE code caches.
    Tokenize(crate::fmri::tokenize::TokenizeArgs),
    /// Train a GPT-2 prior over code sequences.
    Pretrain(crate::fmri::pretrain::PretrainArgs),
    /// Measure training throughput (tokens/s, TFLOP/s, MFU).
    BenchTrain(crate::cli::perf::BenchTrainArgs),
    /// Time the cross-validated ridge fit on generated data (seconds, GFLOP/s, ratio to GEMM peak).
    BenchRidge(crate::cli::perf::BenchRidgeArgs),
    /// Time the streamed ridge on a generated whole-brain problem larger than memory (Y made
    /// block by block from a seed): wall time, ratio to the GEMM peak, peak resident memory.
    BenchWholeBrain(crate::cli::perf::WholeBrainArgs),
    /// Scale benchmarks over grids of data size × model × precision (local or SLURM).
    #[command(subcommand)]
    Bench(crate::study::grids::BenchCommand),
    /// Scaling-law fits over results rows (iso-FLOP and parametric).
    #[command(subcommand)]
    Scaling(crate::study::scaling::ScalingCommand),
    /// Bio-signal data: check files, synthesise sets, resample to another rate and length.
    #[command(subcommand)]
    Biosignal(crate::cli::biosignal::BiosignalCommand),
    /// One self-contained report.html of a work folder: summary, maps, study figures, commands.
    Report(crate::study::report::ReportArgs),
}

#[derive(Subcommand, Debug)]
pub enum DatasetCmd {
    /// Write a synthetic movie-fMRI dataset with known ground truth.
    Synth(SynthArgs),
    /// Report subjects, runs, TRs, voxels or parcels, movies, and every problem found.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    pub path: PathBuf,
    #[command(flatten)]
    pub open: crate::fmri::dataset::OpenOptions,
    /// Largest tolerated excess of movie over BOLD duration, seconds (as align; default one TR).
    #[arg(long)]
    pub max_mismatch: Option<f64>,
    /// Read every volume of every run and decode every movie (NaN/inf in the mask, files cut
    /// short, constant voxels, decoded movie lengths); without it only headers are read.
    #[arg(long)]
    pub deep: bool,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(long, value_enum, default_value = "tiny")]
    pub size: synth::Size,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (default datasets/synth-SIZE).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override the signal-to-noise ratio (signal variance / noise variance).
    #[arg(long)]
    pub snr: Option<f64>,
    #[arg(long)]
    pub subjects: Option<usize>,
    #[arg(long)]
    pub runs: Option<usize>,
    #[arg(long)]
    pub trs: Option<usize>,
    /// Two feature spaces: each voxel driven by one band of latents (luminance or motion).
    #[arg(long)]
    pub bands: bool,
}

/// Where a stage reads and writes.
#[derive(Args, Debug, Clone)]
pub struct Place {
    /// Dataset folder (BIDS-like; see `dataset synth`).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Work folder for caches and outputs (default results/<dataset name>).
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[command(flatten)]
    pub open: crate::fmri::dataset::OpenOptions,
}

impl Place {
    fn open(&self) -> Result<(Dataset, PathBuf)> {
        let ds = Dataset::open_with(&self.dataset, &self.open)?;
        let work = self
            .work
            .clone()
            .unwrap_or_else(|| demo::default_work(&self.dataset));
        // Every stage run on a work folder is logged there for `brainscale report`.
        crate::core::provenance::record_command(&work)?;
        Ok((ds, work))
    }
}

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Decode these files instead of a dataset's movies.
    #[arg(long, num_args = 1.., conflicts_with = "dataset")]
    pub movie: Vec<PathBuf>,
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Cache folder root (frames go to WORK/frames).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Output frame rate (default: the movie's own).
    #[arg(long)]
    pub fps: Option<f64>,
    #[command(flatten)]
    pub decode: crate::fmri::video::DecodeFlags,
    /// Shorter side resized to this, then centre-cropped square (default: native size).
    #[arg(long)]
    pub size: Option<u32>,
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub place: Place,
    #[arg(long, value_enum, default_value = "baseline")]
    pub extractor: ExtractorKind,
    /// PCA components for the baseline extractor (0 keeps all 128 features).
    #[arg(long, default_value_t = 32)]
    pub pca: usize,
    #[arg(long)]
    pub fps: Option<f64>,
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    #[command(flatten)]
    pub gpt: features::GptFeatureArgs,
    #[command(flatten)]
    pub decode: crate::fmri::video::DecodeFlags,
}

#[derive(Args, Debug)]
pub struct AlignArgs {
    #[command(flatten)]
    pub place: Place,
    /// Features name (a folder under WORK/features).
    #[arg(long, default_value = "baseline")]
    pub features: String,
    /// FIR delays in TRs.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4")]
    pub delays: Vec<usize>,
    /// Convolve with the canonical HRF instead of FIR delays.
    #[arg(long)]
    pub hrf: bool,
    /// Algonauts-baseline alignment: the stimulus window ending this many TRs before each
    /// sample (replaces --delays; the baseline uses 3).
    #[arg(long, conflicts_with = "hrf")]
    pub hrf_delay: Option<usize>,
    /// Stimulus window length in TRs, with --hrf-delay (the baseline uses 5).
    #[arg(long, default_value_t = 5, requires = "hrf_delay")]
    pub window: usize,
    /// Largest tolerated excess of movie over BOLD duration, seconds (default one TR).
    #[arg(long)]
    pub max_mismatch: Option<f64>,
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// `merge`: join shard parts (after the dataset options: `encode --dataset D --work W
    /// --features F merge --shards K`).
    #[command(subcommand)]
    pub action: Option<EncodeAction>,
    #[command(flatten)]
    pub place: Place,
    /// Stream the BOLD block by block from the voxel-major cache (converted once, resumable,
    /// under WORK/voxcache or --voxel-cache): memory bounded by --max-memory whatever the
    /// voxel count; prints the peak resident memory.
    #[arg(long)]
    pub stream: bool,
    /// Fit only shard k of K (0 <= k < K): a contiguous share of the voxel blocks, written to
    /// WORK/encode/FEAT/sub-XX/parts/ (implies --stream); join with `encode merge`.
    #[arg(long, value_name = "k/K")]
    pub voxel_shard: Option<crate::fmri::encode::stream::Shard>,
    /// Voxels per block of the voxel cache (--stream).
    #[arg(long, default_value_t = crate::fmri::dataset::voxcache::DEFAULT_BLOCK)]
    pub block_voxels: usize,
    /// Folder of the voxel caches (default WORK/voxcache).
    #[arg(long)]
    pub voxel_cache: Option<PathBuf>,
    /// Submit the K shards as one SLURM job array (`sbatch`; each task runs this command with
    /// --voxel-shard k/K); only shards whose part is missing or stale are submitted, so a
    /// killed shard reruns alone when this is run again.
    #[arg(long, value_name = "K")]
    pub slurm_shards: Option<usize>,
    /// With --slurm-shards: an #SBATCH option for the job array (repeatable), e.g.
    /// --sbatch=--time=01:00:00 --sbatch=--mem=8G.
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch: Vec<String>,
    /// With --slurm-shards: wait for the array to finish, then merge the parts.
    #[arg(long, requires = "slurm_shards")]
    pub wait: bool,
    #[arg(long, default_value = "baseline")]
    pub features: String,
    /// Subjects (default all), e.g. 01,02.
    #[arg(long, value_delimiter = ',')]
    pub subjects: Vec<String>,
    /// Run ids held out for testing (default: each subject's last run).
    #[arg(long, value_delimiter = ',')]
    pub test_runs: Vec<String>,
    #[command(flatten)]
    pub ridge: RidgeArgs,
    #[command(flatten)]
    pub split: crate::fmri::dataset::splits::SplitArgs,
    #[command(flatten)]
    pub bands: crate::fmri::encode::banded::BandArgs,
}

/// `encode merge`: joins the parts of `encode --voxel-shard k/K`.
#[derive(clap::Subcommand, Debug)]
pub enum EncodeAction {
    /// Join the K shard parts of each subject into ridge.safetensors (and weights): refuses
    /// a missing or mismatched part, naming it.
    Merge(EncodeMergeArgs),
}

#[derive(Args, Debug)]
pub struct EncodeMergeArgs {
    /// The K of --voxel-shard k/K.
    #[arg(long)]
    pub shards: usize,
}

#[derive(Args, Debug)]
pub struct MapsArgs {
    #[command(flatten)]
    pub place: Place,
    #[arg(long, default_value = "baseline")]
    pub features: String,
    #[arg(long, value_delimiter = ',')]
    pub subjects: Vec<String>,
    /// r_statmap.png: |r| below this is not painted.
    #[arg(long, default_value_t = 0.1)]
    pub threshold: f32,
    /// r_statmap.png: an anatomical NIfTI drawn under the map (resampled to its grid);
    /// default: the subject's mean EPI (the atlas for parcels).
    #[arg(long)]
    pub background: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[arg(long, value_enum, default_value = "medium")]
    pub size: synth::Size,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Dataset folder (default datasets/synth-SIZE; generated when missing).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "results/demo")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "baseline")]
    pub extractor: ExtractorKind,
    #[arg(long, default_value_t = 32)]
    pub pca: usize,
    #[command(flatten)]
    pub decode: crate::fmri::video::DecodeFlags,
}

fn size_name(s: synth::Size) -> &'static str {
    match s {
        synth::Size::Tiny => "tiny",
        synth::Size::Medium => "medium",
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Dataset(DatasetCmd::Synth(a)) => {
            let mut cfg = synth::SynthConfig::preset(a.size, a.seed);
            if let Some(v) = a.snr {
                cfg.snr = v;
            }
            cfg.subjects = a.subjects.unwrap_or(cfg.subjects);
            cfg.runs = a.runs.unwrap_or(cfg.runs);
            cfg.trs_per_run = a.trs.unwrap_or(cfg.trs_per_run);
            cfg.bands = a.bands;
            let out = a
                .out
                .unwrap_or_else(|| PathBuf::from(format!("datasets/synth-{}", size_name(a.size))));
            let s = synth::generate(&cfg, &out)?;
            println!(
                "{} {}: {} subjects × {} runs × {} TRs (TR {} s), voxels per subject {:?}, movies {}x{} at {} fps",
                if s.skipped { "already complete:" } else { "wrote" },
                out.display(),
                cfg.subjects,
                cfg.runs,
                cfg.trs_per_run,
                cfg.tr,
                s.voxels_per_subject,
                cfg.frame_size,
                cfg.frame_size,
                cfg.fps
            );
        }
        Command::Dataset(DatasetCmd::Check(a)) => {
            let report =
                crate::fmri::dataset::check_with(&a.path, &a.open, a.max_mismatch, a.deep)?;
            print!("{}", report.text);
            if !report.problems.is_empty() {
                return Err(crate::fmri::dataset::check_error(&a.path, &report.problems));
            }
        }
        Command::Decode(a) => decode(a)?,
        Command::Features(a) => {
            let (ds, work) = a.place.open()?;
            let opts = FeaturesOptions {
                extractor: a.extractor,
                pca: (a.extractor == ExtractorKind::Baseline && a.pca > 0).then_some(a.pca),
                fps: a.fps,
                size: Some(a.size),
                gpt: (a.extractor == ExtractorKind::Gpt).then(|| a.gpt.clone()),
                decode: a.decode,
            };
            let dir = features::run_stage(&ds, &work, &opts)?;
            println!(
                "features of {} movies in {}",
                ds.movies().len(),
                dir.display()
            );
        }
        Command::Align(a) => {
            let (ds, work) = a.place.open()?;
            let lag = match (a.hrf, a.hrf_delay) {
                (true, _) => Lag::Hrf,
                (false, Some(d)) => Lag::window(d, a.window)?,
                (false, None) => Lag::Fir(a.delays.clone()),
            };
            let n = align::align_dataset(
                &ds,
                &work,
                &a.features,
                &AlignOptions {
                    lag,
                    max_mismatch_s: a.max_mismatch,
                },
            )?;
            println!(
                "{n} design matrices written under {}",
                work.join("design").join(&a.features).display()
            );
        }
        Command::Encode(EncodeArgs {
            action: Some(EncodeAction::Merge(m)),
            place,
            features,
            subjects,
            ..
        }) => {
            let (ds, work) = place.open()?;
            let subs = demo::select_subjects(&ds, &subjects)?;
            let merged =
                crate::fmri::encode::stream::merge_subjects(&work, &features, &subs, m.shards)?;
            for (s, p) in subs.iter().zip(merged) {
                println!(
                    "sub-{}: {} parts merged into {}",
                    s.id,
                    m.shards,
                    p.display()
                );
            }
        }
        Command::Encode(a) if !a.bands.bands.is_empty() => {
            let (ds, work) = a.place.open()?;
            let plan = a.split.plan(&a.test_runs)?;
            crate::fmri::encode::banded::run(
                &ds,
                &work,
                &a.bands,
                &a.subjects,
                &plan,
                &a.ridge.to_options()?,
            )?;
        }
        Command::Encode(a) if a.slurm_shards.is_some() => {
            let n = a.slurm_shards.unwrap_or(1);
            let (ds, work) = a.place.open()?;
            let ropts = a.ridge.to_options()?;
            let plan = a.split.plan(&a.test_runs)?;
            let subs = demo::select_subjects(&ds, &a.subjects)?;
            let tasks = crate::fmri::encode::stream::missing_shards(
                &subs,
                &work,
                &a.features,
                &plan,
                &ropts,
                n,
            )?;
            submit_shard_array(
                &work.join("slurm"),
                &a.sbatch,
                "encode-shards",
                n,
                &tasks,
                a.wait,
            )?;
            if a.wait || tasks.is_empty() {
                let merged =
                    crate::fmri::encode::stream::merge_subjects(&work, &a.features, &subs, n)?;
                for (s, p) in subs.iter().zip(merged) {
                    println!("sub-{}: {n} parts merged into {}", s.id, p.display());
                }
            }
        }
        Command::Encode(a) if a.stream || a.voxel_shard.is_some() => {
            let (ds, work) = a.place.open()?;
            let so = crate::fmri::encode::stream::StreamOptions {
                cache_root: a.voxel_cache.clone(),
                block_voxels: a.block_voxels,
                shard: a.voxel_shard,
                progress: true,
            };
            crate::fmri::encode::stream::run(
                &ds,
                &work,
                &a.features,
                &demo::select_subjects(&ds, &a.subjects)?,
                &a.split.plan(&a.test_runs)?,
                &a.ridge.to_options()?,
                &so,
            )?;
        }
        Command::Encode(a) => {
            let (ds, work) = a.place.open()?;
            let ropts = a.ridge.to_options()?;
            let fits = demo::encode_dataset(
                &ds,
                &work,
                &a.features,
                &a.subjects,
                a.split.plan(&a.test_runs)?,
                &ropts,
            )?;
            for (s, f) in demo::select_subjects(&ds, &a.subjects)?.iter().zip(&fits) {
                let sm = crate::core::stats::summarize_r(f.view());
                println!(
                    "sub-{}: {} voxels, test mean r {:.3}, top-10% r {:.3}",
                    s.id,
                    f.len(),
                    sm.mean_r,
                    sm.top10_mean_r
                );
            }
        }
        Command::Maps(a) => {
            let (ds, work) = a.place.open()?;
            let rows = demo::maps_dataset(&ds, &work, &a.features, &a.subjects)?;
            let figs = crate::fmri::maps::FigureOptions {
                threshold: a.threshold,
                background: a.background.clone(),
            };
            demo::maps_figures(&ds, &work, &a.features, &rows, &figs)?;
            print!("{}", demo::summary_table(&rows));
            println!(
                "maps in {}, summary in {}",
                work.join("maps").join(&a.features).display(),
                work.join("summary.csv").display()
            );
        }
        Command::Demo(a) => {
            let dataset = a
                .dataset
                .unwrap_or_else(|| PathBuf::from(format!("datasets/synth-{}", size_name(a.size))));
            crate::core::provenance::record_command(&a.out)?;
            let rows = demo::demo(&DemoOptions {
                decode: a.decode,
                size: a.size,
                seed: a.seed,
                dataset,
                work: a.out.clone(),
                extractor: a.extractor,
                pca: a.pca,
            })?;
            print!("{}", demo::summary_table(&rows));
            println!("maps (r, r2, alpha, ceiling NIfTI + r_mosaic.png, r_statmap.png) in {}/maps, summary in {}/summary.csv", a.out.display(), a.out.display());
            let rep = crate::study::report::write_report(&a.out, None)?;
            println!("report: {}", rep.path.display());
        }
        Command::Tokenizer(c) => crate::fmri::tokenize::run_tokenizer_command(&c)?,
        Command::Tokenize(a) => crate::fmri::tokenize::run_tokenize(&a)?,
        Command::Pretrain(a) => crate::fmri::pretrain::run_pretrain(&a)?,
        Command::BenchTrain(a) => perf::bench_train(&a)?,
        Command::BenchRidge(a) => perf::bench_ridge(&a)?,
        Command::BenchWholeBrain(a) => perf::bench_whole_brain(&a)?,
        Command::Bench(c) => crate::study::grids::run(c)?,
        Command::Scaling(c) => crate::study::scaling::run(c)?,
        Command::Biosignal(c) => crate::cli::biosignal::run(&c)?,
        Command::Report(a) => {
            let rep = crate::study::report::write_report(&a.work, a.out.as_deref())?;
            println!(
                "report of {} subject(s), {} bench result file(s), {} figure(s): {}",
                rep.subjects,
                rep.bench_results,
                rep.images,
                rep.path.display()
            );
        }
    }
    Ok(())
}

/// Submits this command's shards `tasks` of `n` as one SLURM job array (each task runs the
/// same command line with `--voxel-shard k/n` instead of `--slurm-shards`), scripts and logs
/// under `dir`; with `wait`, returns when the array has finished.
fn submit_shard_array(
    dir: &std::path::Path,
    sbatch: &[String],
    name: &str,
    n: usize,
    tasks: &[usize],
    wait: bool,
) -> Result<()> {
    if tasks.is_empty() {
        println!("all {n} parts are there (nothing to submit)");
        return Ok(());
    }
    let cfg = crate::exec::slurm::SlurmConfig {
        extra: sbatch.to_vec(),
        ..Default::default()
    };
    let args = crate::exec::slurm::shard_task_args(std::env::args().skip(1));
    let job = crate::exec::slurm::submit_shards(dir, &cfg, name, &args, n, tasks)?;
    println!("submitted SLURM job array {job}: shards {tasks:?} of {n}");
    if wait {
        crate::exec::slurm::wait(&job)?;
    }
    Ok(())
}

#[cfg(feature = "video")]
fn decode(a: DecodeArgs) -> Result<()> {
    let (movies, work) = match (&a.dataset, a.movie.is_empty()) {
        (Some(d), _) => (
            Dataset::open(d)?.movies(),
            a.work.clone().unwrap_or_else(|| demo::default_work(d)),
        ),
        (None, false) => (
            a.movie.clone(),
            a.work
                .clone()
                .unwrap_or_else(|| PathBuf::from("results/decode")),
        ),
        (None, true) => bail!("give --dataset or --movie"),
    };
    let opts = a.decode.options(a.fps, a.size);
    for m in &movies {
        let (f, note) =
            crate::fmri::video::decode_cached_with_note(m, &work.join("frames"), &opts)?;
        let (_, h, w, _) = f.data.dim();
        println!(
            "{}: {} frames {}x{} at {:.3} fps, {:.3} s{}",
            m.display(),
            f.len(),
            w,
            h,
            f.fps,
            f.duration(),
            if note.is_empty() {
                String::new()
            } else {
                format!("; {note}")
            }
        );
    }
    Ok(())
}

#[cfg(not(feature = "video"))]
fn decode(_a: DecodeArgs) -> Result<()> {
    bail!("this build has no video support (built without the `video` feature)")
}
