//! What brainscale writes, read with the tools Python users use (nibabel, nilearn, safetensors,
//! h5py from the project venv; `make deps` installs them): NIfTI maps carry the BOLD's affine,
//! per-voxel vectors are in numpy/nilearn C order (`NiftiMasker.inverse_transform(test_r)` is
//! `r.nii.gz`, `voxel_ijk` is `np.argwhere(mask)`), the README's snippet runs, HDF5 files go both
//! ways. The pipeline runs through the binary on `dataset synth --size tiny`, with three voxels
//! made constant in sub-01's test run to check the warning about them.
mod common;
use brainscale::core::io::TensorFile;
use brainscale::fmri::dataset::{hdf5, nifti_io};
use common::brainscale;
use ndarray::{Array2, Axis, IxDyn};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Run {
    _dir: tempfile::TempDir,
    dataset: PathBuf,
    work: PathBuf,
    encode_stderr: String,
    /// NIfTI coordinates of the voxels made constant in the test run.
    constant: Vec<[usize; 3]>,
}

fn run_stage(args: &[&str]) -> String {
    let (ok, out, err) = brainscale(args);
    assert!(ok, "brainscale {args:?} failed: {err}");
    out + &err
}

/// `dataset synth --size tiny`, three voxels of sub-01 constant in run-04 (the default test
/// run), then features → align → encode (with weights) → maps.
fn pipeline() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let dataset = dir.path().join("synth-tiny");
        let work = dir.path().join("work");
        let (d, w) = (dataset.to_str().unwrap(), work.to_str().unwrap());
        run_stage(&["dataset", "synth", "--size", "tiny", "--out", d]);

        let func = dataset.join("sub-01/func");
        let (_, mask) =
            nifti_io::Mask::read(&func.join("sub-01_task-movie_desc-brain_mask.nii.gz")).unwrap();
        let bold_path = func.join("sub-01_task-movie_run-04_bold.nii.gz");
        let (h, bold) = nifti_io::read_f32(&bold_path).unwrap();
        let mut bold = bold.mapv(|v| v.round() as i16);
        let constant: Vec<[usize; 3]> = [0, mask.len() / 2, mask.len() - 1]
            .iter()
            .map(|&i| mask.coords(i))
            .collect();
        for c in &constant {
            for t in 0..bold.shape()[3] {
                bold[IxDyn(&[c[0], c[1], c[2], t])] = 1000;
            }
        }
        nifti_io::write(&bold_path, &h, bold.view()).unwrap();

        let place = ["--dataset", d, "--work", w];
        let with = |cmd: &str, extra: &[&str]| {
            let mut v = vec![cmd];
            v.extend_from_slice(&place);
            v.extend_from_slice(extra);
            run_stage(&v)
        };
        with("features", &[]);
        with("align", &[]);
        let encode_stderr = with("encode", &["--save-weights"]);
        with("maps", &[]);
        Run {
            _dir: dir,
            dataset,
            work,
            encode_stderr,
            constant,
        }
    })
}

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

#[test]
#[cfg_attr(not(feature = "hdf5"), ignore = "needs the hdf5 feature")]
fn python_tools_read_what_brainscale_writes() {
    let r = pipeline();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let from_rust = dir.path().join("from_rust.h5");
    let from_py = dir.path().join("from_py.h5");
    let a = Array2::from_shape_fn((40, 7), |(t, p)| (100 * t + p) as f32);
    hdf5::write_runs(
        &from_rust,
        &[("ses-001_task-s01e01a".into(), a)],
        Some(1.49),
    )
    .unwrap();
    for sub in ["01", "02"] {
        let out = std::process::Command::new(python())
            .arg(root.join("tests/fixtures/interop.py"))
            .arg(&r.dataset)
            .arg(&r.work)
            .arg(sub)
            .arg(root.join("README.md"))
            .env("INTEROP_H5_FROM_RUST", &from_rust)
            .env("INTEROP_H5_FROM_PY", &from_py)
            .output()
            .expect("run the venv's python (make deps installs it)");
        let (so, se) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "interop.py sub-{sub}:\n{so}\n{se}");
        assert!(so.contains("interop ok"), "{so}");
    }
    let back = hdf5::read_run(&from_py, "ses-002_task-s01e02b").unwrap();
    assert_eq!(back.dim(), (6, 5));
    assert_eq!(back[[5, 4]], 29.0 / 4.0);
}

#[test]
fn voxels_constant_in_the_test_run_are_warned_and_counted() {
    let r = pipeline();
    let f = TensorFile::open(&r.work.join("encode/baseline/sub-01/ridge.safetensors")).unwrap();
    let flag = f.u8("test_constant").unwrap();
    let r_test = f.f64("test_r").unwrap();
    let ijk = f.i32("voxel_ijk").unwrap();
    let n = flag.len();
    let flagged: Vec<usize> = (0..n).filter(|&v| flag[v] == 1).collect();
    assert_eq!(flagged.len(), 3, "three voxels flagged");
    for &v in &flagged {
        assert_eq!(r_test[v], 0.0);
        let c = ijk.index_axis(Axis(0), v);
        let c = [c[0] as usize, c[1] as usize, c[2] as usize];
        assert!(
            r.constant.contains(&c),
            "flagged voxel {c:?} is one made constant"
        );
    }
    assert!(
        r.encode_stderr.contains(&format!(
            "sub-01: 3 voxel(s) are constant over the test run(s)"
        )) && r
            .encode_stderr
            .contains(&format!("counted in the mean r over all {n} voxels")),
        "{}",
        r.encode_stderr
    );
    // sub-02 was left alone: nothing flagged, no warning.
    let f2 = TensorFile::open(&r.work.join("encode/baseline/sub-02/ridge.safetensors")).unwrap();
    assert!(f2.u8("test_constant").unwrap().iter().all(|&x| x == 0));
    assert!(
        !r.encode_stderr
            .lines()
            .any(|l| l.contains("sub-02") && l.contains("constant")),
        "{}",
        r.encode_stderr
    );
}
