//! VideoGPT's VQ-VAE (Yan et al. 2021), the tokenizer of the video prior.
//!
//! Encoder: stride-2 3D convs (kernel 4) until the (t, h, w) downsampling is reached, a kernel-3
//! conv, then residual blocks carrying axial attention over time, height and width. Decoder:
//! the mirror image with transposed convs. Codebook: `n_codes` vectors of `embedding_dim`,
//! updated by exponential moving averages (no gradient), dead codes restarted from encoder
//! outputs, commitment loss β·‖z − sg(e)‖². Pixels are scaled to [-0.5, 0.5]; frames are resized
//! (shorter side) and centre-cropped to `resolution`.
//!
//! The tokenizer stage around it (frame preprocessing, clips, training, code caches) is
//! [`crate::fmri::tokenize`].
use crate::models::ModelConfig;
use crate::nn::trainer::{Loss, Model};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::ModuleT, Kind, Tensor};

/// Architecture and codebook settings; fields missing from a TOML file take VideoGPT's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VqVaeConfig {
    /// Frame side after resize and centre crop.
    pub resolution: i64,
    /// Frames per clip.
    pub clip_len: i64,
    /// Downsampling factors (t, h, w), powers of two.
    pub downsample: [i64; 3],
    pub n_hiddens: i64,
    pub n_res_layers: i64,
    pub n_codes: i64,
    pub embedding_dim: i64,
    pub attn_heads: i64,
    pub ema_decay: f64,
    /// Commitment loss weight β.
    pub commitment: f64,
    /// Whether the two convolutions of each residual block carry a bias. brainscale's own
    /// tokenizers do (the default); VideoGPT's `AttentionResidualBlock` builds them with
    /// `bias=False`, so imported checkpoints set it to false and hold exactly the reference's
    /// parameters (2,880 fewer at n_hiddens 240 and 4 residual layers).
    pub res_conv_bias: bool,
    /// How frames are resized to `resolution` before encoding (see [`Resize`]).
    pub resize: Resize,
}

/// Frame preprocessing before the VQ-VAE: both scale the shorter side to the resolution and
/// crop the centre; they differ in the interpolation and rounding of the resized size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// brainscale's: antialiased bilinear to (round(h·s), round(w·s)) (the default, what
    /// `tokenizer train` uses).
    #[default]
    Antialiased,
    /// VideoGPT's `data.preprocess`: plain bilinear (`F.interpolate(mode='bilinear',
    /// align_corners=False)`, no antialiasing) to ceil(side·s) of the longer side, then the
    /// centre crop; what imported VideoGPT tokenizers were trained with.
    Videogpt,
}

impl Default for VqVaeConfig {
    fn default() -> Self {
        Self {
            resolution: 64,
            clip_len: 16,
            downsample: [4, 4, 4],
            n_hiddens: 240,
            n_res_layers: 4,
            n_codes: 2048,
            embedding_dim: 256,
            attn_heads: 2,
            ema_decay: 0.99,
            commitment: 0.25,
            res_conv_bias: true,
            resize: Resize::Antialiased,
        }
    }
}

impl ModelConfig for VqVaeConfig {
    const ARCH: &'static str = "vqvae";

    fn validate(&self) -> Result<()> {
        for (n, v) in [
            ("resolution", self.resolution),
            ("clip_len", self.clip_len),
            ("n_hiddens", self.n_hiddens),
            ("n_res_layers", self.n_res_layers),
            ("n_codes", self.n_codes),
            ("embedding_dim", self.embedding_dim),
            ("attn_heads", self.attn_heads),
        ] {
            if v <= 0 {
                bail!("{n} must be positive, got {v}");
            }
        }
        for (d, (&f, size)) in self
            .downsample
            .iter()
            .zip([self.clip_len, self.resolution, self.resolution])
            .enumerate()
        {
            if f <= 0 || f & (f - 1) != 0 || size % f != 0 {
                bail!("downsample[{d}] = {f} must be a power of two dividing {size}");
            }
        }
        if self.n_hiddens % 2 != 0 || self.n_hiddens % self.attn_heads != 0 {
            bail!(
                "n_hiddens {} must be even and divisible by attn_heads {}",
                self.n_hiddens,
                self.attn_heads
            );
        }
        if !(0.0..1.0).contains(&self.ema_decay) || self.commitment < 0.0 {
            bail!("ema_decay must be in [0, 1) and commitment non-negative");
        }
        Ok(())
    }
}

