//! Real-world dataset inputs (issue 10, dataset half): each kind of odd-but-valid file gives
//! the right value, and each kind of bad one a clear error. Fixtures are written here (Rust
//! patching headers) or by tests/fixtures/nibabel_fixtures.py (nibabel, an independent NIfTI
//! implementation, also used to read back what the standard says a file holds).
mod common;
use brainscale::fmri::dataset::splits::{Role, SplitPlan};
use brainscale::fmri::dataset::{nifti_header, nifti_io, Dataset, OpenOptions};
use common::{brainscale, expect_error, tiny_copy};
use ndarray::{ArrayD, IxDyn};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn run_ok(args: &[&str]) -> String {
    let (ok, out, err) = brainscale(args);
    assert!(ok, "{args:?} failed:\n{out}\n{err}");
    out
}

/// Runs tests/fixtures/nibabel_fixtures.py with the project venv's python.
fn python(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/fixtures/nibabel_fixtures.py"))
        .args(args)
        .output()
        .expect("run python (scripts/install-deps.sh installs nibabel into .venv)");
    assert!(
        out.status.success(),
        "nibabel_fixtures.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut v)
        .unwrap();
    v
}

fn gzip_to(path: &Path, bytes: &[u8]) {
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    e.write_all(bytes).unwrap();
    e.finish().unwrap();
}

/// Sets `scl_slope` (offset 112) and `scl_inter` (116) of a little-endian NIfTI-1 .nii.gz.
fn set_scaling(path: &Path, slope: f32, inter: f32) {
    let mut b = gunzip(path);
    assert_eq!(i32::from_le_bytes(b[..4].try_into().unwrap()), 348);
    b[112..116].copy_from_slice(&slope.to_le_bytes());
    b[116..120].copy_from_slice(&inter.to_le_bytes());
    gzip_to(path, &b);
}

fn nibabel_read(path: &Path) -> serde_json::Value {
    serde_json::from_str(&python(&["read", path.to_str().unwrap()])).unwrap()
}

fn sum(a: &ArrayD<f32>) -> f64 {
    a.iter().map(|&v| v as f64).sum()
}

fn sub01(ds: &Path, f: &str) -> PathBuf {
    ds.join("sub-01/func").join(f)
}

const MASK: &str = "sub-01_task-movie_desc-brain_mask.nii.gz";

fn bold_name(run: &str) -> String {
    format!("sub-01_task-movie_run-{run}_bold.nii.gz")
}

// ---------------------------------------------------------------- kind 1: scl_slope / scl_inter

#[test]
fn kind1_zero_or_nonfinite_scl_slope_means_no_scaling() {
    let (_t, ds) = tiny_copy();
    let bold = sub01(&ds, &bold_name("01"));
    let mask = sub01(&ds, MASK);
    let (_, want_bold) = nifti_io::read_f32(&bold).unwrap();
    let (_, want_mask) = nifti_io::read_f32(&mask).unwrap();
    let n_mask = nifti_io::Mask::read(&mask).unwrap().1.len();
    // An atlas (labels 1..3 over the mask) to check label volumes too.
    let atlas = ds.join("atlas.nii.gz");
    let (mh, _) = nifti_io::read_f32(&mask).unwrap();
    let labels = want_mask.mapv(|v| if v > 0.0 { 2i16 } else { 0 });
    nifti_io::write(&atlas, &mh, labels.view()).unwrap();
    for (slope, inter) in [
        (f32::NAN, 0.0),
        (f32::INFINITY, 0.0),
        (f32::NEG_INFINITY, 3.0),
        (0.0, 7.0),
        (f32::NAN, f32::NAN),
    ] {
        for p in [&bold, &mask, &atlas] {
            set_scaling(p, slope, inter);
        }
        let (_, got) = nifti_io::read_f32(&bold).unwrap();
        assert!(
            got == want_bold,
            "slope {slope}, inter {inter}: BOLD values changed"
        );
        let (_, m) = nifti_io::Mask::read(&mask).unwrap();
        assert_eq!(m.len(), n_mask, "slope {slope}: mask voxels");
        let a = brainscale::fmri::dataset::atlas::Atlas::read(&atlas).unwrap();
        assert_eq!((a.n_parcels, a.labels.len()), (2, n_mask));
        // nibabel reads the same values (its rule: a zero or non-finite slope is no scaling).
        let nb = nibabel_read(&bold);
        assert_eq!(nb["nan"], 0);
        let s = nb["sum"].as_f64().unwrap();
        assert!(
            (s - sum(&got)).abs() <= 1e-6 * s.abs(),
            "{s} vs {}",
            sum(&got)
        );
        // The whole pipeline reads it: --deep reads every volume of every run.
        if slope.is_nan() && inter == 0.0 {
            run_ok(&["dataset", "check", ds.to_str().unwrap(), "--deep"]);
        }
    }
    // A valid slope still applies; a non-finite intercept with it counts as 0 (nifti1_io).
    set_scaling(&bold, 2.0, 0.5);
    let (_, got) = nifti_io::read_f32(&bold).unwrap();
    assert!(got == want_bold.mapv(|v| v * 2.0 + 0.5));
    let nb = nibabel_read(&bold);
    let s = nb["sum"].as_f64().unwrap();
    assert!((s - sum(&got)).abs() <= 1e-6 * s.abs());
    set_scaling(&bold, 2.0, f32::NAN);
    let (_, got) = nifti_io::read_f32(&bold).unwrap();
    assert!(got == want_bold.mapv(|v| v * 2.0));
}

// ---------------------------------------------------------------- kind 2: TR encodings

fn set_sidecar_tr(side: &Path, v: serde_json::Value) {
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(side).unwrap()).unwrap();
    j["RepetitionTime"] = v;
    std::fs::write(side, j.to_string()).unwrap();
}

