//! The tokenize stage of the fMRI track: movies → VQ-VAE code caches (`brainscale tokenizer
//! train`, `brainscale tokenizer encode`). Frames are resized (shorter side) and centre-cropped to the
//! model's resolution and scaled to [-0.5, 0.5]; clips of `clip_len` frames (every
//! `frame_stride`-th frame) start every `hop` frames. The model is [`crate::models::vqvae`];
//! it trains through the engine ([`crate::nn`]).
use crate::core::io;
use crate::fmri::codes::CodeFile;
use crate::fmri::video::{FrameCache, Frames};
use crate::models::vqvae::{Resize, VqVae, VqVaeConfig};
use crate::models::ModelConfig;
use crate::nn::{self, parse_device, Data, FitOptions, TrainConfig, Trainer};
use anyhow::{anyhow, bail, Context, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn as tnn, Device, Kind, Tensor};

/// Files that make up a tokenizer folder (the engine checkpoint in `train/` is only needed to
/// train it further).
pub const TOKENIZER_FILES: [&str; 2] = ["vqvae.safetensors", "vqvae.json"];

/// Frames [T, H, W, 3] u8 → pixels [3, T, R, R] f32 in [-0.5, 0.5]: shorter side resized to R
/// (antialiased bilinear), centre crop.
pub fn preprocess(frames: &Frames, resolution: i64, device: Device) -> Result<Tensor> {
    let (t, h, w, c) = frames.data.dim();
    if c != 3 || t == 0 || h == 0 || w == 0 {
        bail!(
            "frames must be [T>0, H>0, W>0, 3], got {:?}",
            frames.data.dim()
        );
    }
    // Chunks of ~64 MB of frames, so a long full-resolution movie never sits on the device
    // as floats.
    let chunk = (64 * 1024 * 1024 / (h * w * 3)).clamp(1, t);
    preprocess_chunked(frames, resolution, device, chunk)
}

/// Frames → pixels [3, T, R, R] in [-0.5, 0.5] with the given resize: [`Resize::Antialiased`]
/// is [`preprocess`]; [`Resize::Videogpt`] is VideoGPT's `data.preprocess` (wilson1yan/VideoGPT
/// `videogpt/data.py`): pixels / 255, plain bilinear (align_corners = false) so that the shorter
/// side is R and the longer ceil(side·R/shorter), centre crop at ((h − R) / 2, (w − R) / 2),
/// minus 0.5, with the same libtorch kernel and order of operations, so the pixels are the
/// reference's bit for bit.
pub fn preprocess_with(
    frames: &Frames,
    resolution: i64,
    resize: Resize,
    device: Device,
) -> Result<Tensor> {
    match resize {
        Resize::Antialiased => preprocess(frames, resolution, device),
        Resize::Videogpt => {
            let (t, h, w, c) = frames.data.dim();
            if c != 3 || t == 0 || h == 0 || w == 0 {
                bail!(
                    "frames must be [T>0, H>0, W>0, 3], got {:?}",
                    frames.data.dim()
                );
            }
            let chunk = (64 * 1024 * 1024 / (h * w * 3)).clamp(1, t);
            let data = frames.data.as_standard_layout();
            let data = data.as_slice().unwrap();
            let (h, w, r) = (h as i64, w as i64, resolution);
            let frame_bytes = (h * w * 3) as usize;
            let scale = r as f64 / h.min(w) as f64;
            let (nh, nw) = if h < w {
                (r, (w as f64 * scale).ceil() as i64)
            } else {
                ((h as f64 * scale).ceil() as i64, r)
            };
            let mut out = Vec::new();
            for start in (0..t).step_by(chunk) {
                let n = chunk.min(t - start);
                let x = Tensor::from_slice(&data[start * frame_bytes..(start + n) * frame_bytes])
                    .view([n as i64, h, w, 3])
                    .to_device(device)
                    .permute([0, 3, 1, 2])
                    .to_kind(Kind::Float)
                    / 255.0;
                let x = x.upsample_bilinear2d([nh, nw], false, None, None);
                let (oy, ox) = ((nh - r) / 2, (nw - r) / 2);
                out.push(x.narrow(2, oy, r).narrow(3, ox, r) - 0.5);
            }
            Ok(Tensor::cat(&out, 0).permute([1, 0, 2, 3]).contiguous())
        }
    }
}