impl VqVaeConfig {
    /// Code grid (t, h, w) of one clip.
    pub fn latent_shape(&self) -> [i64; 3] {
        [
            self.clip_len / self.downsample[0],
            self.resolution / self.downsample[1],
            self.resolution / self.downsample[2],
        ]
    }
}

/// Conv3d with TensorFlow-style "same" padding (total k − s, front gets the odd one), as in
/// VideoGPT's `SamePadConv3d`.
struct SamePadConv3d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: [i64; 3],
    pad: [i64; 6],
}

fn same_pad(k: [i64; 3], s: [i64; 3]) -> [i64; 6] {
    // constant_pad_nd takes (w_front, w_back, h_front, h_back, t_front, t_back).
    let mut pad = [0; 6];
    for d in 0..3 {
        let p = k[d] - s[d];
        pad[2 * (2 - d)] = p / 2 + p % 2;
        pad[2 * (2 - d) + 1] = p / 2;
    }
    pad
}

/// A parameter initialised uniformly in [-bound, bound] (PyTorch's default for convolutions).
fn uniform(p: &nn::Path, name: &str, shape: &[i64], bound: f64) -> Tensor {
    p.var(
        name,
        shape,
        nn::Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )
}

impl SamePadConv3d {
    fn new(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: [i64; 3]) -> Self {
        Self::with_bias(p, c_in, c_out, k, stride, true)
    }

