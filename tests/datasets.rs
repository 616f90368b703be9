//! Real-dataset layouts, with fixtures written here in exactly those layouts: Algonauts 2025
//! parcellated HDF5 (`ses-001_task-s01e02a` keys, `friends_s01e02a.mkv` movies at 29.97 fps,
//! TR 1.49 s, a label atlas), and fMRIPrep derivatives with a confounds TSV. The parcels and
//! voxels respond to the movies' known luminance time courses, so encoding must find them.
mod common;
use brainscale::fmri::align::canonical_hrf;
use brainscale::fmri::dataset::{self, hdf5, nifti_io, Dataset};
use common::{brainscale, expect_error};
use ndarray::{Array2, ArrayD, IxDyn, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const TR: f64 = 1.49;
const FPS_NUM: f64 = 30000.0;
const FPS_DEN: f64 = 1001.0;
const N_TRS: usize = 30;
const SIDE: usize = 32;
const N_PARCELS: usize = 12;
/// Parcels 0..8 respond to the movie, 8..12 are noise.
const N_SIGNAL: usize = 8;

/// Two luminance time courses (left and right half of the frame) of one movie, per frame.
fn latents(seed: u64, n_frames: usize) -> Vec<[f32; 2]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let comps: Vec<[f64; 3]> = (0..8)
        .map(|_| {
            [
                rng.gen_range(0.02..0.15),
                rng.gen_range(0.0..6.3),
                rng.gen_range(0.0..1.0),
            ]
        })
        .collect();
    (0..n_frames)
        .map(|i| {
            let t = i as f64 * FPS_DEN / FPS_NUM;
            let mut v = [0.0f32; 2];
            for (k, c) in comps.iter().enumerate() {
                v[k % 2] += ((2.0 * std::f64::consts::PI * c[0] * t + c[1]).sin() * (0.5 + c[2])
                    / 3.0) as f32;
            }
            v.map(|x| x.clamp(-1.0, 1.0))
        })
        .collect()
}

/// Writes a 29.97 fps Matroska movie whose halves show the latents, via ffmpeg.
fn write_movie(path: &Path, lat: &[[f32; 2]]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut raw = Vec::with_capacity(lat.len() * SIDE * SIDE * 3);
    for l in lat {
        for _y in 0..SIDE {
            for x in 0..SIDE {
                let v = (128.0 + 100.0 * l[(x >= SIDE / 2) as usize]).round() as u8;
                raw.extend_from_slice(&[v, v, v]);
            }
        }
    }
    let mut child = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            &format!("{SIDE}x{SIDE}"),
            "-framerate",
            "30000/1001",
            "-i",
            "-",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
            "-pix_fmt",
            "yuv444p",
        ])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "ffmpeg failed for {}",
        path.display()
    );
}

/// The movie's latents averaged per TR and convolved with the canonical HRF, each column
/// scaled to unit variance: the noise-free response of a unit-weight parcel.
fn responses(lat: &[[f32; 2]], n_trs: usize) -> Array2<f64> {
    let mut avg = Array2::<f64>::zeros((n_trs, 2));
    let mut cnt = vec![0usize; n_trs];
    for (i, l) in lat.iter().enumerate() {
        let k = ((i as f64 * FPS_DEN / FPS_NUM) / TR).floor() as usize;
        if k < n_trs {
            cnt[k] += 1;
            avg[[k, 0]] += l[0] as f64;
            avg[[k, 1]] += l[1] as f64;
        }
    }
    for k in 0..n_trs {
        avg.row_mut(k).mapv_inplace(|v| v / cnt[k].max(1) as f64);
    }
    let h = canonical_hrf(TR);
    let mut out = Array2::<f64>::zeros((n_trs, 2));
    for t in 0..n_trs {
        for (lag, w) in h.iter().enumerate().take(t + 1) {
            out[[t, 0]] += w * avg[[t - lag, 0]];
            out[[t, 1]] += w * avg[[t - lag, 1]];
        }
    }
    for mut c in out.columns_mut() {
        let m = c.mean().unwrap();
        let sd = (c.mapv(|v| (v - m).powi(2)).mean().unwrap())
            .sqrt()
            .max(1e-9);
        c.mapv_inplace(|v| (v - m) / sd);
    }
    out
}

