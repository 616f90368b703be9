//! The streamed encode (voxel-major cache, Y block by block, shards and their merge) against
//! the in-memory encode on the tiny and medium synthetic datasets: same r, best alpha, CV
//! scores and weights; and the cache's reader against the whole-file reader.
mod common;
use brainscale::core::io::TensorFile;
use brainscale::fmri::align::{self, AlignOptions, Lag};
use brainscale::fmri::dataset::synth::{self, SynthConfig};
use brainscale::fmri::dataset::{nifti_io, nifti_stream, voxcache, Dataset};
use brainscale::fmri::encode::stream::{self as encode_stream, Shard, StreamOptions};
use brainscale::fmri::encode::{self, SplitPlan};
use brainscale::fmri::features::{self, ExtractorKind, FeaturesOptions};
use brainscale::ridge::RidgeOptions;
use common::{brainscale, expect_error, tiny};
use std::path::{Path, PathBuf};

/// Ground-truth features aligned to the TR grid in `work`.
fn prepare(ds: &Dataset, work: &Path) {
    let fo = FeaturesOptions {
        extractor: ExtractorKind::Groundtruth,
        pca: None,
        fps: None,
        size: None,
        gpt: None,
        decode: Default::default(),
    };
    features::run_stage(ds, work, &fo).unwrap();
    align::align_dataset(
        ds,
        work,
        "groundtruth",
        &AlignOptions {
            lag: Lag::Hrf,
            max_mismatch_s: None,
        },
    )
    .unwrap();
}

fn ropts() -> RidgeOptions {
    RidgeOptions {
        keep_weights: true,
        stream_weights: true,
        keep_cv_scores: true,
        progress: false,
        ..Default::default()
    }
}

fn f64s(p: &Path, name: &str) -> Vec<f64> {
    TensorFile::open(p)
        .unwrap()
        .f64(name)
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn f32s(p: &Path, name: &str) -> Vec<f32> {
    TensorFile::open(p)
        .unwrap()
        .f32(name)
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= tol,
        "{what}: largest difference {worst:e} > {tol:e}"
    );
}

/// Every per-voxel output of two ridge.safetensors (and their weights) agree.
fn assert_same_outputs(a: &Path, b: &Path, tol: f64) {
    for name in [
        "test_r",
        "best_alpha",
        "test_r2",
        "cv_scores",
        "ceiling_r",
        "alphas",
    ] {
        assert_close(&f64s(a, name), &f64s(b, name), tol, name);
    }
    // Significance (same permutations everywhere): p-values are counts out of 1,001, so
    // predictions equal to rounding may move a count by a tie; the null's maxima follow r.
    for name in ["test_p", "test_q", "test_fwe_p"] {
        let ptol = if tol == 0.0 { 0.0 } else { tol.max(3e-3) };
        assert_close(&f64s(a, name), &f64s(b, name), ptol, name);
    }
    // Block-bootstrap summaries (same resamples everywhere); the fraction at q < 0.05 counts
    // voxels against thresholds, so rounding may move a voxel across one.
    for name in [
        "boot_mean_r",
        "boot_top10_r",
        "boot_frac_r_0_1",
        "boot_frac_q05",
    ] {
        let btol = if tol == 0.0 { 0.0 } else { tol.max(3e-3) };
        assert_close(&f64s(a, name), &f64s(b, name), btol, name);
    }
    assert_close(
        &f64s(a, "null_max_r"),
        &f64s(b, "null_max_r"),
        tol * 10.0,
        "null_max_r",
    );
    let (fa, fb) = (TensorFile::open(a).unwrap(), TensorFile::open(b).unwrap());
    for key in ["permutations", "perm_block", "perm_seed"] {
        assert_eq!(fa.metadata().get(key), fb.metadata().get(key), "{key}");
    }
    for name in ["test_constant", "has_signal"] {
        assert_eq!(fa.u8(name).unwrap(), fb.u8(name).unwrap(), "{name}");
    }
    assert_eq!(fa.i32("voxel_ijk").unwrap(), fb.i32("voxel_ijk").unwrap());
    for key in ["inputs", "voxel_order", "test_runs", "split", "features"] {
        assert_eq!(
            fa.metadata().get(key),
            fb.metadata().get(key),
            "metadata {key}"
        );
    }
    let (wa, wb) = (
        a.with_file_name("weights.safetensors"),
        b.with_file_name("weights.safetensors"),
    );
    let (wa, wb) = (f32s(&wa, "weights"), f32s(&wb, "weights"));
    assert_close(
        &wa.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        &wb.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        tol,
        "weights",
    );
}

