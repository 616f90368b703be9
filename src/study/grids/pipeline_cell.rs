//! The built-in bench cell, `[cell] kind = "pipeline"`: pretrain the cell's GPT-2 prior on
//! VQ-VAE codes for the cell's D tokens (to the nearest optimizer step), extract its hidden states from the dataset's
//! movies, align them to the TR grid (FIR delays) and encode every subject with cross-validated
//! ridge; the row gets the model's exact parameter counts, the final train and held-out loss,
//! and each subject's mean and top-10% test r (src/stats.rs `summarize_r`).
//!
//! ```toml
//! [cell]
//! kind = "pipeline"
//! dataset = "datasets/synth-medium"   # BIDS-like dataset (relative to where bench runs)
//! # tokenizer = "tokenizers/vq64"     # a trained tokenizer folder; else one is trained once
//! # [cell.vqvae] / vqvae = "vq.toml"  # ... with this VQ-VAE config (VideoGPT's by default)
//! tokenizer_steps = 2000              # and these settings (tokenizer_batch, _lr, _hop, _seed)
//! # pretrain_movies = ["movies/"]     # movie files/folders or *.codes.safetensors to
//! #                                   # pretrain on (default: the dataset's own movies)
//! clip_stride = 1                     # frame stride inside a clip (codes and features)
//! batch_size = 8                      # pretraining: batch_size, grad_accum, lr, min_lr,
//! lr = 3e-4                           # warmup_steps, weight_decay, grad_clip, eval_fraction,
//!                                     # eval_samples, checkpoint_every
//! layers = "last"                     # "last" | "middle" | "all" | [1, 2]
//! # layer_scores = true               # also encode each layer (0..=L) alone: r_layer:L columns
//! # layer_scores_precisions = ["fp32"] # ... only in cells of these precisions (default: all)
//! fir_delays = [1, 2, 3, 4]           # or lag = "hrf"
//! # alphas = [1.0, 10.0, 100.0]       # ridge alphas (default: 1 … 1e6, 10 log-spaced)
//! # ridge_device = "cuda"             # ridge on the GPU (torch backend); default CPU
//! # [cell.split]                      # held-out runs (default: each subject's last run)
//! device = "auto"                     # cpu | cuda | cuda:N | auto
//! # threads = 1                       # libtorch CPU threads (tiny models: 1 is fastest)
//! ```
//!
//! Data size: a pretraining *sample* is one clip's code sequence of L = t·h·w codes, of which
//! L − 1 are predicted (the unit of `brainscale pretrain --train-samples`). A cell with D tokens
//! trains on the first ⌈D / (L − 1)⌉ training clips (all of them if there are fewer; the row's
//! `epochs` then exceeds 1) for round(D / (batch_size · grad_accum · (L − 1))) steps (at least
//! one). The tokens actually trained are recorded (`tokens_trained`, within half a step of D);
//! the row's `tokens` and `flops` stay the grid's D, so iso-FLOP designs keep their budgets.
//!
//! Files: OUT/shared/ holds what every cell reuses (decoded frames, the trained tokenizer, the
//! pretraining code caches), prepared by the first cell under a file lock (concurrent local
//! cells and SLURM tasks wait for it). Each cell keeps its prior in OUT/cells/ID/prior
//! (checkpointed every `checkpoint_every` steps: a killed cell resumes from it) and its
//! features, design matrices and ridge results in OUT/cells/ID/work.
use crate::fmri::codes;
use crate::fmri::dataset::Dataset;
use crate::fmri::features::{ExtractorKind, FeaturesOptions, GptFeatureArgs};
use crate::fmri::pretrain;
use crate::fmri::tokenize::{self as vqvae, Tokenizer, TokenizerTrainConfig};
use crate::models::gpt::{PosEmbedding, Precision};
use crate::nn::{self as train, TrainConfig};
use crate::ridge::RidgeOptions;
use crate::study::grids::cell::{
    fnv1a, Cell, CellEnv, CellOutput, CellWork, ModelSpec, SubjectScore,
};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::study::grids::pipeline_config::{Layers, PipelineConfig};