/// [`preprocess`] `chunk` frames at a time (the result does not depend on `chunk`).
pub fn preprocess_chunked(
    frames: &Frames,
    resolution: i64,
    device: Device,
    chunk: usize,
) -> Result<Tensor> {
    let (t, h, w, _) = frames.data.dim();
    let data = frames.data.as_standard_layout();
    let data = data.as_slice().unwrap();
    let (h, w) = (h as i64, w as i64);
    let frame_bytes = (h * w * 3) as usize;
    let chunk = chunk.max(1);
    let mut out = Vec::new();
    for start in (0..t).step_by(chunk) {
        let n = chunk.min(t - start);
        let x = Tensor::from_slice(&data[start * frame_bytes..(start + n) * frame_bytes])
            .view([n as i64, h, w, 3])
            .to_device(device)
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float);
        let x = if h == resolution && w == resolution {
            x
        } else {
            let scale = resolution as f64 / h.min(w) as f64;
            let (nh, nw) = (
                ((h as f64 * scale).round() as i64).max(resolution),
                ((w as f64 * scale).round() as i64).max(resolution),
            );
            let x = x.internal_upsample_bilinear2d_aa([nh, nw], false, None, None);
            let (oy, ox) = ((nh - resolution) / 2, (nw - resolution) / 2);
            x.narrow(2, oy, resolution).narrow(3, ox, resolution)
        };
        out.push((x / 255.0 - 0.5).clamp(-0.5, 0.5));
    }
    Ok(Tensor::cat(&out, 0).permute([1, 0, 2, 3]).contiguous())
}

/// Clip starts in frames: clips of `clip_len` frames taken every `frame_stride` frames start
/// every `hop` frames; only clips that fit inside the movie are cut.
pub fn clip_starts(
    n_frames: usize,
    clip_len: usize,
    frame_stride: usize,
    hop: usize,
) -> Vec<usize> {
    let span = (clip_len - 1) * frame_stride + 1;
    if n_frames < span || hop == 0 {
        return Vec::new();
    }
    (0..=n_frames - span).step_by(hop).collect()
}

/// Centre time (s) of the clip starting at frame `start`: the middle of the interval from the
/// first frame's onset to the last frame's offset.
pub fn clip_centre(frames: &Frames, start: usize, clip_len: usize, frame_stride: usize) -> f64 {
    let last = start + (clip_len - 1) * frame_stride;
    0.5 * (frames.times[start] + frames.times[last] + 1.0 / frames.fps)
}

/// Stacks clips [N, 3, clip_len, R, R] of preprocessed pixels [3, T, R, R].
pub fn cut_clips(
    pixels: &Tensor,
    starts: &[usize],
    clip_len: usize,
    frame_stride: usize,
) -> Tensor {
    let dev = pixels.device();
    let idx: Vec<i64> = starts
        .iter()
        .flat_map(|&s| (0..clip_len).map(move |i| (s + i * frame_stride) as i64))
        .collect();
    let sel = pixels.index_select(1, &Tensor::from_slice(&idx).to_device(dev));
    let s = sel.size();
    sel.view([s[0], starts.len() as i64, clip_len as i64, s[2], s[3]])
        .permute([1, 0, 2, 3, 4])
}