/// Friends episodes with fMRI, their sessions, and the movie-only season-7 episode.
const EPISODES: [(&str, &str); 8] = [
    ("s01e01a", "ses-001"),
    ("s01e01b", "ses-001"),
    ("s01e02a", "ses-002"),
    ("s01e02b", "ses-002"),
    ("s02e01a", "ses-003"),
    ("s02e01b", "ses-003"),
    ("s03e01a", "ses-004"),
    ("s03e01b", "ses-004"),
];

fn movie_rel(ep: &str) -> String {
    match dataset::parse_friends(ep) {
        Some((s, _)) => format!("stimuli/movies/friends/s{s}/friends_{ep}.mkv"),
        None => format!("stimuli/movies/movie10/bourne/{ep}.mkv"),
    }
}

/// Every movie (Friends episodes, bourne01, and s07e01a which has no fMRI), generated once
/// per test binary; with each one's per-TR responses.
fn movies() -> &'static (PathBuf, HashMap<String, Array2<f64>>) {
    static M: OnceLock<(PathBuf, HashMap<String, Array2<f64>>)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("brainscale-movies-")
            .tempdir()
            .unwrap()
            .keep();
        let n_frames = (N_TRS as f64 * TR * FPS_NUM / FPS_DEN).ceil() as usize;
        let mut resp = HashMap::new();
        let eps: Vec<&str> = EPISODES
            .iter()
            .map(|e| e.0)
            .chain(["bourne01", "s07e01a"])
            .collect();
        for (i, ep) in eps.iter().enumerate() {
            let lat = latents(100 + i as u64, n_frames);
            write_movie(&dir.join(movie_rel(ep)), &lat);
            resp.insert(ep.to_string(), responses(&lat, N_TRS));
        }
        (dir, resp)
    })
}

fn copy_stimuli(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let ok = Command::new("cp")
        .arg("-r")
        .arg(movies().0.join("stimuli"))
        .arg(root.join("stimuli"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Parcel weights on the two latents (signal parcels only).
fn parcel_weights(p: usize) -> [f64; 2] {
    if p >= N_SIGNAL {
        [0.0, 0.0]
    } else {
        [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [1.0, -0.5]][p % 4]
    }
}

/// The atlas: 12x8x4 volume, z = 0 background, label 1 + x/2 + 6·(y/4) elsewhere (12 labels).
fn write_atlas(path: &Path, n_labels: usize) {
    let dims = [12usize, 8, 4];
    let mut flat = vec![0i16; dims.iter().product()];
    for z in 1..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let l = 1 + x / 2 + 6 * (y / 4);
                flat[x + dims[0] * (y + dims[1] * z)] = if l <= n_labels { l as i16 } else { 0 };
            }
        }
    }
    let vol = ArrayD::from_shape_vec(IxDyn(&dims).f(), flat).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    nifti_io::write(path, &nifti_io::new_header(dims, 2.0, None), vol.view()).unwrap();
}

/// An Algonauts-2025-like tree: fmri/sub-XX/func/*.h5 (friends + movie10 files), the atlas
/// under fmri/sub-XX/atlas/, stimuli/movies/... with s07e01a having no run.
fn algonauts(root: &Path) {
    copy_stimuli(root);
    let space = "space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net";
    for (si, sub) in ["01", "02"].iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(7 + si as u64);
        let mut run = |ep: &str| {
            let r = &movies().1[ep];
            Array2::from_shape_fn((N_TRS, N_PARCELS), |(t, p)| {
                let w = parcel_weights(p);
                let noise: f64 = rng.gen_range(-1.0..1.0) * 1.2;
                (100.0 + w[0] * r[[t, 0]] + w[1] * r[[t, 1]] + noise) as f32
            })
        };
        let friends: Vec<(String, Array2<f32>)> = EPISODES
            .iter()
            .map(|(ep, ses)| (format!("{ses}_task-{ep}"), run(ep)))
            .collect();
        let movie10 = vec![("ses-005_task-bourne01".to_string(), run("bourne01"))];
        let func = root.join(format!("fmri/sub-{sub}/func"));
        hdf5::write_runs(
            &func.join(format!(
                "sub-{sub}_task-friends_{space}_desc-s123456_bold.h5"
            )),
            &friends,
            None,
        )
        .unwrap();
        hdf5::write_runs(
            &func.join(format!("sub-{sub}_task-movie10_{space}_bold.h5")),
            &movie10,
            None,
        )
        .unwrap();
        write_atlas(
            &root.join(format!(
                "fmri/sub-{sub}/atlas/sub-{sub}_{space}_desc-dseg_parcellation.nii.gz"
            )),
            N_PARCELS,
        );
    }
}