    fn with_bias(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: [i64; 3], bias: bool) -> Self {
        let fan_in = (c_in * k * k * k) as f64;
        let bound = 1.0 / fan_in.sqrt();
        Self {
            weight: uniform(&p, "weight", &[c_out, c_in, k, k, k], bound),
            bias: bias.then(|| uniform(&p, "bias", &[c_out], bound)),
            stride,
            pad: same_pad([k; 3], stride),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.constant_pad_nd(self.pad)
            .conv3d(&self.weight, self.bias.as_ref(), self.stride, 0, 1, 1)
    }
}

/// Transposed conv with VideoGPT's `SamePadConvTranspose3d` padding (output = input × stride).
struct SamePadConvT3d {
    weight: Tensor,
    bias: Tensor,
    stride: [i64; 3],
    pad: [i64; 6],
    k: i64,
}

impl SamePadConvT3d {
    fn new(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: [i64; 3]) -> Self {
        let fan_in = (c_out * k * k * k) as f64;
        let bound = 1.0 / fan_in.sqrt();
        Self {
            weight: uniform(&p, "weight", &[c_in, c_out, k, k, k], bound),
            bias: uniform(&p, "bias", &[c_out], bound),
            stride,
            pad: same_pad([k; 3], stride),
            k,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let p = self.k - 1;
        Tensor::conv_transpose3d(
            &x.constant_pad_nd(self.pad),
            &self.weight,
            Some(&self.bias),
            self.stride,
            [p, p, p],
            [0, 0, 0],
            1,
            [1, 1, 1],
        )
    }
}

/// Multi-head attention along one axis of a [B, T, H, W, C] tensor.
struct AxialAttention {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    fc_w: Tensor,
    fc_b: Tensor,
    heads: i64,
    axis: i64,
}

impl AxialAttention {
    fn new(p: nn::Path, c: i64, heads: i64, axis: i64) -> Self {
        let std = 1.0 / (c as f64).sqrt();
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        Self {
            q: (&p / "w_qs").var("weight", &[c, c], init),
            k: (&p / "w_ks").var("weight", &[c, c], init),
            v: (&p / "w_vs").var("weight", &[c, c], init),
            // VideoGPT's output projection has std 1/sqrt(C·n_layer), and its `AxialBlock`
            // passes n_layer = 1 whatever the number of residual layers: 1/sqrt(C).
            fc_w: (&p / "fc").var("weight", &[c, c], init),
            fc_b: (&p / "fc").zeros("bias", &[c]),
            heads,
            axis,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        // x: [B, T, H, W, C]; bring the attended axis next to the channels.
        let xm = x.movedim(&[self.axis], &[3]);
        let s = xm.size();
        let (l, c) = (s[3], s[4]);
        let hd = c / self.heads;
        let flat = xm.reshape([-1, l, c]);
        let split = |w: &Tensor| {
            flat.linear(w, None::<Tensor>)
                .view([-1, l, self.heads, hd])
                .transpose(1, 2)
        };
        let y = Tensor::scaled_dot_product_attention(
            &split(&self.q),
            &split(&self.k),
            &split(&self.v),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let y = y
            .transpose(1, 2)
            .reshape([-1, l, c])
            .linear(&self.fc_w, Some(&self.fc_b));
        y.view(s.as_slice()).movedim(&[3], &[self.axis])
    }
}

/// BN, ReLU, conv3 (n → n/2), BN, ReLU, conv1 (n/2 → n), BN, ReLU, axial attention; residual.
struct AttentionResidualBlock {
    bn1: nn::BatchNorm,
    conv1: SamePadConv3d,
    bn2: nn::BatchNorm,
    conv2: SamePadConv3d,
    bn3: nn::BatchNorm,
    attn: [AxialAttention; 3],
}

impl AttentionResidualBlock {
    fn new(p: nn::Path, n: i64, heads: i64, bias: bool) -> Self {
        let bn = |name: &str, c: i64| nn::batch_norm3d(&p / name, c, Default::default());
        Self {
            bn1: bn("bn1", n),
            conv1: SamePadConv3d::with_bias(&p / "conv1", n, n / 2, 3, [1, 1, 1], bias),
            bn2: bn("bn2", n / 2),
            conv2: SamePadConv3d::with_bias(&p / "conv2", n / 2, n, 1, [1, 1, 1], bias),
            bn3: bn("bn3", n),
            attn: [1, 2, 3]
                .map(|axis| AxialAttention::new(&p / format!("attn_{axis}"), n, heads, axis)),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.conv1.forward(&self.bn1.forward_t(x, train).relu());
        let h = self.conv2.forward(&self.bn2.forward_t(&h, train).relu());
        let h = self
            .bn3
            .forward_t(&h, train)
            .relu()
            .permute([0, 2, 3, 4, 1]);
        let a = self
            .attn
            .iter()
            .map(|m| m.forward(&h))
            .reduce(|a, b| a + b)
            .unwrap();
        x + a.permute([0, 4, 1, 2, 3])
    }
}

struct ResStack {
    blocks: Vec<AttentionResidualBlock>,
    bn: nn::BatchNorm,
}

impl ResStack {
    fn new(p: nn::Path, cfg: &VqVaeConfig) -> Self {
        Self {
            blocks: (0..cfg.n_res_layers)
                .map(|i| {
                    AttentionResidualBlock::new(
                        &p / i,
                        cfg.n_hiddens,
                        cfg.attn_heads,
                        cfg.res_conv_bias,
                    )
                })
                .collect(),
            bn: nn::batch_norm3d(&p / "bn", cfg.n_hiddens, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self
            .blocks
            .iter()
            .fold(x.shallow_clone(), |h, b| b.forward(&h, train));
        self.bn.forward_t(&h, train).relu()
    }
}

/// Number of stride-2 stages and the stride of each.
fn stages(ds: [i64; 3]) -> Vec<[i64; 3]> {
    let mut n = ds.map(|f| f.trailing_zeros() as i64);
    let max = *n.iter().max().unwrap();
    (0..max)
        .map(|_| {
            let s = n.map(|k| if k > 0 { 2 } else { 1 });
            n = n.map(|k| (k - 1).max(0));
            s
        })
        .collect()
}

/// The EMA codebook.
struct Codebook {
    embeddings: Tensor,
    /// EMA of code usage counts (N) and of the sums of assigned vectors.
    n: Tensor,
    z_avg: Tensor,
    /// 1 once initialised from data.
    initialized: Tensor,
    decay: f64,
    beta: f64,
}

/// What quantisation returns.
pub struct Quantized {
    /// Quantised latents with straight-through gradients, [B, D, t, h, w].
    pub z_q: Tensor,
    /// Code indices [B, t, h, w].
    pub codes: Tensor,
    pub commitment_loss: Tensor,
    /// exp(entropy) of code usage in the batch.
    pub perplexity: f64,
}

impl Codebook {
    fn new(p: nn::Path, cfg: &VqVaeConfig) -> Self {
        let (k, d) = (cfg.n_codes, cfg.embedding_dim);
        // Buffers, not parameters: the codebook is updated by EMA, not by gradients; it is
        // initialised from the first training batch.
        let mut embeddings = p.zeros_no_train("embeddings", &[k, d]);
        tch::no_grad(|| {
            embeddings.copy_(&Tensor::randn([k, d], (Kind::Float, embeddings.device())))
        });
        Self {
            embeddings,
            n: p.zeros_no_train("N", &[k]),
            z_avg: p.zeros_no_train("z_avg", &[k, d]),
            initialized: p.zeros_no_train("initialized", &[1]),
            decay: cfg.ema_decay,
            beta: cfg.commitment,
        }
    }

    /// `k` rows of `flat` at random (repeated with a little noise if there are fewer rows).
    fn random_rows(flat: &Tensor, k: i64) -> Tensor {
        let (n, d) = flat.size2().unwrap();
        let y = if n < k {
            let reps = (k + n - 1) / n;
            let std = 0.01 / (d as f64).sqrt();
            let y = flat.repeat([reps, 1]);
            &y + y.randn_like() * std
        } else {
            flat.shallow_clone()
        };
        let idx = Tensor::randperm(y.size()[0], (Kind::Int64, flat.device())).narrow(0, 0, k);
        y.index_select(0, &idx)
    }

    fn codes_of(&self, flat: &Tensor) -> Tensor {
        let dist = flat
            .square()
            .sum_dim_intlist([1i64].as_slice(), true, Kind::Float)
            - flat.matmul(&self.embeddings.tr()) * 2.0
            + self
                .embeddings
                .square()
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                .unsqueeze(0);
        dist.argmin(1, false)
    }

    fn forward(&self, z: &Tensor, train: bool) -> Quantized {
        let s = z.size();
        let (b, d) = (s[0], s[1]);
        let flat = z.permute([0, 2, 3, 4, 1]).reshape([-1, d]);
        let k = self.embeddings.size()[0];
        // The EMA state is updated in place through shallow handles (same storage), so a
        // training forward pass needs no `&mut self`.
        let (mut embeddings, mut z_avg, mut n, mut initialized) = (
            self.embeddings.shallow_clone(),
            self.z_avg.shallow_clone(),
            self.n.shallow_clone(),
            self.initialized.shallow_clone(),
        );
        if train && self.initialized.double_value(&[0]) == 0.0 {
            tch::no_grad(|| {
                let init = Self::random_rows(&flat.detach(), k);
                embeddings.copy_(&init);
                z_avg.copy_(&init);
                let _ = n.fill_(1.0);
                let _ = initialized.fill_(1.0);
            });
        }
        let idx = tch::no_grad(|| self.codes_of(&flat.detach()));
        let onehot = idx.one_hot(k).to_kind(Kind::Float);
        let e = self
            .embeddings
            .index_select(0, &idx)
            .view([b, s[2], s[3], s[4], d])
            .permute([0, 4, 1, 2, 3]);
        let commitment_loss = (z - e.detach()).square().mean(Kind::Float) * self.beta;
        if train {
            tch::no_grad(|| {
                let f = flat.detach();
                let a = 1.0 - self.decay;
                let _ = n
                    .g_mul_scalar_(self.decay)
                    .g_add_(&(onehot.sum_dim_intlist([0i64].as_slice(), false, Kind::Float) * a));
                let _ = z_avg
                    .g_mul_scalar_(self.decay)
                    .g_add_(&(onehot.tr().matmul(&f) * a));
                // Laplace-smoothed counts so unused codes do not divide by zero.
                let total = self.n.sum(Kind::Float);
                let w = (&self.n + 1e-7) / (&total + k as f64 * 1e-7) * &total;
                let new = &self.z_avg / w.unsqueeze(1);
                // Dead codes (EMA usage below one) restart at random encoder outputs.
                let used = self.n.ge(1.0).to_kind(Kind::Float).unsqueeze(1);
                let fresh = Self::random_rows(&f, k);
                embeddings.copy_(&(&new * &used + fresh * (1.0 - &used)));
            });
        }
        let probs = onehot.mean_dim([0i64].as_slice(), false, Kind::Float);
        let perplexity = (-(&probs * (&probs + 1e-10).log()).sum(Kind::Float))
            .exp()
            .double_value(&[]);
        let z_q = (&e - z).detach() + z;
        Quantized {
            z_q,
            codes: idx.view([b, s[2], s[3], s[4]]),
            commitment_loss,
            perplexity,
        }
    }
}

/// The VQ-VAE; parameters live in the `VarStore` it was built in.
pub struct VqVae {
    pub cfg: VqVaeConfig,
    enc_convs: Vec<SamePadConv3d>,
    enc_last: SamePadConv3d,
    enc_res: ResStack,
    pre_vq: SamePadConv3d,
    codebook: Codebook,
    post_vq: SamePadConv3d,
    dec_res: ResStack,
    dec_convts: Vec<SamePadConvT3d>,
}

/// Losses of one forward pass.
pub struct VqOutput {
    pub recon: Tensor,
    /// MSE / 0.06 (VideoGPT normalises by the data variance of its datasets).
    pub recon_loss: Tensor,
    pub commitment_loss: Tensor,
    pub codes: Tensor,
    pub perplexity: f64,
}

impl VqVae {
    pub fn new(vs: &nn::Path, cfg: &VqVaeConfig) -> Result<Self> {
        cfg.validate()?;
        let n = cfg.n_hiddens;
        let st = stages(cfg.downsample);
        let enc_convs = st
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                SamePadConv3d::new(
                    vs / "encoder" / format!("conv{i}"),
                    if i == 0 { 3 } else { n },
                    n,
                    4,
                    s,
                )
            })
            .collect();
        let dec_convts = st
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let out = if i + 1 == st.len() { 3 } else { n };
                SamePadConvT3d::new(vs / "decoder" / format!("convt{i}"), n, out, 4, s)
            })
            .collect();
        Ok(Self {
            cfg: cfg.clone(),
            enc_convs,
            enc_last: SamePadConv3d::new(vs / "encoder" / "conv_last", n, n, 3, [1, 1, 1]),
            enc_res: ResStack::new(vs / "encoder" / "res_stack", cfg),
            pre_vq: SamePadConv3d::new(vs / "pre_vq_conv", n, cfg.embedding_dim, 1, [1, 1, 1]),
            codebook: Codebook::new(vs / "codebook", cfg),
            post_vq: SamePadConv3d::new(vs / "post_vq_conv", cfg.embedding_dim, n, 1, [1, 1, 1]),
            dec_res: ResStack::new(vs / "decoder" / "res_stack", cfg),
            dec_convts,
        })
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        let s = x.size();
        let c = &self.cfg;
        if s.len() != 5
            || s[1] != 3
            || s[2] != c.clip_len
            || s[3] != c.resolution
            || s[4] != c.resolution
        {
            bail!(
                "VQ-VAE input must be [batch, 3, {}, {}, {}] pixels in [-0.5, 0.5], got {s:?}",
                c.clip_len,
                c.resolution,
                c.resolution
            );
        }
        Ok(())
    }

    fn encode_latent(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for c in &self.enc_convs {
            h = c.forward(&h).relu();
        }
        let h = self.enc_res.forward(&self.enc_last.forward(&h), train);
        self.pre_vq.forward(&h)
    }

    fn decode_latent(&self, z_q: &Tensor, train: bool) -> Tensor {
        let mut h = self.dec_res.forward(&self.post_vq.forward(z_q), train);
        let last = self.dec_convts.len() - 1;
        for (i, c) in self.dec_convts.iter().enumerate() {
            h = c.forward(&h);
            if i < last {
                h = h.relu();
            }
        }
        h
    }

    /// Encode, quantise (updating the codebook when `train`), decode.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<VqOutput> {
        self.check(x)?;
        let z = self.encode_latent(x, train);
        let q = self.codebook.forward(&z, train);
        let recon = self.decode_latent(&q.z_q, train);
        let recon_loss = (&recon - x).square().mean(Kind::Float) / 0.06;
        Ok(VqOutput {
            recon,
            recon_loss,
            commitment_loss: q.commitment_loss,
            codes: q.codes,
            perplexity: q.perplexity,
        })
    }

