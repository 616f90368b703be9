//! The fMRI track's subcommands: dataset, decode, features, align, encode (its modes as one
//! enum the parser enforces), maps and demo. Each parses its flags into the stage's plain
//! option structs, calls the stage and prints what it returns.
use crate::cli::args::{ByteSize, RidgeArgs};
use crate::core::memory::human_bytes;
use crate::fmri::align::{self, AlignOptions, Lag};
use crate::fmri::dataset::splits::SplitPlan;
use crate::fmri::dataset::{self, synth, voxcache, Dataset, Subject};
use crate::fmri::demo::{self, DemoOptions};
use crate::fmri::encode;
use crate::fmri::encode::banded::{self, BandRequest};
use crate::fmri::encode::stream::{self, Shard, StreamOptions};
use crate::fmri::features::{self, ExtractorKind, FeaturesOptions};
use crate::fmri::video::DecodeFlags;
use anyhow::{bail, Result};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

/// Default work folder of a dataset: results/<dataset folder name>.
pub fn default_work(dataset: &Path) -> PathBuf {
    PathBuf::from("results").join(
        dataset
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into()),
    )
}

/// How to read a dataset: the flags of every stage that reads one.
#[derive(Args, Debug, Clone, Default)]
pub struct OpenFlags {
    /// TR in seconds for runs that do not state one (HDF5 default: CNeuroMod's 1.49 s).
    #[arg(long)]
    pub tr: Option<f64>,
    /// Atlas label volume (NIfTI): parcel results get NIfTI/PNG maps; voxel data are averaged
    /// per parcel. Default for HDF5: the subject's `atlas/*.nii.gz` when there is one.
    #[arg(long)]
    pub atlas: Option<PathBuf>,
    /// fMRIPrep output space to use when there are several (e.g. MNI152NLin2009cAsym).
    #[arg(long)]
    pub space: Option<String>,
    /// fMRIPrep confound columns to regress out of each run, e.g. trans_x,trans_y,trans_z,rot_x,rot_y,rot_z.
    #[arg(long, value_delimiter = ',')]
    pub confounds: Vec<String>,
    /// Folder searched for movies (default ROOT/stimuli).
    #[arg(long)]
    pub stimuli: Option<PathBuf>,
    /// Leave out runs that have no movie (they are listed) instead of failing.
    #[arg(long)]
    pub skip_runs_without_movie: bool,
}

impl OpenFlags {
    pub fn options(&self) -> dataset::OpenOptions {
        dataset::OpenOptions {
            tr: self.tr,
            atlas: self.atlas.clone(),
            space: self.space.clone(),
            confounds: self.confounds.clone(),
            stimuli: self.stimuli.clone(),
            skip_runs_without_movie: self.skip_runs_without_movie,
        }
    }
}

/// Display orientation and truncation: the flags of every stage that decodes movies.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct DecodeFlagArgs {
    /// Keep frames in their stored orientation (default: apply the display matrix's rotation
    /// and flips, as ffmpeg does).
    #[arg(long)]
    pub no_autorotate: bool,
    /// Accept movies that end before the duration their header declares.
    #[arg(long)]
    pub allow_truncated: bool,
}

impl DecodeFlagArgs {
    pub fn flags(&self) -> DecodeFlags {
        DecodeFlags {
            no_autorotate: self.no_autorotate,
            allow_truncated: self.allow_truncated,
        }
    }
}