fn run_ok(args: &[&str]) -> String {
    let (ok, out, err) = brainscale(args);
    assert!(ok, "{args:?} failed: {err}");
    assert!(!err.contains("panicked"), "{err}");
    out
}

/// Reads parcels.csv: (parcel, r).
fn parcel_r(path: &Path) -> Vec<f64> {
    let mut rd = csv::Reader::from_path(path).unwrap();
    rd.records()
        .map(|r| r.unwrap()[2].parse().unwrap())
        .collect()
}

#[test]
#[cfg_attr(not(feature = "hdf5"), ignore = "needs the hdf5 feature")]
fn algonauts_hdf5_maps_runs_to_movies_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("algonauts_2025.competitors");
    algonauts(&root);
    let ds = Dataset::open(&root).unwrap();
    assert_eq!(ds.subjects.len(), 2);
    let s = &ds.subjects[0];
    assert_eq!(s.n_parcels, Some(N_PARCELS));
    assert!(s.atlas.as_ref().unwrap().ends_with("sub-01_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_desc-dseg_parcellation.nii.gz"));
    assert_eq!(s.runs.len(), 9);
    for r in &s.runs {
        assert_eq!(r.tr, dataset::CNEUROMOD_TR);
        assert_eq!(r.n_volumes, N_TRS);
        assert!(
            r.movie.ends_with(movie_rel(&r.episode)),
            "{} → {}",
            r.key,
            r.movie.display()
        );
    }
    let r = s
        .runs
        .iter()
        .find(|r| r.key == "ses-002_task-s01e02b")
        .unwrap();
    assert_eq!(
        (r.id.as_str(), r.season(), r.episode_group().as_str()),
        ("s01e02b", Some(1), "s01e02")
    );
    let b = s.runs.iter().find(|r| r.episode == "bourne01").unwrap();
    assert_eq!(
        (b.key.as_str(), b.season()),
        ("ses-005_task-bourne01", None)
    );
    assert_eq!(ds.movies_without_run.len(), 1);
    assert!(ds.movies_without_run[0].ends_with("stimuli/movies/friends/s7/friends_s07e01a.mkv"));
    assert!(ds
        .notes
        .iter()
        .any(|n| n.contains("assuming CNeuroMod's TR of 1.49 s")));

    let out = run_ok(&["dataset", "check", root.to_str().unwrap()]);
    for want in [
        "sub-01 (parcellated HDF5): 9 runs, 12 parcels, atlas fmri/sub-01/atlas/",
        "ses-001_task-s01e01a: 30 TRs x 1.49 s = 44.7 s, movie stimuli/movies/friends/s1/friends_s01e01a.mkv (44.7 s), season 1",
        "ses-005_task-bourne01: 30 TRs",
        "seasons: 1 (4 runs), 2 (2 runs), 3 (2 runs)",
        "1 movie(s) without a run:\n    stimuli/movies/friends/s7/friends_s07e01a.mkv",
        "no problem found",
    ] {
        assert!(out.contains(want), "check output lacks {want:?}:\n{out}");
    }
}

