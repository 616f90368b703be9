//! Bad input gets a clear error naming the file and the fault, and a non-zero exit.
mod common;
use brainscale::fmri::dataset::nifti_io;
use common::{expect_error, tiny_copy};
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

fn run_pipeline(ds: &Path, work: &Path) -> Vec<String> {
    let (d, w) = (
        ds.to_str().unwrap().to_string(),
        work.to_str().unwrap().to_string(),
    );
    vec!["--dataset".into(), d, "--work".into(), w]
}

fn args<'a>(cmd: &'a str, place: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![cmd];
    v.extend(place.iter().map(String::as_str));
    v.extend_from_slice(extra);
    v
}

/// Rewrites run 01 of sub-01 with `n` volumes (keeping header geometry).
fn set_volumes(ds: &Path, n: usize) {
    let bold = ds.join("sub-01/func/sub-01_task-movie_run-01_bold.nii.gz");
    let (h, vol) = nifti_io::read_f32(&bold).unwrap();
    let s = vol.shape().to_vec();
    let new = ArrayD::from_shape_fn(IxDyn(&[s[0], s[1], s[2], n]), |ix| {
        vol[IxDyn(&[ix[0], ix[1], ix[2], ix[3] % s[3]])]
    });
    nifti_io::write(&bold, &h, new.view()).unwrap();
}

#[test]
fn missing_video() {
    let (_t, ds) = tiny_copy();
    std::fs::remove_file(ds.join("stimuli/task-movie_run-02.mp4")).unwrap();
    expect_error(
        &["dataset", "check", ds.to_str().unwrap()],
        &[
            "run-02_bold.nii.gz",
            "task-movie_run-02.mp4",
            "does not exist",
        ],
    );
    expect_error(
        &["decode", "--movie", "/nonexistent/movie.mp4"],
        &["/nonexistent/movie.mp4", "not found"],
    );
}

#[test]
fn corrupt_and_truncated_video() {
    let (t, ds) = tiny_copy();
    let movie = ds.join("stimuli/task-movie_run-01.mp4");
    let bytes = std::fs::read(&movie).unwrap();
    let garbage = t.path().join("garbage.mp4");
    std::fs::write(&garbage, b"this is not a movie at all").unwrap();
    expect_error(
        &["decode", "--movie", garbage.to_str().unwrap()],
        &["garbage.mp4", "not a readable movie"],
    );
    // An MP4 with its index first (faststart), cut short: the frames after the cut are lost.
    let fs = t.path().join("faststart.mp4");
    let ok = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=96x72:rate=24:duration=4",
        ])
        .args([
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ])
        .arg(&fs)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let b = std::fs::read(&fs).unwrap();
    std::fs::write(&fs, &b[..b.len() * 6 / 10]).unwrap();
    expect_error(
        &["decode", "--movie", fs.to_str().unwrap()],
        &["faststart.mp4", "truncated"],
    );
    // Cut in half with the index at the end: the file cannot be opened at all.
    std::fs::write(&movie, &bytes[..bytes.len() / 2]).unwrap();
    let w = t.path().join("work");
    let place = run_pipeline(&ds, &w);
    expect_error(&args("features", &place, &[]), &["task-movie_run-01.mp4"]);
}

#[test]
fn bold_longer_or_shorter_than_movie() {
    let (t, ds) = tiny_copy();
    let w = t.path().join("work");
    let place = run_pipeline(&ds, &w);
    let (ok, _, err) = common::brainscale(&args("features", &place, &["--pca", "8"]));
    assert!(ok, "{err}");
    set_volumes(&ds, 70); // 10 TRs (15 s) more than the 90 s movie
    expect_error(
        &args("align", &place, &[]),
        &[
            "sub-01",
            "run-01_bold.nii.gz",
            "longer than the movie",
            "by 15.00 s",
        ],
    );
    set_volumes(&ds, 50); // movie 15 s longer than the BOLD
    expect_error(
        &args("align", &place, &[]),
        &[
            "run-01_bold.nii.gz",
            "movie (90.00 s) is longer than the BOLD run",
            "by 15.00 s",
        ],
    );
}

