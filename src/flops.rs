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
}
