//! `brainscale tokenizer train`, `tokenizer encode` (and its old name `tokenize`), `pretrain` (with resume) and `bench-train`, end to
//! end on two tiny movies.
#![cfg(feature = "video")]
use assert_cmd::Command;
use ndarray::Array4;
use predicates::str::contains;
use std::path::Path;

fn cmd(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("brainscale").unwrap();
    // Tiny ops: one libtorch thread is fastest on a shared machine.
    c.current_dir(dir).env("OMP_NUM_THREADS", "1");
    c
}

fn movie(path: &Path, shift: usize) {
    let mut f = Array4::<u8>::zeros((24, 32, 32, 3));
    for ((t, y, x, c), v) in f.indexed_iter_mut() {
        *v = (((x + 2 * t + shift) / 4 + y / 8 + c) % 2 * 200 + 20) as u8;
    }
    brainscale::fmri::video::encode_mp4(path, &f, 10).unwrap();
}

#[test]
fn tokenizer_tokenize_pretrain_resume_and_bench_train() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    movie(&d.join("a.mp4"), 0);
    movie(&d.join("b.mp4"), 3);
    std::fs::write(
        d.join("vq.toml"),
        "resolution = 16\nclip_len = 4\ndownsample = [2, 4, 4]\nn_hiddens = 16\nn_res_layers = 1\n\
         n_codes = 32\nembedding_dim = 8\nattn_heads = 2\nema_decay = 0.99\ncommitment = 0.25\n",
    )
    .unwrap();
    std::fs::write(
        d.join("gpt.toml"),
        "name = \"t\"\nd_model = 32\nn_layer = 2\nn_head = 2\nctx = 32\nvocab = 32\npos = \"factorized\"\nlatent_shape = [2, 4, 4]\n",
    )
    .unwrap();
    cmd(d)
        .args([
            "tokenizer",
            "train",
            "--movies",
            "a.mp4",
            "b.mp4",
            "--out",
            "tok",
            "--config",
            "vq.toml",
        ])
        .args([
            "--steps",
            "5",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--cache",
            "frames",
        ])
        .assert()
        .success()
        .stdout(contains("reconstruction loss"));
    cmd(d)
        .args([
            "tokenizer",
            "encode",
            "--movies",
            "a.mp4",
            "b.mp4",
            "--tokenizer",
            "tok",
            "--out",
            "codes",
            "--hop",
            "2",
        ])
        .args(["--device", "cpu", "--cache", "frames"])
        .assert()
        .success();
    assert!(d.join("codes/a.codes.safetensors").exists());
    // 24 frames, 4-frame clips every 2 frames: 11 clips per movie, 10 + 10 for training.
    let pre = |steps: &str| {
        let mut c = cmd(d);
        c.args([
            "pretrain",
            "--codes",
            "codes",
            "--model",
            "gpt.toml",
            "--out",
            "prior",
            "--max-steps",
            steps,
        ])
        .args([
            "--batch-size",
            "2",
            "--warmup-steps",
            "2",
            "--eval-every",
            "2",
            "--checkpoint-every",
            "2",
        ])
        .args([
            "--train-samples",
            "12",
            "--eval-fraction",
            "0.1",
            "--device",
            "cpu",
            "--threads",
            "1",
        ]);
        c
    };
    pre("4")
        .assert()
        .success()
        .stdout(contains("done: 4 steps"));
    pre("6")
        .assert()
        .success()
        .stdout(contains("done: 6 steps"));
    cmd(d)
        .args([
            "pretrain",
            "--codes",
            "codes",
            "--model",
            "gpt.toml",
            "--out",
            "prior-bad",
        ])
        .args(["--device", "cpu", "--threads", "0"])
        .assert()
        .failure()
        .stderr(contains("--threads 0: must be at least 1"));
    assert!(!d.join("prior-bad").exists());
    // Factorized positions with another row length than the codes' 2×4×4 clips: refused,
    // naming the shapes and the fix (it trained with every position mislabelled before).
    std::fs::write(
        d.join("gpt-wrong.toml"),
        "name = \"t\"\nd_model = 32\nn_layer = 2\nn_head = 2\nctx = 32\nvocab = 32\npos = \"factorized\"\nlatent_shape = [1, 4, 8]\n",
    )
    .unwrap();
    cmd(d)
        .args(["pretrain", "--codes", "codes", "--model", "gpt-wrong.toml"])
        .args(["--out", "prior-wrong", "--device", "cpu", "--threads", "1"])
        .assert()
        .failure()
        .stderr(contains("[1, 4, 8]").and(contains("latent_shape = [2, 4, 4]")));
    assert!(!d.join("prior-wrong/step-00000001").exists());
    // A file where a tokenizer folder is expected (a VideoGPT .ckpt): told to import it.
    cmd(d)
        .args([
            "tokenizer",
            "encode",
            "--movies",
            "a.mp4",
            "--tokenizer",
            "gpt.toml",
        ])
        .args(["--out", "codes2", "--device", "cpu"])
        .assert()
        .failure()
        .stderr(contains("tokenizer import"));
    let csv = std::fs::read_to_string(d.join("prior/loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    assert!(d.join("prior/tokenizer/vqvae.json").exists());
    assert!(d.join("prior/step-00000006/model.safetensors").exists());
    assert!(!d.join("prior/step-00000004").exists());
    // The extractor reads the pretrain output folder as is.
    let mut ex = brainscale::fmri::features::gpt::GptExtractor::load(
        &d.join("prior"),
        &[2],
        tch::Device::Cpu,
        1,
    )
    .unwrap();
    let frames = brainscale::fmri::video::load_frames(
        &std::fs::read_dir(d.join("frames"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    let f = brainscale::fmri::features::Extractor::extract(&mut ex, &frames).unwrap();
    assert_eq!(f.values.dim(), (6, 32));
    // Hugging Face export of a learned-position model, then a new run initialised from it.
    std::fs::write(
        d.join("gpt-learned.toml"),
        "d_model = 32\nn_layer = 1\nn_head = 2\nctx = 31\nvocab = 32\n",
    )
    .unwrap();
    let hf_run = |out: &str, extra: &[&str]| {
        let mut c = cmd(d);
        c.args([
            "pretrain",
            "--codes",
            "codes",
            "--model",
            "gpt-learned.toml",
            "--out",
            out,
            "--max-steps",
            "2",
        ])
        .args([
            "--batch-size",
            "2",
            "--warmup-steps",
            "1",
            "--device",
            "cpu",
        ])
        .args(extra);
        c
    };
    hf_run("p-hf", &["--export-hf", "hf/model.safetensors"])
        .assert()
        .success()
        .stdout(contains("Hugging Face"));
    hf_run("p-hf2", &["--init-hf", "hf/model.safetensors"])
        .assert()
        .success();
    hf_run("p-hf3", &["--init-hf", "a.mp4"])
        .assert()
        .failure()
        .stderr(contains("a.mp4"));
    // The library entry point of `brainscale demo --extractor gpt`.
    let small = brainscale::fmri::pretrain::train_small_prior(
        &[d.join("a.mp4"), d.join("b.mp4")],
        &d.join("small"),
        0,
    )
    .unwrap();
    let mut ex =
        brainscale::fmri::features::gpt::GptExtractor::load(&small, &[1, 2], tch::Device::Cpu, 1)
            .unwrap();
    let f = brainscale::fmri::features::Extractor::extract(&mut ex, &frames).unwrap();
    assert_eq!(f.values.ncols(), 128);
    // Bad inputs: clear errors, non-zero exit.
    cmd(d)
        .args([
            "pretrain",
            "--codes",
            "codes",
            "--model",
            "gpt.toml",
            "--out",
            "p4",
            "--tokenizer",
            "gone",
            "--device",
            "cpu",
        ])
        .assert()
        .failure()
        .stderr(contains("gone"));
    cmd(d)
        .args([
            "pretrain",
            "--codes",
            "codes",
            "--model",
            "gpt.toml",
            "--out",
            "p2",
            "--train-samples",
            "999",
            "--device",
            "cpu",
        ])
        .assert()
        .failure()
        .stderr(contains("--train-samples 999"));
    cmd(d)
        .args([
            "pretrain",
            "--codes",
            "codes",
            "--model",
            "missing.toml",
            "--out",
            "p2",
            "--device",
            "cpu",
        ])
        .assert()
        .failure()
        .stderr(contains("missing.toml"));
    cmd(d)
        .args([
            "pretrain", "--codes", "nowhere", "--model", "gpt.toml", "--out", "p2", "--device",
            "cpu",
        ])
        .assert()
        .failure()
        .stderr(contains("nowhere"));
    cmd(d)
        .args([
            "tokenize",
            "--movies",
            "a.mp4",
            "--tokenizer",
            "nope",
            "--out",
            "c2",
            "--device",
            "cpu",
        ])
        .assert()
        .failure()
        .stderr(contains("nope"));
    cmd(d)
        .args([
            "bench-train",
            "--model",
            "gpt.toml",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ])
        .args(["--csv", "bench.csv"])
        .assert()
        .success()
        .stdout(contains("tokens/s").and(contains("MFU")));
    assert_eq!(
        std::fs::read_to_string(d.join("bench.csv"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    // tf32 re-runs the program with PyTorch's TF32 switch set; fp32 refuses to run under it.
    cmd(d)
        .args([
            "bench-train",
            "--model",
            "gpt.toml",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch-size",
            "1",
        ])
        .args([
            "--precision",
            "tf32",
            "--device",
            "cpu",
            "--csv",
            "bench.csv",
        ])
        .assert()
        .success()
        .stdout(contains("tf32"));
    assert_eq!(
        std::fs::read_to_string(d.join("bench.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    cmd(d)
        .env("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "1")
        .args([
            "bench-train",
            "--model",
            "gpt.toml",
            "--steps",
            "1",
            "--precision",
            "fp32",
            "--device",
            "cpu",
        ])
        .assert()
        .failure()
        .stderr(contains("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE"));
    // A partial VQ-VAE config takes VideoGPT's defaults for the rest; unknown keys are errors.
    std::fs::write(d.join("partial.toml"), "resolution = 32\nn_codes = 512\n").unwrap();
    let c = brainscale::fmri::tokenize::load_config(Some(&d.join("partial.toml"))).unwrap();
    assert_eq!(
        (c.resolution, c.n_codes, c.embedding_dim, c.downsample),
        (32, 512, 256, [4, 4, 4])
    );
    std::fs::write(d.join("typo.toml"), "resolutoin = 32\n").unwrap();
    let e = format!(
        "{:#}",
        brainscale::fmri::tokenize::load_config(Some(&d.join("typo.toml"))).unwrap_err()
    );
    assert!(e.contains("typo.toml") && e.contains("resolutoin"), "{e}");
}

use predicates::prelude::PredicateBooleanExt;