/// The GPT extractor's flags (`features --extractor gpt`).
#[derive(Args, Debug, Clone)]
pub struct GptFlags {
    /// `brainscale pretrain` output folder (with its tokenizer/).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Layers whose hidden states are averaged over each clip (0 = embeddings, l = block l).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub layers: Vec<usize>,
    /// Frame subsampling inside a clip (e.g. 3 at 29.97 fps: a 16-frame clip spans ~1.5 s).
    #[arg(long, default_value_t = 1)]
    pub clip_stride: usize,
    /// Frames between clip starts (default: the clip span, i.e. no overlap).
    #[arg(long)]
    pub hop: Option<usize>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl GptFlags {
    pub fn options(&self) -> features::GptFeatureArgs {
        features::GptFeatureArgs {
            model: self.model.clone(),
            layers: self.layers.clone(),
            clip_stride: self.clip_stride,
            hop: self.hop,
            device: self.device.clone(),
        }
    }
}

/// Which extractor the features stage runs.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractorArg {
    /// Luminance + motion energy on a grid, PCA-reduced.
    Baseline,
    /// The synthetic dataset's true latent factors (an oracle, for checking the pipeline).
    Groundtruth,
    /// Hidden states of a trained GPT-2 prior over VQ-VAE codes (`brainscale pretrain`).
    Gpt,
}

impl From<ExtractorArg> for ExtractorKind {
    fn from(e: ExtractorArg) -> Self {
        match e {
            ExtractorArg::Baseline => ExtractorKind::Baseline,
            ExtractorArg::Groundtruth => ExtractorKind::Groundtruth,
            ExtractorArg::Gpt => ExtractorKind::Gpt,
        }
    }
}

/// Size of a synthetic dataset.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeArg {
    /// 2 subjects × 4 runs × 60 TRs, ~540 voxels: for tests.
    Tiny,
    /// 3 subjects × 6 runs × 200 TRs, ~20k voxels: for the demo.
    Medium,
}

impl From<SizeArg> for synth::Size {
    fn from(s: SizeArg) -> Self {
        match s {
            SizeArg::Tiny => synth::Size::Tiny,
            SizeArg::Medium => synth::Size::Medium,
        }
    }
}

/// Command-line flags of a split (added to `encode`); flags override a `--split` file.
#[derive(Debug, Clone, Default, Args)]
pub struct SplitFlags {
    /// TOML split file (test_runs, test_seasons, train_runs, train_seasons, exclude_runs,
    /// exclude_seasons, cv_folds, trim_start, trim_end).
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// Friends seasons held out for the test, e.g. 3.
    #[arg(long, value_delimiter = ',')]
    pub test_seasons: Vec<u32>,
    /// Only runs of these seasons train.
    #[arg(long, value_delimiter = ',')]
    pub train_seasons: Vec<u32>,
    /// Only these runs train (ids, keys or episode keys).
    #[arg(long, value_delimiter = ',')]
    pub train_runs: Vec<String>,
    /// Seasons used neither for training nor for the test, e.g. 7.
    #[arg(long, value_delimiter = ',')]
    pub exclude_seasons: Vec<u32>,
    /// Runs used neither for training nor for the test.
    #[arg(long, value_delimiter = ',')]
    pub exclude_runs: Vec<String>,
    /// GroupKFold over episodes with this many folds (default: leave one episode out).
    #[arg(long)]
    pub cv_folds: Option<usize>,
    /// TRs excluded at each run's start (the Algonauts baseline uses 5).
    #[arg(long)]
    pub trim_start: Option<usize>,
    /// TRs excluded at each run's end (the Algonauts baseline uses 5).
    #[arg(long)]
    pub trim_end: Option<usize>,
}

impl SplitFlags {
    /// The plan: these flags (and `test_runs`) over the split file's values.
    pub fn plan(&self, test_runs: &[String]) -> Result<SplitPlan> {
        let flags = SplitPlan {
            test_runs: test_runs.to_vec(),
            test_seasons: self.test_seasons.clone(),
            train_runs: self.train_runs.clone(),
            train_seasons: self.train_seasons.clone(),
            exclude_runs: self.exclude_runs.clone(),
            exclude_seasons: self.exclude_seasons.clone(),
            cv_folds: self.cv_folds,
            trim_start: 0,
            trim_end: 0,
        };
        let mut plan = match &self.split {
            Some(p) => flags.or(&SplitPlan::from_toml(p)?),
            None => flags,
        };
        if let Some(t) = self.trim_start {
            plan.trim_start = t;
        }
        if let Some(t) = self.trim_end {
            plan.trim_end = t;
        }
        Ok(plan)
    }
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
    pub open: OpenFlags,
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
    pub size: SizeArg,
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
    /// Show the last movie K times (the last K runs, all of them test runs of the default
    /// split), so that encode estimates a noise ceiling from the repeats; 2 ≤ K ≤ runs − 2.
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub repeat_test: Option<usize>,
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
    pub open: OpenFlags,
}