#[test]
#[cfg_attr(not(feature = "hdf5"), ignore = "needs the hdf5 feature")]
fn algonauts_hdf5_season_split_encode_and_parcel_maps() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("algonauts");
    algonauts(&root);
    let work = dir.path().join("work");
    let (d, w) = (root.to_str().unwrap(), work.to_str().unwrap());
    run_ok(&[
        "features",
        "--dataset",
        d,
        "--work",
        w,
        "--size",
        "32",
        "--pca",
        "8",
    ]);
    // The Algonauts baseline's alignment (window of TRs ending hrf_delay before each sample).
    run_ok(&[
        "align",
        "--dataset",
        d,
        "--work",
        w,
        "--hrf-delay",
        "1",
        "--window",
        "4",
    ]);
    let split = dir.path().join("split.toml");
    std::fs::write(
        &split,
        "test_seasons = [3]\ncv_folds = 3\ntrim_start = 2\ntrim_end = 2\n",
    )
    .unwrap();
    let out = run_ok(&[
        "encode",
        "--dataset",
        d,
        "--work",
        w,
        "--split",
        split.to_str().unwrap(),
    ]);
    assert!(out.contains("sub-01: 12 voxels"), "{out}");
    // HDF5 parcels through the voxel cache, streamed in blocks of 5 parcels: same results.
    let mem: Vec<_> = ["01", "02"].iter().map(|s| r_and_alpha(&work, s)).collect();
    run_ok(&[
        "encode",
        "--dataset",
        d,
        "--work",
        w,
        "--split",
        split.to_str().unwrap(),
        "--stream",
        "--block-voxels",
        "5",
    ]);
    for (i, s) in ["01", "02"].iter().enumerate() {
        assert_streamed_equal(&work, s, &mem[i]);
    }
    let f = brainscale::core::io::TensorFile::open(
        &work.join("encode/baseline/sub-01/ridge.safetensors"),
    )
    .unwrap();
    assert_eq!(f.metadata()["test_runs"], "s03e01a,s03e01b");
    run_ok(&["maps", "--dataset", d, "--work", w]);
    for sub in ["01", "02"] {
        let m = work.join(format!("maps/baseline/sub-{sub}"));
        let r = parcel_r(&m.join("parcels.csv"));
        assert_eq!(r.len(), N_PARCELS);
        let sig = r[..N_SIGNAL].iter().sum::<f64>() / N_SIGNAL as f64;
        let noise = r[N_SIGNAL..].iter().sum::<f64>() / (N_PARCELS - N_SIGNAL) as f64;
        assert!(
            sig > 0.5,
            "sub-{sub}: signal parcels mean r {sig:.3} ({r:?})"
        );
        assert!(
            noise.abs() < 0.3,
            "sub-{sub}: noise parcels mean r {noise:.3}"
        );
        // The parcel r map in NIfTI: each atlas voxel carries its parcel's r (inverse transform).
        let (h, vol) = nifti_io::read_f32(&m.join("r.nii.gz")).unwrap();
        assert_eq!(&vol.shape()[..3], &[12, 8, 4]);
        assert_eq!(h.dim[1..4], [12, 8, 4]);
        for (x, y, z) in [(0, 0, 1), (5, 2, 3), (11, 7, 2), (3, 5, 1)] {
            let p = x / 2 + 6 * (y / 4);
            assert!(
                (vol[IxDyn(&[x, y, z])] as f64 - r[p]).abs() < 1e-6,
                "voxel {x},{y},{z} vs parcel {p}"
            );
        }
        assert_eq!(vol[IxDyn(&[4, 4, 0])], 0.0, "background stays 0");
        assert!(m.join("r_mosaic.png").exists() && m.join("alpha.nii.gz").exists());
        eprintln!(
            "HDF5 fixture sub-{sub}: signal parcels mean test r {sig:.3}, noise parcels {noise:.3}"
        );
    }
    let rows: Vec<brainscale::fmri::maps::SummaryRow> =
        csv::Reader::from_path(work.join("summary.csv"))
            .unwrap()
            .deserialize()
            .map(|r| r.unwrap())
            .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r.voxels == N_PARCELS && r.test_runs == "s03e01a,s03e01b"));
    // Season split from flags; half an episode in the test set is refused.
    expect_error(
        &[
            "encode",
            "--dataset",
            d,
            "--work",
            w,
            "--test-runs",
            "s01e01b",
        ],
        &["episode s01e01", "both in training and in the test"],
    );
    expect_error(
        &["encode", "--dataset", d, "--work", w, "--test-seasons", "7"],
        &["season 7 has no run", "1, 2, 3"],
    );
    expect_error(
        &[
            "encode",
            "--dataset",
            d,
            "--work",
            w,
            "--test-seasons",
            "3",
            "--cv-folds",
            "9",
        ],
        &["cv_folds must be in 2..=4"],
    );
}

