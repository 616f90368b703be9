//! GPT-2 prior over VQ-VAE code sequences, nanoGPT style: pre-norm blocks, causal attention
//! through `scaled_dot_product_attention` (flash / memory-efficient kernels on GPU), learned or
//! factorized (time, height, width) position embeddings, weight tying.
//!
//! Variable names follow Hugging Face GPT-2 (`h.{i}.attn.c_attn.weight`, ...) so that
//! [`crate::models::hf`] only has to transpose the Conv1D weights; linear weights here are [out, in].
//!
//! Mixed precision is explicit rather than autocast: master weights stay fp32, every matmul casts
//! its weight and input to the compute dtype (what autocast does), layer norms, the residual
//! stream and the loss stay fp32. The same code runs on CPU in tests and on GPU.
use crate::models::config::{divisible, positive, probabilities, ModelConfig};
use crate::models::layers::{LayerNorm, Linear, LinearInit};
use crate::nn::trainer::{Data, Loss, Model};
use anyhow::{bail, Context, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// How positions are embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PosEmbedding {
    /// One learned vector per position (GPT-2's `wpe`).
    #[default]
    Learned,
    /// Sum of learned time, height and width vectors (VideoGPT's broadcast position embedding);
    /// needs `latent_shape` with t·h·w = ctx.
    Factorized,
}

fn default_true() -> bool {
    true
}

/// Model size and regularisation; one TOML file per config in `models/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GptConfig {
    #[serde(default)]
    pub name: String,
    pub d_model: i64,
    pub n_layer: i64,
    pub n_head: i64,
    /// Maximum sequence length (tokens per clip for the video prior).
    pub ctx: i64,
    /// Number of token ids (the VQ-VAE codebook size).
    pub vocab: i64,
    /// Dropout on embeddings, attention output and MLP output.
    #[serde(default)]
    pub dropout: f64,
    /// Dropout on attention probabilities.
    #[serde(default)]
    pub attn_dropout: f64,
    #[serde(default)]
    pub pos: PosEmbedding,
    /// Latent grid (t, h, w) for factorized position embeddings.
    #[serde(default)]
    pub latent_shape: Option<[i64; 3]>,
    /// Output projection shares the token embedding matrix.
    #[serde(default = "default_true")]
    pub tie_weights: bool,
}

/// Parameter counts, computed here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    /// Every parameter.
    pub total: u64,
    /// Total minus the token and position embedding tables (Kaplan et al.'s N); an untied
    /// output head counts here.
    pub non_embedding: u64,
    /// Parameters in a matmul per token (the N of [`crate::core::flops`]): non-embedding plus the
    /// tied output head.
    pub matmul: u64,
}

impl ModelConfig for GptConfig {
    const ARCH: &'static str = "gpt";

