//! The video model family the study scales: a VideoGPT VQ-VAE tokenizer ([`vqvae`]), a GPT-2
//! prior over its codes ([`gpt`], trained by [`crate::pretrain`] through [`crate::nn`]), Hugging Face GPT-2 weight
//! interchange ([`hf`]), the token cache ([`codes`]) and the feature extractor ([`extract`]).
pub mod codes;
pub mod extract;
pub mod gpt;
pub mod hf;
pub mod vqvae;