/// The pipeline cell of one grid.
pub struct PipelineCell {
    cfg: PipelineConfig,
    dataset: PathBuf,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

impl PipelineCell {
    /// Checks the configuration and that the dataset opens, before any cell runs: `table` is
    /// the `[cell]` table of the grid file `grid_file`, whose cells encode `subjects` with
    /// `models`.
    pub fn new(
        table: &BTreeMap<String, toml::Value>,
        grid_file: &Path,
        subjects: &[String],
        models: &BTreeMap<String, ModelSpec>,
    ) -> Result<Self> {
        let mut cfg = PipelineConfig::from_table(table)
            .with_context(|| format!("grid file {}", grid_file.display()))?;
        let dataset = absolute(&cfg.dataset)?;
        let ds = Dataset::open(&dataset)
            .with_context(|| format!("[cell] dataset = {}", cfg.dataset.display()))?;
        // Subjects the grid lists must exist before hours of pretraining, not after.
        ds.select(subjects)
            .with_context(|| format!("axes.subjects of grid file {}", grid_file.display()))?;
        if let Some(t) = &cfg.tokenizer {
            let t = absolute(t)?;
            if !vqvae::TOKENIZER_FILES.iter().all(|f| t.join(f).exists()) {
                bail!(
                    "[cell] tokenizer = {}: not a trained tokenizer folder (needs {})",
                    t.display(),
                    vqvae::TOKENIZER_FILES.join(", ")
                );
            }
            cfg.tokenizer = Some(t);
        }
        cfg.pretrain_movies = cfg
            .pretrain_movies
            .iter()
            .map(|p| absolute(p))
            .collect::<Result<_>>()?;
        // Every model must fit the tokenizer's clips, checked now rather than after the
        // tokenizer is trained.
        let vq = match &cfg.tokenizer {
            Some(t) => Tokenizer::load(t, tch::Device::Cpu)?.model.cfg.clone(),
            None => cfg.vqvae_config()?,
        };
        let lat = vq.latent_shape();
        let l: i64 = lat.iter().product();
        for (name, m) in models {
            let g = m.gpt_config(name, true)?;
            if g.vocab < vq.n_codes || g.ctx < l - 1 {
                bail!(
                    "model '{name}': the tokenizer makes clips of {l} codes ({:?}) over {} ids, \
                     so the model needs ctx ≥ {} and vocab ≥ {}; it has ctx {} and vocab {}",
                    lat,
                    vq.n_codes,
                    l - 1,
                    vq.n_codes,
                    g.ctx,
                    g.vocab
                );
            }
            if let Some(ls) = g.latent_shape.filter(|_| g.pos == PosEmbedding::Factorized) {
                if ls != lat {
                    bail!(
                        "model '{name}': factorized positions over latent_shape {ls:?}, but the tokenizer's clips are {lat:?}"
                    );
                }
            }
        }
        Ok(Self { cfg, dataset })
    }
}

/// Pretraining inputs of the grid: movies to tokenize and ready code caches.
fn pretrain_inputs(cfg: &PipelineConfig, ds: &Dataset) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    if cfg.pretrain_movies.is_empty() {
        return Ok((ds.movies(), Vec::new()));
    }
    const VIDEO: &[&str] = &["mp4", "mkv", "avi", "mov", "webm", "mpg", "mpeg", "m4v"];
    let is_codes = |p: &Path| p.to_string_lossy().ends_with(".codes.safetensors");
    let is_movie = |p: &Path| {
        p.extension()
            .map(|e| VIDEO.contains(&e.to_string_lossy().to_lowercase().as_str()))
            .unwrap_or(false)
    };
    let (mut movies, mut code_files) = (Vec::new(), Vec::new());
    for p in &cfg.pretrain_movies {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("[cell] pretrain_movies: reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|q| is_codes(q) || is_movie(q))
                .collect();
            v.sort();
            if v.is_empty() {
                bail!(
                    "[cell] pretrain_movies: {} holds no movie files ({}) or *.codes.safetensors",
                    p.display(),
                    VIDEO.join(", ")
                );
            }
            for q in v {
                if is_codes(&q) {
                    code_files.push(q)
                } else {
                    movies.push(q)
                }
            }
        } else if !p.exists() {
            bail!("[cell] pretrain_movies: {} not found", p.display());
        } else if is_codes(p) {
            code_files.push(p.clone());
        } else {
            movies.push(p.clone());
        }
    }
    if !code_files.is_empty() && cfg.tokenizer.is_none() {
        bail!("[cell] pretrain_movies lists code caches: name the tokenizer that made them (tokenizer = DIR)");
    }
    Ok((movies, code_files))
}

