//! File formats: NIfTI maps round-trip; decoding agrees with what ffprobe reports.
mod common;
use brainscale::fmri::dataset::nifti_io::{self, Mask};
use brainscale::fmri::video::{self, DecodeOptions};
use ndarray::{Array1, ArrayD, IxDyn};
use std::process::Command;

#[test]
fn nifti_maps_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = nifti_io::new_header([5, 6, 7], 2.5, Some(1.49));
    h.srow_x = [-2.5, 0.1, 0.0, 90.0]; // a flipped, slightly sheared affine must survive
    let mask_vol = ArrayD::from_shape_fn(IxDyn(&[5, 6, 7]), |ix| {
        ((ix[0] + ix[1] + ix[2]) % 3 != 0) as u8 as f32
    });
    let mask = Mask::from_volume(&mask_vol, std::path::Path::new("mem")).unwrap();
    let values = Array1::from_iter((0..mask.len()).map(|i| (i as f64 * 0.37).sin()));
    let path = dir.path().join("r.nii.gz");
    brainscale::fmri::maps::write_map(&path, &h, &mask, &values).unwrap();

    let (h2, vol) = nifti_io::read_f32(&path).unwrap();
    assert_eq!(vol.shape(), &[5, 6, 7]);
    assert_eq!(
        h2.datatype,
        nifti::NiftiType::Float32 as i16,
        "dtype float32"
    );
    assert_eq!(h2.dim[0], 3);
    assert_eq!(nifti_io::affine(&h2), nifti_io::affine(&h), "affine kept");
    assert_eq!(h2.sform_code, 1);
    for i in 0..mask.len() {
        let c = mask.coords(i);
        assert_eq!(vol[IxDyn(&c)], values[i] as f32, "value at {c:?}");
    }
    // Outside the mask: zero. Reading back through the mask gives the same vector.
    assert_eq!(vol[IxDyn(&[0, 0, 0])], 0.0);
    let vol4 = ArrayD::from_shape_fn(IxDyn(&[5, 6, 7, 1]), |ix| {
        vol[IxDyn(&[ix[0], ix[1], ix[2]])]
    });
    let back = mask.extract(&vol4, &path).unwrap();
    assert_eq!(
        back.row(0).mapv(|v| v as f64),
        values.mapv(|v| v as f32 as f64)
    );
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bold_header_keeps_tr_and_shape() {
    let root = common::tiny();
    let bold = root.join("sub-01/func/sub-01_task-movie_run-01_bold.nii.gz");
    let h = nifti_io::read_header(&bold).unwrap();
    assert_eq!(nifti_io::header_tr(&h), Some(1.5));
    assert_eq!(nifti_io::n_volumes(&h), 60);
    assert_eq!(nifti_io::spatial_dims(&h), [12, 14, 12]);
}

fn ffprobe(path: &std::path::Path) -> (usize, Vec<f64>) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (installed with ffmpeg)");
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    (times.len(), times)
}

#[test]
fn decoding_matches_ffprobe() {
    let dir = tempfile::tempdir().unwrap();
    // A clip at 30000/1001 fps (like the Friends episodes), made by ffmpeg itself.
    let clip = dir.path().join("clip.mp4");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=96x72:rate=30000/1001:duration=3",
        ])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let (n, times) = ffprobe(&clip);
    let frames = video::decode(
        &clip,
        &DecodeOptions {
            fps: None,
            size: None,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(frames.len(), n, "frame count");
    for (a, b) in frames.times.iter().zip(&times) {
        assert!((a - b).abs() < 1e-5, "timestamp {a} vs ffprobe {b}");
    }
    assert_eq!(frames.data.shape(), &[n, 72, 96, 3]);
    assert!((frames.fps - 30000.0 / 1001.0).abs() < 1e-9);

    // Resized (shorter side 32, centre crop) and resampled to 10 fps.
    let small = video::decode(
        &clip,
        &DecodeOptions {
            fps: Some(10.0),
            size: Some(32),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(small.data.shape()[1..], [32, 32, 3]);
    assert_eq!(small.len(), (frames.duration() * 10.0).ceil() as usize);
    assert!((small.times[5] - 0.5).abs() < 1e-12);

    // The cache returns the same frames.
    let a = video::decode_cached(
        &clip,
        dir.path(),
        &DecodeOptions {
            fps: None,
            size: Some(32),
            ..Default::default()
        },
    )
    .unwrap();
    let b = video::decode_cached(
        &clip,
        dir.path(),
        &DecodeOptions {
            fps: None,
            size: Some(32),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(a.data, b.data);
    assert_eq!(a.times, b.times);
}

#[test]
fn synthetic_movie_decodes_to_its_frame_count() {
    let movie = common::tiny().join("stimuli/task-movie_run-01.mp4");
    let (n, times) = ffprobe(&movie);
    let f = video::decode(
        &movie,
        &DecodeOptions {
            fps: None,
            size: None,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((f.len(), n), (2160, 2160));
    assert!((f.times[2159] - times[2159]).abs() < 1e-6 && (f.duration() - 90.0).abs() < 1e-9);
}