#[test]
#[cfg_attr(not(feature = "hdf5"), ignore = "needs the hdf5 feature")]
fn hdf5_inconsistencies_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bad");
    copy_stimuli(&root);
    let func = root.join("sub-01/func");
    let ok_run =
        |n: usize| Array2::<f32>::from_shape_fn((n, N_PARCELS), |(t, p)| (t * 3 + p) as f32);
    hdf5::write_runs(
        &func.join("sub-01_task-friends_bold.h5"),
        &[
            ("ses-001_task-s01e01a".into(), ok_run(N_TRS)),
            // A run without a movie, and one with 6 TRs (8.9 s) more than its movie.
            ("ses-001_task-s01e09a".into(), ok_run(N_TRS)),
            ("ses-002_task-s01e02a".into(), ok_run(N_TRS + 6)),
        ],
        Some(TR),
    )
    .unwrap();
    // An atlas with 10 labels for 12 parcels.
    write_atlas(&root.join("sub-01/atlas/atlas_desc-dseg.nii.gz"), 10);
    let d = root.to_str().unwrap();
    let (ok, out, err) = brainscale(&["dataset", "check", d]);
    assert!(!ok && !err.contains("panicked"), "{err}");
    for want in [
        "run without a movie: no file named s01e09a.* or *_s01e09a.*",
        "has 12 parcels but the atlas",
        "has 10 labels",
        "ses-002_task-s01e02a in",
        "is longer than the movie (",
        "(TR count mismatch)",
        "3 problem(s)",
        "movie(s) without a run",
    ] {
        assert!(out.contains(want), "check output lacks {want:?}:\n{out}");
    }
    assert!(
        err.contains("3 problems") && err.contains("s01e09a"),
        "{err}"
    );
    // Stages refuse the dataset with the same messages.
    expect_error(
        &[
            "features",
            "--dataset",
            d,
            "--work",
            dir.path().join("w").to_str().unwrap(),
        ],
        &["s01e09a", "parcel count differs"],
    );
    // Skipping runs without a movie leaves the other problems; a right atlas leaves the TR count one.
    write_atlas(&root.join("sub-01/atlas/atlas_desc-dseg.nii.gz"), 12);
    let (ok, out, _) = brainscale(&["dataset", "check", d, "--skip-runs-without-movie"]);
    assert!(
        !ok && out.contains("1 problem(s)")
            && out.contains("note: skipped")
            && out.contains("TR count mismatch"),
        "{out}"
    );
    // A parcel count that differs between runs.
    hdf5::write_runs(
        &func.join("sub-01_task-friends_bold.h5"),
        &[
            ("ses-001_task-s01e01a".into(), ok_run(N_TRS)),
            ("ses-001_task-s01e01b".into(), Array2::zeros((N_TRS, 7))),
        ],
        Some(TR),
    )
    .unwrap();
    let (_, out, _) = brainscale(&["dataset", "check", d]);
    assert!(
        out.contains("run 'ses-001_task-s01e01b'")
            && out.contains("7 parcels, but run 'ses-001_task-s01e01a' has 12"),
        "{out}"
    );
}