impl Place {
    /// Opens the dataset and logs the command in the work folder (for `brainscale report`).
    fn open(&self) -> Result<(Dataset, PathBuf)> {
        let ds = Dataset::open_with(&self.dataset, &self.open.options())?;
        let work = self
            .work
            .clone()
            .unwrap_or_else(|| default_work(&self.dataset));
        crate::core::provenance::record_command(&work)?;
        Ok((ds, work))
    }
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").args(["movie", "dataset"]).required(true)))]
pub struct DecodeArgs {
    /// Decode these files instead of a dataset's movies.
    #[arg(long, num_args = 1.., conflicts_with = "dataset")]
    pub movie: Vec<PathBuf>,
    /// Decode the movies of this dataset (frames go to WORK/frames).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Cache folder root (frames go to WORK/frames; default results/<dataset name>, or
    /// results/decode with --movie).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Output frame rate (default: the movie's own).
    #[arg(long)]
    pub fps: Option<f64>,
    #[command(flatten)]
    pub decode: DecodeFlagArgs,
    /// Shorter side resized to this, then centre-cropped square (default: native size).
    #[arg(long)]
    pub size: Option<u32>,
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub place: Place,
    #[arg(long, value_enum, default_value = "baseline")]
    pub extractor: ExtractorArg,
    /// PCA components for the baseline extractor (0 keeps all 128 features).
    #[arg(long, default_value_t = 32)]
    pub pca: usize,
    #[arg(long)]
    pub fps: Option<f64>,
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    #[command(flatten)]
    pub gpt: GptFlags,
    #[command(flatten)]
    pub decode: DecodeFlagArgs,
}

#[derive(Args, Debug)]
pub struct AlignArgs {
    #[command(flatten)]
    pub place: Place,
    /// Features name (a folder under WORK/features).
    #[arg(long, default_value = "baseline")]
    pub features: String,
    /// FIR delays in TRs.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,3,4",
        conflicts_with_all = ["hrf", "hrf_delay"]
    )]
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

