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
    DownstreamError = "downstream_error": "fine-tuned downstream error, 1 − balanced accuracy, in one low-data regime (`bench downstream`; lower is better)",
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

use crate::study::grids::grid::ExecutorKind;
value_enum!(ExecutorKind {
    Local = "local": "cells run on this machine, N at once",
    Slurm = "slurm": "one sbatch job array, one task per cell",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag names are the names the stages serialise (grid files, results rows, JSON).
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
        check::<CvScore>();
        check::<Backend>();
        check::<Dtype>();
    }
}