/// What every cell of the grid shares.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Prepared {
    tokenizer: PathBuf,
    code_files: Vec<PathBuf>,
}

/// Holds an exclusive lock on `path` (flock: released when dropped or when the process dies,
/// so a killed run never leaves a stale lock).
fn lock(path: &Path) -> Result<std::fs::File> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    f.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(f)
}

fn hash_of(v: &serde_json::Value) -> String {
    format!("{:016x}", fnv1a(v.to_string().as_bytes()))
}

impl PipelineCell {
    fn decode_opts(&self, resolution: i64) -> crate::fmri::video::DecodeOptions {
        crate::fmri::video::DecodeOptions {
            fps: self.cfg.fps,
            size: Some(resolution as u32),
            ..Default::default()
        }
    }

    fn decode(
        &self,
        movies: &[PathBuf],
        frames: &Path,
        res: i64,
    ) -> Result<Vec<(String, crate::fmri::video::Frames)>> {
        crate::fmri::video::decode_all(movies, frames, &self.decode_opts(res))
    }

    /// Trains (or finds) the tokenizer and the pretraining code caches in OUT/shared, once per
    /// grid: the first cell does the work under the lock, the others find it done.
    fn prepare(&self, ds: &Dataset, shared: &Path, device: tch::Device) -> Result<Prepared> {
        let c = &self.cfg;
        let (movies, given_codes) = pretrain_inputs(c, ds)?;
        let (tok_dir, tok_train) = match &c.tokenizer {
            Some(t) => (t.clone(), None),
            None => {
                let vq = c.vqvae_config()?;
                let key = serde_json::json!({
                    "vqvae": vq, "steps": c.tokenizer_steps, "batch": c.tokenizer_batch,
                    "lr": c.tokenizer_lr, "hop": c.tokenizer_hop, "seed": c.tokenizer_seed,
                    "stride": c.clip_stride, "fps": c.fps, "movies": movies,
                });
                (
                    shared.join(format!("tokenizer-{}", hash_of(&key))),
                    Some(vq),
                )
            }
        };
        let key = serde_json::json!({
            "tokenizer": tok_dir, "movies": movies, "codes": given_codes,
            "stride": c.clip_stride, "hop": c.pretrain_hop, "fps": c.fps,
        });
        let code_dir = shared.join(format!("codes-{}", hash_of(&key)));
        let marker = code_dir.join("prepared.json");
        let ready = |p: &Prepared| p.code_files.iter().all(|f| f.exists());
        if let Ok(p) = crate::core::io::read_json::<Prepared>(&marker) {
            if ready(&p) {
                return Ok(p);
            }
        }
        let _guard = lock(&shared.join(".prepare.lock"))?;
        // Taken after the file lock, never before it (no thread waits for one holding the other).
        let _turn = torch_turn();
        // Another cell may have finished while this one waited.
        if let Ok(p) = crate::core::io::read_json::<Prepared>(&marker) {
            if ready(&p) {
                return Ok(p);
            }
        }
        let frames_dir = shared.join("frames");
        if let Some(vq) = &tok_train {
            if movies.is_empty() {
                bail!("[cell] no movies to train the tokenizer on (pretrain_movies lists only code caches; give tokenizer = DIR)");
            }
            let frames: Vec<crate::fmri::video::Frames> = self
                .decode(&movies, &frames_dir, vq.resolution)?
                .into_iter()
                .map(|(_, f)| f)
                .collect();
            let tc = TokenizerTrainConfig {
                steps: c.tokenizer_steps,
                batch_size: c.tokenizer_batch,
                lr: c.tokenizer_lr,
                seed: c.tokenizer_seed,
                frame_stride: c.clip_stride,
                hop: c.tokenizer_hop,
                checkpoint_every: 200,
            };
            vqvae::train_tokenizer(vq, &tc, &frames, &tok_dir, device, true)
                .context("training the grid's tokenizer")?;
        }
        let tok = Tokenizer::load(&tok_dir, device)?;
        let tcfg = tok.model.cfg.clone();
        let mut files = given_codes.clone();
        if !movies.is_empty() {
            let decoded = self.decode(&movies, &frames_dir, tcfg.resolution)?;
            let span = (tcfg.clip_len as usize - 1) * c.clip_stride + 1;
            files.extend(vqvae::tokenize_movies(
                &tok,
                &decoded,
                &code_dir,
                c.clip_stride,
                c.pretrain_hop.unwrap_or(span),
            )?);
        }
        for f in &given_codes {
            let cf = codes::CodeFile::load(f)?;
            if cf.n_codes() != tcfg.n_codes || cf.latent_shape() != tcfg.latent_shape() {
                bail!(
                    "{}: codes of shape {:?} over {} codes do not come from tokenizer {} ({:?}, {} codes)",
                    f.display(),
                    cf.latent_shape(),
                    cf.n_codes(),
                    tok_dir.display(),
                    tcfg.latent_shape(),
                    tcfg.n_codes
                );
            }
        }
        // The dataset's movies at the tokenizer's resolution, so cells only read the cache.
        self.decode(&ds.movies(), &frames_dir, tcfg.resolution)?;
        let p = Prepared {
            tokenizer: tok_dir,
            code_files: files,
        };
        crate::core::io::write_json(&marker, &p)?;
        Ok(p)
    }
}

