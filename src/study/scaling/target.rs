//! What `scaling fit` fits: the target's default results column and its direction.
use crate::study::scaling::Direction;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Final evaluation loss of the pretrained model (lower is better).
    EvalLoss,
    /// Encoding performance, mean Pearson r over subjects (higher is better; fitted as 1 − r).
    EncodingR,
    /// Fine-tuned downstream error, 1 − balanced accuracy, of each pretrained model in one
    /// low-data regime (`grid downstream`; lower is better).
    DownstreamError,
}

impl Target {
    /// The results column holding the target (also the default output folder's stem).
    pub fn column(self) -> &'static str {
        match self {
            Target::EvalLoss => "eval_loss",
            Target::EncodingR => "encoding_r",
            Target::DownstreamError => "downstream_error",
        }
    }

    /// Whether lower or higher values are better.
    pub fn direction(self) -> Direction {
        match self {
            Target::EncodingR => Direction::Higher,
            Target::EvalLoss | Target::DownstreamError => Direction::Lower,
        }
    }
}