fn set_header_tr(bold: &Path, tr: f32) {
    let (mut h, vol) = nifti_io::read_f32(bold).unwrap();
    h.pixdim[4] = tr;
    nifti_io::write(bold, &h, vol.view()).unwrap();
}

/// sub-01 run-01's TR as a scan finds it, or the problems.
fn bids_tr(ds: &Path, opts: &OpenOptions) -> std::result::Result<f64, Vec<String>> {
    let scan = Dataset::scan(ds, opts).unwrap();
    if !scan.problems.is_empty() {
        return Err(scan.problems);
    }
    let r = &scan.dataset.subjects[0].runs[0];
    assert_eq!(r.id, "01");
    Ok(r.tr)
}

#[test]
fn kind2_sidecar_tr_in_any_encoding_or_refused() {
    use serde_json::json;
    let (_t, ds) = tiny_copy();
    let d = ds.to_str().unwrap();
    let none = OpenOptions::default();
    let bold = sub01(&ds, &bold_name("01"));
    let side = sub01(&ds, "sub-01_task-movie_run-01_bold.json");
    for v in [
        json!("1.5"),
        json!(" 1.5 "),
        json!([1.5]),
        json!(["1.5"]),
        json!(1.5),
    ] {
        set_sidecar_tr(&side, v.clone());
        assert_eq!(bids_tr(&ds, &none), Ok(1.5), "{v}");
    }
    // Without a header TR, the string is the TR (not "no RepetitionTime").
    set_header_tr(&bold, 0.0);
    set_sidecar_tr(&side, json!("1.5"));
    let out = run_ok(&["dataset", "check", d]);
    assert!(out.contains("task-movie_run-01: 60 TRs x 1.5 s"), "{out}");
    // A string that contradicts the header is refused like the number would be.
    set_header_tr(&bold, 1.49);
    expect_error(&["dataset", "check", d], &["TR differs", "1.5 s", "1.49 s"]);
    // Values that are no TR are refused, naming the file, the field and the value.
    for (v, shown) in [
        (json!("1,5"), "\"1,5\""),
        (json!("fast"), "\"fast\""),
        (json!([1.5, 2.0]), "[1.5,2.0]"),
        (json!(true), "true"),
        (json!(-1.5), "-1.5"),
    ] {
        set_sidecar_tr(&side, v);
        let p = bids_tr(&ds, &none).unwrap_err().join("\n");
        for want in [
            "sub-01_task-movie_run-01_bold.json",
            "RepetitionTime",
            shown,
        ] {
            assert!(p.contains(want), "{shown}: {p}");
        }
    }
    // --tr that contradicts the files is refused too (no silent override).
    set_sidecar_tr(&side, json!(1.49));
    expect_error(
        &["dataset", "check", d, "--tr", "2"],
        &["--tr 2 s differs", "1.49 s"],
    );
}