/// A tokenizer loaded from its folder.
pub struct Tokenizer {
    pub vs: tnn::VarStore,
    pub model: VqVae,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenizerMeta {
    config: VqVaeConfig,
    /// Steps trained so far (a later run with more steps resumes from here).
    steps: u64,
    seed: u64,
    /// None for an imported tokenizer (no training here); JSON null.
    final_recon_loss: Option<f64>,
    final_perplexity: Option<f64>,
    /// Optimizer updates taken (Adam bias correction) and every step's reconstruction loss.
    #[serde(default)]
    adam_t: u64,
    #[serde(default)]
    losses: Vec<f64>,
    /// The checkpoint an imported tokenizer came from (`tokenizer import`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    imported_from: Option<String>,
}

/// `vqvae.json` of a tokenizer folder. Errors: not a tokenizer folder, naming it; a file
/// (such as a VideoGPT `.ckpt`) is told to go through `tokenizer import` first.
fn read_meta(dir: &Path) -> Result<TokenizerMeta> {
    if dir.is_file() {
        bail!(
            "{} is a file, not a tokenizer folder: import a VideoGPT checkpoint first with \
             `brainscale tokenizer import {} --out DIR`, then give DIR",
            dir.display(),
            dir.display()
        );
    }
    io::read_json(&dir.join("vqvae.json")).with_context(|| {
        format!(
            "{} is not a tokenizer folder (from `brainscale tokenizer train` or `tokenizer \
             import`)",
            dir.display()
        )
    })
}

impl Tokenizer {
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let meta = read_meta(dir)?;
        meta.config
            .validate()
            .with_context(|| format!("{}: invalid VQ-VAE config", dir.display()))?;
        let mut vs = tnn::VarStore::new(device);
        let model = VqVae::new(&vs.root(), &meta.config)?;
        let w = dir.join("vqvae.safetensors");
        vs.load(&w)
            .map_err(|e| anyhow!("loading {}: {e}", w.display()))?;
        vs.freeze();
        Ok(Self {
            vs,
            model,
            dir: dir.to_path_buf(),
        })
    }

    /// Codes of every clip of `frames`, in batches: [clips, t, h, w] and clip centre times.
    pub fn tokenize(
        &self,
        frames: &Frames,
        frame_stride: usize,
        hop: usize,
        batch: usize,
    ) -> Result<(Tensor, Vec<f64>)> {
        self.tokenize_by(
            frames.len(),
            &frames.times,
            frames.fps,
            |first, last| {
                Ok(Frames {
                    data: frames
                        .data
                        .slice(ndarray::s![first..=last, .., .., ..])
                        .to_owned(),
                    times: frames.times.slice(ndarray::s![first..=last]).to_owned(),
                    fps: frames.fps,
                    end: None,
                })
            },
            frame_stride,
            hop,
            batch,
        )
    }

    /// [`Tokenizer::tokenize`] reading the frames from a frame cache batch by batch: only one
    /// batch's frames are in memory, so memory does not grow with the movie. The codes are
    /// those of the in-memory path (the same frames go through the same steps).
    pub fn tokenize_cache(
        &self,
        cache: &mut FrameCache,
        frame_stride: usize,
        hop: usize,
        batch: usize,
    ) -> Result<(Tensor, Vec<f64>)> {
        let (times, fps) = (cache.times.clone(), cache.fps);
        self.tokenize_by(
            cache.len(),
            &times,
            fps,
            |first, last| cache.read(first..last + 1),
            frame_stride,
            hop,
            batch,
        )
    }

    /// The clip loop of both paths: `read(first, last)` gives frames first..=last.
    #[allow(clippy::too_many_arguments)]
    fn tokenize_by(
        &self,
        n_frames: usize,
        times: &ndarray::Array1<f64>,
        fps: f64,
        mut read: impl FnMut(usize, usize) -> Result<Frames>,
        frame_stride: usize,
        hop: usize,
        batch: usize,
    ) -> Result<(Tensor, Vec<f64>)> {
        let c = &self.model.cfg;
        let len = c.clip_len as usize;
        let starts = clip_starts(n_frames, len, frame_stride, hop);
        if starts.is_empty() {
            bail!(
                "the movie has {} frames; a clip needs {} ({} frames every {})",
                n_frames,
                (len - 1) * frame_stride + 1,
                len,
                frame_stride
            );
        }
        let mut out = Vec::new();
        for chunk in starts.chunks(batch.max(1)) {
            // Only the frames of this batch's clips are read and preprocessed (per frame, so
            // the pixels are the same as the whole movie's): memory never exceeds one batch.
            let (first, last) = (chunk[0], chunk[chunk.len() - 1] + (len - 1) * frame_stride);
            let part = read(first, last)?;
            let pixels = preprocess_with(&part, c.resolution, c.resize, self.vs.device())?;
            let local: Vec<usize> = chunk.iter().map(|s| s - first).collect();
            out.push(
                self.model
                    .encode(&cut_clips(&pixels, &local, len, frame_stride))?
                    .to_device(Device::Cpu),
            );
        }
        let times = starts
            .iter()
            .map(|&s| {
                let last = s + (len - 1) * frame_stride;
                0.5 * (times[s] + times[last] + 1.0 / fps)
            })
            .collect();
        Ok((Tensor::cat(&out, 0), times))
    }
}