    fn validate(&self) -> Result<()> {
        positive(&[
            ("d_model", self.d_model),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("ctx", self.ctx),
            ("vocab", self.vocab),
        ])?;
        divisible("d_model", self.d_model, "n_head", self.n_head)?;
        probabilities(&[
            ("dropout", self.dropout),
            ("attn_dropout", self.attn_dropout),
        ])?;
        match (self.pos, self.latent_shape) {
            (PosEmbedding::Factorized, None) => {
                bail!("pos = \"factorized\" needs latent_shape = [t, h, w]")
            }
            (PosEmbedding::Factorized, Some([t, h, w])) => {
                if t <= 0 || h <= 0 || w <= 0 || t * h * w != self.ctx {
                    bail!(
                        "latent_shape [{t}, {h}, {w}] must be positive with t*h*w = ctx = {}",
                        self.ctx
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl GptConfig {
    pub fn head_dim(&self) -> i64 {
        self.d_model / self.n_head
    }

    fn pos_rows(&self) -> i64 {
        match (self.pos, self.latent_shape) {
            (PosEmbedding::Factorized, Some([t, h, w])) => t + h + w,
            _ => self.ctx,
        }
    }

    /// Parameter counts from the config alone (tested against the built model).
    pub fn param_counts(&self) -> ParamCounts {
        let d = self.d_model as u64;
        let v = self.vocab as u64;
        // ln_1, c_attn, c_proj, ln_2, c_fc, mlp.c_proj (weights + biases).
        let per_layer = 2 * d
            + (3 * d * d + 3 * d)
            + (d * d + d)
            + 2 * d
            + (4 * d * d + 4 * d)
            + (4 * d * d + d);
        let head = if self.tie_weights { 0 } else { v * d };
        let non_embedding = self.n_layer as u64 * per_layer + 2 * d + head;
        let embedding = v * d + self.pos_rows() as u64 * d;
        let matmul = non_embedding + if self.tie_weights { v * d } else { 0 };
        ParamCounts {
            total: non_embedding + embedding,
            non_embedding,
            matmul,
        }
    }

    /// Training FLOPs per token at full context (the one formula in [`crate::core::flops`]).
    pub fn train_flops_per_token(&self) -> f64 {
        crate::core::flops::train_flops_per_token(
            self.param_counts().matmul,
            self.n_layer as u64,
            self.ctx as u64,
            self.d_model as u64,
        )
    }
}

/// Compute precision (lives in the engine; re-exported for model configs and tests).
pub use crate::nn::precision::Precision;

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

impl Block {
    fn new(p: nn::Path, cfg: &GptConfig) -> Self {
        let d = cfg.d_model;
        // GPT-2: residual projections scaled by 1/sqrt(2·n_layer).
        let proj = LinearInit::Normal(0.02 / (2.0 * cfg.n_layer as f64).sqrt());
        let lin = |p: nn::Path, d_in, d_out, init| Linear::with_init(p, d_in, d_out, true, init);
        Self {
            ln_1: LayerNorm::new(&p / "ln_1", d),
            c_attn: lin(&p / "attn" / "c_attn", d, 3 * d, LinearInit::Normal(0.02)),
            attn_proj: lin(&p / "attn" / "c_proj", d, d, proj),
            ln_2: LayerNorm::new(&p / "ln_2", d),
            c_fc: lin(&p / "mlp" / "c_fc", d, 4 * d, LinearInit::Normal(0.02)),
            mlp_proj: lin(&p / "mlp" / "c_proj", 4 * d, d, proj),
        }
    }

    fn attention(&self, x: &Tensor, cfg: &GptConfig, train: bool, kind: Kind) -> Tensor {
        let (b, t, d) = x.size3().unwrap();
        let (h, hd) = (cfg.n_head, cfg.head_dim());
        let qkv = self
            .c_attn
            .forward(x, kind)
            .view([b, t, 3, h, hd])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let p = if train { cfg.attn_dropout } else { 0.0 };
        let y =
            Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, p, true, None, false);
        let y = y.transpose(1, 2).contiguous().view([b, t, d]);
        self.attn_proj.forward(&y, kind).dropout(cfg.dropout, train)
    }

    fn mlp(&self, x: &Tensor, cfg: &GptConfig, train: bool, kind: Kind) -> Tensor {
        // GPT-2's tanh GELU, so Hugging Face weights give the same outputs.
        let h = self.c_fc.forward(x, kind).gelu("tanh");
        self.mlp_proj.forward(&h, kind).dropout(cfg.dropout, train)
    }

    /// Residual stream stays fp32; branch outputs are added back in fp32.
    fn forward(&self, x: &Tensor, cfg: &GptConfig, train: bool, kind: Kind) -> Tensor {
        let x = x + self
            .attention(&self.ln_1.forward(x), cfg, train, kind)
            .to_kind(Kind::Float);
        &x + self
            .mlp(&self.ln_2.forward(&x), cfg, train, kind)
            .to_kind(Kind::Float)
    }
}

/// The GPT-2 model; its parameters live in the `VarStore` it was built in.
pub struct Gpt {
    pub cfg: GptConfig,
    wte: Tensor,
    /// Learned: [ctx, d]; factorized: t, h, w tables.
    wpe: Vec<Tensor>,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Option<Tensor>,
}

impl Gpt {
    /// Builds a freshly initialised model (seed the RNG with `tch::manual_seed` first for
    /// reproducible weights).
    pub fn new(vs: &nn::Path, cfg: &GptConfig) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.d_model;
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let wte = (vs / "wte").var("weight", &[cfg.vocab, d], init);
        let wpe = match (cfg.pos, cfg.latent_shape) {
            (PosEmbedding::Factorized, Some([t, h, w])) => vec![
                (vs / "wpe_t").var("weight", &[t, d], init),
                (vs / "wpe_h").var("weight", &[h, d], init),
                (vs / "wpe_w").var("weight", &[w, d], init),
            ],
            _ => vec![(vs / "wpe").var("weight", &[cfg.ctx, d], init)],
        };
        let blocks = (0..cfg.n_layer)
            .map(|i| Block::new(vs / "h" / i, cfg))
            .collect();
        let ln_f = LayerNorm::new(vs / "ln_f", d);
        let lm_head =
            (!cfg.tie_weights).then(|| (vs / "lm_head").var("weight", &[cfg.vocab, d], init));
        Ok(Self {
            cfg: cfg.clone(),
            wte,
            wpe,
            blocks,
            ln_f,
            lm_head,
        })
    }

    /// Position embeddings for positions 0..t, [t, d] fp32.
    fn positions(&self, t: i64) -> Tensor {
        let dev = self.wte.device();
        let pos = Tensor::arange(t, (Kind::Int64, dev));
        match (self.cfg.pos, self.cfg.latent_shape) {
            (PosEmbedding::Factorized, Some([_, h, w])) => {
                let ti = pos.divide_scalar_mode(h * w, "floor");
                let hi = pos.divide_scalar_mode(w, "floor").remainder(h);
                let wi = pos.remainder(w);
                Tensor::embedding(&self.wpe[0], &ti, -1, false, false)
                    + Tensor::embedding(&self.wpe[1], &hi, -1, false, false)
                    + Tensor::embedding(&self.wpe[2], &wi, -1, false, false)
            }
            _ => Tensor::embedding(&self.wpe[0], &pos, -1, false, false),
        }
    }

    fn check_input(&self, idx: &Tensor) -> Result<(i64, i64)> {
        let size = idx.size();
        if size.len() != 2 {
            bail!("GPT input must be [batch, time] token ids, got shape {size:?}");
        }
        if idx.kind() != Kind::Int64 {
            bail!("GPT input must be int64 token ids, got {:?}", idx.kind());
        }
        let (b, t) = (size[0], size[1]);
        if t == 0 || t > self.cfg.ctx {
            bail!(
                "sequence length {t} must be in 1..={} (the config's ctx)",
                self.cfg.ctx
            );
        }
        self.check_ids(idx)?;
        Ok((b, t))
    }

    /// Token ids (inputs or targets) within the vocab. Checked where it costs no device sync
    /// (CPU tensors); training data is validated when loaded, so GPU steps stay asynchronous.
    fn check_ids(&self, ids: &Tensor) -> Result<()> {
        if ids.numel() > 0 && ids.device() == tch::Device::Cpu {
            let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
            if lo < 0 || hi >= self.cfg.vocab {
                bail!(
                    "token ids must be in 0..{}, found range {lo}..={hi}",
                    self.cfg.vocab
                );
            }
        }
        Ok(())
    }

    /// Runs the trunk; returns the final (pre-ln_f) residual stream and the hidden states of
    /// the requested layers (0 = embeddings, l = output of block l), all fp32 [b, t, d].
    pub fn trunk(
        &self,
        idx: &Tensor,
        train: bool,
        kind: Kind,
        keep: &[usize],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (_, t) = self.check_input(idx)?;
        if let Some(&l) = keep.iter().find(|&&l| l as i64 > self.cfg.n_layer) {
            bail!(
                "layer {l} does not exist: the model has layers 0..={}",
                self.cfg.n_layer
            );
        }
        let tok = Tensor::embedding(&self.wte, idx, -1, false, false);
        let mut x = (tok + self.positions(t)).dropout(self.cfg.dropout, train);
        let mut kept: Vec<Option<Tensor>> = keep.iter().map(|_| None).collect();
        let record = |l: usize, x: &Tensor, kept: &mut Vec<Option<Tensor>>| {
            for (slot, &k) in kept.iter_mut().zip(keep) {
                if k == l {
                    *slot = Some(x.shallow_clone());
                }
            }
        };
        record(0, &x, &mut kept);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, &self.cfg, train, kind);
            record(i + 1, &x, &mut kept);
        }
        Ok((
            x,
            kept.into_iter()
                .map(|k| k.expect("every layer index was checked"))
                .collect(),
        ))
    }

    /// Logits [b, t, vocab] in the compute dtype.
    pub fn forward(&self, idx: &Tensor, train: bool, kind: Kind) -> Result<Tensor> {
        let (x, _) = self.trunk(idx, train, kind, &[])?;
        let head = self.lm_head.as_ref().unwrap_or(&self.wte);
        Ok(self
            .ln_f
            .forward(&x)
            .to_kind(kind)
            .linear(&head.to_kind(kind), None::<Tensor>))
    }

    /// Mean next-token cross-entropy (fp32) of `targets` given `idx`, both [b, t].
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, train: bool, kind: Kind) -> Result<Tensor> {
        let logits = self.forward(idx, train, kind)?;
        if targets.size() != idx.size() {
            bail!(
                "targets shape {:?} differs from inputs {:?}",
                targets.size(),
                idx.size()
            );
        }
        self.check_ids(targets)?;
        Ok(logits
            .to_kind(Kind::Float)
            .reshape([-1, self.cfg.vocab])
            .cross_entropy_loss(
                &targets.reshape([-1]),
                None::<Tensor>,
                tch::Reduction::Mean,
                -100,
                0.0,
            ))
    }
}

/// Names of parameters that get weight decay: matrices (matmuls and embeddings), as in
/// nanoGPT; biases and layer-norm gains do not.
pub fn decays(name: &str, t: &Tensor) -> bool {
    t.dim() >= 2 && !name.contains("ln_")
}

/// One micro-batch for the prior: inputs and next-token targets, both [b, t] int64.
pub struct TokenBatch {
    pub x: Tensor,
    pub y: Tensor,
}

impl Model for Gpt {
    type Config = GptConfig;
    type Batch = TokenBatch;

