//! Flag values that are stage enums: the stages keep plain enums (serde names, no clap), and
//! this file gives each the clap `ValueEnum` its flags parse with — names and help in one place.
use clap::builder::PossibleValue;
use clap::ValueEnum;

/// `impl ValueEnum for Type { Variant = "name": "help", ... }`.
macro_rules! value_enum {
    ($t:ident { $($v:ident = $name:literal : $help:literal),* $(,)? }) => {
        impl ValueEnum for $t {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($t::$v),*]
            }
            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($t::$v => PossibleValue::new($name).help($help)),*
                })
            }
        }
    };
}

use crate::nn::precision::Precision;
value_enum!(Precision {
    Fp32 = "fp32": "fp32 matmuls (TF32 off)",
    Tf32 = "tf32": "fp32 storage, TF32 tensor-core matmuls on NVIDIA GPUs (same as fp32 on CPU)",
    Bf16 = "bf16": "bfloat16 matmuls, fp32 master weights",
    Fp16 = "fp16": "float16 matmuls, fp32 master weights, dynamic loss scaling",
});

use crate::study::scaling::Target;
value_enum!(Target {
    EvalLoss = "eval_loss": "final evaluation loss of the pretrained model (lower is better)",
    EncodingR = "encoding_r": "encoding performance, mean Pearson r over subjects (higher is better; fitted as 1 − r)",
    DownstreamError = "downstream_error": "fine-tuned downstream error, 1 − balanced accuracy, in one low-data regime (`grid downstream`; lower is better)",
});

use crate::study::scaling::Direction;
value_enum!(Direction {
    Lower = "lower": "lower is better: the law is fitted to the value",
    Higher = "higher": "higher is better: the law is fitted to 1 − value (values must be below 1)",
});

use crate::ridge::{Backend, CvScore, Dtype};
value_enum!(CvScore {
    R = "r": "Pearson r between prediction and held-out data",
    R2 = "r2": "coefficient of determination",
});
value_enum!(Backend {
    Cpu = "cpu": "ndarray + OpenBLAS/LAPACK (needs the `cpu-linalg` feature)",
    Torch = "torch": "libtorch through tch, on the CPU or a CUDA GPU",
});
value_enum!(Dtype {
    F32 = "f32": "32-bit floats (Grams and eigendecompositions stay f64)",
    F64 = "f64": "64-bit floats throughout",
});

use crate::perf::train::BenchPreset;
value_enum!(BenchPreset {
    Gpt2Bf16 = "gpt2-bf16": "GPT-2 small (d768 L12 H12), ctx 1024, batch 16, vocab 2048, bf16 (H100 target ≥ 410k tok/s)",
    VideogptFp32 = "videogpt-fp32": "VideoGPT prior (d576 L8 H4), ctx 1024, batch 32, vocab 2048, fp32 with TF32 off",
    VideogptTf32 = "videogpt-tf32": "the VideoGPT prior with TF32 matmuls",
    VideogptBf16 = "videogpt-bf16": "the VideoGPT prior in bf16",
    VideogptFp16 = "videogpt-fp16": "the VideoGPT prior in fp16 with loss scaling",
    CpuSmall = "cpu-small": "a small model for a CPU run: d128 L4 H4, ctx 256, batch 4, vocab 2048, fp32",
    BiotCpu = "biot-cpu": "BIOT reference (d256 L4 H8, 3.2 M), 16 channels × 10 s at 200 Hz, batch 8, fp32",
    BiotGpu = "biot-gpu": "BIOT reference, 18 channels × 10 s, batch 256 (GPU)",
    CitrusCpu = "citrus-cpu": "citrus-small (MAE, frequency target), 1 channel × 200 samples, batch 32, fp32",
    CitrusGpu = "citrus-gpu": "citrus-small, batch 2048 (GPU)",
});

use crate::study::grids::grid::ExecutorKind;
value_enum!(ExecutorKind {
    Local = "local": "cells run on this machine, N at once",
    Slurm = "slurm": "one sbatch job array, one task per cell",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag names are the names the stages read and write in grid files, results rows and
    /// JSON reports.
    #[test]
    fn flag_names_are_the_serde_names() {
        fn check<T: ValueEnum + serde::Serialize>() {
            for v in T::value_variants() {
                let flag = v.to_possible_value().unwrap().get_name().to_string();
                let serde = serde_json::to_value(v).unwrap();
                assert_eq!(serde.as_str(), Some(flag.as_str()));
            }
        }
        check::<Precision>();
        check::<Target>();
        check::<Direction>();
        check::<ExecutorKind>();
        // CvScore, Backend and Dtype serialise only into run metadata, in their Rust names.
    }
}
