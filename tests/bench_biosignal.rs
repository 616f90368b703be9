//! The `biosignal` bench cell (BIOT contrastive pretraining for exactly D tokens): a tiny real
//! grid end to end (counts, FLOPs, D in whole steps, held-out loss, epochs of a finite pool), the
//! shipped grid files, and a grid killed mid-cell that resumes from the cell's checkpoint with
//! every cell run once and the same numbers as an uninterrupted run.
mod common;
use assert_cmd::Command;
use brainscale::models::biot::BiotConfig;
use brainscale::models::ModelConfig;
use common::read_rows;
use predicates::str::contains;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> Command {
    Command::cargo_bin("brainscale").unwrap()
}

fn f(r: &BTreeMap<String, String>, k: &str) -> f64 {
    r[k].parse()
        .unwrap_or_else(|_| panic!("column {k}: '{}'", r[k]))
}

fn grid(dir: &Path, name: &str, axes: &str, cell: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    let models = repo().join("models");
    std::fs::write(
        &p,
        format!(
            "name = \"{name}\"\n[axes]\n{axes}\nmodels = [\"{m}/biot-d8-l1.toml\", \"{m}/biot-d16-l1.toml\"]\nprecisions = [\"fp32\"]\n[cell]\nkind = \"biosignal\"\nbatch_size = 8\neval_windows = 16\nmin_steps = 1\n{cell}\n",
            m = models.display()
        ),
    )
    .unwrap();
    p
}

fn row_json(out: &Path, id: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(out.join(format!("cells/{id}/row.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn tiny_biosignal_grid_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let g = grid(dir.path(), "tiny", "budgets = [2e7]", "modality = \"eeg\"");
    let out = dir.path().join("out");
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("2 cells ran, 0 failed"));
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let name = if r["cell_id"].starts_with("biot-d8-l1") {
            "biot-d8-l1"
        } else {
            "biot-d16-l1"
        };
        let cfg = BiotConfig::load(&repo().join(format!("models/{name}.toml"))).unwrap();
        let p = cfg.param_counts();
        // EEG: 4 channels × 1000 samples at 200 Hz → 9 frames per channel, 36 tokens a window.
        assert_eq!(f(r, "ctx"), 36.0);
        assert_eq!(f(r, "vocab"), 101.0);
        assert_eq!(f(r, "n_params"), p.per_token as f64);
        assert_eq!(f(r, "n_params_total"), (p.encoder + p.predictor) as f64);
        // D: whole steps of 8 windows × 36 tokens, nearest to the budget.
        let d = f(r, "tokens");
        assert_eq!(d % 288.0, 0.0);
        // FLOPs: the linear-attention formula, both views (BIOT keeps on average 6 of 9
        // frames), the predictor once per window.
        let per_tok = (6.0 * p.per_token as f64
            + 12.0 * (cfg.n_layer * cfg.d_model * cfg.head_dim()) as f64)
            * (1.0 + 6.0 / 9.0)
            + 6.0 * p.predictor as f64 / 36.0;
        assert!((f(r, "flops") - per_tok * d).abs() < 1e-6 * per_tok * d);
        assert!((f(r, "flops") - 2e7).abs() <= per_tok * 288.0 / 2.0 + 1.0);
        // InfoNCE over batches of 8: near ln 8 at the start, finite and positive.
        let (tl, el) = (f(r, "train_loss"), f(r, "eval_loss"));
        assert!(tl > 0.0 && tl < 4.0 && el > 0.0 && el < 4.0, "{tl} {el}");
        let j = row_json(&out, &r["cell_id"]);
        let steps = j["extra"]["steps"].as_u64().unwrap();
        assert_eq!(steps as f64 * 288.0, d);
        assert_eq!(j["extra"]["modality"], "eeg");
        assert!(j["extra"]["epochs"].is_null(), "fresh windows: no epochs");
        assert!(j["extra"]["load_avg_start"].is_number());
        let loss_csv = out.join(format!("cells/{}/train/loss.csv", r["cell_id"]));
        assert_eq!(
            std::fs::read_to_string(loss_csv).unwrap().lines().count() as u64,
            steps + 1
        );
    }
    // A rerun is a no-op.
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("all 2 cells already have rows"));

    // Accelerometer windows from a finite pool: 2.56 s at 200 Hz = 512 samples → 4 frames × 3
    // axes; the row says how many epochs D implies.
    let g = grid(
        dir.path(),
        "pool",
        "tokens = [960]",
        "modality = \"accel\"\npool_windows = 40",
    );
    let out = dir.path().join("pool-out");
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    for r in read_rows(&out) {
        assert_eq!(f(&r, "ctx"), 12.0);
        assert_eq!(f(&r, "tokens"), 960.0, "10 steps of 8 windows × 12 tokens");
        let j = row_json(&out, &r["cell_id"]);
        assert_eq!(
            j["extra"]["epochs"].as_f64().unwrap(),
            2.0,
            "80 windows from a pool of 40"
        );
    }

    // Bad settings are refused up front with the field named.
    let bad = grid(
        dir.path(),
        "bad",
        "budgets = [2e7]",
        "modality = \"accel\"\nrate = 50.0",
    );
    bin()
        .args(["bench", "run"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.path().join("never"))
        .assert()
        .failure()
        .stderr(contains("shorter than one STFT frame"));
    let bad = grid(
        dir.path(),
        "bad2",
        "budgets = [2e7]",
        "modality = \"eeg\"\nwarmup_fraction = 1.5",
    );
    bin()
        .args(["bench", "run"])
        .arg(&bad)
        .arg("--out")
        .arg(dir.path().join("never"))
        .assert()
        .failure()
        .stderr(contains("warmup_fraction = 1.5 must be in [0, 1)"));
    assert!(
        !dir.path().join("never").exists(),
        "nothing written for a refused grid"
    );
}