/// `brainscale encode`. The mode is one of: in memory (default), banded (`--bands`),
/// streamed (`--stream`, `--voxel-shard k/K`), SLURM shards (`--slurm-shards K`) or
/// `merge`; flags of one mode given with another are refused by the parser.
#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("streamed")
        .args(["stream", "voxel_shard", "slurm_shards"])
        .multiple(true)
))]
pub struct EncodeArgs {
    /// `merge`: join shard parts (after the dataset options: `encode --dataset D --work W
    /// --features F merge --shards K`).
    #[command(subcommand)]
    pub action: Option<EncodeAction>,
    #[command(flatten)]
    pub place: Place,
    #[command(flatten)]
    pub perm: super::stats::PermFlags,
    /// Stream the BOLD block by block from the voxel-major cache (converted once, resumable,
    /// under WORK/voxcache or --voxel-cache): the whole process bounded by --process-memory
    /// whatever the voxel count; prints the peak resident memory.
    #[arg(long)]
    pub stream: bool,
    /// Fit only shard k of K (0 <= k < K): a contiguous share of the voxel blocks, written to
    /// WORK/encode/FEAT/sub-XX/parts/ (implies --stream); join with `encode merge`.
    #[arg(long, value_name = "k/K", conflicts_with = "slurm_shards")]
    pub voxel_shard: Option<Shard>,
    /// Voxels per block of the voxel cache (streamed modes only).
    #[arg(long, default_value_t = voxcache::DEFAULT_BLOCK, requires = "streamed")]
    pub block_voxels: usize,
    /// Folder of the voxel caches (streamed modes only; default WORK/voxcache).
    #[arg(long, requires = "streamed")]
    pub voxel_cache: Option<PathBuf>,
    /// Memory budget of the whole process in the streamed modes, e.g. 8GiB (X, the prepared
    /// features, Y blocks, outputs and the ridge's chunks; default: half the available RAM).
    /// --max-memory stays the ridge's voxel-chunk budget, as in every encode mode.
    #[arg(long, value_name = "SIZE", requires = "streamed")]
    pub process_memory: Option<ByteSize>,
    /// Submit the K shards as one SLURM job array (`sbatch`; each task runs this command with
    /// --voxel-shard k/K); only shards whose part is missing or stale are submitted, so a
    /// killed shard reruns alone when this is run again.
    #[arg(long, value_name = "K")]
    pub slurm_shards: Option<usize>,
    /// With --slurm-shards: an #SBATCH option for the job array (repeatable), e.g.
    /// --sbatch=--time=01:00:00 --sbatch=--mem=8G.
    #[arg(
        long,
        value_name = "OPTION",
        allow_hyphen_values = true,
        requires = "slurm_shards"
    )]
    pub sbatch: Vec<String>,
    /// With --slurm-shards: wait for the array to finish, then merge the parts.
    #[arg(long, requires = "slurm_shards")]
    pub wait: bool,
    #[arg(long, default_value = "baseline", conflicts_with = "bands")]
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
    pub split: SplitFlags,
    #[command(flatten)]
    pub bands: BandFlags,
}

/// The banded-ridge flags of `brainscale encode` (in memory only).
#[derive(Args, Debug, Clone)]
pub struct BandFlags {
    /// Banded ridge over several feature sets, already extracted and aligned:
    /// NAME=FEATURES,... (e.g. motion=baseline,gpt=gpt-L4). Replaces --features; in memory
    /// only (not with the streamed or SLURM modes, nor with --stream-weights).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NAME=FEATURES,...",
        conflicts_with_all = ["streamed", "block_voxels", "voxel_cache", "process_memory", "stream_weights"]
    )]
    pub bands: Vec<String>,
    /// Number of band-weight candidates drawn from the Dirichlet distribution on the simplex
    /// (the first is the uniform weighting); each is tried with every alpha.
    #[arg(long, default_value_t = 20, value_name = "N", requires = "bands")]
    pub band_candidates: usize,
    /// Dirichlet concentrations, cycled over the candidates (himalaya's default 0.1,1).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,1",
        value_name = "C,...",
        requires = "bands"
    )]
    pub band_concentration: Vec<f64>,
    /// Seed of the candidate draws.
    #[arg(long, default_value_t = 0, requires = "bands")]
    pub band_seed: u64,
    /// Explicit band-weight candidates instead of random ones: weights separated by `:`,
    /// candidates by `,`, e.g. 0.5:0.5,0.9:0.1,0.1:0.9.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "W:W,...",
        requires = "bands"
    )]
    pub band_weights: Vec<String>,
    /// Also fit every leave-one-band-out model: unique and shared variance per voxel.
    #[arg(long, requires = "bands")]
    pub partition: bool,
}