#[cfg(feature = "hdf5")]
/// An Algonauts-style HDF5 subject (one run, 5 parcels) whose file gets `set_attr` applied.
fn hdf5_dataset(root: &Path, set_attr: impl FnOnce(&hdf5_metno::File)) -> PathBuf {
    let func = root.join("fmri/sub-01/func");
    std::fs::create_dir_all(&func).unwrap();
    std::fs::create_dir_all(root.join("stimuli")).unwrap();
    std::fs::write(root.join("stimuli/friends_s01e01a.mkv"), b"").unwrap();
    let f = func.join("sub-01_task-friends_bold.h5");
    let a = ndarray::Array2::from_shape_fn((10, 5), |(t, p)| (t * 5 + p) as f32);
    brainscale::fmri::dataset::hdf5::write_runs(&f, &[("ses-001_task-s01e01a".into(), a)], None)
        .unwrap();
    let mut b = hdf5_metno::File::with_options();
    b.fapl().file_locking(false);
    let file = b.open_rw(&f).unwrap();
    set_attr(&file);
    file.close().unwrap();
    f
}

#[cfg(feature = "hdf5")]
fn hdf5_tr(root: &Path) -> (Option<f64>, Vec<String>, Vec<String>) {
    let scan = Dataset::scan(root, &OpenOptions::default()).unwrap();
    let tr = scan.dataset.subjects[0].runs.first().map(|r| r.tr);
    (tr, scan.problems, scan.dataset.notes)
}

#[cfg(feature = "hdf5")]
#[test]
fn kind2_hdf5_tr_attribute_in_any_encoding_or_refused() {
    use hdf5_metno::types::{FixedAscii, VarLenUnicode};
    let t = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut fresh = || {
        n += 1;
        t.path().join(format!("d{n}"))
    };
    let cases: Vec<(Box<dyn FnOnce(&hdf5_metno::File)>, f64)> = vec![
        (
            Box::new(|f| {
                let v: VarLenUnicode = "1.49".parse().unwrap();
                f.new_attr::<VarLenUnicode>()
                    .create("RepetitionTime")
                    .unwrap()
                    .write_scalar(&v)
                    .unwrap();
            }),
            1.49,
        ),
        (
            Box::new(|f| {
                let v = FixedAscii::<8>::from_ascii(b"2.0").unwrap();
                f.new_attr::<FixedAscii<8>>()
                    .create("RepetitionTime")
                    .unwrap()
                    .write_scalar(&v)
                    .unwrap();
            }),
            2.0,
        ),
        (
            Box::new(|f| {
                f.new_attr::<f32>()
                    .create("RepetitionTime")
                    .unwrap()
                    .write_scalar(&1.49f32)
                    .unwrap();
            }),
            1.49,
        ),
        (
            Box::new(|f| {
                f.new_attr::<f64>()
                    .shape([1])
                    .create("RepetitionTime")
                    .unwrap()
                    .write_raw(&[0.8f64])
                    .unwrap();
            }),
            0.8,
        ),
        (
            Box::new(|f| {
                f.new_attr::<i32>()
                    .create("RepetitionTime")
                    .unwrap()
                    .write_scalar(&2)
                    .unwrap();
            }),
            2.0,
        ),
    ];
    for (set, want) in cases {
        let root = fresh();
        hdf5_dataset(&root, set);
        let (tr, problems, notes) = hdf5_tr(&root);
        assert!(problems.is_empty(), "{problems:?}");
        // Exactly the written decimal (a float32 1.49 is 1.49, not 1.4900000095367432).
        assert_eq!(tr, Some(want));
        assert!(!notes.iter().any(|n| n.contains("assuming")), "{notes:?}");
    }
    // Present but not a TR: refused, naming the file, the attribute and the value.
    let root = fresh();
    hdf5_dataset(&root, |f| {
        let v: VarLenUnicode = "fast".parse().unwrap();
        f.new_attr::<VarLenUnicode>()
            .create("RepetitionTime")
            .unwrap()
            .write_scalar(&v)
            .unwrap();
    });
    let (_, problems, notes) = hdf5_tr(&root);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("sub-01_task-friends_bold.h5")
                && p.contains("RepetitionTime")
                && p.contains("\"fast\"")),
        "{problems:?}"
    );
    assert!(!notes.iter().any(|n| n.contains("assuming")), "{notes:?}");
    let root = fresh();
    hdf5_dataset(&root, |f| {
        f.new_attr::<f64>()
            .shape([2])
            .create("RepetitionTime")
            .unwrap()
            .write_raw(&[1.49f64, 1.5])
            .unwrap();
    });
    let (_, problems, _) = hdf5_tr(&root);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("RepetitionTime") && p.contains("2 values")),
        "{problems:?}"
    );
    // A JSON sidecar beside the file with a string TR counts as well.
    let root = fresh();
    let f = hdf5_dataset(&root, |_| {});
    std::fs::write(f.with_extension("json"), r#"{"RepetitionTime": "1.49"}"#).unwrap();
    let (tr, problems, _) = hdf5_tr(&root);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(tr, Some(1.49));
}

