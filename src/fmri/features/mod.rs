//! Features stage: frames → features at frame (or clip) times, stored per movie as safetensors
//! (`features` f32 [T, F], `times` f64 [T] in seconds from movie start). The align stage reads
//! this format whatever the extractor: the baseline below, or a trained GPT-2 prior ([`gpt`]).

pub mod format;
pub mod gpt;

use crate::core::io::TensorFile;
pub use crate::fmri::features::format::{Extractor, FrameFeatures};
use crate::fmri::video::{FrameCache, Frames};
use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array2};
use std::collections::HashMap;
use std::path::Path;

/// The baseline extractor, which needs no training: per frame, luminance averaged over a
/// grid×grid grid of blocks, plus motion energy (mean absolute luminance change from the
/// previous frame) over the same blocks. 2·grid² features per frame.
pub struct Baseline {
    pub grid: usize,
}

impl Default for Baseline {
    fn default() -> Self {
        Self { grid: 8 }
    }
}

impl Extractor for Baseline {
    fn name(&self) -> String {
        "baseline".into()
    }

    fn extract(&mut self, frames: &Frames) -> Result<FrameFeatures> {
        let (n, h, w, _) = frames.data.dim();
        self.check(h, w)?;
        let mut values = Array2::<f32>::zeros((n, 2 * self.grid * self.grid));
        let mut prev: Option<Vec<f32>> = None;
        for t in 0..n {
            let f = frames.data.index_axis(ndarray::Axis(0), t);
            prev = Some(self.frame_row(f, prev.as_deref(), values.row_mut(t)));
        }
        Ok(self.finish(values, frames.times.clone()))
    }

    /// Reads the cache ~16 MB of frames at a time (the previous frame carried over): the
    /// same features as [`Extractor::extract`] on its frames.
    fn extract_cache(&mut self, cache: &mut FrameCache) -> Result<FrameFeatures> {
        let (_, h, w) = cache.dims;
        let chunk = (16 * 1024 * 1024 / (h * w * 3).max(1)).max(1);
        self.extract_cache_chunked(cache, chunk)
    }
}

impl Baseline {
    /// [`Extractor::extract_cache`] reading `chunk` frames at a time (the result does not
    /// depend on `chunk`). Errors: frames smaller than the grid, a failed read.
    pub fn extract_cache_chunked(
        &self,
        cache: &mut FrameCache,
        chunk: usize,
    ) -> Result<FrameFeatures> {
        let (n, h, w) = cache.dims;
        self.check(h, w)?;
        let mut values = Array2::<f32>::zeros((n, 2 * self.grid * self.grid));
        let mut prev: Option<Vec<f32>> = None;
        for start in (0..n).step_by(chunk.max(1)) {
            let part = cache.read(start..(start + chunk.max(1)).min(n))?;
            for (i, f) in part.data.outer_iter().enumerate() {
                prev = Some(self.frame_row(f, prev.as_deref(), values.row_mut(start + i)));
            }
        }
        Ok(self.finish(values, cache.times.clone()))
    }

    fn check(&self, h: usize, w: usize) -> Result<()> {
        let g = self.grid;
        if h < g || w < g {
            bail!("frames of {w}x{h} are smaller than the {g}x{g} feature grid");
        }
        Ok(())
    }

