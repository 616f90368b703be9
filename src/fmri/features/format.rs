//! The contract between feature extractors and the stages that read features: the
//! [`FrameFeatures`] file format (safetensors: `features` f32 [T, F], `times` f64 [T] in seconds
//! from the movie's start) and the [`Extractor`] trait. Plugins (`features::Baseline`,
//! `features::gpt::GptExtractor`) implement the trait; the features stage runs them, the
//! align stage and the synthetic dataset's ground truth read and write the format.
use crate::core::io::{self, Tensor, TensorFile};
use crate::fmri::video::{FrameCache, Frames};
use anyhow::{bail, Result};
use ndarray::{Array1, Array2};
use std::collections::HashMap;
use std::path::Path;

/// Features of one movie at given times.
#[derive(Debug, Clone)]
pub struct FrameFeatures {
    /// samples × features.
    pub values: Array2<f32>,
    /// Time of each sample in seconds from the movie's start (the instant the sample describes,
    /// e.g. a frame's presentation time or a clip's centre).
    pub times: Array1<f64>,
}

impl FrameFeatures {
    /// Writes the features file (atomically), with `meta` as its safetensors metadata.
    pub fn save(&self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        io::write_tensors(
            path,
            vec![
                ("features", Tensor::F32(self.values.clone().into_dyn())),
                ("times", Tensor::F64(self.times.clone().into_dyn())),
            ],
            meta,
        )
    }

    /// Reads a features file; the error names the file when rows and times disagree or a
    /// value is not finite.
    pub fn load(path: &Path) -> Result<Self> {
        let f = TensorFile::open(path)?;
        let what = path.display().to_string();
        let values = io::into_2d(f.f32("features")?, &format!("{what}: features"))?;
        let times = io::into_1d(f.f64("times")?, &format!("{what}: times"))?;
        if values.nrows() != times.len() {
            bail!(
                "{what}: {} feature rows but {} times",
                values.nrows(),
                times.len()
            );
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            bail!(
                "{what}: non-finite feature value at row {}",
                i / values.ncols().max(1)
            );
        }
        Ok(Self { values, times })
    }
}

/// An extractor turns one movie's frames into features at frame or clip times.
pub trait Extractor {
    /// Name used for output folders and results rows.
    fn name(&self) -> String;
    fn extract(&mut self, frames: &Frames) -> Result<FrameFeatures>;

    /// Features of the movie in a frame cache: the same as [`Extractor::extract`] on its
    /// frames. Default: the whole movie read, then `extract`; clip-based extractors override
    /// it to read clip by clip, so memory does not grow with the film.
    fn extract_cache(&mut self, cache: &mut FrameCache) -> Result<FrameFeatures> {
        let n = cache.len();
        self.extract(&cache.read(0..n)?)
    }

    /// The frame size (shorter side, pixels) to decode at when `asked` was asked for (`None`:
    /// native). Default: `asked`; an extractor whose tokenizer resizes the full frames itself
    /// (VideoGPT's `data.preprocess`) needs the native size (issue 21).
    fn decode_size(&self, asked: Option<u32>) -> Option<u32> {
        asked
    }
}