#[test]
fn shipped_biosignal_grids_parse_and_meet_the_design() {
    for g in [
        "bench/biosignal-cpu-eeg.toml",
        "bench/biosignal-cpu-accel.toml",
        "bench/biosignal-gpu-eeg.toml",
        "bench/biosignal-gpu-accel.toml",
    ] {
        let grid = brainscale::study::grids::grid::Grid::load(&repo().join(g)).unwrap();
        let cells = grid.cells().unwrap();
        let mut budgets: Vec<f64> = grid.axes.budgets.clone();
        budgets.sort_by(|a, b| a.total_cmp(b));
        assert!(budgets.len() >= 4, "{g}: at least 4 budgets");
        let span = budgets.last().unwrap() / budgets[0];
        assert!((10.0..=30.0).contains(&span), "{g}: budgets span {span}x");
        assert!(
            grid.axes.models.len() >= 5,
            "{g}: at least 5 model sizes per budget"
        );
        // A 5x budget for the validation: some budget is 5x a smaller one.
        assert!(
            budgets
                .iter()
                .any(|&b| budgets.iter().any(|&c| (b / c - 5.0).abs() < 1e-9)),
            "{g}: no budget is 5x another"
        );
        assert_eq!(cells.len(), budgets.len() * grid.axes.models.len());
        // Every cell spends its budget within half an optimizer step.
        for c in &cells {
            let b = budgets
                .iter()
                .min_by(|x, y| {
                    (c.flops / **x)
                        .ln()
                        .abs()
                        .total_cmp(&(c.flops / **y).ln().abs())
                })
                .unwrap();
            assert!(
                (c.flops / b - 1.0).abs() < 0.5,
                "{g}: {} has {} FLOPs",
                c.id,
                c.flops
            );
        }
    }
}