/// Training settings of the tokenizer.
#[derive(Debug, Clone)]
pub struct TokenizerTrainConfig {
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// Frame subsampling inside a clip and hop between training clips.
    pub frame_stride: usize,
    pub hop: usize,
    /// Save the tokenizer (and optimizer) every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
}

/// Clips [n, 3, T, R, R] as training data: seeded random rows; no held-out set.
struct Clips(Tensor);

impl Data<Tensor> for Clips {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<Tensor> {
        let n = self.0.size()[0];
        let rows: Vec<i64> = (0..batch_size).map(|_| rng.gen_range(0..n)).collect();
        Ok(self
            .0
            .index_select(0, &Tensor::from_slice(&rows))
            .to_device(device))
    }

    fn eval_len(&self) -> usize {
        0
    }

    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<Tensor> {
        Ok(self.0.narrow(0, start as i64, len as i64).to_device(device))
    }
}

/// Clips read from frame caches as batches are drawn: the same clips, in the same order and
/// with the same pixels as [`Clips`] built from the decoded movies (preprocessing is per
/// frame), so training gives the same weights, while memory holds one batch, not the movies.
struct CacheClips {
    caches: Vec<std::cell::RefCell<FrameCache>>,
    /// (cache, first frame) of each clip: movie by movie, in [`clip_starts`] order.
    clips: Vec<(usize, usize)>,
    resolution: i64,
    len: usize,
    stride: usize,
}

impl CacheClips {
    fn open(caches: &[PathBuf], cfg: &VqVaeConfig, tc: &TokenizerTrainConfig) -> Result<Self> {
        let len = cfg.clip_len as usize;
        let mut opened = vec![];
        let mut clips = vec![];
        for p in caches {
            let fc = FrameCache::open(p)?;
            let starts = clip_starts(fc.len(), len, tc.frame_stride, tc.hop);
            if !starts.is_empty() {
                clips.extend(starts.into_iter().map(|s| (opened.len(), s)));
                opened.push(std::cell::RefCell::new(fc));
            }
        }
        Ok(Self {
            caches: opened,
            clips,
            resolution: cfg.resolution,
            len,
            stride: tc.frame_stride,
        })
    }

    /// Clips `rows` as one batch [n, 3, T, R, R] on `device`.
    fn batch(&self, rows: impl Iterator<Item = usize>, device: Device) -> Result<Tensor> {
        let span = (self.len - 1) * self.stride + 1;
        let mut out = vec![];
        for r in rows {
            let (c, s) = self.clips[r];
            let f = self.caches[c].borrow_mut().read(s..s + span)?;
            let px = preprocess(&f, self.resolution, Device::Cpu)?;
            out.push(cut_clips(&px, &[0], self.len, self.stride));
        }
        Ok(Tensor::cat(&out, 0).to_device(device))
    }
}

impl Data<Tensor> for CacheClips {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<Tensor> {
        // The draws of `Clips::train_batch` (an i64 range), so both give the same rows.
        let n = self.clips.len() as i64;
        let rows: Vec<i64> = (0..batch_size).map(|_| rng.gen_range(0..n)).collect();
        self.batch(rows.into_iter().map(|r| r as usize), device)
    }

    fn eval_len(&self) -> usize {
        0
    }

    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<Tensor> {
        self.batch(start..start + len, device)
    }
}

