//! The one FLOP count used everywhere (training throughput, MFU, scale benchmarks, scaling fits).
//!
//! Training FLOPs per token = 6·N + 12·L·T·d (PaLM, appendix B; nanoGPT's `estimate_mfu`):
//! 6·N for the forward and backward matmuls of N parameters, plus attention scores and
//! weighted values (2·T·d each per layer forward, ×3 for the backward pass). N counts every
//! parameter that takes part in a matmul per token: non-embedding weights plus the output
//! projection (tied to the token embedding or not); lookup-only tables (position embeddings)
//! do not count.

/// Training FLOPs per token for a decoder with `n_matmul_params` matmul parameters,
/// `n_layer` layers, context `ctx` and width `d_model`.
pub fn train_flops_per_token(n_matmul_params: u64, n_layer: u64, ctx: u64, d_model: u64) -> f64 {
    6.0 * n_matmul_params as f64 + 12.0 * (n_layer * ctx * d_model) as f64
}

/// Training FLOPs for `tokens` tokens.
pub fn train_flops(n_matmul_params: u64, n_layer: u64, ctx: u64, d_model: u64, tokens: u64) -> f64 {
    train_flops_per_token(n_matmul_params, n_layer, ctx, d_model) * tokens as f64
}

/// Training FLOPs per token of a non-causal **linear-attention** transformer (BIOT's encoder,
/// Katharopoulos et al. 2020 / `linear_attention_transformer`): 6·N + 12·L·d·d_h.
///
/// Per layer and head, the context Kᵀ·V costs 2·d_h² FLOPs per token and Q·context another
/// 2·d_h², so 4·d·d_h per token and layer forward (heads·d_h = d), ×3 with the backward pass:
/// 12·L·d·d_h. It replaces the 12·L·T·d of softmax attention (T → d_h: cost linear in T).
/// Softmaxes, layer norms and activations are not counted (as in the PaLM formula).
pub fn linear_attention_train_flops_per_token(
    n_matmul_params: u64,
    n_layer: u64,
    d_model: u64,
    head_dim: u64,
) -> f64 {
    6.0 * n_matmul_params as f64 + 12.0 * (n_layer * d_model * head_dim) as f64
}

/// Training FLOPs per input token of a **two-view contrastive** objective whose second view
/// keeps a random subset of the tokens (BIOT's unsupervised pretraining): both views go through
/// the encoder forward and backward, so each input token costs `per_token · (1 + kept_fraction)`
/// (`per_token` from [`linear_attention_train_flops_per_token`]; `kept_fraction` = mean share of
/// tokens the subset view keeps), plus 6 FLOPs per parameter applied once per sample (BIOT's
/// predictor MLP on one view), spread over the sample's `tokens_per_sample` tokens.
pub fn two_view_train_flops_per_token(
    per_token: f64,
    kept_fraction: f64,
    per_sample_params: u64,
    tokens_per_sample: u64,
) -> f64 {
    per_token * (1.0 + kept_fraction)
        + 6.0 * per_sample_params as f64 / tokens_per_sample.max(1) as f64
}

/// Training FLOPs of a 1-D convolution producing `l_out` positions: 6·c_in·c_out·k·l_out
/// (2 per multiply-add forward, ×3 with the backward pass; biases and norms not counted), the
/// convolutional analogue of 6·N per token with N = c_in·c_out·k weights applied at every output.
pub fn conv1d_train_flops(c_in: u64, c_out: u64, kernel: u64, l_out: u64) -> f64 {
    6.0 * (c_in * c_out * kernel * l_out) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn gpt2_small_matches_palm_formula() {
        // GPT-2 small with a 2048-code vocab: 12 layers × 12·768² weights + 2048·768 head.
        let n = 12 * 12 * 768 * 768 + 2048 * 768;
        let f = super::train_flops_per_token(n, 12, 1024, 768);
        assert_eq!(f, 6.0 * n as f64 + 12.0 * 12.0 * 1024.0 * 768.0);
        assert_eq!(super::train_flops(n, 12, 1024, 768, 10), 10.0 * f);
    }

    #[test]
    fn linear_attention_and_conv_terms() {
        // d 8, 2 heads (d_h 4), 3 layers: 4·d·d_h = 128 FLOPs per token and layer forward.
        assert_eq!(
            super::linear_attention_train_flops_per_token(100, 3, 8, 4),
            600.0 + 3.0 * 3.0 * 128.0
        );
        assert_eq!(
            super::two_view_train_flops_per_token(100.0, 0.5, 10, 20),
            150.0 + 3.0
        );
        assert_eq!(
            super::conv1d_train_flops(2, 3, 5, 7),
            6.0 * 2.0 * 3.0 * 5.0 * 7.0
        );
    }
}