#[test]
fn redone_biosignal_grids_meet_the_issue_19_design() {
    // ≥ 7 fitted budgets spanning ≥ 30×, the validation budget 5× the largest fitted one, every
    // budget a ladder spanning ≥ 30× in N with no gap above 2× (v2: √2 rungs) or 3.5× (lean:
    // every other v2 rung), 3 seeds, ≥ 100 steps per cell.
    for (g, max_gap) in [
        ("bench/biosignal-cpu-eeg-v2.toml", 2.0),
        ("bench/biosignal-cpu-accel-v2.toml", 2.0),
        ("bench/biosignal-cpu-eeg-lean.toml", 3.5),
        ("bench/biosignal-cpu-accel-lean.toml", 3.5),
    ] {
        let grid = brainscale::study::grids::grid::Grid::load(&repo().join(g)).unwrap();
        let cells = grid.cells().unwrap();
        let mut budgets = grid.axes.budgets.clone();
        budgets.sort_by(|a, b| a.total_cmp(b));
        let (fitted, val) = (&budgets[..budgets.len() - 1], budgets[budgets.len() - 1]);
        assert!(fitted.len() >= 7, "{g}");
        assert!(fitted[fitted.len() - 1] / fitted[0] >= 30.0, "{g}");
        assert!((val / fitted[fitted.len() - 1] - 5.0).abs() < 1e-3, "{g}");
        assert_eq!(grid.axes.seeds, vec![0, 1, 2], "{g}");
        assert_eq!(grid.axes.ladders.len(), budgets.len(), "{g}");
        let mut expected = 0;
        for &b in &budgets {
            let mut ns: Vec<f64> = cells
                .iter()
                .filter(|c| {
                    // The budget nearest in ln C (cells spend theirs within half a step).
                    let near = budgets
                        .iter()
                        .min_by(|x, y| {
                            (c.flops / **x)
                                .ln()
                                .abs()
                                .total_cmp(&(c.flops / **y).ln().abs())
                        })
                        .unwrap();
                    c.seed == 0 && *near == b
                })
                .map(|c| c.counts.matmul as f64)
                .collect();
            ns.sort_by(|a, b| a.total_cmp(b));
            expected += 3 * ns.len();
            assert!(ns[ns.len() - 1] / ns[0] >= 30.0, "{g} at {b:e}: {ns:?}");
            assert!(
                ns.windows(2).all(|w| w[1] / w[0] <= max_gap),
                "{g} at {b:e}: {ns:?}"
            );
        }
        assert_eq!(cells.len(), expected, "{g}");
        let grid_cell = match &grid.cell {
            brainscale::study::grids::grid::CellConfig::Biosignal(b) => b.clone(),
            _ => panic!("{g} is not a biosignal grid"),
        };
        for c in &cells {
            let per_step = grid_cell
                .costs(&c.model, &c.model_name)
                .unwrap()
                .tokens_per_step;
            assert!(
                c.tokens / per_step >= 100,
                "{g}: {} trains {} steps",
                c.id,
                c.tokens / per_step
            );
        }
    }
}

#[test]
fn lean_grids_are_every_other_rung_of_the_v2_grids() {
    // scripts/biosignal-scaling-lean-grids.py: each lean ladder is its v2 ladder's rungs 0, 2, 4,
    // ... by N plus the largest, and each lean cell is the v2 cell of the same id with the same
    // model, tokens, seed and [cell] settings (its config hash differs only because the hash
    // covers the whole [cell] table, whose lr_by_model lists just the lean models), so a lean
    // run reproduces the v2 rows it shares.
    use brainscale::study::grids::grid::{CellConfig, Grid};
    for m in ["eeg", "accel"] {
        let load = |d: &str| Grid::load(&repo().join(format!("bench/biosignal-cpu-{m}-{d}.toml")));
        let (v2, lean) = (load("v2").unwrap(), load("lean").unwrap());
        assert_eq!(v2.axes.budgets, lean.axes.budgets, "{m}");
        assert_eq!(v2.axes.seeds, lean.axes.seeds, "{m}");
        let n_of = |model: &str| {
            let path = repo().join("bench").join(model);
            let cfg: BiotConfig = toml::from_str(
                &std::fs::read_to_string(&path)
                    .unwrap()
                    .replace("model = \"biot\"\n", ""),
            )
            .unwrap();
            cfg.param_counts().per_token
        };
        assert_eq!(v2.axes.ladders.len(), lean.axes.ladders.len(), "{m}");
        for (a, b) in v2.axes.ladders.iter().zip(&lean.axes.ladders) {
            assert_eq!(a.budget, b.budget, "{m}");
            let mut full = a.models.clone();
            full.sort_by_key(|x| n_of(x));
            let keep: Vec<String> = (0..full.len())
                .filter(|&i| i % 2 == 0 || i + 1 == full.len())
                .map(|i| full[i].clone())
                .collect();
            let mut got = b.models.clone();
            got.sort_by_key(|x| n_of(x));
            assert_eq!(got, keep, "{m} at {:e}", a.budget);
        }
        // The [cell] settings: equal once v2's per-model learning rates are cut to the lean models.
        let (CellConfig::Biosignal(full), CellConfig::Biosignal(lean_cell)) =
            (&v2.cell, &lean.cell)
        else {
            panic!("{m}: not biosignal grids");
        };
        let mut cut = full.clone();
        cut.lr_by_model
            .retain(|k, _| lean.axes.models.iter().any(|x| x == k));
        assert_eq!(
            serde_json::to_value(&cut).unwrap(),
            serde_json::to_value(lean_cell).unwrap(),
            "{m}"
        );
        let v2_cells: BTreeMap<String, _> = v2
            .cells()
            .unwrap()
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let lean_cells = lean.cells().unwrap();
        assert!(
            lean_cells.len() * 10 < v2_cells.len() * 6,
            "{m}: {}",
            lean_cells.len()
        );
        for c in &lean_cells {
            let v = &v2_cells[&c.id];
            assert_eq!(
                (&v.model_name, v.tokens, v.flops, v.seed, &v.precision),
                (&c.model_name, c.tokens, c.flops, c.seed, &c.precision),
                "{m}: {}",
                c.id
            );
        }
    }
}