/// Trains a VQ-VAE on clips cut from `movies` (already decoded) through the engine
/// ([`crate::nn`]: AdamW β = (0.9, 0.999), constant learning rate, no weight decay, as
/// VideoGPT). Engine checkpoints go to `out/train/` every `checkpoint_every` steps; at the end
/// the tokenizer itself is written as `vqvae.safetensors` and `vqvae.json` in `out`. A folder
/// whose checkpoint holds fewer steps of the same config and seed is resumed (bit for bit on
/// CPU: batches and codebook restarts are seeded per step); one that holds `steps` is returned
/// as is. Returns the reconstruction loss of every step.
pub fn train_tokenizer(
    cfg: &VqVaeConfig,
    tc: &TokenizerTrainConfig,
    movies: &[Frames],
    out: &Path,
    device: Device,
    progress: bool,
) -> Result<Vec<f64>> {
    if let Some(done) = finished(cfg, tc, out)? {
        return Ok(done);
    }
    let len = cfg.clip_len as usize;
    let mut clips = Vec::new();
    for f in movies {
        let starts = clip_starts(f.len(), len, tc.frame_stride, tc.hop);
        if !starts.is_empty() {
            clips.push(cut_clips(
                &preprocess(f, cfg.resolution, Device::Cpu)?,
                &starts,
                len,
                tc.frame_stride,
            ));
        }
    }
    if clips.is_empty() {
        bail!(
            "no movie is long enough for one {len}-frame clip at frame stride {}",
            tc.frame_stride
        );
    }
    let data = Clips(Tensor::cat(&clips, 0));
    train_on(cfg, tc, &data, out, device, progress)
}

/// [`train_tokenizer`] on the movies in frame caches (paths from
/// [`crate::fmri::video::decode_all_to_cache`], decoded at the model's resolution): clips are
/// read from the caches as batches are drawn, so memory holds one batch, not the movies; the
/// same clips and draws as the in-memory path, hence the same losses and weights.
pub fn train_tokenizer_caches(
    cfg: &VqVaeConfig,
    tc: &TokenizerTrainConfig,
    caches: &[PathBuf],
    out: &Path,
    device: Device,
    progress: bool,
) -> Result<Vec<f64>> {
    if let Some(done) = finished(cfg, tc, out)? {
        return Ok(done);
    }
    let data = CacheClips::open(caches, cfg, tc)?;
    if data.clips.is_empty() {
        bail!(
            "no movie is long enough for one {}-frame clip at frame stride {}",
            cfg.clip_len,
            tc.frame_stride
        );
    }
    train_on(cfg, tc, &data, out, device, progress)
}

/// Checks the settings, and returns the losses of a folder that already holds `tc.steps` steps
/// of this config and seed (None: train). Errors: bad settings, a folder of another config.
fn finished(cfg: &VqVaeConfig, tc: &TokenizerTrainConfig, out: &Path) -> Result<Option<Vec<f64>>> {
    cfg.validate()?;
    if tc.steps == 0 || tc.batch_size == 0 || !(tc.lr > 0.0) {
        bail!("tokenizer training needs positive steps, batch size and learning rate");
    }
    let meta_path = out.join("vqvae.json");
    if meta_path.exists() {
        let m: TokenizerMeta = io::read_json(&meta_path)?;
        if m.config != *cfg || m.seed != tc.seed {
            bail!(
                "{} holds a tokenizer of another config or seed; use another --out",
                out.display()
            );
        }
        if m.steps >= tc.steps {
            return Ok(Some(m.losses));
        }
    }
    Ok(None)
}