/// libtorch's RNG is process-global, and building a module (to train it, or before loading
/// its weights) draws from it: cells run as parallel threads take turns at torch work, so a
/// prior's initial weights never depend on what another cell did meanwhile. Align and encode
/// (most of a cell's CPU time after pretraining) still overlap; the slurm executor runs cells
/// as separate processes.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torch_turn() -> std::sync::MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// Exactly how a cell's D tokens are trained (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlan {
    /// Predicted tokens per clip (L − 1).
    pub tokens_per_clip: u64,
    pub train_clips: u64,
    pub steps: u64,
    pub tokens_trained: u64,
}

/// D tokens → clips and steps: ⌈D / (L − 1)⌉ clips (at most `available`) and
/// round(D / (batch · accum · (L − 1))) steps (at least one).
pub fn data_plan(
    tokens: u64,
    clip_codes: u64,
    available: u64,
    batch: u64,
    accum: u64,
) -> Result<DataPlan> {
    if clip_codes < 2 {
        bail!("clips of {clip_codes} codes leave nothing to predict");
    }
    if available == 0 {
        bail!("no pretraining clips (the movies are shorter than one clip, or eval_fraction holds them all out)");
    }
    let per = clip_codes - 1;
    let per_step = batch * accum * per;
    // The nearest whole number of steps: within half a step of D.
    let steps = ((tokens + per_step / 2) / per_step).max(1);
    Ok(DataPlan {
        tokens_per_clip: per,
        train_clips: tokens.div_ceil(per).clamp(1, available),
        steps,
        tokens_trained: steps * per_step,
    })
}

fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cpu => "cpu".into(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

impl CellWork for PipelineCell {
    fn run(&self, env: &CellEnv) -> Result<CellOutput> {
        let c = &self.cfg;
        let cell: &Cell = env.cell;
        if let Some(n) = c.threads {
            // Process-wide; every cell of a grid asks for the same number.
            tch::set_num_threads(n as i32);
        }
        let precision: Precision = serde_json::from_value(serde_json::json!(cell.precision))
            .with_context(|| format!("precision '{}'", cell.precision))?;
        train::reexec_for_precision(precision)?; // fp32 must not run with TF32 forced on
        let device = train::parse_device(&c.device).context("[cell] device")?;
        let ds = Dataset::open(&self.dataset)?;
        let shared = env.out_dir.join("shared");
        let t0 = Instant::now();
        let prep = self.prepare(&ds, &shared, device)?;
        let prepare_s = t0.elapsed().as_secs_f64();

        // Pretrain.
        let t0 = Instant::now();
        let mut gcfg = cell.model.gpt_config(&cell.model_name, true)?;
        if gcfg.name.is_empty() {
            gcfg.name = cell.model_name.clone();
        }
        let mut data = codes::load_code_data(&prep.code_files, c.eval_fraction)?;
        let l = data.latent_shape.iter().product::<i64>() as u64;
        let plan = data_plan(
            cell.tokens,
            l,
            data.train.size()[0] as u64,
            c.batch_size as u64,
            c.grad_accum as u64,
        )?;
        data.train = data.train.narrow(0, 0, plan.train_clips as i64);
        let tcfg = TrainConfig {
            seed: cell.seed,
            precision,
            batch_size: c.batch_size,
            grad_accum: c.grad_accum,
            max_steps: plan.steps,
            lr: c.lr,
            min_lr: c.min_lr.unwrap_or(c.lr / 10.0),
            warmup_steps: c.warmup_steps.unwrap_or((plan.steps / 20).max(1)),
            weight_decay: c.weight_decay,
            grad_clip: c.grad_clip,
            eval_every: 0,
            eval_samples: c.eval_samples,
            checkpoint_every: c.checkpoint_every,
            ..TrainConfig::default()
        };
        tcfg.validate().context("[cell] pretraining settings")?;
        let prior = env.dir.join("prior");
        let work = env.dir.join("work");
        // A prior (and features) from another configuration of this cell is not resumed.
        let fp_path = env.dir.join("pretrain.json");
        let fp = serde_json::json!({
            "model": gcfg, "train": tcfg, "plan": plan, "tokenizer": prep.tokenizer,
            "codes": prep.code_files, "eval_fraction": c.eval_fraction,
        });
        if crate::core::io::read_json::<serde_json::Value>(&fp_path)
            .ok()
            .as_ref()
            != Some(&fp)
        {
            for d in [&prior, &work] {
                if d.exists() {
                    std::fs::remove_dir_all(d)
                        .with_context(|| format!("removing stale {}", d.display()))?;
                }
            }
            crate::core::io::write_json(&fp_path, &fp)?;
        }
        let turn = torch_turn();
        let s = pretrain::train_prior(&gcfg, &tcfg, &data, &prior, device, true)
            .with_context(|| format!("pretraining {}", cell.id))?;
        pretrain::copy_tokenizer(&prep.tokenizer, &prior)?;
        let pretrain_s = t0.elapsed().as_secs_f64();

        // Features → align → encode.
        let t0 = Instant::now();
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        share_frames(&work, &shared.join("frames"))?;
        let tok_res = Tokenizer::load(&prep.tokenizer, tch::Device::Cpu)?
            .model
            .cfg
            .resolution;
        let fopts = FeaturesOptions {
            extractor: ExtractorKind::Gpt,
            pca: c.pca,
            fps: c.fps,
            size: Some(tok_res as u32),
            decode: Default::default(),
            gpt: Some(GptFeatureArgs {
                model: Some(prior.clone()),
                layers: c.layers.resolve(gcfg.n_layer as usize)?,
                clip_stride: c.clip_stride,
                hop: c.extract_hop,
                device: c.device.clone(),
            }),
        };
        let fdir = crate::fmri::features::run_stage(&ds, &work, &fopts)?;
        drop(turn);
        let feat = fdir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::fmri::align::align_dataset(&ds, &work, &feat, &c.align_options()?)?;
        let features_s = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let ropts = RidgeOptions {
            alphas: c
                .alphas
                .clone()
                .unwrap_or_else(crate::ridge::default_alphas),
            progress: false,
            ..RidgeOptions::default()
        };
        let subs = ds.select(&cell.subjects)?;
        let fits = crate::fmri::encode::encode_dataset(
            &ds,
            &work,
            &feat,
            &cell.subjects,
            &c.split,
            &ropts,
        )?;
        let mut subjects = BTreeMap::new();
        for (i, (sub, fit)) in subs.iter().zip(&fits).enumerate() {
            let r = crate::core::stats::summarize_r(fit.view());
            // Keys as the grid lists them (so the bench finds every subject), else sub-ID.
            let key = cell
                .subjects
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("sub-{}", sub.id));
            subjects.insert(
                key,
                SubjectScore {
                    mean_r: r.mean_r,
                    top10_r: r.top10_mean_r,
                },
            );
        }
        let encode_s = t0.elapsed().as_secs_f64();
        let mut extra = BTreeMap::new();
        let layers_here = c.layer_scores
            && c.layer_scores_precisions
                .as_ref()
                .is_none_or(|ps| ps.contains(&cell.precision));
        if layers_here {
            let t0 = Instant::now();
            let main_layers = c.layers.resolve(gcfg.n_layer as usize)?;
            for l in 0..=gcfg.n_layer as usize {
                let r = if main_layers == [l] {
                    subjects.values().map(|s| s.mean_r).sum::<f64>() / subjects.len() as f64
                } else {
                    let lw = env.dir.join(format!("layer-{l}"));
                    self.layer_r(&ds, &lw, &shared, &fopts, l, &cell.subjects, &ropts)
                        .with_context(|| format!("{}: layer {l} alone", cell.id))?
                };
                extra.insert(format!("r_layer:{l}"), serde_json::json!(r));
            }
            extra.insert(
                "layers_s".into(),
                serde_json::json!(t0.elapsed().as_secs_f64()),
            );
        }

        let pc = gcfg.param_counts();
        let clips_total = data.train.size()[0] as f64;
        for (k, v) in [
            ("tokens_trained", serde_json::json!(s.tokens)),
            ("train_steps", serde_json::json!(s.steps)),
            ("train_clips", serde_json::json!(plan.train_clips)),
            ("tokens_per_clip", serde_json::json!(plan.tokens_per_clip)),
            (
                "epochs",
                serde_json::json!(s.tokens as f64 / (clips_total * plan.tokens_per_clip as f64)),
            ),
            ("tokens_per_s", serde_json::json!(s.tokens_per_s)),
            ("mfu", serde_json::json!(s.mfu)),
            ("tokenizer", serde_json::json!(prep.tokenizer)),
            ("features", serde_json::json!(feat)),
            ("prepare_s", serde_json::json!(prepare_s)),
            ("pretrain_s", serde_json::json!(pretrain_s)),
            ("features_s", serde_json::json!(features_s)),
            ("encode_s", serde_json::json!(encode_s)),
        ] {
            extra.insert(k.to_string(), v);
        }
        Ok(CellOutput {
            train_loss: Some(s.final_train_loss),
            eval_loss: s.final_eval_loss,
            device: Some(device_name(device)),
            n_params: Some(pc.non_embedding),
            n_params_total: Some(pc.total),
            n_params_matmul: Some(pc.matmul),
            subjects,
            extra,
        })
    }
}

