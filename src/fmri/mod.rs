//! The fMRI track, one module per stage: datasets, movie decoding, the VQ-VAE tokenizer and GPT-2
//! prior, features, TR-grid alignment, ridge encoding and brain maps; `demo` chains them.

pub mod align;
pub mod bootstrap;
pub mod ceiling;
pub mod codes;
pub mod coverage;
pub mod dataset;
pub mod demo;
pub mod encode;
pub mod features;
pub mod hrf;
pub mod maps;
pub mod pretrain;
pub mod significance;
pub mod tokenize;
pub mod video;