impl BandFlags {
    fn request(&self) -> BandRequest {
        BandRequest {
            bands: self.bands.clone(),
            band_candidates: self.band_candidates,
            band_concentration: self.band_concentration.clone(),
            band_seed: self.band_seed,
            band_weights: self.band_weights.clone(),
            partition: self.partition,
            ..Default::default()
        }
    }
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

/// What `brainscale encode` does, as its flags say (one mode, never two).
#[derive(Debug, Clone)]
pub enum EncodeMode {
    /// Designs and BOLD in memory, one feature set.
    Single,
    /// Banded ridge over several feature sets, in memory.
    Banded(BandRequest),
    /// BOLD streamed from the voxel cache; with a shard, only that share of the voxels.
    Stream(StreamOptions),
    /// The shards submitted as a SLURM job array (each task runs the streamed mode).
    Slurm {
        shards: usize,
        sbatch: Vec<String>,
        wait: bool,
    },
    /// Join the shard parts.
    Merge { shards: usize },
}

impl EncodeArgs {
    /// The mode; the parser has refused flags of two modes, except with `merge` (a
    /// subcommand, whose parent flags clap cannot tie to it), refused here.
    pub fn mode(&self) -> Result<EncodeMode> {
        if let Some(EncodeAction::Merge(m)) = &self.action {
            let given = [
                (!self.bands.bands.is_empty(), "--bands"),
                (self.stream, "--stream"),
                (self.voxel_shard.is_some(), "--voxel-shard"),
                (self.slurm_shards.is_some(), "--slurm-shards"),
                (self.process_memory.is_some(), "--process-memory"),
            ];
            if let Some((_, flag)) = given.iter().find(|(g, _)| *g) {
                bail!(
                    "`encode merge` joins the parts already written: {flag} does not apply to it \
                     (give only the dataset, --features and --subjects before `merge`)"
                );
            }
            return Ok(EncodeMode::Merge { shards: m.shards });
        }
        if !self.bands.bands.is_empty() {
            return Ok(EncodeMode::Banded(BandRequest {
                perm: self.perm.options(),
                ..self.bands.request()
            }));
        }
        if let Some(k) = self.slurm_shards {
            return Ok(EncodeMode::Slurm {
                shards: k,
                sbatch: self.sbatch.clone(),
                wait: self.wait,
            });
        }
        if self.stream || self.voxel_shard.is_some() {
            let process_memory = self.process_memory.map(|b| b.0);
            return Ok(EncodeMode::Stream(StreamOptions {
                cache_root: self.voxel_cache.clone(),
                block_voxels: self.block_voxels,
                shard: self.voxel_shard,
                process_memory,
                progress: true,
                perm: self.perm.options(),
            }));
        }
        Ok(EncodeMode::Single)
    }
}

#[derive(Args, Debug)]
pub struct MapsArgs {
    #[command(flatten)]
    pub place: Place,
    #[arg(long, default_value = "baseline")]
    pub features: String,
    #[arg(long, value_delimiter = ',')]
    pub subjects: Vec<String>,
    #[command(flatten)]
    pub figure: super::stats::FigureFlags,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[arg(long, value_enum, default_value = "medium")]
    pub size: SizeArg,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Dataset folder (default datasets/synth-SIZE; generated when missing).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "results/demo")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "baseline")]
    pub extractor: ExtractorArg,
    #[arg(long, default_value_t = 32)]
    pub pca: usize,
    #[command(flatten)]
    pub decode: DecodeFlagArgs,
}

fn size_name(s: SizeArg) -> &'static str {
    match s {
        SizeArg::Tiny => "tiny",
        SizeArg::Medium => "medium",
    }
}