#[test]
fn a_cell_under_min_steps_is_refused_when_the_grid_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // d16-l1 at 2e7 FLOPs and batch 8 trains a handful of steps: refused at the default 100.
    let g = grid(dir.path(), "few", "budgets = [2e7]", "modality = \"eeg\"");
    let text = std::fs::read_to_string(&g)
        .unwrap()
        .replace("min_steps = 1\n", "");
    std::fs::write(&g, text).unwrap();
    let err = format!(
        "{:#}",
        brainscale::study::grids::grid::Grid::load(&g).unwrap_err()
    );
    assert!(
        err.contains("fewer than min_steps = 100") && err.contains("biot-d8-l1"),
        "{err}"
    );
    // A per-model learning rate naming a model outside the grid is refused too.
    let g = grid(
        dir.path(),
        "lr",
        "budgets = [2e7]",
        "modality = \"eeg\"\nlr_by_model = { \"nope.toml\" = 1e-3 }",
    );
    let err = format!(
        "{:#}",
        brainscale::study::grids::grid::Grid::load(&g).unwrap_err()
    );
    assert!(err.contains("lr_by_model names 'nope.toml'"), "{err}");
}

fn attempts(out: &Path, id: &str) -> Vec<String> {
    std::fs::read_to_string(out.join(format!("cells/{id}/attempts.log")))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn a_killed_biosignal_grid_resumes_with_every_cell_once() {
    let dir = tempfile::tempdir().unwrap();
    // Two models × one D of 200 steps (8 accel windows × 12 tokens), a checkpoint every 5 steps:
    // the kill lands mid-cell however fast the machine.
    let g = grid(
        dir.path(),
        "resume",
        "tokens = [19200]",
        "modality = \"accel\"\ncheckpoint_every = 5",
    );
    let out = dir.path().join("out");
    let first = "biot-d8-l1-D19200-fp32-s0";
    let second = "biot-d16-l1-D19200-fp32-s0";
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("brainscale"));
    std::os::unix::process::CommandExt::process_group(&mut child, 0);
    let mut child = child
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the second cell has a checkpoint but no row.
    let t0 = Instant::now();
    let ck = out.join(format!("cells/{second}/train/latest.json"));
    while !ck.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the second cell never checkpointed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    child.wait().unwrap();
    if out.join(format!("cells/{second}/row.json")).exists() {
        eprintln!("the second cell finished before the kill; the resume path was not exercised");
    }
    // The first cell finished before the kill (its row file is in place; results.csv may not
    // have been rebuilt yet: the next run merges it).
    assert!(out.join(format!("cells/{first}/row.json")).exists());
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let rows = read_rows(&out);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["cell_id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, [second, first], "one row per cell");
    assert_eq!(
        attempts(&out, first),
        ["start step 0 of 200"],
        "a finished cell is never rerun"
    );
    let a = attempts(&out, second);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0], "start step 0 of 200");
    assert!(
        a[1] != "start step 0 of 200",
        "resumed from its checkpoint: {a:?}"
    );
    // The resumed loss curve holds every step once.
    let csv = std::fs::read_to_string(out.join(format!("cells/{second}/train/loss.csv"))).unwrap();
    let steps: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(steps, (1..=200).collect::<Vec<u64>>());
    // Bit-for-bit the numbers of an uninterrupted run of the same cell.
    let fresh = dir.path().join("fresh");
    bin()
        .args(["bench", "run"])
        .arg(&g)
        .arg("--out")
        .arg(&fresh)
        .assert()
        .success();
    let get = |o: &Path| {
        read_rows(o)
            .into_iter()
            .find(|r| r["cell_id"] == second)
            .map(|r| (r["eval_loss"].clone(), r["train_loss"].clone()))
            .unwrap()
    };
    assert_eq!(get(&out), get(&fresh));
}