    /// Codes [B, t, h, w] of clips [B, 3, T, H, W] (evaluation mode).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x)?;
        Ok(tch::no_grad(|| {
            let z = self.encode_latent(x, false);
            let d = z.size()[1];
            let s = z.size();
            let flat = z.permute([0, 2, 3, 4, 1]).reshape([-1, d]);
            self.codebook.codes_of(&flat).view([s[0], s[2], s[3], s[4]])
        }))
    }

    /// Pixels [B, 3, T, H, W] from codes [B, t, h, w].
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let want = self.cfg.latent_shape();
        let s = codes.size();
        if s.len() != 4 || s[1..] != want {
            bail!(
                "codes must be [batch, {}, {}, {}], got {s:?}",
                want[0],
                want[1],
                want[2]
            );
        }
        Ok(tch::no_grad(|| {
            let e = self
                .codebook
                .embeddings
                .index_select(0, &codes.reshape([-1]));
            let z = e
                .view([s[0], s[1], s[2], s[3], -1])
                .permute([0, 4, 1, 2, 3]);
            self.decode_latent(&z, false)
        }))
    }
}

/// The VQ-VAE trains through the engine on clips [B, 3, T, H, W] in fp32 (the codebook's EMA
/// update runs inside the training forward pass); the loss is reconstruction + commitment, and
/// the reconstruction loss and codebook perplexity are logged.
impl Model for VqVae {
    type Config = VqVaeConfig;
    type Batch = Tensor;