impl PipelineCell {
    /// Mean over subjects of the mean test r of one layer's features alone, worked in `work`
    /// (features, designs and fits of that layer; rerun only when their inputs change).
    #[allow(clippy::too_many_arguments)]
    fn layer_r(
        &self,
        ds: &Dataset,
        work: &Path,
        shared: &Path,
        fopts: &FeaturesOptions,
        layer: usize,
        subjects: &[String],
        ropts: &RidgeOptions,
    ) -> Result<f64> {
        std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        share_frames(work, &shared.join("frames"))?;
        let mut fo = fopts.clone();
        if let Some(g) = fo.gpt.as_mut() {
            g.layers = vec![layer];
        }
        let turn = torch_turn();
        let fdir = crate::fmri::features::run_stage(ds, work, &fo)?;
        drop(turn);
        let feat = fdir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::fmri::align::align_dataset(ds, work, &feat, &self.cfg.align_options()?)?;
        let fits =
            crate::fmri::encode::encode_dataset(ds, work, &feat, subjects, &self.cfg.split, ropts)?;
        let k = fits.len().max(1) as f64;
        Ok(fits
            .iter()
            .map(|f| crate::core::stats::summarize_r(f.view()).mean_r)
            .sum::<f64>()
            / k)
    }
}

/// Points WORK/frames (the features stage's decode cache) at the grid's shared cache.
fn share_frames(work: &Path, shared: &Path) -> Result<()> {
    let link = work.join("frames");
    if link.exists() || link.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::fs::create_dir_all(shared).with_context(|| format!("creating {}", shared.display()))?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(shared, &link)
        .with_context(|| format!("linking {} to {}", link.display(), shared.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_clips_and_steps() {
        // 128-code clips predict 127 tokens; batch 8 → 1016 tokens per step.
        let p = data_plan(2032, 128, 1000, 8, 1).unwrap();
        assert_eq!((p.train_clips, p.steps, p.tokens_trained), (16, 2, 2032));
        let p = data_plan(2540, 128, 1000, 8, 1).unwrap();
        assert_eq!((p.train_clips, p.steps, p.tokens_trained), (20, 3, 3048));
        let p = data_plan(2539, 128, 1000, 8, 1).unwrap();
        assert_eq!((p.steps, p.tokens_trained), (2, 2032));
        assert_eq!(data_plan(10, 128, 1000, 8, 1).unwrap().steps, 1);
        // Fewer clips than D needs: all of them, several epochs.
        let p = data_plan(1_000_000, 128, 50, 4, 2).unwrap();
        assert_eq!(p.train_clips, 50);
        assert_eq!(p.steps, 984); // 1e6 / 1016 = 984.3
        assert!(data_plan(10, 1, 5, 1, 1).is_err());
        assert!(data_plan(10, 16, 0, 1, 1).is_err());
    }

    #[test]
    fn layers_resolve() {
        assert_eq!(Layers::Named("last".into()).resolve(4).unwrap(), vec![4]);
        assert_eq!(Layers::Named("middle".into()).resolve(3).unwrap(), vec![2]);
        assert_eq!(Layers::Named("all".into()).resolve(2).unwrap(), vec![1, 2]);
        assert!(Layers::List(vec![5]).resolve(4).is_err());
        assert!(Layers::Named("first".into()).resolve(4).is_err());
    }

    #[test]
    fn config_defaults_and_errors() {
        let t: BTreeMap<String, toml::Value> =
            toml::from_str("dataset = \"d\"\nlayers = [1, 2]\n").unwrap();
        let c = PipelineConfig::from_table(&t).unwrap();
        assert_eq!(c.fir_delays, vec![1, 2, 3, 4]);
        assert_eq!(c.layers, Layers::List(vec![1, 2]));
        let bad: BTreeMap<String, toml::Value> =
            toml::from_str("dataset = \"d\"\nbatchsize = 4\n").unwrap();
        let e = format!("{:#}", PipelineConfig::from_table(&bad).unwrap_err());
        assert!(e.contains("batchsize"), "{e}");
        let bad: BTreeMap<String, toml::Value> =
            toml::from_str("dataset = \"d\"\nlag = \"boxcar\"\n").unwrap();
        assert!(PipelineConfig::from_table(&bad).is_err());
    }
}