/// The training loop of both paths; writes the tokenizer folder.
fn train_on(
    cfg: &VqVaeConfig,
    tc: &TokenizerTrainConfig,
    data: &dyn Data<Tensor>,
    out: &Path,
    device: Device,
    progress: bool,
) -> Result<Vec<f64>> {
    let meta_path = out.join("vqvae.json");
    let ocfg = TrainConfig {
        seed: tc.seed,
        batch_size: tc.batch_size,
        max_steps: tc.steps,
        lr: tc.lr,
        min_lr: tc.lr,
        warmup_steps: 0,
        weight_decay: 0.0,
        beta1: 0.9,
        beta2: 0.999,
        grad_clip: 0.0,
        eval_every: 0,
        checkpoint_every: tc.checkpoint_every,
        ..TrainConfig::default()
    };
    let ck_dir = out.join("train");
    let mut t = Trainer::<VqVae>::open(&ck_dir, cfg, &ocfg, device, |_, _| Ok(()))?;
    let opts = FitOptions {
        progress,
        label: "tokenizer steps".into(),
        ..FitOptions::default()
    };
    nn::fit(&mut t, data, &ck_dir, &opts)?;
    let rows = nn::read_loss_csv(&ck_dir.join("loss.csv"), t.step)?;
    let part = |r: &nn::LossRow, name: &str| {
        r.parts
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |p| p.1)
    };
    let losses: Vec<f64> = rows.iter().map(|r| part(r, "recon")).collect();
    io::write_atomic(&out.join("vqvae.safetensors"), |tmp| {
        t.vs.save(tmp).map_err(|e| anyhow!("{e}"))
    })?;
    // Written last: it says the folder holds a tokenizer trained for `steps`.
    let meta = TokenizerMeta {
        config: cfg.clone(),
        steps: t.step,
        seed: tc.seed,
        final_recon_loss: losses.last().copied(),
        final_perplexity: rows.last().map(|r| part(r, "perplexity")),
        adam_t: t.opt.t,
        losses: losses.clone(),
        imported_from: None,
    };
    io::write_json(&meta_path, &meta)?;
    Ok(losses)
}

/// The metadata a code cache records of its tokenizer and cut (a cache with the same is kept):
/// the tokenizer's folder and [`identity`], and the frames it read (the decoder's version and
/// the frame size of [`decode_size`]), so codes made before a change of tokenizer or frames
/// (issue 21: imported tokenizers now read native-size frames) are made again.
fn code_meta(tok: &Tokenizer, frame_stride: usize, hop: usize) -> Result<HashMap<String, String>> {
    Ok(HashMap::from([
        (
            "tokenizer".to_string(),
            std::fs::canonicalize(&tok.dir)
                .unwrap_or(tok.dir.clone())
                .display()
                .to_string(),
        ),
        ("tokenizer_identity".to_string(), identity(&tok.dir)?.0),
        (
            "frames".to_string(),
            frames_identity(decode_size(&tok.model.cfg)),
        ),
        ("n_codes".to_string(), tok.model.cfg.n_codes.to_string()),
        ("clip_len".to_string(), tok.model.cfg.clip_len.to_string()),
        ("frame_stride".to_string(), frame_stride.to_string()),
        ("hop".to_string(), hop.to_string()),
    ]))
}

/// The frames a cache was made from, for the caches' metadata: the decoder's version and the
/// frame size (`native` or the shorter side in pixels).
pub fn frames_identity(size: Option<u32>) -> String {
    format!(
        "decoder {}, size {}",
        crate::fmri::video::DECODER_VERSION,
        size.map_or("native".to_string(), |s| s.to_string())
    )
}

/// Writes `<out>/<name>.codes.safetensors` with `codes()` unless a cache with the same
/// metadata is there already.
fn write_codes(
    out: &Path,
    name: &str,
    meta: &HashMap<String, String>,
    codes: impl FnOnce() -> Result<(Tensor, Vec<f64>)>,
) -> Result<PathBuf> {
    let path = out.join(format!("{name}.codes.safetensors"));
    if path.exists() {
        if let Ok(old) = CodeFile::load(&path) {
            if meta.iter().all(|(k, v)| old.meta.get(k) == Some(v)) {
                return Ok(path);
            }
        }
    }
    let (c, times) = codes().with_context(|| format!("tokenizing {name}"))?;
    let s: Vec<usize> = c.size().iter().map(|&x| x as usize).collect();
    let v: Vec<i64> = Vec::<i64>::try_from(c.reshape([-1]))?;
    let file = CodeFile {
        codes: ndarray::Array4::from_shape_vec((s[0], s[1], s[2], s[3]), v)?,
        times: ndarray::Array1::from_vec(times),
        meta: meta.clone(),
    };
    file.save(&path)?;
    Ok(path)
}

