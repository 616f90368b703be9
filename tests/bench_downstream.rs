//! `bench downstream`: the fine-tuned downstream score of every finished `biosignal` cell, from
//! the cell's final pretraining checkpoint, written once into results.csv (a rerun changes
//! nothing), reproduced bit for bit by the library's fine-tuning, and clear errors for a grid of
//! another kind, unfinished cells, other settings and a missing checkpoint.
mod common;
use assert_cmd::Command;
use brainscale::biosignal::finetune::{finetune, FinetuneOptions};
use brainscale::biosignal::synth::SynthSplit;
use brainscale::biosignal::Norm;
use brainscale::models::biot::BiotConfig;
use brainscale::models::BioModelConfig;
use brainscale::models::ModelConfig;
use brainscale::study::grids::biosignal_cell::BiosignalCell;
use common::read_rows;
use predicates::str::contains;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> Command {
    Command::cargo_bin("brainscale").unwrap()
}

const CELL: &str =
    "kind = \"biosignal\"\nmodality = \"eeg\"\nbatch_size = 8\neval_windows = 16\nmin_steps = 1\n";

fn grid(dir: &Path, name: &str, budgets: &str, out: &Path) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let models = repo().join("models");
    std::fs::write(
        &p,
        format!(
            "name = \"{name}\"\nout = \"{o}\"\n[axes]\nbudgets = {budgets}\nmodels = [\"{m}/biot-d8-l1.toml\", \"{m}/biot-d16-l1.toml\"]\nprecisions = [\"fp32\"]\n[cell]\n{CELL}",
            o = out.display(),
            m = models.display()
        ),
    )
    .unwrap();
    p
}

const FT: &[&str] = &[
    "--seeds",
    "0,1",
    "--steps",
    "4",
    "--batch-size",
    "8",
    "--train-windows",
    "25",
    "--test-windows",
    "30",
];

fn downstream(g: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    bin()
        .args(["bench", "downstream"])
        .arg(g)
        .args(FT)
        .args(extra)
        .assert()
}

fn f(r: &std::collections::BTreeMap<String, String>, k: &str) -> f64 {
    r[k].parse()
        .unwrap_or_else(|_| panic!("column {k}: '{}'", r[k]))
}

