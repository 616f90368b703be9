//! One readable file per architecture, each with its config struct, training through the engine
//! ([`crate::nn::Model`]). The video family the fMRI study scales: a VideoGPT VQ-VAE tokenizer
//! ([`vqvae`]) and a GPT-2 prior over its codes ([`gpt`]), with Hugging Face GPT-2 weight
//! interchange ([`hf`]) and the token cache ([`codes`]). The stages that train and use them are
//! [`crate::fmri::tokenize`], [`crate::fmri::pretrain`] and [`crate::fmri::features::gpt`].
//! The bio-signal models: BIOT ([`biot`]) and the CiTrus-style hybrid ([`citrus`]) on shared
//! [`layers`]; their training adapters live with the track ([`crate::biosignal::train`]).
pub mod biot;
pub mod citrus;
pub mod gpt;
pub mod hf;
pub mod layers;
pub mod objectives;
pub mod vqvae;
