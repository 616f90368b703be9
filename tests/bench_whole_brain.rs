//! `brainscale bench-whole-brain` on a small generated problem: the per-voxel results follow
//! the generator's known signal amplitudes, the same data fitted as K shards and merged equal
//! the single run bit for bit, and bad shard arguments or parts are clear errors.
use brainscale::core::io::TensorFile;
use std::path::Path;
use std::process::Command;

const SIZE: [&str; 12] = [
    "--n",
    "2000",
    "--p",
    "16",
    "--v",
    "1000",
    "--block-voxels",
    "128",
    "--alphas",
    "6",
    "--process-memory",
    "2GB",
];

fn run(extra: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_brainscale"))
        .arg("bench-whole-brain")
        .args(SIZE)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn ok(extra: &[&str]) -> String {
    let (good, text) = run(extra);
    assert!(good, "{extra:?}: {text}");
    text
}

fn bits(p: &Path, name: &str) -> Vec<u64> {
    let f = TensorFile::open(p).unwrap();
    f.f64(name).unwrap().iter().map(|x| x.to_bits()).collect()
}

/// The generator's noise-ceiling r of voxel j: s_j / √(1 + s_j²), s_j = 10^(−1 + frac(jφ)).
fn expected_r(j: usize) -> f64 {
    let s = 10f64.powf(-1.0 + (j as f64 * 0.618_033_988_749_895).fract()) as f32 as f64;
    s / (1.0 + s * s).sqrt()
}

#[test]
fn shards_merge_into_the_single_run_and_follow_the_known_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (single, sharded) = (dir.path().join("single"), dir.path().join("sharded"));
    let (s, h) = (single.to_str().unwrap(), sharded.to_str().unwrap());
    ok(&["--out", s]);
    let one = single.join("whole-brain.safetensors");

    // Ground truth: test r tracks the noise ceiling the generator put into each voxel.
    let r = TensorFile::open(&one).unwrap().f64("test_r").unwrap();
    let e: Vec<f64> = (0..r.len()).map(expected_r).collect();
    let (mr, me) = (r.mean().unwrap(), e.iter().sum::<f64>() / e.len() as f64);
    let cov: f64 = r.iter().zip(&e).map(|(a, b)| (a - mr) * (b - me)).sum();
    let (vr, ve): (f64, f64) = (
        r.iter().map(|a| (a - mr).powi(2)).sum(),
        e.iter().map(|b| (b - me).powi(2)).sum(),
    );
    let corr = cov / (vr * ve).sqrt();
    assert!(corr > 0.85, "corr(test r, expected r) = {corr}");
    assert!(mr < me && mr > me - 0.05, "mean r {mr} vs ceiling {me}");

    // 3 shards of the 8 blocks (2, 3, 3), then the merge: bit-identical outputs.
    for k in 0..3 {
        let out = ok(&["--out", h, "--voxel-shard", &format!("{k}/3")]);
        assert!(out.contains("of 1000"), "{out}");
    }
    let out = ok(&["--out", h, "--merge", "3"]);
    assert!(out.contains("3 parts merged"), "{out}");
    let merged = sharded.join("whole-brain.safetensors");
    for name in ["test_r", "test_r2", "best_alpha", "cv_scores", "alphas"] {
        assert_eq!(bits(&one, name), bits(&merged, name), "{name}");
    }
    assert_eq!(
        TensorFile::open(&merged).unwrap().metadata(),
        TensorFile::open(&one).unwrap().metadata()
    );

    // A merge with other arguments than the shards' is refused, naming the field.
    let (good, text) = run(&["--out", h, "--merge", "3", "--seed", "7"]);
    assert!(!good && text.contains("seed: 0 vs 7"), "{text}");
    // A part of other data (another seed) is refused, naming it and the field.
    ok(&["--out", h, "--voxel-shard", "1/3", "--seed", "7"]);
    let (good, text) = run(&["--out", h, "--merge", "3"]);
    assert!(
        !good && text.contains("part-1-of-3") && text.contains("seed: 7 vs 0"),
        "{text}"
    );
    // A missing part is named, with the command that makes it.
    std::fs::remove_file(sharded.join("parts/part-1-of-3.safetensors")).unwrap();
    let (good, text) = run(&["--out", h, "--merge", "3"]);
    assert!(
        !good && text.contains("part 1 of 3 is missing") && text.contains("--voxel-shard 1/3"),
        "{text}"
    );
}

#[test]
fn bad_shard_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (good, text) = run(&["--voxel-shard", "0/2"]);
    assert!(!good && text.contains("--out"), "{text}");
    let (good, text) = run(&["--out", d, "--voxel-shard", "2/2"]);
    assert!(!good && text.contains("0 <= k < K"), "{text}");
    // 8 blocks cannot make 9 non-empty shards: refused before any work, for every shard
    // and for the SLURM submission.
    let (good, text) = run(&["--out", d, "--voxel-shard", "8/9"]);
    assert!(
        !good && text.contains("9 shards but only 8 voxel block(s)"),
        "{text}"
    );
    assert!(!text.contains("GEMM peak"), "{text}");
    let (good, text) = run(&["--out", d, "--slurm-shards", "9"]);
    assert!(!good && text.contains("9 shards but only 8"), "{text}");
    let (good, text) = run(&["--out", d, "--merge", "2"]);
    assert!(!good && text.contains("part 0 of 2 is missing"), "{text}");
    assert!(!dir.path().join("whole-brain.safetensors").exists());
}

/// Modes that exclude each other (one shard, a merge, a SLURM array, a quick look at the
/// first blocks) are refused by the parser with the flags named.
#[test]
fn exclusive_modes_are_refused_by_the_parser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (args, says) in [
        (
            vec!["--out", d, "--merge", "2", "--voxel-shard", "0/2"],
            "cannot be used with",
        ),
        (
            vec!["--out", d, "--slurm-shards", "2", "--merge", "2"],
            "cannot be used with",
        ),
        (vec!["--out", d, "--max-blocks", "2"], "cannot be used with"),
        (vec!["--wait"], "--slurm-shards"),
        (vec!["--merge", "2"], "--out"),
    ] {
        let (good, text) = run(&args);
        assert!(!good && text.contains(says), "{args:?}: {text}");
        assert!(!text.contains("GEMM peak"), "{text}");
    }
}