    /// One frame's block luminance and motion energy (from `prev`'s luminance) into `row`;
    /// returns the frame's luminance.
    fn frame_row(
        &self,
        f: ndarray::ArrayView3<u8>,
        prev: Option<&[f32]>,
        mut row: ndarray::ArrayViewMut1<f32>,
    ) -> Vec<f32> {
        let (h, w, _) = f.dim();
        let g = self.grid;
        let gray: Vec<f32> = f
            .outer_iter()
            .flat_map(|row| {
                row.outer_iter()
                    .map(|px| {
                        (0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32) / 255.0
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for y in 0..h {
            let by = y * g / h;
            for x in 0..w {
                let bx = x * g / w;
                let i = y * w + x;
                row[by * g + bx] += gray[i];
                if let Some(p) = prev {
                    row[g * g + by * g + bx] += (gray[i] - p[i]).abs();
                }
            }
        }
        // Block sizes can differ by one pixel when g does not divide the frame size.
        for by in 0..g {
            for bx in 0..g {
                let cnt = ((by + 1) * h)
                    .div_ceil(g)
                    .saturating_sub((by * h).div_ceil(g))
                    * ((bx + 1) * w)
                        .div_ceil(g)
                        .saturating_sub((bx * w).div_ceil(g));
                let c = cnt.max(1) as f32;
                row[by * g + bx] /= c;
                row[g * g + by * g + bx] /= c;
            }
        }
        gray
    }

    fn finish(&self, mut values: Array2<f32>, times: Array1<f64>) -> FrameFeatures {
        let g = self.grid;
        // The first frame has no predecessor: give it the second frame's motion energy.
        if values.nrows() > 1 {
            let second = values.slice(ndarray::s![1, g * g..]).to_owned();
            values.slice_mut(ndarray::s![0, g * g..]).assign(&second);
        }
        FrameFeatures { values, times }
    }
}

/// PCA fitted on standardised features of all movies together.
#[derive(Debug, Clone)]
pub struct Pca {
    pub mean: Array1<f64>,
    pub scale: Array1<f64>,
    /// features × components.
    pub components: Array2<f64>,
    pub explained_variance_ratio: Vec<f64>,
}

impl Pca {
    /// Fits `k` components. Eigenvector signs are fixed (largest loading positive) so results
    /// do not depend on the eigensolver.
    pub fn fit(sets: &[&Array2<f32>], k: usize) -> Result<Self> {
        let f = sets.first().map(|s| s.ncols()).unwrap_or(0);
        let n: usize = sets.iter().map(|s| s.nrows()).sum();
        if n < 2 || f == 0 {
            bail!("PCA needs at least 2 samples with features, got {n} × {f}");
        }
        if k == 0 || k > f {
            bail!("PCA components must be in 1..={f}, got {k}");
        }
        let mut mean = Array1::<f64>::zeros(f);
        for s in sets {
            for r in s.outer_iter() {
                mean.zip_mut_with(&r, |m, &v| *m += v as f64);
            }
        }
        mean /= n as f64;
        let mut cov = Array2::<f64>::zeros((f, f));
        for s in sets {
            let c = s.mapv(|v| v as f64) - &mean;
            cov += &c.t().dot(&c);
        }
        cov /= (n - 1) as f64;
        let scale = cov.diag().mapv(|v| if v > 1e-12 { v.sqrt() } else { 1.0 });
        let corr = &cov
            / &scale.view().insert_axis(ndarray::Axis(1))
            / &scale.view().insert_axis(ndarray::Axis(0));
        let (evals, evecs) = symmetric_eigh(&corr)?;
        let total: f64 = evals.iter().map(|v| v.max(0.0)).sum();
        let mut components = Array2::<f64>::zeros((f, k));
        let mut ratio = Vec::with_capacity(k);
        for j in 0..k {
            let idx = f - 1 - j; // ascending eigenvalues
            let mut col = evecs.column(idx).to_owned();
            let big = col
                .iter()
                .copied()
                .max_by(|a, b| a.abs().total_cmp(&b.abs()))
                .unwrap_or(1.0);
            if big < 0.0 {
                col.mapv_inplace(|v| -v);
            }
            components.column_mut(j).assign(&col);
            ratio.push(evals[idx].max(0.0) / total.max(1e-300));
        }
        Ok(Self {
            mean,
            scale,
            components,
            explained_variance_ratio: ratio,
        })
    }

    pub fn transform(&self, x: &Array2<f32>) -> Array2<f32> {
        let z = (x.mapv(|v| v as f64) - &self.mean) / &self.scale;
        z.dot(&self.components).mapv(|v| v as f32)
    }
}

/// Eigen-decomposition of a small symmetric matrix (ascending eigenvalues) through libtorch,
/// available in every build.
fn symmetric_eigh(a: &Array2<f64>) -> Result<(Vec<f64>, Array2<f64>)> {
    let n = a.nrows();
    let t = tch::Tensor::from_slice(a.as_standard_layout().as_slice().unwrap())
        .view([n as i64, n as i64]);
    let (vals, vecs) = t.f_linalg_eigh("L")?;
    let vals: Vec<f64> = Vec::<f64>::try_from(&vals)?;
    let vecs: Vec<f64> = Vec::<f64>::try_from(&vecs.contiguous().view([-1]))?;
    Ok((vals, Array2::from_shape_vec((n, n), vecs)?))
}

/// Which extractor the features stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExtractorKind {
    /// Luminance + motion energy on a grid, PCA-reduced.
    Baseline,
    /// The synthetic dataset's true latent factors (an oracle, for checking the pipeline).
    Groundtruth,
    /// Hidden states of a trained GPT-2 prior over VQ-VAE codes (`brainscale pretrain`).
    Gpt,
}

/// Options of the GPT extractor (the CLI's flags: `cli::fmri::GptFlags`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct GptFeatureArgs {
    /// `brainscale pretrain` output folder (with its tokenizer/).
    pub model: Option<std::path::PathBuf>,
    /// Layers whose hidden states are averaged over each clip (0 = embeddings, l = block l).
    pub layers: Vec<usize>,
    /// Frame subsampling inside a clip (e.g. 3 at 29.97 fps: a 16-frame clip spans ~1.5 s).
    pub clip_stride: usize,
    /// Frames between clip starts (default: the clip span, i.e. no overlap).
    pub hop: Option<usize>,
    /// cpu, cuda, cuda:N or auto.
    pub device: String,
}

/// Output folder of an extractor's features under a work folder.
pub fn features_dir(work: &Path, name: &str) -> std::path::PathBuf {
    work.join("features").join(name)
}

/// Features file of one movie.
pub fn features_path(work: &Path, name: &str, movie: &Path) -> std::path::PathBuf {
    let stem = movie
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    features_dir(work, name).join(format!("{stem}.safetensors"))
}

/// Reads a features file and the duration of its movie (seconds).
pub fn load_with_duration(path: &Path) -> Result<(FrameFeatures, f64)> {
    let f = FrameFeatures::load(path)?;
    let meta = TensorFile::open(path)?.metadata();
    let dur = meta
        .get("movie_duration_s")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| crate::fmri::coverage::duration_from_times(&f.times));
    Ok((f, dur))
}

/// Options of the features stage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FeaturesOptions {
    pub extractor: ExtractorKind,
    /// PCA components (None: keep all).
    pub pca: Option<usize>,
    pub fps: Option<f64>,
    pub size: Option<u32>,
    /// GPT extractor options (with `ExtractorKind::Gpt`).
    pub gpt: Option<GptFeatureArgs>,
    /// Display orientation and truncation choices (defaults add nothing to the fingerprint).
    #[serde(flatten)]
    pub decode: crate::fmri::video::DecodeFlags,
}

