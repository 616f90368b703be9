//! `encode --slurm-shards K --wait` on a real SLURM controller and node started on loopback
//! (tests/support/slurm_cluster.rs): the K shards run as one job array, the merged outputs
//! equal the single streamed run's, and a lost part is refitted alone on the next submit; the
//! same for `bench-whole-brain --slurm-shards K` on its generated data. (One test: the
//! cluster's ports come from the process id.)
mod common;
#[path = "support/slurm_cluster.rs"]
mod slurm_cluster;
use brainscale::core::io::TensorFile;
use brainscale::fmri::align::{self, AlignOptions, Lag};
use brainscale::fmri::dataset::Dataset;
use brainscale::fmri::features::{self, ExtractorKind, FeaturesOptions};
use common::tiny;
use std::process::Command;

#[test]
fn slurm_job_array_runs_the_shards_and_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_daemons, conf)) = slurm_cluster::start(dir.path()) else {
        return;
    };
    let ds = Dataset::open(tiny()).unwrap();
    let work = dir.path().join("work");
    let fo = FeaturesOptions {
        extractor: ExtractorKind::Groundtruth,
        pca: None,
        fps: None,
        size: None,
        gpt: None,
        decode: Default::default(),
    };
    features::run_stage(&ds, &work, &fo).unwrap();
    align::align_dataset(
        &ds,
        &work,
        "groundtruth",
        &AlignOptions {
            lag: Lag::Hrf,
            max_mismatch_s: None,
        },
    )
    .unwrap();
    let (d, w) = (tiny().to_str().unwrap(), work.to_str().unwrap());
    let run = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_brainscale"))
            .args([
                "encode",
                "--dataset",
                d,
                "--work",
                w,
                "--features",
                "groundtruth",
                "--block-voxels",
                "128",
                "--save-weights",
            ])
            .args(extra)
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert!(o.status.success(), "{extra:?}: {err}");
        out
    };
    run(&["--stream"]);
    let sub = |s: &str| work.join("encode/groundtruth").join(format!("sub-{s}"));
    let read = |p: std::path::PathBuf| {
        let f = TensorFile::open(&p.join("ridge.safetensors")).unwrap();
        let w = TensorFile::open(&p.join("weights.safetensors")).unwrap();
        (
            f.f64("test_r").unwrap(),
            f.f64("best_alpha").unwrap(),
            f.i32("voxel_ijk").unwrap(),
            w.f32("weights").unwrap(),
        )
    };
    let single: Vec<_> = ["01", "02"].iter().map(|s| read(sub(s))).collect();
    for s in ["01", "02"] {
        std::fs::remove_file(sub(s).join("ridge.safetensors")).unwrap();
        std::fs::remove_file(sub(s).join("weights.safetensors")).unwrap();
    }
    let out = run(&["--slurm-shards", "4", "--wait", "--sbatch=--time=00:05:00"]);
    assert!(out.contains("submitted SLURM job array"), "{out}");
    assert!(out.contains("shards [0, 1, 2, 3] of 4"), "{out}");
    assert!(out.contains("sub-02: 4 parts merged"), "{out}");
    for (i, s) in ["01", "02"].iter().enumerate() {
        assert_eq!(
            read(sub(s)),
            single[i],
            "sub-{s}: merged outputs differ from the single run"
        );
    }
    // The script is one job array whose tasks run this encode with --voxel-shard k/4.
    let script = std::fs::read_dir(work.join("slurm"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "sbatch"))
        .unwrap();
    let text = std::fs::read_to_string(script).unwrap();
    for want in [
        "#SBATCH --array=0,1,2,3",
        "#SBATCH --time=00:05:00",
        "--voxel-shard \"${SLURM_ARRAY_TASK_ID}/4\"",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    assert!(!text.contains("--slurm-shards"), "{text}");
    // A lost part (a killed task) is the only one submitted again.
    let part = sub("02").join("parts/part-2-of-4.safetensors");
    std::fs::remove_file(&part).unwrap();
    let out = run(&["--slurm-shards", "4", "--wait"]);
    assert!(out.contains("shards [2] of 4"), "{out}");
    assert!(part.exists());
    assert_eq!(read(sub("02")), single[1]);
    // Everything there: nothing to submit, the parts are merged again.
    let out = run(&["--slurm-shards", "4"]);
    assert!(
        out.contains("nothing to submit") && out.contains("parts merged"),
        "{out}"
    );

    whole_brain_shards(&dir.path().join("whole-brain"), &conf);
}

/// `bench-whole-brain --slurm-shards 4 --wait` merges into the single run's outputs.
fn whole_brain_shards(dir: &std::path::Path, conf: &std::path::Path) {
    let run = |out: &std::path::Path, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_brainscale"))
            .args(["bench-whole-brain", "--n", "1000", "--p", "8", "--v", "600"])
            .args(["--block-voxels", "100", "--process-memory", "1GB", "--out"])
            .arg(out)
            .args(extra)
            .env("SLURM_CONF", conf)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{extra:?}: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    let (single, sharded) = (dir.join("single"), dir.join("sharded"));
    run(&single, &[]);
    let out = run(&sharded, &["--slurm-shards", "4", "--wait"]);
    assert!(
        out.contains("shards [0, 1, 2, 3] of 4") && out.contains("4 parts merged"),
        "{out}"
    );
    let read = |d: &std::path::Path| {
        let f = TensorFile::open(&d.join("whole-brain.safetensors")).unwrap();
        ["test_r", "best_alpha", "cv_scores"].map(|n| f.f64(n).unwrap())
    };
    assert_eq!(
        read(&single),
        read(&sharded),
        "merged outputs differ from the single run"
    );
    // A lost part is the only one run again.
    std::fs::remove_file(sharded.join("parts/part-3-of-4.safetensors")).unwrap();
    let out = run(&sharded, &["--slurm-shards", "4", "--wait"]);
    assert!(out.contains("shards [3] of 4"), "{out}");
    assert_eq!(read(&single), read(&sharded));
}