/// fMRIPrep derivatives: 6x6x4 voxels, mask x,y in 1..5; voxels with signal in the first
/// half of the mask, and a large motion artefact (trans_x) in every voxel.
fn fmriprep(root: &Path, extra_t1w: bool) {
    copy_stimuli(root);
    let dims = [6usize, 6, 4];
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let eps = [
        "s01e01a", "s01e01b", "s01e02a", "s02e01a", "s03e01a", "s03e01b",
    ];
    for (i, ep) in eps.iter().enumerate() {
        let ses = format!("ses-00{}", i / 2 + 1);
        let func = root.join(format!("derivatives/fmriprep/sub-01/{ses}/func"));
        std::fs::create_dir_all(&func).unwrap();
        let base = format!("sub-01_{ses}_task-{ep}");
        let r = &movies().1[*ep];
        // Head motion as jerks (white, so it cannot correlate with the movie by chance the way
        // a random walk can).
        let motion: Vec<f64> = (0..N_TRS).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let nvox = dims.iter().product::<usize>();
        let mut flat = vec![0.0f32; nvox * N_TRS];
        for t in 0..N_TRS {
            for l in 0..nvox {
                let (x, y) = (l % 6, (l / 6) % 6);
                let w = if x < 3 {
                    parcel_weights((x + y) % 4)
                } else {
                    [0.0, 0.0]
                };
                let noise: f64 = rng.gen_range(-1.0..1.0);
                flat[t * nvox + l] = (500.0
                    + w[0] * r[[t, 0]]
                    + w[1] * r[[t, 1]]
                    + 15.0 * motion[t] * (1.0 + (l % 3) as f64)
                    + noise) as f32;
            }
        }
        let vol = ArrayD::from_shape_vec(IxDyn(&[6, 6, 4, N_TRS]).f(), flat).unwrap();
        let h = nifti_io::new_header(dims, 3.0, Some(TR));
        let mut h4 = h.clone();
        h4.dim = [4, 6, 6, 4, N_TRS as u16, 1, 1, 1];
        nifti_io::write(
            &func.join(format!(
                "{base}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
            )),
            &h4,
            vol.view(),
        )
        .unwrap();
        std::fs::write(
            func.join(format!(
                "{base}_space-MNI152NLin2009cAsym_desc-preproc_bold.json"
            )),
            r#"{"RepetitionTime": 1.49}"#,
        )
        .unwrap();
        // Masks differ slightly between runs: the subject uses their intersection.
        let mask = ArrayD::from_shape_fn(IxDyn(&[6, 6, 4]).f(), |ix| {
            let inside = (1..5).contains(&ix[0]) && (1..5).contains(&ix[1]);
            u8::from(inside && !(i == 2 && ix[0] == 4 && ix[1] == 4 && ix[2] == 0))
        });
        nifti_io::write(
            &func.join(format!(
                "{base}_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz"
            )),
            &h,
            mask.view(),
        )
        .unwrap();
        let mut tsv =
            String::from("global_signal\ttrans_x\ttrans_y\tframewise_displacement\trot_z\n");
        for t in 0..N_TRS {
            let fd = if t == 0 {
                "n/a".to_string()
            } else {
                format!("{:.6}", (motion[t] - motion[t - 1]).abs())
            };
            tsv += &format!(
                "{:.3}\t{:.6}\t{:.6}\t{fd}\t0.0\n",
                500.0 + rng.gen_range(-1.0..1.0),
                motion[t],
                rng.gen_range(-0.1..0.1)
            );
        }
        std::fs::write(
            func.join(format!("{base}_desc-confounds_timeseries.tsv")),
            tsv,
        )
        .unwrap();
        if extra_t1w && i == 0 {
            nifti_io::write(
                &func.join(format!("{base}_space-T1w_desc-preproc_bold.nii.gz")),
                &h4,
                vol.view(),
            )
            .unwrap();
        }
    }
    // A small atlas on the same grid: 4 labels by quadrant.
    let atlas = ArrayD::from_shape_fn(IxDyn(&[6, 6, 4]).f(), |ix| {
        (1 + ix[0] / 3 + 2 * (ix[1] / 3)) as i16
    });
    nifti_io::write(
        &root.join("atlas.nii.gz"),
        &nifti_io::new_header(dims, 3.0, None),
        atlas.view(),
    )
    .unwrap();
}

/// test_r and best_alpha of a subject's saved encode result.
fn r_and_alpha(work: &Path, sub: &str) -> (Vec<f64>, Vec<f64>) {
    let f = brainscale::core::io::TensorFile::open(
        &work.join(format!("encode/baseline/sub-{sub}/ridge.safetensors")),
    )
    .unwrap();
    let v = |n: &str| f.f64(n).unwrap().iter().copied().collect::<Vec<f64>>();
    (v("test_r"), v("best_alpha"))
}

/// The streamed encode (voxel cache, Y block by block) gives the in-memory encode's results.
fn assert_streamed_equal(work: &Path, sub: &str, before: &(Vec<f64>, Vec<f64>)) {
    let after = r_and_alpha(work, sub);
    assert_eq!(before.0.len(), after.0.len());
    for (name, a, b) in [
        ("test_r", &before.0, &after.0),
        ("best_alpha", &before.1, &after.1),
    ] {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-6,
            "sub-{sub}: streamed {name} differs by {worst:e}"
        );
    }
}

fn mean_test_r(out: &str) -> f64 {
    let s = out
        .split("test mean r ")
        .nth(1)
        .unwrap_or_else(|| panic!("no mean r in {out}"));
    s.split(',').next().unwrap().trim().parse().unwrap()
}