#[test]
fn missing_tr() {
    let (_t, ds) = tiny_copy();
    let stem = ds.join("sub-02/func/sub-02_task-movie_run-03_bold");
    std::fs::write(
        stem.with_extension("json"),
        r#"{"TaskName": "movie", "StimulusFile": "stimuli/task-movie_run-03.mp4"}"#,
    )
    .unwrap();
    let bold = stem.with_extension("nii.gz");
    let (mut h, vol) = nifti_io::read_f32(&bold).unwrap();
    h.pixdim[4] = 0.0;
    nifti_io::write(&bold, &h, vol.view()).unwrap();
    expect_error(
        &["dataset", "check", ds.to_str().unwrap()],
        &[
            "sub-02_task-movie_run-03_bold.nii.gz",
            "no TR",
            "RepetitionTime",
        ],
    );
    // A sidecar that contradicts the header is also an error.
    std::fs::write(stem.with_extension("json"), r#"{"RepetitionTime": 2.0}"#).unwrap();
    h.pixdim[4] = 1.5;
    nifti_io::write(&bold, &h, vol.view()).unwrap();
    expect_error(
        &["dataset", "check", ds.to_str().unwrap()],
        &["TR differs", "2 s", "1.5 s"],
    );
}

#[test]
fn nan_voxels() {
    let (t, ds) = tiny_copy();
    let bold = ds.join("sub-01/func/sub-01_task-movie_run-02_bold.nii.gz");
    let (mut h, mut vol) = nifti_io::read_f32(&bold).unwrap();
    vol[IxDyn(&[6, 7, 6, 3])] = f32::NAN;
    h.datatype = nifti::NiftiType::Float32 as i16;
    nifti_io::write(&bold, &h, vol.view()).unwrap();
    let place = run_pipeline(&ds, &t.path().join("work"));
    common::brainscale(&args("features", &place, &["--pca", "8"]));
    common::brainscale(&args("align", &place, &[]));
    expect_error(
        &args("encode", &place, &[]),
        &["run-02_bold.nii.gz", "NaN", "x=6, y=7, z=6"],
    );
}

#[test]
fn empty_mask_and_shape_mismatch() {
    let (t, ds) = tiny_copy();
    let mask = ds.join("sub-01/func/sub-01_task-movie_desc-brain_mask.nii.gz");
    let (h, vol) = nifti_io::read_f32(&mask).unwrap();
    let place = run_pipeline(&ds, &t.path().join("work"));
    common::brainscale(&args("features", &place, &["--pca", "8"]));
    common::brainscale(&args("align", &place, &[]));

    nifti_io::write(&mask, &h, ArrayD::<u8>::zeros(vol.raw_dim()).view()).unwrap();
    expect_error(
        &args("encode", &place, &["--subjects", "01"]),
        &["brain_mask.nii.gz", "empty"],
    );

    let small = ArrayD::<u8>::from_elem(IxDyn(&[10, 14, 12]), 1);
    nifti_io::write(&mask, &h, small.view()).unwrap();
    expect_error(
        &args("encode", &place, &["--subjects", "01"]),
        &["run-01_bold.nii.gz", "12x14x12", "10x14x12"],
    );
}

#[test]
fn bad_arguments() {
    let (t, ds) = tiny_copy();
    let place = run_pipeline(&ds, &t.path().join("work"));
    expect_error(
        &["dataset", "check", "/nonexistent/dataset"],
        &["/nonexistent/dataset", "not found"],
    );
    expect_error(
        &args("align", &place, &[]),
        &["no features", "features stage first"],
    );
    common::brainscale(&args("features", &place, &["--pca", "8"]));
    common::brainscale(&args("align", &place, &[]));
    expect_error(
        &args("encode", &place, &["--alphas", "1,-2"]),
        &["alpha must be a positive", "-2"],
    );
    expect_error(
        &args("encode", &place, &["--test-runs", "09"]),
        &["test run '09' does not exist"],
    );
    expect_error(
        &args("encode", &place, &["--test-runs", "01,02,03"]),
        &["at least 2 training runs"],
    );
    expect_error(
        &args("features", &place, &["--pca", "500"]),
        &["PCA components must be in 1..=128"],
    );
}