/// Tokenizes decoded movies into code caches `<out>/<name>.codes.safetensors`; existing
/// caches made by the same tokenizer and cut are kept (re-runs skip finished work).
pub fn tokenize_movies(
    tok: &Tokenizer,
    movies: &[(String, Frames)],
    out: &Path,
    frame_stride: usize,
    hop: usize,
) -> Result<Vec<PathBuf>> {
    let meta = code_meta(tok, frame_stride, hop)?;
    movies
        .iter()
        .map(|(name, frames)| {
            write_codes(out, name, &meta, || {
                tok.tokenize(frames, frame_stride, hop, 8)
            })
        })
        .collect()
}

/// [`tokenize_movies`] reading each movie's frame cache (a path from
/// [`crate::fmri::video::decode_to_cache`]) batch by batch ([`Tokenizer::tokenize_cache`]):
/// memory is bounded by one batch of clips, whatever the films' length; the code caches are
/// the same files.
pub fn tokenize_caches(
    tok: &Tokenizer,
    caches: &[(String, PathBuf)],
    out: &Path,
    frame_stride: usize,
    hop: usize,
) -> Result<Vec<PathBuf>> {
    let meta = code_meta(tok, frame_stride, hop)?;
    caches
        .iter()
        .map(|(name, cache)| {
            write_codes(out, name, &meta, || {
                tok.tokenize_cache(&mut FrameCache::open(cache)?, frame_stride, hop, 8)
            })
        })
        .collect()
}

/// `tokenizer train`: a VQ-VAE trained on movies (decoded at the model's resolution).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Movie files to train on.
    pub movies: Vec<PathBuf>,
    /// Output tokenizer folder.
    pub out: PathBuf,
    /// VQ-VAE config TOML (fields of VqVaeConfig); VideoGPT's defaults when absent.
    pub config: Option<PathBuf>,
    /// Decode frame rate (native when absent).
    pub fps: Option<f64>,
    pub train: TokenizerTrainConfig,
    /// Frame cache folder.
    pub cache: PathBuf,
    /// cpu, cuda, cuda:N or auto.
    pub device: String,
}

/// `tokenizer encode`: movies → `<movie>.codes.safetensors` with a trained tokenizer.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub movies: Vec<PathBuf>,
    /// Tokenizer folder (from `tokenizer train`).
    pub tokenizer: PathBuf,
    /// Output folder of the code caches.
    pub out: PathBuf,
    pub fps: Option<f64>,
    pub frame_stride: usize,
    /// Frames between clip starts (default: the clip span, i.e. non-overlapping clips).
    pub hop: Option<usize>,
    /// Frame cache folder.
    pub cache: PathBuf,
    pub device: String,
}

/// The VQ-VAE config in `path` (through the one model-config loader), else the default.
pub fn load_config(path: Option<&Path>) -> Result<VqVaeConfig> {
    match path {
        None => Ok(VqVaeConfig::default()),
        Some(p) => VqVaeConfig::load(p),
    }
}

/// The tokenizer-training stage. Returns the reconstruction loss per step, or `None` when
/// `o.out` already holds a trained tokenizer (nothing is retrained). Errors: a bad config,
/// device or movie, a training failure.
pub fn train_stage(o: &TrainOptions) -> Result<Option<Vec<f64>>> {
    if TOKENIZER_FILES.iter().all(|f| o.out.join(f).exists()) {
        return Ok(None);
    }
    let cfg = load_config(o.config.as_deref())?;
    let device = parse_device(&o.device)?;
    let opts = crate::fmri::video::DecodeOptions {
        fps: o.fps,
        size: Some(cfg.resolution as u32),
        ..Default::default()
    };
    // The frames stay in their caches; training reads a batch of clips at a time.
    let caches: Vec<PathBuf> = crate::fmri::video::decode_all_to_cache(&o.movies, &o.cache, &opts)?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    Ok(Some(train_tokenizer_caches(
        &cfg, &o.train, &caches, &o.out, device, true,
    )?))
}