#[test]
fn cached_batches_are_bit_identical_to_the_generator_s() {
    use brainscale::biosignal::synth::{Generator, Modality, SynthSplit};
    use brainscale::biosignal::window::{normalise, Norm};
    use brainscale::study::grids::biosignal_cell::{render, sample_indices, BatchCache};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    for (m, l, pool) in [
        (Modality::Eeg, 1000, None),
        (Modality::Accel, 512, None),
        (Modality::Accel, 512, Some(7)),
    ] {
        let gen = Generator::new(3).with_shape(m, 200.0, l).unwrap();
        for step in 0..3u64 {
            // The generator's own draw and render vs the cell's (through the store, twice: a
            // miss then a hit), and the RNG left in the same state.
            let mut a = ChaCha8Rng::seed_from_u64(step);
            let mut b = a.clone();
            let (mut x, _) = gen.sample(m, SynthSplit::Pretrain, &mut a, 4, pool);
            normalise(&mut x, Norm::P95);
            let idx = sample_indices(&mut b, 4, pool);
            assert_eq!(a.gen::<u64>(), b.gen::<u64>(), "same draws");
            let want: Vec<f32> = x.iter().copied().collect();
            for _ in 0..2 {
                let t = BatchCache::get(&gen, m, SynthSplit::Pretrain, &idx, 1 << 24).unwrap();
                assert_eq!(t.size(), [4, x.dim().1 as i64, l as i64]);
                let got = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{m:?} step {step}: cached batch differs from Generator::sample"
                );
            }
            let r = render(&gen, m, SynthSplit::Pretrain, &idx).unwrap();
            assert!(r.equal(&BatchCache::get(&gen, m, SynthSplit::Pretrain, &idx, 0).unwrap()));
        }
    }
    let (hits, misses, bytes) = BatchCache::stats();
    assert!(
        hits >= 9 && misses >= 9 && bytes > 0,
        "{hits} {misses} {bytes}"
    );
}

#[test]
fn a_grid_with_the_batch_store_gives_the_same_rows_as_without() {
    // Two models of one seed draw the same windows at each step: with the store the second cell
    // reads the first's batches; every number must equal the run that renders every batch.
    let dir = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    for (name, cache) in [("nocache", 0), ("cache", 64)] {
        let g = grid(
            dir.path(),
            name,
            "tokens = [2880]",
            &format!(
                "modality = \"eeg\"\ncache_mib = {cache}\n[executor]\nkind = \"local\"\nparallel = 1"
            ),
        );
        let out = dir.path().join(name);
        bin()
            .args(["grid", "run"])
            .arg(&g)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let mut rows: Vec<(String, String, String)> = read_rows(&out)
            .into_iter()
            .map(|r| {
                (
                    r["cell_id"].clone(),
                    r["train_loss"].clone(),
                    r["eval_loss"].clone(),
                )
            })
            .collect();
        rows.sort();
        assert_eq!(rows.len(), 2);
        // 10 steps of 8 windows × 36 tokens each: without the store both cells render all 10
        // batches; with it, the second cell renders none.
        let rendered: u64 = rows
            .iter()
            .map(|r| {
                row_json(&out, &r.0)["extra"]["batches_rendered"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        assert_eq!(rendered, if cache == 0 { 20 } else { 10 }, "{name}");
        losses.push(rows);
    }
    assert_eq!(losses[0], losses[1]);
}