/// Copies the encode outputs of a subject aside (the next fit overwrites them).
fn keep(work: &Path, sub: &str, name: &str) -> PathBuf {
    let src = work.join("encode/groundtruth").join(format!("sub-{sub}"));
    let dst = work.join(name).join(format!("sub-{sub}"));
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["ridge.safetensors", "weights.safetensors"] {
        if src.join(f).exists() {
            std::fs::copy(src.join(f), dst.join(f)).unwrap();
        }
    }
    dst.join("ridge.safetensors")
}

fn in_memory_then_streamed(ds: &Dataset, work: &Path, plan: &SplitPlan, so: &StreamOptions) {
    in_memory_then_streamed_with(ds, work, plan, so, &ropts(), 1e-6)
}

fn in_memory_then_streamed_with(
    ds: &Dataset,
    work: &Path,
    plan: &SplitPlan,
    so: &StreamOptions,
    o: &RidgeOptions,
    tol: f64,
) {
    for s in &ds.subjects {
        encode::encode_subject(ds, s, work, "groundtruth", plan, o).unwrap();
        let mem = keep(work, &s.id, "mem");
        let f = encode_stream::encode_subject_streamed(ds, s, work, "groundtruth", plan, o, so)
            .unwrap();
        assert_eq!(f.voxels, (0, f.n_voxels));
        assert!(f.n_blocks >= 2, "the test should stream several blocks");
        assert_same_outputs(&mem, &f.path, tol);
        // Ground truth: the streamed fit recovers signal (guards against two equal wrong fits).
        let (r, c) = (f64s(&f.path, "test_r"), f64s(&f.path, "ceiling_r"));
        let hs = TensorFile::open(&f.path).unwrap().u8("has_signal").unwrap();
        let sig: Vec<usize> = (0..r.len()).filter(|&v| hs[v] == 1).collect();
        let mean = |x: &[f64]| sig.iter().map(|&v| x[v]).sum::<f64>() / sig.len() as f64;
        assert!(
            mean(&r) > 0.8 * mean(&c),
            "r {} vs ceiling {}",
            mean(&r),
            mean(&c)
        );
    }
}

/// 100-voxel blocks against one 800-voxel chunk: the matrix products have other shapes, and
/// how a BLAS tiles a shape decides the rounding of each element. In f32 that is enough to flip
/// near-tied alphas (OpenBLAS's Haswell/Zen sgemm kernels: r 1.5e-5 apart, one voxel's alpha
/// changed; its SkylakeX kernels: bit-identical), so these shapes are compared in f64, where
/// rounding is negligible (to 1e-9). The f32 default is compared at equal shapes (the default
/// block size) on the medium set below.
#[test]
fn streamed_encode_equals_in_memory_on_tiny() {
    let ds = Dataset::open(tiny()).unwrap();
    let work = tempfile::tempdir().unwrap();
    prepare(&ds, work.path());
    // 100-voxel blocks: 8 blocks, the last one narrower; trimmed runs and run groups.
    let so = StreamOptions {
        block_voxels: 100,
        ..Default::default()
    };
    let f64_work = RidgeOptions {
        dtype: brainscale::ridge::Dtype::F64,
        ..ropts()
    };
    let plan = SplitPlan {
        test_runs: vec!["04".into()],
        trim_start: 2,
        trim_end: 1,
        ..Default::default()
    };
    in_memory_then_streamed_with(&ds, work.path(), &plan, &so, &f64_work, 1e-9);
    // Unused runs (training only on runs 01-02) and the default split.
    let plan = SplitPlan {
        test_runs: vec!["04".into()],
        train_runs: vec!["01".into(), "02".into()],
        ..Default::default()
    };
    in_memory_then_streamed_with(&ds, work.path(), &plan, &so, &f64_work, 1e-9);
}

#[test]
fn streamed_encode_equals_in_memory_on_medium() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("synth-medium");
    // One subject of the medium preset (6 runs x 200 TRs, ~22k voxels) keeps the test short.
    let cfg = SynthConfig {
        subjects: 1,
        ..SynthConfig::preset(synth::Size::Medium, 3)
    };
    synth::generate(&cfg, &root).unwrap();
    let ds = Dataset::open(&root).unwrap();
    let work = dir.path().join("work");
    prepare(&ds, &work);
    let so = StreamOptions::default();
    let plan = SplitPlan {
        trim_start: 3,
        trim_end: 2,
        ..Default::default()
    };
    in_memory_then_streamed(&ds, &work, &plan, &so);
}

