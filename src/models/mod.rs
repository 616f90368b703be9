//! The video model family the study scales: a VideoGPT VQ-VAE tokenizer ([`vqvae`]), a GPT-2
//! prior over its codes ([`gpt`], trained by [`crate::pretrain`] through [`crate::nn`]), Hugging Face GPT-2 weight
//! interchange ([`hf`]), the token cache ([`codes`]) and the feature extractor ([`extract`]).
//! The bio-signal models: BIOT ([`biot`]) and the CiTrus hybrid ([`citrus`]) on shared [`layers`].
pub mod bench_bio;
pub mod bio_train;
pub mod biot;
pub mod citrus;
pub mod codes;
pub mod extract;
pub mod gpt;
pub mod hf;
pub mod layers;
pub mod vqvae;
