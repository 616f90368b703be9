//! Small building blocks shared by the models ([`crate::models::gpt`], [`crate::models::biot`],
//! [`crate::models::citrus`], ...): linear and layer-norm layers with explicit compute dtype
//! (master weights fp32, matmul inputs cast to `kind`, norms in fp32 — what autocast does), the
//! linear init an argument (PyTorch's default or GPT-2's normal), and the sinusoidal position
//! table of "Attention is all you need" (§3.5).
use tch::{nn, Kind, Tensor};

/// How a [`Linear`] layer's variables start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinearInit {
    /// PyTorch's default: weight and bias ~ U(±1/√fan_in).
    Torch,
    /// GPT-2's: weight ~ N(0, σ²) with this σ, bias zeros.
    Normal(f64),
}

/// `torch.nn.Linear`: weight [out, in], bias [out] (optional).
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// With PyTorch's default init ([`LinearInit::Torch`]).
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, bias: bool) -> Self {
        Self::with_init(p, d_in, d_out, bias, LinearInit::Torch)
    }

    /// Variables `weight` then `bias` under `p` (that order keeps seeded inits unchanged).
    pub fn with_init(p: nn::Path, d_in: i64, d_out: i64, bias: bool, init: LinearInit) -> Self {
        let (w, b) = match init {
            LinearInit::Torch => {
                let b = 1.0 / (d_in as f64).sqrt();
                let u = nn::Init::Uniform { lo: -b, up: b };
                (u, u)
            }
            LinearInit::Normal(stdev) => {
                (nn::Init::Randn { mean: 0.0, stdev }, nn::Init::Const(0.0))
            }
        };
        Self {
            weight: p.var("weight", &[d_out, d_in], w),
            bias: bias.then(|| p.var("bias", &[d_out], b)),
        }
    }

    /// x [..., in] → [..., out] in `kind`.
    pub fn forward(&self, x: &Tensor, kind: Kind) -> Tensor {
        x.to_kind(kind).linear(
            &self.weight.to_kind(kind),
            self.bias.as_ref().map(|b| b.to_kind(kind)),
        )
    }
}

/// `torch.nn.LayerNorm(d)` (eps 1e-5), always computed in fp32.
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl LayerNorm {
    pub fn new(p: nn::Path, d: i64) -> Self {
        Self {
            weight: p.ones("weight", &[d]),
            bias: p.zeros("bias", &[d]),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let d = self.weight.size()[0];
        x.to_kind(Kind::Float)
            .layer_norm([d], Some(&self.weight), Some(&self.bias), 1e-5, true)
    }
}

/// Sinusoidal position table [n, d] (fp32): pe[t, 2i] = sin(t·ω_i), pe[t, 2i+1] = cos(t·ω_i),
/// ω_i = 10000^(−2i/d), computed in log space as BIOT's `PositionalEncoding` does. `d` even.
pub fn sinusoidal_table(n: i64, d: i64, device: tch::Device) -> Tensor {
    let opts = (Kind::Float, device);
    let pos = Tensor::arange(n, opts).unsqueeze(1);
    let div = (Tensor::arange_start_step(0, d, 2, opts) * (-(10000f64.ln()) / d as f64)).exp();
    let arg = pos * div.unsqueeze(0); // [n, d/2]
                                      // Interleave sin and cos: stack on a last axis then flatten.
    Tensor::stack(&[arg.sin(), arg.cos()], 2).reshape([n, d])
}

/// Per-parameter weight decay rule shared by the bio-signal models: matrices decay, biases,
/// norm gains, embeddings tables of channels and learned mask/position tokens do not.
pub fn decays(name: &str, t: &Tensor) -> bool {
    t.dim() >= 2
        && !name.contains("norm")
        && !name.contains("channel_tokens")
        && !name.contains("mask_token")
        && !name.contains("pos_embedding")
}