#[test]
fn shards_merge_into_the_single_run() {
    let ds = Dataset::open(tiny()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    prepare(&ds, w);
    let s = &ds.subjects[0];
    let plan = SplitPlan::default();
    let o = ropts();
    let so = |shard| StreamOptions {
        block_voxels: 64,
        shard,
        ..Default::default()
    };
    encode_stream::encode_subject_streamed(&ds, s, w, "groundtruth", &plan, &o, &so(None)).unwrap();
    let single = keep(w, &s.id, "single");
    let k = 3;
    for i in 0..k {
        let f = encode_stream::encode_subject_streamed(
            &ds,
            s,
            w,
            "groundtruth",
            &plan,
            &o,
            &so(Some(Shard { k: i, n: k })),
        )
        .unwrap();
        assert!(f.voxels.0 < f.voxels.1 && f.voxels.1 <= f.n_voxels);
    }
    let merged = encode_stream::merge_parts(w, "groundtruth", &s.id, k).unwrap();
    // Same blocks, same arithmetic: bit-identical.
    assert_same_outputs(&single, &merged, 0.0);

    // A missing part is named.
    let (p1, _) = encode_stream::part_paths(w, "groundtruth", &s.id, 1, k);
    let saved = std::fs::read(&p1).unwrap();
    std::fs::remove_file(&p1).unwrap();
    let e = format!(
        "{:#}",
        encode_stream::merge_parts(w, "groundtruth", &s.id, k).unwrap_err()
    );
    assert!(
        e.contains("part 1 of 3 is missing") && e.contains("part-1-of-3"),
        "{e}"
    );
    // A part fitted with other options is named.
    let other = RidgeOptions {
        alphas: vec![1.0, 10.0],
        ..o.clone()
    };
    encode_stream::encode_subject_streamed(
        &ds,
        s,
        w,
        "groundtruth",
        &plan,
        &other,
        &so(Some(Shard { k: 1, n: k })),
    )
    .unwrap();
    let e = format!(
        "{:#}",
        encode_stream::merge_parts(w, "groundtruth", &s.id, k).unwrap_err()
    );
    assert!(e.contains("part-1-of-3") && e.contains("inputs"), "{e}");
    // Parts of another shard count are not parts of this one.
    std::fs::write(&p1, &saved).unwrap();
    let e = format!(
        "{:#}",
        encode_stream::merge_parts(w, "groundtruth", &s.id, 2).unwrap_err()
    );
    assert!(e.contains("part 0 of 2 is missing"), "{e}");
}

#[test]
fn voxel_cache_is_resumable_and_holds_the_runs() {
    let ds = Dataset::open(tiny()).unwrap();
    let s = &ds.subjects[0];
    let dir = tempfile::tempdir().unwrap();
    let (cache, rep) = voxcache::build(s, dir.path(), 128, false).unwrap();
    assert_eq!((rep.converted, rep.skipped), (s.runs.len(), 0));
    // Blocks hold exactly what load_subject gives, block by block.
    let data = brainscale::fmri::dataset::load_subject(s).unwrap();
    for (i, y) in data.runs.iter().enumerate() {
        for b in 0..cache.n_blocks() {
            let (j0, j1) = cache.block_range(b);
            let blk = cache.read(i, j0, j1).unwrap();
            assert_eq!(blk, y.slice(ndarray::s![.., j0..j1]), "run {i} block {b}");
        }
        let all = cache.read(i, 0, cache.n_columns).unwrap();
        assert_eq!(&all, y, "run {i}, blocks joined");
    }
    let mask = match &data.space {
        brainscale::fmri::dataset::Space::Voxels { mask, .. } => mask,
        _ => panic!("voxel data"),
    };
    assert_eq!(cache.voxel_ijk.as_ref().unwrap(), &mask.voxel_ijk());
    // A rerun converts nothing; a removed run file is converted again alone.
    let mtimes = |c: &voxcache::VoxCache| {
        c.runs
            .iter()
            .map(|(p, _)| brainscale::core::io::mtime_ns(p))
            .collect::<Vec<_>>()
    };
    let before = mtimes(&cache);
    let (_, rep) = voxcache::build(s, dir.path(), 128, false).unwrap();
    assert_eq!((rep.converted, rep.skipped), (0, s.runs.len()));
    std::fs::remove_file(&cache.runs[2].0).unwrap();
    let (c2, rep) = voxcache::build(s, dir.path(), 128, false).unwrap();
    assert_eq!((rep.converted, rep.skipped), (1, s.runs.len() - 1));
    let after = mtimes(&c2);
    for i in [0, 1, 3] {
        assert_eq!(before[i], after[i], "run {i} was rewritten");
    }
    // Another block size is another cache: every run is converted again.
    let (_, rep) = voxcache::build(s, dir.path(), 100, false).unwrap();
    assert_eq!(rep.converted, s.runs.len());
    // No temporary file is left behind.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.starts_with(".tmp"), "left behind: {n}");
    }
}