#[test]
fn downstream_scores_every_finished_cell_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let g = grid(dir.path(), "tiny", "[2e7]", &out);
    // Not run yet: nothing to score.
    downstream(&g, &[])
        .failure()
        .stderr(contains("no results of grid 'tiny'"));
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .assert()
        .success()
        .stdout(contains("2 cells ran, 0 failed"));
    downstream(&g, &[])
        .success()
        .stdout(contains("2 cells fine-tuned, 0 already scored"));
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 2);
    let cell: BiosignalCell = toml::from_str(&CELL.replace("kind = \"biosignal\"\n", "")).unwrap();
    let gen = cell.generator().unwrap();
    let set = |split, n| {
        let mut d = gen.dataset(cell.modality, split, 0, n, true);
        d.normalise(Norm::P95);
        d
    };
    let (train, test) = (set(SynthSplit::Train, 25), set(SynthSplit::Test, 30));
    for r in &rows {
        let id = &r["cell_id"];
        let ba = f(r, "downstream_balanced_accuracy");
        let auroc = f(r, "downstream_auroc");
        assert!(
            (0.0..=1.0).contains(&ba) && (0.0..=1.0).contains(&auroc),
            "{r:?}"
        );
        assert_eq!(f(r, "downstream_error"), 1.0 - ba);
        assert_eq!(r["downstream_regime"], "k5");
        let d: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("cells/{id}/downstream.json"))).unwrap(),
        )
        .unwrap();
        // The cell's last step's weights, not an intermediate checkpoint.
        let row: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("cells/{id}/row.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(d["checkpoint_step"], row["extra"]["steps"]);
        let weights = out.join(format!("cells/{id}/{}", d["checkpoint"].as_str().unwrap()));
        assert!(weights.ends_with("model.safetensors"));
        // Reproduced bit for bit by fine-tuning the library's BIOT from those weights on the
        // cell's labelled streams (5 per class of 5 EEG classes).
        let name = if id.starts_with("biot-d8-l1") {
            "biot-d8-l1"
        } else {
            "biot-d16-l1"
        };
        let cfg = BiotConfig::load(&repo().join(format!("models/{name}.toml"))).unwrap();
        let opts = FinetuneOptions {
            steps: 4,
            batch_size: 8,
            ..FinetuneOptions::default()
        };
        let regime = "k5".parse().unwrap();
        let mut bas = Vec::new();
        for (i, seed) in [0u64, 1].into_iter().enumerate() {
            let m = BioModelConfig::from(cfg.clone());
            let run = finetune(&m, Some(&weights), &train, &test, regime, &opts, seed).unwrap();
            assert_eq!(run.n_train, 25);
            let got = &d["runs"][i];
            assert_eq!(got["seed"], seed);
            assert_eq!(got["balanced_accuracy"], run.scores.balanced_accuracy);
            assert_eq!(got["auroc"], run.scores.auroc);
            bas.push(run.scores.balanced_accuracy);
            let scratch = finetune(&m, None, &train, &test, regime, &opts, seed).unwrap();
            assert_ne!(
                scratch.train_loss, run.train_loss,
                "the pretrained weights were not loaded"
            );
        }
        assert_eq!(ba, (bas[0] + bas[1]) / 2.0);
    }
    // A rerun fine-tunes nothing and leaves every file as it was.
    let snapshot = |p: &Path| std::fs::read(p).unwrap();
    let csv = out.join("results.csv");
    let jsons: Vec<PathBuf> = rows
        .iter()
        .map(|r| out.join(format!("cells/{}/downstream.json", r["cell_id"])))
        .collect();
    let before: Vec<Vec<u8>> = std::iter::once(&csv)
        .chain(&jsons)
        .map(|p| snapshot(p))
        .collect();
    downstream(&g, &[])
        .success()
        .stdout(contains("0 cells fine-tuned, 2 already scored"))
        .stdout(contains("unchanged"));
    let after: Vec<Vec<u8>> = std::iter::once(&csv)
        .chain(&jsons)
        .map(|p| snapshot(p))
        .collect();
    assert!(
        before == after,
        "a rerun changed results.csv or downstream.json"
    );
    // Scored again on parallel threads: the same scores, bit for bit (each run seeds its own
    // draws), so results.csv is unchanged; --jobs 0 is refused.
    let runs = |p: &PathBuf| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&snapshot(p)).unwrap()["runs"].clone()
    };
    let runs_before: Vec<serde_json::Value> = jsons.iter().map(runs).collect();
    for p in &jsons {
        std::fs::remove_file(p).unwrap();
    }
    downstream(&g, &["--jobs", "0"])
        .failure()
        .stderr(contains("--jobs must be at least 1"));
    downstream(&g, &["--jobs", "3"])
        .success()
        .stdout(contains("2 cells fine-tuned, 0 already scored"));
    assert_eq!(jsons.iter().map(runs).collect::<Vec<_>>(), runs_before);
    assert_eq!(
        snapshot(&csv),
        before[0],
        "results.csv changed with --jobs 3"
    );
    // Other settings on a scored grid: an error naming the file, nothing rewritten.
    downstream(&g, &["--regime", "k3"])
        .failure()
        .stderr(contains("downstream.json was scored with other settings"));
    assert_eq!(snapshot(&csv), before[0]);
    // `bench collect` (a merge) keeps the downstream columns.
    bin().args(["bench", "collect"]).arg(&g).assert().success();
    assert_eq!(snapshot(&csv), before[0]);
    // A later checkout (cells/ is not tracked): the folder is gone, the row keeps its score,
    // which a rerun keeps; another regime is still refused, naming the cell.
    let id = &rows[0]["cell_id"];
    std::fs::remove_file(&jsons[0]).unwrap();
    std::fs::remove_dir_all(out.join(format!("cells/{id}/train"))).unwrap();
    downstream(&g, &[])
        .success()
        .stdout(contains("0 cells fine-tuned, 2 already scored"));
    assert_eq!(snapshot(&csv), before[0]);
    downstream(&g, &["--regime", "k3"])
        .failure()
        .stderr(contains(format!("cell {id} was scored in regime k5")));
    // A cell to score (no score in its row) whose pretraining checkpoint is gone: a clear
    // error naming the cell.
    let mut rdr = csv::Reader::from_path(&csv).unwrap();
    let header = rdr.headers().unwrap().clone();
    let col = header
        .iter()
        .position(|h| h == "downstream_balanced_accuracy")
        .unwrap();
    let recs: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let mut w = csv::Writer::from_path(&csv).unwrap();
    w.write_record(&header).unwrap();
    for r in &recs {
        let mut f: Vec<&str> = r.iter().collect();
        if r.get(header.iter().position(|h| h == "cell_id").unwrap()) == Some(id.as_str()) {
            f[col] = "";
        }
        w.write_record(&f).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    downstream(&g, &[])
        .failure()
        .stderr(contains(format!("cell {id}: its pretraining checkpoint")))
        .stderr(contains("--skip-unfinished"));
    // With --skip-unfinished it is left out, named, and the rest is kept as it was.
    let blanked = snapshot(&csv);
    downstream(&g, &["--skip-unfinished"])
        .success()
        .stdout(contains(
            "0 cells fine-tuned, 1 already scored, 0 unfinished left out, 1 without checkpoint left out",
        ))
        .stderr(contains("finished cell(s) left out"))
        .stderr(contains(id.as_str()));
    assert_eq!(snapshot(&csv), blanked);
    std::fs::write(&csv, &before[0]).unwrap();

    // The same out with a larger grid: its new cells are unfinished.
    let g2 = grid(dir.path(), "tiny", "[2e7, 4e7]", &out);
    std::fs::write(&jsons[0], &before[1]).unwrap();
    downstream(&g2, &[])
        .failure()
        .stderr(contains("2 of 4 cells are unfinished"))
        .stderr(contains("--skip-unfinished"));
    downstream(&g2, &["--skip-unfinished"])
        .success()
        .stdout(contains(
            "0 cells fine-tuned, 2 already scored, 2 unfinished left out",
        ));
}

#[test]
fn downstream_rejects_a_grid_of_another_kind() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("cmd.toml");
    std::fs::write(
        &g,
        "name = \"cmd\"\n[axes]\ntokens = [1000]\nmodels = [\"m\"]\nprecisions = [\"fp32\"]\nsubjects = [\"sub-01\"]\n[models.m]\nn_layer = 1\nn_head = 1\nd_model = 8\nctx = 4\nvocab = 16\n[cell]\nkind = \"command\"\nsteps = [\"true\"]\n",
    )
    .unwrap();
    bin()
        .args(["bench", "downstream"])
        .arg(&g)
        .assert()
        .failure()
        .stderr(contains("[cell] kind = \"command\""))
        .stderr(contains("\"biosignal\" grid"));
    // Bad options name the option.
    let out = dir.path().join("o");
    let g = grid(dir.path(), "b", "[2e7]", &out);
    bin()
        .args(["bench", "downstream"])
        .arg(&g)
        .args(["--regime", "k0"])
        .assert()
        .failure()
        .stderr(contains("--regime"));
}