impl FeaturesOptions {
    /// The features' name: their folder under WORK/features and the `--features` of later stages.
    pub fn name(&self) -> &'static str {
        match self.extractor {
            ExtractorKind::Baseline => "baseline",
            ExtractorKind::Groundtruth => "groundtruth",
            ExtractorKind::Gpt => "gpt",
        }
    }

    /// What decides whether saved features are still valid (recorded as their `config`): the
    /// options; for extractors that read frames, the frames (decoder version and the size
    /// actually decoded); for the GPT extractor the trained prior (its latest checkpoint) and
    /// its tokenizer ([`crate::fmri::tokenize::identity`]: config, preprocessing, weights).
    /// Features made before a change of any of these (issue 21: imported tokenizers now decode
    /// at native size) are made again. Errors: the GPT extractor's model has no tokenizer
    /// folder.
    pub fn fingerprint(&self) -> Result<String> {
        let mut s = serde_json::to_string(self)?;
        match self.extractor {
            ExtractorKind::Groundtruth => {}
            ExtractorKind::Baseline => {
                s += &format!(
                    ";frames={}",
                    crate::fmri::tokenize::frames_identity(self.size)
                )
            }
            ExtractorKind::Gpt => {
                if let Some(dir) = self.gpt.as_ref().and_then(|g| g.model.as_ref()) {
                    s += &std::fs::read_to_string(dir.join("latest.json")).unwrap_or_default();
                    let (id, cfg) = crate::fmri::tokenize::identity(&dir.join("tokenizer"))
                        .with_context(|| format!("{}: the prior's tokenizer", dir.display()))?;
                    let size = crate::fmri::tokenize::decode_size_for(&cfg, self.size);
                    s += &format!(
                        ";tokenizer={id};frames={}",
                        crate::fmri::tokenize::frames_identity(size)
                    );
                }
            }
        }
        Ok(s)
    }

    /// Whether the features file at `path` was made with these options and the same model,
    /// tokenizer and frames ([`Self::fingerprint`]); false when it is missing or unreadable.
    pub fn is_current(&self, path: &Path) -> Result<bool> {
        let config = self.fingerprint()?;
        Ok(TensorFile::open(path)
            .map(|f| f.metadata().get("config") == Some(&config))
            .unwrap_or(false))
    }

    fn extractor(&self) -> Result<Box<dyn Extractor>> {
        Ok(match self.extractor {
            ExtractorKind::Baseline => Box::new(Baseline::default()),
            ExtractorKind::Gpt => {
                let g = self
                    .gpt
                    .as_ref()
                    .context("the GPT extractor needs its options")?;
                let model = g.model.as_ref().context(
                    "the GPT extractor needs --model DIR (a `brainscale pretrain` output)",
                )?;
                let device = crate::nn::parse_device(&g.device)?;
                let mut ex = crate::fmri::features::gpt::GptExtractor::load(
                    model,
                    &g.layers,
                    device,
                    g.clip_stride,
                )?;
                if let Some(h) = g.hop {
                    ex = ex.with_hop(h)?;
                }
                Box::new(ex)
            }
            ExtractorKind::Groundtruth => {
                bail!("the ground-truth features are read, not extracted")
            }
        })
    }
}

