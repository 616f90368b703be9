//! Small building blocks shared by the bio-signal models ([`crate::models::biot`], [`crate::models::citrus`]):
//! PyTorch-initialised linear and layer-norm layers with explicit compute dtype (master weights
//! fp32, matmul inputs cast to `kind`, norms in fp32 — what autocast does), and the sinusoidal
//! position table of "Attention is all you need" (§3.5).
use tch::{nn, Kind, Tensor};

/// `torch.nn.Linear` with PyTorch's default init: weight and bias ~ U(±1/√fan_in).
/// Weight [out, in], bias [out] (optional).
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, bias: bool) -> Self {
        let b = 1.0 / (d_in as f64).sqrt();
        let init = nn::Init::Uniform { lo: -b, up: b };
        Self {
            weight: p.var("weight", &[d_out, d_in], init),
            bias: bias.then(|| p.var("bias", &[d_out], init)),
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