/// `brainscale dataset synth|check`.
pub fn run_dataset(c: DatasetCmd) -> Result<()> {
    match c {
        DatasetCmd::Synth(a) => {
            let mut cfg = synth::SynthConfig::preset(a.size.into(), a.seed);
            if let Some(v) = a.snr {
                cfg.snr = v;
            }
            cfg.subjects = a.subjects.unwrap_or(cfg.subjects);
            cfg.runs = a.runs.unwrap_or(cfg.runs);
            cfg.trs_per_run = a.trs.unwrap_or(cfg.trs_per_run);
            cfg.bands = a.bands;
            cfg.repeat_test = a.repeat_test.unwrap_or(0);
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
        DatasetCmd::Check(a) => {
            let report = dataset::check_with(&a.path, &a.open.options(), a.max_mismatch, a.deep)?;
            print!("{}", report.text);
            if !report.problems.is_empty() {
                return Err(dataset::check_error(&a.path, &report.problems));
            }
        }
    }
    Ok(())
}

/// `brainscale decode`.
pub fn run_decode(a: DecodeArgs) -> Result<()> {
    let (movies, work) = match &a.dataset {
        Some(d) => (
            Dataset::open(d)?.movies(),
            a.work.clone().unwrap_or_else(|| default_work(d)),
        ),
        None => (
            a.movie.clone(),
            a.work
                .clone()
                .unwrap_or_else(|| PathBuf::from("results/decode")),
        ),
    };
    let opts = a.decode.flags().options(a.fps, a.size);
    for m in crate::fmri::video::decode_stage(&movies, &work.join("frames"), &opts)? {
        println!(
            "{}: {} frames {}x{} at {:.3} fps, {:.3} s{}",
            m.movie.display(),
            m.frames,
            m.width,
            m.height,
            m.fps,
            m.duration,
            if m.note.is_empty() {
                String::new()
            } else {
                format!("; {}", m.note)
            }
        );
    }
    Ok(())
}

/// `brainscale features`.
pub fn run_features(a: FeaturesArgs) -> Result<()> {
    let (ds, work) = a.place.open()?;
    let extractor: ExtractorKind = a.extractor.into();
    let opts = FeaturesOptions {
        extractor,
        pca: (extractor == ExtractorKind::Baseline && a.pca > 0).then_some(a.pca),
        fps: a.fps,
        size: Some(a.size),
        gpt: (extractor == ExtractorKind::Gpt).then(|| a.gpt.options()),
        decode: a.decode.flags(),
    };
    let dir = features::run_stage(&ds, &work, &opts)?;
    println!(
        "features of {} movies in {}",
        ds.movies().len(),
        dir.display()
    );
    Ok(())
}

/// `brainscale align`.
pub fn run_align(a: AlignArgs) -> Result<()> {
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
    Ok(())
}

/// `brainscale encode`: the mode first (so that a refused combination writes nothing), then
/// the dataset, then the mode's stage.
pub fn run_encode(a: EncodeArgs) -> Result<()> {
    let mode = a.mode()?;
    let (ds, work) = a.place.open()?;
    let subs = ds.select(&a.subjects)?;
    let ropts = || a.ridge.to_options();
    let plan = || a.split.plan(&a.test_runs);
    match mode {
        EncodeMode::Merge { shards } => {
            let merged = stream::merge_subjects(&work, &a.features, &subs, shards)?;
            print_merged(&subs, shards, &merged);
        }
        EncodeMode::Banded(req) => {
            let bands = req.specs()?;
            let o = req.to_options(&ropts()?)?;
            let rows =
                banded::encode_dataset(&ds, &work, &bands, &a.subjects, &plan()?, &o, &req.perm)?;
            for row in rows {
                let sm = crate::core::stats::summarize_r(row.test_r.view());
                let parts: Vec<String> = bands
                    .iter()
                    .zip(&row.mean_r2_split)
                    .map(|(b, x)| format!("{} {x:.4}", b.name))
                    .collect();
                println!(
                    "sub-{}: {} voxels, test mean r {:.3}, top-10% r {:.3}, mean R² split: {}",
                    row.subject,
                    row.test_r.len(),
                    sm.mean_r,
                    sm.top10_mean_r,
                    parts.join(", ")
                );
            }
            println!(
                "results in {}",
                work.join("encode")
                    .join(banded::bands_name(&bands))
                    .display()
            );
        }
        EncodeMode::Slurm {
            shards,
            sbatch,
            wait,
        } => {
            let tasks =
                stream::missing_shards(&subs, &work, &a.features, &plan()?, &ropts()?, shards)?;
            super::submit_shard_array(
                &work.join("slurm"),
                &sbatch,
                "encode-shards",
                shards,
                &tasks,
                wait,
            )?;
            if wait || tasks.is_empty() {
                let merged = stream::merge_subjects(&work, &a.features, &subs, shards)?;
                print_merged(&subs, shards, &merged);
            }
        }
        EncodeMode::Stream(so) => {
            let ro = ropts()?;
            let fits = stream::run(&ds, &work, &a.features, &subs, &plan()?, &ro, &so)?;
            for t in &fits {
                let f = &t.fit;
                let sm = crate::core::stats::summarize_r(f.test_r.view());
                println!(
                    "sub-{}: voxels {}..{} of {}{}, test mean r {:.3}, top-10% r {:.3}; {} blocks of {} voxels, {:.1} s, {:.1} GFLOP; {} run(s) converted to the voxel cache; wrote {}",
                    t.subject,
                    f.voxels.0,
                    f.voxels.1,
                    f.n_voxels,
                    so.shard.map(|sh| format!(" (shard {}/{})", sh.k, sh.n)).unwrap_or_default(),
                    sm.mean_r,
                    sm.top10_mean_r,
                    f.n_blocks,
                    f.block_voxels,
                    t.seconds,
                    f.flops / 1e9,
                    f.runs_converted,
                    f.path.display()
                );
            }
            match crate::core::memory::peak_rss() {
                Some(p) => println!(
                    "peak resident memory: {} (budget {})",
                    human_bytes(p),
                    human_bytes(stream::process_budget(&ro, &so))
                ),
                None => println!("peak resident memory: not available on this system"),
            }
        }
        EncodeMode::Single => {
            let fits = encode::encode_dataset_with(
                &ds,
                &work,
                &a.features,
                &a.subjects,
                &plan()?,
                &ropts()?,
                &a.perm.options(),
            )?;
            for (s, f) in subs.iter().zip(&fits) {
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
    }
    Ok(())
}

fn print_merged(subs: &[&Subject], n: usize, merged: &[PathBuf]) {
    for (s, p) in subs.iter().zip(merged) {
        println!("sub-{}: {n} parts merged into {}", s.id, p.display());
    }
}

/// `brainscale maps`.
pub fn run_maps(a: MapsArgs) -> Result<()> {
    let (ds, work) = a.place.open()?;
    let rows = demo::maps_dataset(&ds, &work, &a.features, &a.subjects)?;
    let figs = a.figure.options()?;
    demo::maps_figures(&ds, &work, &a.features, &rows, &figs)?;
    print!("{}", demo::summary_table(&rows));
    println!(
        "maps in {}, summary in {}",
        work.join("maps").join(&a.features).display(),
        work.join("summary.csv").display()
    );
    Ok(())
}

/// `brainscale demo`.
pub fn run_demo(a: DemoArgs) -> Result<()> {
    let dataset = a
        .dataset
        .unwrap_or_else(|| PathBuf::from(format!("datasets/synth-{}", size_name(a.size))));
    crate::core::provenance::record_command(&a.out)?;
    let rows = demo::demo(&DemoOptions {
        decode: a.decode.flags(),
        size: a.size.into(),
        seed: a.seed,
        dataset,
        work: a.out.clone(),
        extractor: a.extractor.into(),
        pca: a.pca,
    })?;
    print!("{}", demo::summary_table(&rows));
    println!(
        "maps (r, r2, alpha, ceiling NIfTI + r_mosaic.png, r_statmap.png) in {}/maps, summary in {}/summary.csv",
        a.out.display(),
        a.out.display()
    );
    let rep = crate::study::report::write_report(&a.out, None)?;
    println!("report: {}", rep.path.display());
    Ok(())
}