    fn build(root: &nn::Path, cfg: &VqVaeConfig) -> Result<Self> {
        VqVae::new(root, cfg)
    }

    fn config(&self) -> &VqVaeConfig {
        &self.cfg
    }

    fn loss(&self, x: &Tensor, train: bool, _kind: Kind) -> Result<Loss> {
        let o = self.forward(x, train)?;
        Ok(Loss {
            total: &o.recon_loss + &o.commitment_loss,
            parts: vec![
                ("recon", o.recon_loss.detach()),
                ("perplexity", Tensor::from(o.perplexity)),
            ],
        })
    }

    fn units(&self, x: &Tensor) -> u64 {
        x.size()[0] as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// One EMA step by hand: decay 0.5, two codes used, a third never used (restarted).
    #[test]
    fn ema_codebook_update_matches_the_closed_form() {
        tch::manual_seed(0);
        let cfg = VqVaeConfig {
            n_codes: 3,
            embedding_dim: 2,
            ema_decay: 0.5,
            ..VqVaeConfig::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cb = Codebook::new(vs.root(), &cfg);
        tch::no_grad(|| {
            cb.embeddings
                .copy_(&Tensor::from_slice(&[0.0f32, 0.0, 10.0, 10.0, 100.0, -100.0]).view([3, 2]));
            cb.z_avg.copy_(&cb.embeddings.copy());
            cb.n.copy_(&Tensor::from_slice(&[1.0f32, 1.0, 0.0]));
            let _ = cb.initialized.fill_(1.0);
        });
        // Four vectors on a 1×2×2 grid: two near code 0, two near code 1.
        let flat = [1.0f32, 0.0, 0.0, 1.0, 9.0, 10.0, 11.0, 10.0];
        let z = Tensor::from_slice(&flat)
            .view([1, 1, 2, 2, 2])
            .permute([0, 4, 1, 2, 3]);
        let q = cb.forward(&z, true);
        assert_eq!(
            Vec::<i64>::try_from(q.codes.reshape([-1])).unwrap(),
            vec![0, 0, 1, 1]
        );
        // N = 0.5·[1, 1, 0] + 0.5·[2, 2, 0]; z_avg0 = 0.5·0 + 0.5·(1, 1); z_avg1 = 0.5·10 + 0.5·(20, 20).
        let n: Vec<f32> = Vec::try_from(&cb.n).unwrap();
        assert_eq!(n, vec![1.5, 1.5, 0.0]);
        // Laplace smoothing: w_k = (N_k + ε)/(ΣN + Kε)·ΣN ≈ N_k, so e0 = (1/3, 1/3), e1 = (10, 10).
        let e: Vec<f32> = Vec::try_from(cb.embeddings.reshape([-1])).unwrap();
        for (got, want) in e[..4].iter().zip([1.0 / 3.0, 1.0 / 3.0, 10.0, 10.0]) {
            assert!((got - want).abs() < 1e-5, "{e:?}");
        }
        // The dead code restarted at one of the encoder outputs.
        let restarted = (0..4).any(|i| e[4] == flat[2 * i] && e[5] == flat[2 * i + 1]);
        assert!(restarted, "{e:?}");
        // Commitment loss: β·mean((z − e)²) with the pre-update codes e0 = 0, e1 = (10, 10).
        let want = 0.25 * (1.0 + 1.0 + 1.0 + 1.0) / 8.0;
        assert!((q.commitment_loss.double_value(&[]) - want).abs() < 1e-6);
    }
}