#[test]
fn streamed_nifti_reader_equals_the_whole_file_reader() {
    let ds = Dataset::open(tiny()).unwrap();
    let s = &ds.subjects[0];
    let mp = s.mask.as_ref().unwrap();
    let (mh, mask) = nifti_io::Mask::read(mp).unwrap();
    let bold = &s.runs[0].bold;
    assert!(bold.to_string_lossy().ends_with(".nii.gz"));
    let (_, vol) = nifti_io::read_f32(bold).unwrap();
    let whole = mask.extract(&vol, bold).unwrap();
    let streamed = nifti_stream::read_masked(bold, &mask, Some(&mh), mp).unwrap();
    assert_eq!(whole, streamed);
    // A gzip stream cut short: an error naming the file and the complete volumes.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut_bold.nii.gz");
    let bytes = std::fs::read(bold).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!(
        "{:#}",
        nifti_stream::read_masked(&cut, &mask, Some(&mh), mp).unwrap_err()
    );
    assert!(e.contains("cut_bold.nii.gz"), "{e}");
    assert!(e.contains("cut short") || e.contains("truncated"), "{e}");
}

#[test]
fn streamed_encode_through_the_binary() {
    let work = tempfile::tempdir().unwrap();
    let (d, w) = (tiny().to_str().unwrap(), work.path().to_str().unwrap());
    let ds = Dataset::open(tiny()).unwrap();
    prepare(&ds, work.path());
    let base = [
        "encode",
        "--dataset",
        d,
        "--work",
        w,
        "--features",
        "groundtruth",
        "--subjects",
        "01",
        "--block-voxels",
        "200",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (ok, out, err) = brainscale(&args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    let out = run(&["--stream", "--max-memory", "4GB"]);
    assert!(out.contains("peak resident memory:"), "{out}");
    let single = keep(work.path(), "01", "single");
    std::fs::remove_file(
        work.path()
            .join("encode/groundtruth/sub-01/ridge.safetensors"),
    )
    .unwrap();
    for k in 0..2 {
        run(&["--voxel-shard", &format!("{k}/2")]);
    }
    let (ok, out, err) = brainscale(&[
        "encode",
        "--dataset",
        d,
        "--work",
        w,
        "--features",
        "groundtruth",
        "--subjects",
        "01",
        "merge",
        "--shards",
        "2",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("2 parts merged"), "{out}");
    let merged = work
        .path()
        .join("encode/groundtruth/sub-01/ridge.safetensors");
    assert_close(
        &f64s(&single, "test_r"),
        &f64s(&merged, "test_r"),
        0.0,
        "test_r",
    );
    assert_close(
        &f64s(&single, "best_alpha"),
        &f64s(&merged, "best_alpha"),
        0.0,
        "best_alpha",
    );
    // A subject without parts: the merge names it and merges no subject at all.
    std::fs::remove_file(&merged).unwrap();
    expect_error(
        &[
            "encode",
            "--dataset",
            d,
            "--work",
            w,
            "--features",
            "groundtruth",
            "--subjects",
            "01,02",
            "merge",
            "--shards",
            "2",
        ],
        &["sub-02: part 0 of 2 is missing", "no subject was merged"],
    );
    assert!(!merged.exists());
    // Bad shard specifications and budgets are clear errors.
    let mut bad: Vec<&str> = base.to_vec();
    bad.extend(["--voxel-shard", "0/9"]);
    expect_error(
        &bad,
        &["9 shards but only", "voxel block(s)", "blocks of 200"],
    );
    let mut bad: Vec<&str> = base.to_vec();
    bad.extend(["--voxel-shard", "2/2"]);
    expect_error(&bad, &["voxel shard `2/2`", "0 <= k < K"]);
    let mut bad: Vec<&str> = base.to_vec();
    // The streamed mode's whole-process budget is --process-memory (--max-memory is the
    // ridge's voxel-chunk budget in every mode).
    bad.extend(["--stream", "--process-memory", "50MB"]);
    expect_error(&bad, &["memory budget", "too small", "--process-memory"]);
}

/// The torch backend streams too (it refits its X side per block): same results as its
/// in-memory fit, to rounding.
#[test]
fn streamed_encode_equals_in_memory_with_the_torch_backend() {
    let ds = Dataset::open(tiny()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    prepare(&ds, w);
    let o = RidgeOptions {
        backend: brainscale::ridge::Backend::Torch,
        ..ropts()
    };
    let so = StreamOptions {
        block_voxels: 256,
        ..Default::default()
    };
    let plan = SplitPlan::default();
    let s = &ds.subjects[1];
    encode::encode_subject(&ds, s, w, "groundtruth", &plan, &o).unwrap();
    let mem = keep(w, &s.id, "mem");
    let f =
        encode_stream::encode_subject_streamed(&ds, s, w, "groundtruth", &plan, &o, &so).unwrap();
    assert!(f.n_blocks >= 2);
    assert_same_outputs(&mem, &f.path, 1e-6);
}
