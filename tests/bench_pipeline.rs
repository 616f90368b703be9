//! The built-in pipeline cell end to end through `brainscale bench run`: a shared tokenizer,
//! per-cell pretraining for exactly D tokens, GPT features, FIR alignment and ridge encoding
//! on a tiny synthetic dataset; rows with the models' exact counts and FLOPs.
mod common;
use assert_cmd::Command;
use brainscale::fmri::dataset::synth::{self, Size, SynthConfig};
use brainscale::models::gpt::GptConfig;
use brainscale::models::ModelConfig;
use common::read_rows;
use predicates::str::contains;
use std::collections::BTreeMap;
use std::path::Path;

fn bin() -> Command {
    Command::cargo_bin("brainscale").unwrap()
}

fn num(r: &BTreeMap<String, String>, k: &str) -> f64 {
    r.get(k)
        .unwrap_or_else(|| panic!("no column {k}"))
        .parse()
        .unwrap_or_else(|_| panic!("column {k}: '{}'", r[k]))
}

// 32×32 frames, 8-frame clips, downsampling 4 → 2×8×8 = 128 codes per clip, 64 code ids.
const CELL: &str = r#"
[cell]
kind = "pipeline"
dataset = "DATASET"
tokenizer_steps = 8
tokenizer_batch = 4
tokenizer_lr = 3e-3
batch_size = 8
lr = 3e-3
eval_fraction = 0.1
eval_samples = 16
checkpoint_every = 2
layers = "last"
fir_delays = [1, 2]
alphas = [1.0, 100.0, 10000.0]
device = "cpu"
threads = 1

[cell.vqvae]
resolution = 32
clip_len = 8
downsample = [4, 4, 4]
n_hiddens = 16
n_res_layers = 1
n_codes = 64
embedding_dim = 16
attn_heads = 2
"#;

fn setup(dir: &Path) -> std::path::PathBuf {
    let ds = dir.join("ds");
    let cfg = SynthConfig {
        subjects: 1,
        runs: 3,
        trs_per_run: 20,
        frame_size: 32,
        ..SynthConfig::preset(Size::Tiny, 0)
    };
    synth::generate(&cfg, &ds).unwrap();
    std::fs::write(
        dir.join("a.toml"),
        "d_model = 16\nn_layer = 1\nn_head = 2\nctx = 128\nvocab = 64\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.toml"),
        "d_model = 32\nn_layer = 2\nn_head = 2\nctx = 128\nvocab = 64\npos = \"factorized\"\nlatent_shape = [2, 8, 8]\n",
    )
    .unwrap();
    let grid = dir.join("grid.toml");
    let text = format!(
        "name = \"pipe\"\n[axes]\ntokens = [3000]\nmodels = [\"a.toml\", \"b.toml\"]\nprecisions = [\"fp32\"]\n{}",
        CELL.replace("DATASET", &ds.display().to_string())
    );
    std::fs::write(&grid, text).unwrap();
    grid
}