#[test]
fn header_tr_prints_without_float_noise() {
    let (_t, ds) = tiny_copy();
    let bold = sub01(&ds, &bold_name("02"));
    let side = sub01(&ds, "sub-01_task-movie_run-02_bold.json");
    set_header_tr(&bold, 1.49);
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&side).unwrap()).unwrap();
    j.as_object_mut().unwrap().remove("RepetitionTime");
    std::fs::write(&side, j.to_string()).unwrap();
    let (_, out, _) = brainscale(&["dataset", "check", ds.to_str().unwrap()]);
    assert!(out.contains("task-movie_run-02: 60 TRs x 1.49 s"), "{out}");
    assert!(!out.contains("1.4900000"), "{out}");
    assert_eq!(nifti_header::f32_decimal(1.49f32), 1.49);
}

// ---------------------------------------------------------------- kind 3: qform / sform

#[test]
fn kind3_qform_affines_follow_the_standard_and_grids_compare_in_world_space() {
    let (t, ds) = tiny_copy();
    let d = ds.to_str().unwrap();
    let func = ds.join("sub-01/func");
    let atlas = t.path().join("mirrored_atlas.nii.gz");
    // sub-01: BOLDs qform-only, mask sform-only, both the same rotated, x-flipped affine.
    let affines: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&python(&[
        "qform",
        func.to_str().unwrap(),
        atlas.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(affines.len(), 6);
    for (p, want) in &affines {
        let h = nifti_io::read_header(Path::new(p)).unwrap();
        let got = nifti_io::affine(&h);
        for i in 0..4 {
            for j in 0..4 {
                let w = want[i][j].as_f64().unwrap();
                assert!(
                    (got[i][j] - w).abs() < 1e-4,
                    "{p}: affine[{i}][{j}] = {} but nibabel says {w}\n{got:?}",
                    got[i][j]
                );
            }
        }
    }
    let bold_h = nifti_io::read_header(&func.join(bold_name("01"))).unwrap();
    assert_eq!((bold_h.sform_code, bold_h.qform_code), (0, 1));
    assert!(bold_h.pixdim[0] < 0.0, "x-flipped: qfac -1");
    let mask_h = nifti_io::read_header(&func.join(MASK)).unwrap();
    assert_eq!((mask_h.sform_code, mask_h.qform_code), (1, 0));
    assert!(nifti_header::grid_mismatch(&bold_h, &mask_h).is_none());

    // Same geometry stored as qform vs sform: accepted by check and by every stage.
    run_ok(&["dataset", "check", d]);
    let work = t.path().join("work");
    let place = ["--dataset", d, "--work", work.to_str().unwrap()];
    let stage = |cmd: &str, extra: &[&str]| {
        let mut a = vec![cmd];
        a.extend_from_slice(&place);
        a.extend_from_slice(extra);
        run_ok(&a)
    };
    stage("features", &["--pca", "8"]);
    stage("align", &[]);
    stage("encode", &["--subjects", "01"]);

    // A qform-only atlas on the same voxel grid, same qoffsets, mirrored (rotated 180° about z)
    // into a disjoint world box: refused by check and by encode, naming the atlas.
    let a = atlas.to_str().unwrap();
    let e = expect_error(
        &["dataset", "check", d, "--atlas", a],
        &[
            "mirrored_atlas.nii.gz",
            "different places in the world",
            "resample the atlas",
        ],
    );
    assert!(e.contains("sub-01"), "{e}");
    let mut enc = vec!["encode"];
    enc.extend_from_slice(&place);
    enc.extend_from_slice(&["--subjects", "01", "--atlas", a]);
    expect_error(
        &enc,
        &["mirrored_atlas.nii.gz", "different places in the world"],
    );
}

// ---------------------------------------------------------------- kind 6: BIDS layouts

fn rename(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::rename(from, to).unwrap();
}

#[test]
fn kind6_runs_in_integer_order_sessions_and_unsupported_layouts() {
    let (_t, ds) = tiny_copy();
    let d = ds.to_str().unwrap();
    // sub-01: run-1, run-2, run-3, run-10 (text order would put run-10 second, run-3 last).
    for (old, new) in [("01", "1"), ("02", "2"), ("03", "3"), ("04", "10")] {
        for ext in ["nii.gz", "json"] {
            rename(
                &sub01(&ds, &format!("sub-01_task-movie_run-{old}_bold.{ext}")),
                &sub01(&ds, &format!("sub-01_task-movie_run-{new}_bold.{ext}")),
            );
        }
    }
    // sub-02: two sessions of two runs each.
    let s2 = ds.join("sub-02");
    for (old, ses, new) in [
        ("01", "01", "01"),
        ("02", "01", "02"),
        ("03", "02", "01"),
        ("04", "02", "02"),
    ] {
        for ext in ["nii.gz", "json"] {
            rename(
                &s2.join(format!("func/sub-02_task-movie_run-{old}_bold.{ext}")),
                &s2.join(format!(
                    "ses-{ses}/func/sub-02_ses-{ses}_task-movie_run-{new}_bold.{ext}"
                )),
            );
        }
    }
    rename(
        &s2.join("func/sub-02_task-movie_desc-brain_mask.nii.gz"),
        &s2.join("ses-01/func/sub-02_ses-01_task-movie_desc-brain_mask.nii.gz"),
    );
    std::fs::remove_dir(s2.join("func")).unwrap();

    let ds_ = Dataset::open(&ds).unwrap();
    let ids =
        |s: usize| -> Vec<String> { ds_.subjects[s].runs.iter().map(|r| r.id.clone()).collect() };
    assert_eq!(ids(0), ["1", "2", "3", "10"]);
    assert_eq!(
        ids(1),
        [
            "ses-01_run-01",
            "ses-01_run-02",
            "ses-02_run-01",
            "ses-02_run-02"
        ]
    );
    // The default test run is the last run: run-10.
    let roles = SplitPlan::default()
        .resolve(&ds_.subjects[0])
        .unwrap()
        .roles;
    assert_eq!(roles, [Role::Train, Role::Train, Role::Train, Role::Test]);
    // Session run ids select runs (as --test-runs does).
    let plan = SplitPlan {
        test_runs: vec!["ses-01_run-02".into()],
        ..Default::default()
    };
    let roles = plan.resolve(&ds_.subjects[1]).unwrap().roles;
    assert_eq!(roles, [Role::Train, Role::Test, Role::Train, Role::Train]);
    let out = run_ok(&["dataset", "check", d]);
    assert!(out.contains("ses-02_task-movie_run-01: 60 TRs"), "{out}");
    assert!(!out.contains("without a run"), "{out}");

    // A subject in a layout brainscale does not read: the error says what it found.
    let s3 = ds.join("sub-03");
    std::fs::create_dir_all(s3.join("ses-01/anat")).unwrap();
    std::fs::create_dir_all(s3.join("anat")).unwrap();
    std::fs::write(s3.join("anat/sub-03_T1w.nii.gz"), b"").unwrap();
    expect_error(
        &["dataset", "check", d],
        &[
            "sub-03",
            "unsupported layout",
            "anat/",
            "ses-01/ (holding anat/)",
            "ses-YY/func",
        ],
    );
}

// ---------------------------------------------------------------- kind 7: check --deep

#[test]
fn kind7_deep_check_reads_every_volume_and_reports_every_fault() {
    let (_t, ds) = tiny_copy();
    let d = ds.to_str().unwrap();
    let out = run_ok(&["dataset", "check", d]);
    assert!(out.contains("data not read"), "{out}");
    // sub-01 run-02: a NaN inside the mask.
    let (_, m1) = nifti_io::Mask::read(&sub01(&ds, MASK)).unwrap();
    let c = m1.coords(5);
    let b2 = sub01(&ds, &bold_name("02"));
    let (mut h, mut vol) = nifti_io::read_f32(&b2).unwrap();
    vol[IxDyn(&[c[0], c[1], c[2], 7])] = f32::NAN;
    h.datatype = nifti::NiftiType::Float32 as i16;
    nifti_io::write(&b2, &h, vol.view()).unwrap();
    // sub-01 run-03: cut short on disk (a valid gzip stream of too few bytes).
    let b3 = sub01(&ds, &bold_name("03"));
    let raw = gunzip(&b3);
    gzip_to(&b3, &raw[..raw.len() - raw.len() / 5]);
    // sub-02 run-01: one voxel constant over the whole run.
    let m2p = ds.join("sub-02/func/sub-02_task-movie_desc-brain_mask.nii.gz");
    let (_, m2) = nifti_io::Mask::read(&m2p).unwrap();
    let c2 = m2.coords(3);
    let b21 = ds.join("sub-02/func/sub-02_task-movie_run-01_bold.nii.gz");
    let (h, mut vol) = nifti_io::read_f32(&b21).unwrap();
    for tt in 0..vol.shape()[3] {
        vol[IxDyn(&[c2[0], c2[1], c2[2], tt])] = 100.0;
    }
    nifti_io::write(&b21, &h, vol.view()).unwrap();

    // Headers alone cannot see any of it.
    let out = run_ok(&["dataset", "check", d]);
    assert!(
        out.contains("no problem found") && out.contains("data not read"),
        "{out}"
    );
    // --deep reads every volume and reports all of it.
    let (ok, out, err) = brainscale(&["dataset", "check", d, "--deep"]);
    assert!(!ok, "{out}");
    assert!(!err.contains("panicked"), "{err}");
    for want in [
        "2 problem(s)",
        "run-02_bold.nii.gz: 1 voxel(s) inside the mask contain NaN",
        &format!("x={}, y={}, z={}", c[0], c[1], c[2]),
        "run-03_bold.nii.gz: the file is cut short",
        "of 60 volumes complete",
        "sub-02 task-movie_run-01",
        "1 of",
        "constant over the whole run",
        "data read: every volume",
    ] {
        assert!(out.contains(want), "--deep output lacks {want:?}:\n{out}");
    }
}

// ---------------------------------------------------------------- smaller: NIfTI-2

#[test]
fn nifti2_files_are_read() {
    let (t, ds) = tiny_copy();
    let bold = sub01(&ds, &bold_name("01"));
    let (h1, want) = nifti_io::read_f32(&bold).unwrap();
    let n2 = t.path().join("n2.nii.gz");
    python(&["nifti2", bold.to_str().unwrap(), n2.to_str().unwrap()]);
    assert_eq!(
        i32::from_le_bytes(gunzip(&n2)[..4].try_into().unwrap()),
        540,
        "a NIfTI-2 file"
    );
    let nb = nibabel_read(&n2);
    assert_eq!(nb["version"], "Nifti2Image");
    std::fs::copy(&n2, &bold).unwrap();
    let (h2, got) = nifti_io::read_f32(&bold).unwrap();
    assert!(got == want, "NIfTI-2 data differ");
    assert_eq!(nifti_io::header_tr(&h2), Some(1.5));
    assert_eq!(nifti_io::affine(&h2), nifti_io::affine(&h1));
    let s = nb["sum"].as_f64().unwrap();
    assert!((s - sum(&got)).abs() <= 1e-6 * s.abs());
    run_ok(&["dataset", "check", ds.to_str().unwrap(), "--deep"]);
}
