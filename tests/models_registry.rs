//! The bio-signal model registry: `model = "..."` picks the architecture, old files without it
//! are inferred only when unambiguous, and a third architecture (`models/convnet.rs`, registered
//! with one line) pretrains and fine-tunes through the same stages as BIOT and CiTrus.
mod common;
use brainscale::biosignal::finetune::{finetune, FinetuneOptions, Regime};
use brainscale::biosignal::pretrain::{
    load_pretrained_model, pretrain, Objective, PretrainOptions,
};
use brainscale::biosignal::synth::{Generator, Modality, SynthSplit};
use brainscale::biosignal::{Norm, Windows};
use brainscale::models::biot::BiotConfig;
use brainscale::models::convnet::ConvNetConfig;
use brainscale::models::{BioModelConfig, ModelConfig};
use common::{brainscale, expect_error};
use std::path::Path;

fn eeg(split: SynthSplit, n: usize) -> Windows {
    let g = Generator::new(0)
        .with_shape(Modality::Eeg, 128.0, 256)
        .unwrap();
    let mut d = g.dataset(Modality::Eeg, split, 0, n, false);
    d.normalise(Norm::Zscore);
    d
}

#[test]
fn every_model_file_names_its_architecture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        for arch in ["biot", "citrus"] {
            if name.starts_with(&format!("{arch}-")) {
                let m = BioModelConfig::load(&p).unwrap();
                assert_eq!(m.arch(), arch, "{name}");
                assert_eq!(format!("{}.toml", m.name()), name);
                // What the registry writes reads back the same.
                let text = m.to_toml().unwrap();
                assert!(text.starts_with(&format!("model = \"{arch}\"\n")), "{text}");
                assert_eq!(BioModelConfig::parse(&text, "round trip").unwrap(), m);
                assert!(BioModelConfig::is_signal_config(&p));
                seen += 1;
            }
        }
    }
    assert!(seen >= 20, "{seen} bio-signal model files");
    let gpt = dir.join("ladder-d64-l8-h8.toml");
    assert!(!BioModelConfig::is_signal_config(&gpt));
}

#[test]
fn files_without_a_model_line_are_inferred_only_when_unambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // Only CiTrus has max_len / stem_channels: inferred.
    let p = write(
        "old.toml",
        "max_len = 64\npatch_len = 8\nstem_channels = 8\n",
    );
    assert_eq!(BioModelConfig::load(&p).unwrap().arch(), "citrus");
    // Only BIOT has n_fft: inferred, and its checks still run with the file named.
    let p = write("old-biot.toml", "n_fft = 100\nd_model = 30\n");
    let e = format!("{:#}", BioModelConfig::load(&p).unwrap_err());
    assert!(
        e.contains("not divisible") && e.contains("old-biot.toml"),
        "{e}"
    );
    // Fields every architecture has: refused, naming the file and the fix.
    let p = write("vague.toml", "name = \"x\"\nn_classes = 3\n");
    let e = format!("{:#}", BioModelConfig::load(&p).unwrap_err());
    assert!(
        e.contains("vague.toml") && e.contains("several") && e.contains("model = "),
        "{e}"
    );
    let p = write("typo.toml", "model = \"biott\"\n");
    let e = format!("{:#}", BioModelConfig::load(&p).unwrap_err());
    assert!(
        e.contains("unknown model \"biott\"") && e.contains("biot, citrus"),
        "{e}"
    );
    // A config type refuses another architecture's file.
    let p = write("citrus.toml", "model = \"citrus\"\nmax_len = 64\n");
    let e = format!("{:#}", BiotConfig::load(&p).unwrap_err());
    assert!(
        e.contains("\"biot\" config") && e.contains("citrus.toml"),
        "{e}"
    );
}

/// The third architecture end to end: contrastive pretraining on an unlabelled pool, then
/// fine-tuning from the pretrained encoder, through the same functions (and CLI) as BIOT and
/// CiTrus; seeded runs repeat bit for bit.
#[test]
fn a_third_model_pretrains_and_finetunes_through_the_registry() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("convnet-tiny.toml");
    let cfg = ConvNetConfig {
        name: "convnet-tiny".into(),
        width: 8,
        ..ConvNetConfig::default()
    };
    std::fs::write(&file, cfg.to_toml().unwrap()).unwrap();
    let model = BioModelConfig::load(&file).unwrap();
    assert_eq!(model.arch(), "convnet");

    let out = dir.path().join("pre");
    let opts = PretrainOptions {
        steps: 20,
        batch_size: 16,
        ..PretrainOptions::default()
    };
    let pool = eeg(SynthSplit::Pretrain, 120);
    let s = pretrain(&model, Objective::Contrastive, &[pool.clone()], &opts, &out).unwrap();
    assert_eq!(s.steps, 20);
    assert!(s.final_eval_loss.unwrap().is_finite());
    let (back, info) = load_pretrained_model(&out).unwrap();
    assert_eq!((back, info.arch.as_str()), (model.clone(), "convnet"));
    let e = format!(
        "{:#}",
        pretrain(
            &model,
            Objective::MaeTime,
            &[pool],
            &opts,
            &dir.path().join("x")
        )
        .unwrap_err()
    );
    assert!(
        e.contains("convnet-tiny") && e.contains("does not fit"),
        "{e}"
    );

    let w = brainscale::nn::trainer::latest_checkpoint(&out)
        .unwrap()
        .join("model.safetensors");
    let (train, test) = (eeg(SynthSplit::Train, 60), eeg(SynthSplit::Test, 40));
    let ft = FinetuneOptions {
        steps: 10,
        ..FinetuneOptions::default()
    };
    let run = |seed| {
        finetune(
            &model,
            Some(&w),
            &train,
            &test,
            Regime::Fraction(1.0),
            &ft,
            seed,
        )
    };
    let (a, b) = (run(1).unwrap(), run(1).unwrap());
    assert_eq!(a.n_train, 60);
    assert!(a.train_loss.is_finite());
    assert_eq!(a.scores, b.scores);
    assert_eq!(a.train_loss.to_bits(), b.train_loss.to_bits());

    // The CLI takes it like any other model file.
    let tr = dir.path().join("train.safetensors");
    let te = dir.path().join("test.safetensors");
    train.save(&tr).unwrap();
    test.save(&te).unwrap();
    let (ok, stdout, stderr) = brainscale(&[
        "biosignal",
        "finetune",
        "--pretrained",
        &out.display().to_string(),
        "--train",
        &tr.display().to_string(),
        "--test",
        &te.display().to_string(),
        "--regimes",
        "100%",
        "--seeds",
        "0",
        "--steps",
        "2",
    ]);
    assert!(ok && stdout.contains("convnet-tiny"), "{stdout}{stderr}");
    expect_error(
        &[
            "biosignal",
            "pretrain",
            "--model",
            &file.display().to_string(),
            "--objective",
            "mae-freq",
            "--synthetic",
            "eeg",
            "--windows",
            "20",
            "--rate",
            "128",
            "--length",
            "256",
            "--steps",
            "1",
            "--out",
            &dir.path().join("y").display().to_string(),
        ],
        &["convnet-tiny", "does not fit"],
    );
}