    fn build(root: &nn::Path, cfg: &GptConfig) -> Result<Self> {
        Gpt::new(root, cfg)
    }

    fn config(&self) -> &GptConfig {
        &self.cfg
    }

    fn decays(name: &str, p: &Tensor) -> bool {
        decays(name, p)
    }

    /// Next-token cross-entropy; token ids (inputs and targets) are checked against the vocab in
    /// [`Gpt::loss`] when the batch is on the CPU (on a GPU the check would cost a device sync
    /// per micro-batch).
    fn loss(&self, b: &TokenBatch, train: bool, kind: Kind) -> Result<Loss> {
        let l = b.x.size().get(1).copied().unwrap_or(0);
        if l < 1 || l > self.cfg.ctx {
            bail!(
                "sequences of {} tokens need 2 ≤ length ≤ ctx + 1 = {}",
                l + 1,
                self.cfg.ctx + 1
            );
        }
        Ok(Loss::plain(self.loss(&b.x, &b.y, train, kind)?))
    }

    fn units(&self, b: &TokenBatch) -> u64 {
        b.y.numel() as u64
    }

    fn info(&self) -> serde_json::Value {
        serde_json::to_value(self.cfg.param_counts()).unwrap_or_default()
    }

    /// `config.toml` beside the checkpoints, read by the feature extractor.
    fn save_extra(&self, dir: &Path) -> Result<()> {
        crate::core::io::write_bytes(&dir.join("config.toml"), self.cfg.to_toml()?.as_bytes())
    }
}

fn token_batch(seqs: &Tensor, device: Device) -> Result<TokenBatch> {
    let l = seqs.size()[1];
    let seqs = seqs.to_device(device);
    Ok(TokenBatch {
        x: seqs.narrow(1, 0, l - 1),
        y: seqs.narrow(1, 1, l - 1),
    })
}

fn sequences(data: &Tensor, what: &str) -> Result<(i64, i64)> {
    let (n, l) = data
        .size2()
        .with_context(|| format!("{what} data must be [sequences, tokens]"))?;
    Ok((n, l))
}

/// Token sequences [n, L] as training and held-out data at once: micro-batches of random
/// rows (with replacement), held-out batches of consecutive rows.
impl Data<TokenBatch> for Tensor {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<TokenBatch> {
        let (n, l) = sequences(self, "training")?;
        if n == 0 {
            bail!("no training sequences");
        }
        if l < 2 {
            bail!("sequences of {l} tokens need 2 ≤ length");
        }
        let rows: Vec<i64> = (0..batch_size).map(|_| rng.gen_range(0..n)).collect();
        token_batch(&self.index_select(0, &Tensor::from_slice(&rows)), device)
    }

    fn eval_len(&self) -> usize {
        match self.size2() {
            Ok((n, l)) if l >= 2 => n as usize,
            _ => 0,
        }
    }

    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<TokenBatch> {
        sequences(self, "held-out")?;
        token_batch(&self.narrow(0, start as i64, len as i64), device)
    }
}