/// Runs the features stage over a dataset's movies; returns the output folder. A finished
/// run with the same options is not redone.
pub fn run_stage(
    ds: &crate::fmri::dataset::Dataset,
    work: &Path,
    opts: &FeaturesOptions,
) -> Result<std::path::PathBuf> {
    let name = opts.name();
    let movies = ds.movies();
    let config = opts.fingerprint()?;
    let outs: Vec<_> = movies
        .iter()
        .map(|m| features_path(work, name, m))
        .collect();
    let done = outs
        .iter()
        .map(|p| opts.is_current(p))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .all(|c| c);
    if done {
        return Ok(features_dir(work, name));
    }
    let mut extractor = match opts.extractor {
        ExtractorKind::Groundtruth => None,
        _ => Some(opts.extractor()?),
    };
    if let (Some(ex), Some(asked)) = (extractor.as_ref(), opts.size) {
        if ex.decode_size(Some(asked)).is_none() {
            // Imported VideoGPT tokenizers resize full frames themselves (issue 21).
            eprintln!(
                "note: --size {asked} is not used: the prior's tokenizer is an imported VideoGPT \
                 one, whose preprocessing resizes the native frames itself, so the movies are \
                 decoded at their native size"
            );
        }
    }
    let bar = crate::core::progress::progress(movies.len() as u64, &format!("features ({name})"));
    let mut raw: Vec<(FrameFeatures, f64)> = Vec::new();
    for movie in &movies {
        bar.set_message(
            movie
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        raw.push(match extractor.as_mut() {
            None => {
                let stem = movie
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let p = ds.root.join(format!(
                    "derivatives/groundtruth/stimuli/{stem}_latents.safetensors"
                ));
                if !p.exists() {
                    bail!(
                        "{}: no ground-truth latents (only synthetic datasets have them)",
                        p.display()
                    );
                }
                let f = FrameFeatures::load(&p)?;
                let d = crate::fmri::coverage::duration_from_times(&f.times);
                (f, d)
            }
            Some(ex) => {
                let dopts = opts.decode.options(opts.fps, ex.decode_size(opts.size));
                // The frames stay in their cache; clip extractors read them as they go.
                let (cache, _) =
                    crate::fmri::video::decode_to_cache(movie, &work.join("frames"), &dopts)?;
                let mut fc = crate::fmri::video::FrameCache::open(&cache)?;
                let f = ex
                    .extract_cache(&mut fc)
                    .with_context(|| format!("features of {}", movie.display()))?;
                (f, fc.duration())
            }
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let reduced: Vec<FrameFeatures> = match opts.pca {
        Some(k) => {
            let sets: Vec<&Array2<f32>> = raw.iter().map(|(f, _)| &f.values).collect();
            let pca = Pca::fit(&sets, k)?;
            raw.iter()
                .map(|(f, _)| FrameFeatures {
                    values: pca.transform(&f.values),
                    times: f.times.clone(),
                })
                .collect()
        }
        None => raw.iter().map(|(f, _)| f.clone()).collect(),
    };
    for ((f, (_, dur)), (out, movie)) in reduced.iter().zip(&raw).zip(outs.iter().zip(&movies)) {
        let meta = HashMap::from([
            ("config".to_string(), config.clone()),
            ("extractor".to_string(), name.to_string()),
            ("movie".to_string(), movie.display().to_string()),
            ("movie_duration_s".to_string(), dur.to_string()),
        ]);
        f.save(out, meta)?;
    }
    Ok(features_dir(work, name))
}