#[test]
fn fmriprep_confounds_atlas_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cneuromod");
    fmriprep(&root, true);
    let d = root.to_str().unwrap();
    // Two spaces for one run: the user must choose.
    expect_error(
        &["dataset", "check", d],
        &["several spaces", "MNI152NLin2009cAsym", "T1w", "--space"],
    );
    let sp = ["--space", "MNI152NLin2009cAsym"];
    let conf = ["--confounds", "trans_x,trans_y,framewise_displacement"];
    let with = |base: &[&str], extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let out = run_ok(
        &with(&["dataset", "check", d], &[&sp[..], &conf[..]].concat())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    for want in [
        "sub-01 (fMRIPrep derivatives): 6 runs, 63 voxels in mask",
        "ses-001_task-s01e01a: 30 TRs x 1.49 s",
        "friends_s01e01a.mkv",
        "confounds regressed: trans_x, trans_y, framewise_displacement",
        "no problem found",
    ] {
        assert!(out.contains(want), "check output lacks {want:?}:\n{out}");
    }
    // A missing confound column is named, with the file.
    let e = expect_error(
        &[
            "dataset",
            "check",
            d,
            "--space",
            "MNI152NLin2009cAsym",
            "--confounds",
            "trans_x,rot_q",
        ],
        &[
            "no confound column 'rot_q'",
            "desc-confounds_timeseries.tsv",
            "trans_x",
        ],
    );
    assert!(e.contains("6 problems"), "{e}");

    let work = dir.path().join("work");
    let w = work.to_str().unwrap();
    let place = |extra: &[&str]| -> Vec<String> {
        with(&["--dataset", d, "--work", w], &[&sp[..], extra].concat())
    };
    let cmd = |c: &str, extra: &[&str]| -> String {
        let mut a = vec![c.to_string()];
        a.extend(place(extra));
        run_ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    cmd("features", &["--size", "32", "--pca", "8"]);
    cmd("align", &["--hrf-delay", "1", "--window", "4"]);
    let split = [
        "--test-seasons",
        "3",
        "--trim-start",
        "2",
        "--trim-end",
        "2",
    ];
    let raw = mean_test_r(&cmd("encode", &split));
    let clean = mean_test_r(&cmd("encode", &[&split[..], &conf[..]].concat()));
    // fMRIPrep runs with confounds regressed, through the voxel cache: same results.
    let mem = r_and_alpha(&work, "01");
    let stream = ["--stream", "--block-voxels", "16"];
    cmd("encode", &[&split[..], &conf[..], &stream[..]].concat());
    assert_streamed_equal(&work, "01", &mem);
    eprintln!(
        "fMRIPrep fixture: mean test r without confound regression {raw:.3}, with {clean:.3}"
    );
    assert!(
        clean > raw + 0.1,
        "confound regression should help: {raw:.3} → {clean:.3}"
    );
    cmd("maps", &conf);
    let m = work.join("maps/baseline/sub-01");
    let (_, rmap) = nifti_io::read_f32(&m.join("r.nii.gz")).unwrap();
    assert_eq!(rmap.shape(), &[6, 6, 4]);
    assert_eq!(rmap[IxDyn(&[0, 0, 0])], 0.0);

    // Voxels → parcels through the atlas, and parcel maps back to NIfTI.
    let atlas = root.join("atlas.nii.gz");
    let at = ["--atlas", atlas.to_str().unwrap()];
    let out = cmd("encode", &[&split[..], &conf[..], &at[..]].concat());
    assert!(out.contains("sub-01: 4 voxels"), "{out}");
    let mem = r_and_alpha(&work, "01");
    cmd(
        "encode",
        &[&split[..], &conf[..], &at[..], &stream[..]].concat(),
    );
    assert_streamed_equal(&work, "01", &mem);
    cmd("maps", &[&conf[..], &at[..]].concat());
    let r = parcel_r(&m.join("parcels.csv"));
    assert_eq!(r.len(), 4);
    assert!(
        r[0] > 0.3 && r[2] > 0.3,
        "parcels with signal voxels: {r:?}"
    );
    let (_, pmap) = nifti_io::read_f32(&m.join("r.nii.gz")).unwrap();
    assert!((pmap[IxDyn(&[1, 4, 2])] as f64 - r[2]).abs() < 1e-6);

    // A confounds file with fewer rows than volumes.
    let tsv = root.join("derivatives/fmriprep/sub-01/ses-001/func/sub-01_ses-001_task-s01e01a_desc-confounds_timeseries.tsv");
    let text = std::fs::read_to_string(&tsv).unwrap();
    let short: Vec<&str> = text.lines().take(N_TRS - 2).collect();
    std::fs::write(&tsv, short.join("\n")).unwrap();
    expect_error(
        &[
            "dataset",
            "check",
            d,
            "--space",
            "MNI152NLin2009cAsym",
            "--confounds",
            "trans_x",
        ],
        &[
            "27 rows but the BOLD run",
            "30 volumes",
            "TR count mismatch",
        ],
    );
}

/// Movie10 keys: repeated viewings (`_run-1`, `_run-2`) share one movie and one CV/test group;
/// a key matching two movie files is an ambiguity, reported.
#[test]
#[cfg_attr(not(feature = "hdf5"), ignore = "needs the hdf5 feature")]
fn movie10_repeats_and_ambiguous_movies() {
    use brainscale::fmri::dataset::splits::{Role, SplitPlan};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("movie10");
    for m in [
        "figures/figures04.mkv",
        "figures/figures05.mkv",
        "life/life01.mkv",
        "wolf/wolf01.mkv",
    ] {
        let p = root.join("stimuli/movies/movie10").join(m);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }
    let runs: Vec<(String, Array2<f32>)> = [
        "ses-006_task-figures04_run-1",
        "ses-006_task-figures04_run-2",
        "ses-007_task-figures05_run-1",
        "ses-008_task-life01",
    ]
    .iter()
    .map(|k| {
        (
            k.to_string(),
            Array2::from_shape_fn((5, 3), |(t, p)| (t + p) as f32),
        )
    })
    .collect();
    hdf5::write_runs(
        &root.join("sub-03/func/sub-03_task-movie10_bold.h5"),
        &runs,
        Some(1.49),
    )
    .unwrap();
    let ds = Dataset::open(&root).unwrap();
    let s = &ds.subjects[0];
    let ids: Vec<&str> = s.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "figures04_run-1",
            "figures04_run-2",
            "figures05_run-1",
            "life01"
        ]
    );
    assert!(
        s.runs[0].movie.ends_with("figures/figures04.mkv") && s.runs[1].movie == s.runs[0].movie
    );
    assert_eq!(s.runs[1].episode_group(), "figures04");
    assert!(ds
        .movies_without_run
        .iter()
        .any(|m| m.ends_with("wolf01.mkv")));
    // Testing on figures04 holds out both viewings.
    let r = SplitPlan {
        test_runs: vec!["figures04".into()],
        ..Default::default()
    }
    .resolve(s)
    .unwrap();
    assert_eq!(r.roles, [Role::Test, Role::Test, Role::Train, Role::Train]);
    // Time series load as float32 from float64 files too; NaN values are refused with their place.
    let f64_file = root.join("sub-03/func/sub-03_task-movie10_bold.h5");
    {
        let f = hdf5_metno::File::create(&f64_file).unwrap();
        let a = Array2::<f64>::from_shape_fn((5, 3), |(t, p)| 0.5 * (t * 3 + p) as f64);
        f.new_dataset_builder()
            .with_data(&a.view())
            .create("ses-006_task-figures04_run-1")
            .unwrap();
        let mut b = a.clone();
        b[[2, 1]] = f64::NAN;
        f.new_dataset_builder()
            .with_data(&b.view())
            .create("ses-008_task-life01")
            .unwrap();
    }
    let ds = Dataset::open(&root).unwrap();
    assert_eq!(
        hdf5::read_run(&f64_file, "ses-006_task-figures04_run-1").unwrap()[[4, 2]],
        7.0
    );
    let e = format!(
        "{:#}",
        dataset::load_subject(&ds.subjects[0]).err().unwrap()
    );
    assert!(
        e.contains("'ses-008_task-life01'") && e.contains("NaN") && e.contains("TR 2, parcel 1"),
        "{e}"
    );
    // A movie that is a link to content not fetched (datalad).
    std::fs::remove_file(root.join("stimuli/movies/movie10/figures/figures04.mkv")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../.git/annex/objects/XX/figures04.mkv",
        root.join("stimuli/movies/movie10/figures/figures04.mkv"),
    )
    .unwrap();
    let e = format!("{:#}", Dataset::open(&root).unwrap_err());
    assert!(e.contains("figures04.mkv is a broken link"), "{e}");
    std::fs::remove_file(root.join("stimuli/movies/movie10/figures/figures04.mkv")).unwrap();
    std::fs::write(
        root.join("stimuli/movies/movie10/figures/figures04.mkv"),
        b"",
    )
    .unwrap();
    // Two files for one key.
    std::fs::write(
        root.join("stimuli/movies/movie10/life/movie10_life01.mp4"),
        b"",
    )
    .unwrap();
    let e = format!("{:#}", Dataset::open(&root).unwrap_err());
    assert!(e.contains("several movies match episode 'life01'"), "{e}");
}