#[test]
fn pipeline_grid_pretrains_extracts_encodes_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let grid = setup(dir.path());
    // Two cells at once: they share one tokenizer (prepared under a lock) and take turns at
    // pretraining; the rows equal those of a sequential run.
    let out = dir.path().join("out");
    let seq = dir.path().join("seq");
    for (o, parallel) in [(&out, "2"), (&seq, "1")] {
        bin()
            .args(["bench", "run"])
            .arg(&grid)
            .arg("--out")
            .arg(o)
            .args(["--parallel", parallel])
            .assert()
            .success()
            .stdout(contains("2 cells ran, 0 failed"));
    }
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 2);
    let seq_rows = read_rows(&seq);
    for r in &rows {
        let s = seq_rows
            .iter()
            .find(|s| s["cell_id"] == r["cell_id"])
            .unwrap();
        for k in [
            "train_loss",
            "eval_loss",
            "r_mean:sub-01",
            "r_top10:sub-01",
            "flops",
        ] {
            assert_eq!(r[k], s[k], "{} {k}: parallel vs sequential", r["cell_id"]);
        }
    }
    for r in &rows {
        let model = dir.path().join(format!("{}", r["model"]));
        let cfg = GptConfig::load(&model).unwrap();
        let pc = cfg.param_counts();
        // Counts come from the model code's one formula, FLOPs from src/core/flops.rs with them.
        assert_eq!(
            num(r, "n_params") as u64,
            pc.non_embedding,
            "{}",
            r["cell_id"]
        );
        assert_eq!(num(r, "n_params_total") as u64, pc.total);
        let want = brainscale::core::flops::train_flops(
            pc.matmul,
            cfg.n_layer as u64,
            cfg.ctx as u64,
            cfg.d_model as u64,
            3000,
        );
        assert!((num(r, "flops") / want - 1.0).abs() < 1e-12);
        assert_eq!(num(r, "tokens"), 3000.0);
        // 127 predicted tokens per clip × batch 8 = 1016 per step: 3 steps.
        assert_eq!(num(r, "tokens_trained"), 3048.0);
        let (train, eval) = (num(r, "train_loss"), num(r, "eval_loss"));
        assert!(train.is_finite() && eval.is_finite() && eval > 0.0);
        // Barely trained: the loss is still near ln(64) (uniform over the codebook).
        assert!(eval < 2.0 * 64f64.ln(), "eval loss {eval}");
        let (m, t) = (num(r, "r_mean:sub-01"), num(r, "r_top10:sub-01"));
        assert!(
            m.abs() <= 1.0 && t.abs() <= 1.0 && t >= m,
            "r {m} top10 {t}"
        );
        assert_eq!(num(r, "encoding_r"), m);
        assert_eq!(r["device"], "cpu");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("cells").join(&r["cell_id"]).join("row.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(json["extra"]["train_steps"], 3);
        assert_eq!(json["extra"]["train_clips"], 24); // ⌈3000 / 127⌉
    }
    // One tokenizer and one code cache for the grid.
    let shared: Vec<String> = std::fs::read_dir(out.join("shared"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(
        shared
            .iter()
            .filter(|n| n.starts_with("tokenizer-"))
            .count(),
        1,
        "{shared:?}"
    );
    assert_eq!(
        shared.iter().filter(|n| n.starts_with("codes-")).count(),
        1,
        "{shared:?}"
    );

    bin()
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("all 2 cells already have rows"));
    assert_eq!(read_rows(&out), rows);

    // The grid's tokenizer and code caches given explicitly reproduce a cell exactly.
    let find = |prefix: &str| {
        std::fs::read_dir(out.join("shared"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap()
    };
    let cell_text = CELL.replace("DATASET", &dir.path().join("ds").display().to_string());
    let vq = cell_text.find("[cell.vqvae]").unwrap();
    let given = format!(
        "name = \"given\"\n[axes]\ntokens = [3000]\nmodels = [\"a.toml\"]\nprecisions = [\"fp32\"]\nsubjects = [\"sub-01\"]\n{}tokenizer = \"{}\"\npretrain_movies = [\"{}\"]\n",
        &cell_text[..vq],
        find("tokenizer-").display(),
        find("codes-").display()
    );
    let g2 = dir.path().join("given.toml");
    std::fs::write(&g2, given).unwrap();
    let out2 = dir.path().join("given");
    bin()
        .args(["bench", "run"])
        .arg(&g2)
        .arg("--out")
        .arg(&out2)
        .assert()
        .success()
        .stdout(contains("1 cells ran, 0 failed"));
    let r2 = &read_rows(&out2)[0];
    let r1 = rows.iter().find(|r| r["model"] == "a.toml").unwrap();
    for k in ["train_loss", "eval_loss", "r_mean:sub-01", "tokens_trained"] {
        assert_eq!(
            r1[k], r2[k],
            "{k}: given tokenizer and codes vs the grid's own"
        );
    }

    // A cell whose row is lost (killed after training) reruns from its checkpoint: the
    // prior is not retrained (same checkpoint step), and the row comes back the same.
    let id = &rows[0]["cell_id"];
    let cell = out.join("cells").join(id);
    let before = std::fs::read_to_string(cell.join("prior/latest.json")).unwrap();
    std::fs::remove_file(cell.join("row.json")).unwrap();
    std::fs::remove_file(out.join("results.csv")).unwrap();
    bin()
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("1 cells ran, 0 failed, 1 skipped"));
    assert_eq!(
        std::fs::read_to_string(cell.join("prior/latest.json")).unwrap(),
        before
    );
    let again = read_rows(&out);
    let (a, b) = (
        again.iter().find(|r| &r["cell_id"] == id).unwrap(),
        &rows[0],
    );
    for k in [
        "eval_loss",
        "train_loss",
        "r_mean:sub-01",
        "n_params",
        "flops",
    ] {
        assert_eq!(a[k], b[k], "{k}");
    }
}

#[test]
fn pipeline_grid_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("none");
    let real = dir.path().join("ds");
    synth::generate(
        &SynthConfig {
            subjects: 1,
            runs: 2,
            trs_per_run: 10,
            frame_size: 16,
            ..SynthConfig::preset(Size::Tiny, 0)
        },
        &real,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "d_model = 16\nn_layer = 1\nn_head = 2\nctx = 128\nvocab = 64\n",
    )
    .unwrap();
    let head = "name = \"pipe\"\n[axes]\ntokens = [3000]\nmodels = [\"a.toml\"]\nprecisions = [\"fp32\"]\n";
    let write = |name: &str, cell: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{head}{cell}")).unwrap();
        p
    };
    let out = dir.path().join("out");
    // Unknown key: refused when the grid loads, even for a dry run.
    let g = write(
        "typo.toml",
        &format!(
            "[cell]\nkind = \"pipeline\"\ndataset = \"{}\"\nbatchsize = 4\n",
            ds.display()
        ),
    );
    bin()
        .args(["bench", "run", "--dry-run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("batchsize"));
    // A missing dataset: named before any cell starts.
    let g = write(
        "missing.toml",
        &format!(
            "[cell]\nkind = \"pipeline\"\ndataset = \"{}\"\n",
            ds.display()
        ),
    );
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("[cell] dataset"));
    assert!(!out.join("cells").exists());
    // A tokenizer folder that holds no tokenizer.
    let g = write(
        "tok.toml",
        &format!(
            "[cell]\nkind = \"pipeline\"\ndataset = \"{}\"\ntokenizer = \"{}\"\n",
            real.display(),
            dir.path().display()
        ),
    );
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("not a trained tokenizer folder"));
    // A subject the dataset does not have.
    let g = dir.path().join("subj.toml");
    std::fs::write(
        &g,
        format!(
            "{}subjects = [\"sub-07\"]\n[cell]\nkind = \"pipeline\"\ndataset = \"{}\"\n",
            head,
            real.display()
        ),
    )
    .unwrap();
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("axes.subjects"));
    assert!(!out.join("cells").exists());
    // A model too small for the tokenizer's clips (VideoGPT's default: 4·16·16 codes of 2048).
    let g = write(
        "ctx.toml",
        &format!(
            "[cell]\nkind = \"pipeline\"\ndataset = \"{}\"\n",
            real.display()
        ),
    );
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("needs ctx ≥ 1023 and vocab ≥ 2048"));
    assert!(!out.join("cells").exists());
    // A model field the GPT code does not know.
    std::fs::write(
        dir.path().join("a.toml"),
        "d_model = 16\nn_layer = 1\nn_head = 2\nctx = 128\nvocab = 64\nbias = false\n",
    )
    .unwrap();
    bin()
        .args(["bench", "run", "--dry-run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("bias"));
}

#[test]
fn smoke_pipeline_grid_learns_with_more_data() {
    // bench/smoke-pipeline.toml as shipped; its dataset path is relative to where bench runs.
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("datasets/synth-tiny");
    synth::generate(&SynthConfig::preset(Size::Tiny, 0), &ds).unwrap();
    let out = dir.path().join("out");
    bin()
        .current_dir(dir.path())
        .args(["bench", "run"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/smoke-pipeline.toml"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("4 cells ran, 0 failed"));
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 4);
    let get = |id: &str| rows.iter().find(|r| r["cell_id"] == id).unwrap();
    for m in ["p16", "p32"] {
        let (small, big) = (
            get(&format!("{m}-D4096-fp32-s0")),
            get(&format!("{m}-D16384-fp32-s0")),
        );
        // Four times the tokens lowers the held-out loss.
        assert!(
            num(big, "eval_loss") < num(small, "eval_loss") - 0.05,
            "{m}"
        );
        for r in [small, big] {
            // Features of the prior predict the synthetic responses (both subjects scored).
            assert!(num(r, "r_mean:sub-01") > 0.05 && num(r, "r_mean:sub-02") > 0.05);
        }
    }
    // The bigger model reaches a lower loss at the larger D.
    assert!(
        num(get("p32-D16384-fp32-s0"), "eval_loss") < num(get("p16-D16384-fp32-s0"), "eval_loss")
    );
}

#[test]
fn pipeline_cell_killed_mid_pretraining_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    // One model, 400 steps of 1016 tokens, a checkpoint every 20 steps.
    let text = format!(
        "name = \"kill\"\n[axes]\ntokens = [406400]\nmodels = [\"a.toml\"]\nprecisions = [\"fp32\"]\n{}",
        CELL.replace("DATASET", &dir.path().join("ds").display().to_string())
            .replace("checkpoint_every = 2", "checkpoint_every = 20")
    );
    let grid = dir.path().join("kill.toml");
    std::fs::write(&grid, text).unwrap();
    let run = |out: &Path| {
        bin()
            .args(["bench", "run"])
            .arg(&grid)
            .arg("--out")
            .arg(out)
            .assert()
            .success();
    };
    let whole = dir.path().join("whole");
    run(&whole);

    let out = dir.path().join("killed");
    let cell = out.join("cells/a-D406400-fp32-s0");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("brainscale"))
        .args(["bench", "run"])
        .arg(&grid)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let step = std::fs::read_to_string(cell.join("prior/latest.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["step"].as_u64())
            .unwrap_or(0);
        if step >= 40 {
            break;
        }
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !cell.join("row.json").exists(),
        "the cell finished before it could be killed"
    );
    run(&out);
    let (a, b) = (&read_rows(&whole)[0], &read_rows(&out)[0]);
    // Resumed bit for bit: the same losses and encoding scores as the uninterrupted run.
    for k in ["train_loss", "eval_loss", "r_mean:sub-01", "tokens_trained"] {
        assert_eq!(a[k], b[k], "{k}: killed and resumed vs uninterrupted");
    }
    let steps: Vec<u64> = csv::Reader::from_path(cell.join("prior/loss.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[0].parse().unwrap())
        .collect();
    assert_eq!(
        steps,
        (1..=400).collect::<Vec<u64>>(),
        "each step once in loss.csv"
    );
}
