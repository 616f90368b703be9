//! One file per architecture: its config (TOML in `models/`, loaded through [`config`]), its
//! layers and its engine trait impls ([`crate::nn::Model`]), and nothing else.
//!
//! The video family the fMRI study scales: a VideoGPT VQ-VAE tokenizer ([`vqvae`]) and a GPT-2
//! prior over its codes ([`gpt`]), with Hugging Face GPT-2 weight interchange ([`hf`]); the
//! stages that train and use them are [`crate::fmri::tokenize`], [`crate::fmri::pretrain`] and
//! [`crate::fmri::features::gpt`]. The bio-signal models — BIOT ([`biot`]), the CiTrus-style
//! hybrid ([`citrus`]) and a one-layer conv classifier ([`convnet`]) — implement the contract in
//! [`signal`] and are listed in [`registry`] (one line each); they share [`layers`] and
//! [`objectives`].
pub mod biot;
pub mod biot_import;
pub mod citrus;
pub mod config;
pub mod convnet;
pub mod gpt;
pub mod hf;
pub mod layers;
pub mod objectives;
pub mod registry;
pub mod signal;
pub mod videogpt;
pub mod vqvae;

pub use config::ModelConfig;
pub use registry::BioModelConfig;
