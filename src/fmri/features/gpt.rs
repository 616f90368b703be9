//! Features from a trained prior: the movie is cut into clips (the tokenizer's `clip_len`
//! frames, every `frame_stride`-th frame, a new clip every `hop` frames), each clip is tokenized
//! and run through the GPT; the hidden states of the chosen layers are averaged over all the
//! clip's code positions (time, height, width) and concatenated. One sample per clip, at the
//! clip's centre time, in the [`FrameFeatures`] format the align stage reads.
//!
//! At 29.97 fps a 1.49 s TR spans about 45 frames: 16-frame clips at frame stride 3 cover
//! 46 frames, about one TR.
use crate::fmri::features::format::{Extractor, FrameFeatures};
use crate::fmri::pretrain::load_prior;
use crate::fmri::tokenize::Tokenizer;
use crate::fmri::video::{FrameCache, Frames};
use crate::models::gpt::Gpt;
use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array2};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// GPT-prior feature extractor (see the module docs).
pub struct GptExtractor {
    tokenizer: Tokenizer,
    _vs: nn::VarStore,
    prior: Gpt,
    layers: Vec<usize>,
    frame_stride: usize,
    hop: usize,
    kind: Kind,
    batch: usize,
    name: String,
}

impl GptExtractor {
    /// Loads a `brainscale pretrain` output folder (its `tokenizer/` included). `layers`: 0 =
    /// embeddings, l = output of block l (1..=n_layer). `clip_stride`: frame subsampling inside
    /// a clip. Clips do not overlap by default (hop = clip span); see [`Self::with_hop`].
    pub fn load(
        checkpoint_dir: &Path,
        layers: &[usize],
        device: Device,
        clip_stride: usize,
    ) -> Result<Self> {
        if layers.is_empty() {
            bail!("choose at least one layer to extract");
        }
        if clip_stride == 0 {
            bail!("the clip frame stride must be positive");
        }
        let tok_dir = checkpoint_dir.join("tokenizer");
        let tokenizer = Tokenizer::load(&tok_dir, device)
            .with_context(|| format!("{}: the prior's tokenizer", checkpoint_dir.display()))?;
        let (vs, prior) = load_prior(checkpoint_dir, device)?;
        let cfg = &prior.cfg;
        if let Some(&l) = layers.iter().find(|&&l| l as i64 > cfg.n_layer) {
            bail!(
                "layer {l} does not exist: {} has layers 0..={}",
                checkpoint_dir.display(),
                cfg.n_layer
            );
        }
        let tcfg = &tokenizer.model.cfg;
        let l = tcfg.latent_shape().iter().product::<i64>();
        if l > cfg.ctx || tcfg.n_codes > cfg.vocab {
            bail!(
                "{}: the tokenizer makes {l} codes of {} per clip but the prior has ctx {} and vocab {}",
                checkpoint_dir.display(),
                tcfg.n_codes,
                cfg.ctx,
                cfg.vocab
            );
        }
        let span = (tcfg.clip_len as usize - 1) * clip_stride + 1;
        let name = format!(
            "gpt-{}-layers{}-stride{clip_stride}",
            if cfg.name.is_empty() {
                "prior"
            } else {
                &cfg.name
            },
            layers
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join("+")
        );
        Ok(Self {
            tokenizer,
            _vs: vs,
            prior,
            layers: layers.to_vec(),
            frame_stride: clip_stride,
            hop: span,
            kind: Kind::Float,
            batch: 8,
            name,
        })
    }

    /// Frames between clip starts (smaller than the span: overlapping clips, more samples).
    pub fn with_hop(mut self, hop: usize) -> Result<Self> {
        if hop == 0 {
            bail!("the clip hop must be positive");
        }
        self.hop = hop;
        Ok(self)
    }

    /// Compute dtype of the prior's matmuls (fp32 by default; bf16/fp16 on GPU).
    pub fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// Features per sample: d_model × number of layers.
    pub fn feature_dim(&self) -> usize {
        self.prior.cfg.d_model as usize * self.layers.len()
    }

    /// Frames spanned by one clip.
    pub fn clip_span(&self) -> usize {
        (self.tokenizer.model.cfg.clip_len as usize - 1) * self.frame_stride + 1
    }
}

impl Extractor for GptExtractor {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn extract(&mut self, frames: &Frames) -> Result<FrameFeatures> {
        let (codes, times) =
            self.tokenizer
                .tokenize(frames, self.frame_stride, self.hop, self.batch)?;
        self.features_of(codes, times)
    }

    /// Reads the cache a batch of clips at a time ([`Tokenizer::tokenize_cache`]): the same
    /// codes, hence the same features, as [`Extractor::extract`] on its frames.
    /// An imported VideoGPT tokenizer (`resize = "videogpt"`) decodes at the native size, as
    /// `tokenizer encode` does ([`crate::fmri::tokenize::decode_size`]).
    fn decode_size(&self, asked: Option<u32>) -> Option<u32> {
        crate::fmri::tokenize::decode_size_for(&self.tokenizer.model.cfg, asked)
    }

    fn extract_cache(&mut self, cache: &mut FrameCache) -> Result<FrameFeatures> {
        let (codes, times) =
            self.tokenizer
                .tokenize_cache(cache, self.frame_stride, self.hop, self.batch)?;
        self.features_of(codes, times)
    }
}

impl GptExtractor {
    /// Pooled hidden states of clips' codes [clips, t, h, w] at their centre times.
    fn features_of(&self, codes: Tensor, times: Vec<f64>) -> Result<FrameFeatures> {
        let n = codes.size()[0];
        let seq = codes.reshape([n, -1]);
        let device = self.tokenizer.vs.device();
        let mut rows = Vec::new();
        tch::no_grad(|| -> Result<()> {
            let mut i = 0;
            while i < n {
                let b = (self.batch as i64).min(n - i);
                let idx = seq.narrow(0, i, b).to_device(device);
                let (_, hs) = self.prior.trunk(&idx, false, self.kind, &self.layers)?;
                let pooled: Vec<Tensor> = hs
                    .iter()
                    .map(|h| h.mean_dim([1i64].as_slice(), false, Kind::Float))
                    .collect();
                rows.push(Tensor::cat(&pooled, 1).to_device(Device::Cpu));
                i += b;
            }
            Ok(())
        })?;
        let all = Tensor::cat(&rows, 0).contiguous();
        let f = self.feature_dim();
        let v: Vec<f32> = Vec::<f32>::try_from(all.reshape([-1]))?;
        let values = Array2::from_shape_vec((n as usize, f), v)?;
        if values.iter().any(|x| !x.is_finite()) {
            bail!(
                "non-finite features from {} (a diverged checkpoint?)",
                self.name
            );
        }
        Ok(FrameFeatures {
            values,
            times: Array1::from_vec(times),
        })
    }
}