/// `tokenizer import`: a VideoGPT VQ-VAE Lightning checkpoint ([`crate::models::videogpt`])
/// written as a tokenizer folder in `out` (weights first, `vqvae.json` last, each through a
/// temporary file, so a failed import leaves no folder that looks finished). The folder then
/// works with `tokenizer encode`, `pretrain` and `features` unchanged; it encodes with
/// VideoGPT's preprocessing. Returns the imported config.
pub fn import_stage(ckpt: &Path, out: &Path) -> Result<VqVaeConfig> {
    if out.exists() && !out.is_dir() {
        bail!(
            "--out {} exists and is not a folder (the tokenizer is written as a folder)",
            out.display()
        );
    }
    let imp = crate::models::videogpt::import_checkpoint(ckpt)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    io::write_atomic(&out.join("vqvae.safetensors"), |tmp| {
        imp.vs.save(tmp).map_err(|e| anyhow!("{e}"))
    })?;
    let meta = TokenizerMeta {
        config: imp.model.cfg.clone(),
        steps: 0,
        seed: 0,
        final_recon_loss: None,
        final_perplexity: None,
        adam_t: 0,
        losses: Vec::new(),
        imported_from: Some(
            std::fs::canonicalize(ckpt)
                .unwrap_or(ckpt.to_path_buf())
                .display()
                .to_string(),
        ),
    };
    io::write_json(&out.join("vqvae.json"), &meta)?;
    Ok(imp.model.cfg)
}

/// The frame size a tokenizer's frames are decoded at: `resize = "videogpt"` (imported VideoGPT
/// tokenizers) needs the movie's native size, because VideoGPT's `data.preprocess` resizes the
/// full frames itself (a decode already shrunk to R would leave it nothing to do and change 1/4
/// of the codes, issue 21); brainscale's own tokenizers decode at R (ffmpeg's AREA scaling), as
/// they were trained. The frame cache's name records the size (`size-native` / `size-R`), so
/// caches of the two kinds never mix.
pub fn decode_size(cfg: &VqVaeConfig) -> Option<u32> {
    decode_size_for(cfg, Some(cfg.resolution as u32))
}

/// The frame size (shorter side, pixels; None: native) a tokenizer's frames are decoded at when
/// a stage asked for `asked`: native for `resize = "videogpt"` (see [`decode_size`]), else
/// `asked`.
pub fn decode_size_for(cfg: &VqVaeConfig, asked: Option<u32>) -> Option<u32> {
    match cfg.resize {
        Resize::Videogpt => None,
        Resize::Antialiased => asked,
    }
}

/// What identifies the model in a tokenizer folder for the caches made with it (codes,
/// features): its config (resolution, preprocessing, widths) as JSON, and the size and
/// modification time of `vqvae.json` (training record, import source) and of the weights, so a
/// retrained or re-imported tokenizer in the same folder makes them stale. Returns the identity
/// and the config. Errors: not a tokenizer folder (names the folder).
pub fn identity(dir: &Path) -> Result<(String, VqVaeConfig)> {
    let meta = read_meta(dir)?;
    let mut id = serde_json::to_string(&meta.config)?;
    for f in ["vqvae.json", "vqvae.safetensors"] {
        id += &format!(
            ";{f}={}",
            crate::fmri::video::file_fingerprint(&dir.join(f))?
        );
    }
    Ok((id, meta.config))
}

/// The tokenize stage: writes one code cache per movie and returns their paths; frames are
/// read from the frame caches a batch of clips at a time (memory bounded by one batch).
pub fn encode_stage(o: &EncodeOptions) -> Result<Vec<PathBuf>> {
    let device = parse_device(&o.device)?;
    let tok = Tokenizer::load(&o.tokenizer, device)?;
    let opts = crate::fmri::video::DecodeOptions {
        fps: o.fps,
        size: decode_size(&tok.model.cfg),
        ..Default::default()
    };
    // Frames stay in their caches and are read a batch of clips at a time.
    let caches = crate::fmri::video::decode_all_to_cache(&o.movies, &o.cache, &opts)?;
    let span = (tok.model.cfg.clip_len as usize - 1) * o.frame_stride + 1;
    tokenize_caches(&tok, &caches, &o.out, o.frame_stride, o.hop.unwrap_or(span))
}
