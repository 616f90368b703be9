//! The model-agnostic training engine shared by both tracks: optimizer and schedule
//! ([`optim`]), precision and loss scaling ([`precision`]), the trainer with checkpoint and
//! bit-exact resume ([`trainer`]), the training loop with loss CSV, throughput and MFU
//! ([`fit`]), and device names ([`device`]). It knows nothing of any model: a model plugs in
//! through [`trainer::Model`] and its data through [`trainer::Data`].
pub mod device;
pub mod fit;
pub mod optim;
pub mod precision;
pub mod trainer;

pub use device::parse_device;
pub use fit::{fit, read_loss_csv, throughput, FitOptions, LossRow, Throughput, TrainSummary};
pub use optim::{mix, AdamW, TrainConfig};
pub use precision::{measure_peak_matmul, reexec_for_precision, LossScaler, Precision};
pub use trainer::{
    latest_checkpoint, load_trained, rng_turn, Data, Loss, Model, StepStats, Trainer,
};
