//! Movies as users' files bring them (issue 10, kinds 4 and 5 and the VFR fault): display-matrix
//! rotations and flips decode as ffmpeg's own command-line tool shows them; Matroska/WebM files
//! cut short are refused naming the file and both durations (`--allow-truncated` accepts them);
//! a variable-frame-rate movie resamples to as many frames as its duration holds.
//! Every fixture is made here with the ffmpeg CLI, and the CLI's decode is the reference.
mod common;
use brainscale::fmri::video::{self, DecodeOptions};
use common::{brainscale, expect_error};
use std::path::{Path, PathBuf};
use std::process::Command;

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ffmpeg CLI's own decode to packed RGB (autorotate on unless `extra` turns it off;
/// `-vf F` in `extra` goes after the input, as an output option).
fn cli_rgb(movie: &Path, extra: &[&str]) -> Vec<u8> {
    let (input, output) = match extra {
        ["-vf", f] => (&[][..], vec!["-vf", *f]),
        _ => (extra, vec![]),
    };
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error"])
        .args(input)
        .arg("-i")
        .arg(movie)
        .args(output)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success());
    out.stdout
}

/// A 64×48, 8 fps, 2 s H.264 test pattern (16 frames).
fn plain_mp4(dir: &Path) -> PathBuf {
    let p = dir.join("plain.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=8",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        p.to_str().unwrap(),
    ]);
    p
}

/// A copy of an MP4 whose track header ('tkhd', version 0) carries display matrix `m`
/// (a, b, c, d in 16.16 fixed point): the way phones and editors store rotations and flips.
fn with_matrix(src: &Path, dst: &Path, m: [i32; 4]) {
    let mut b = std::fs::read(src).unwrap();
    let i = b.windows(4).position(|w| w == b"tkhd").unwrap() - 4;
    assert_eq!(b[i + 8], 0, "tkhd version 0");
    let full = [m[0], m[1], 0, m[2], m[3], 0, 0, 0, 1 << 30];
    for (k, v) in full.iter().enumerate() {
        b[i + 48 + 4 * k..i + 52 + 4 * k].copy_from_slice(&v.to_be_bytes());
    }
    std::fs::write(dst, b).unwrap();
}

fn opts(autorotate: bool) -> DecodeOptions {
    DecodeOptions {
        autorotate,
        ..Default::default()
    }
}

#[test]
fn rotations_and_flips_decode_as_the_ffmpeg_cli_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let plain = plain_mp4(dir.path());
    // The `rotate` tag as ffmpeg itself writes it (stream copy), then matrices written directly.
    let tagged = dir.path().join("rotate-tag.mp4");
    ffmpeg(&[
        "-i",
        plain.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        tagged.to_str().unwrap(),
    ]);
    let one = 65536;
    let cases: Vec<(PathBuf, &str)> = [
        ("cw90", [0, one, -one, 0], "rotated 90° clockwise"),
        ("r180", [-one, 0, 0, -one], "rotated 180°"),
        ("hflip", [-one, 0, 0, one], "mirrored left-right"),
        ("vflip", [one, 0, 0, -one], "mirrored top-bottom"),
        ("transpose", [0, one, one, 0], "transposed"),
        ("antitranspose", [0, -one, -one, 0], "anti-transposed"),
    ]
    .into_iter()
    .map(|(name, m, what)| {
        let p = dir.path().join(format!("{name}.mp4"));
        with_matrix(&plain, &p, m);
        (p, what)
    })
    .chain([(tagged, "rotated 90° counter-clockwise")])
    .collect();
    let stored = video::decode(&plain, &opts(true)).unwrap();
    assert_eq!(stored.data.shape(), &[16, 48, 64, 3]);
    for (movie, what) in &cases {
        let name = movie.file_name().unwrap().to_string_lossy().into_owned();
        let (f, report) = video::decode_with_report(movie, &opts(true)).unwrap();
        assert!(
            report.describe().contains(what),
            "{name}: {}",
            report.describe()
        );
        let cli = cli_rgb(movie, &[]);
        let turned = !matches!(&name[..], "r180.mp4" | "hflip.mp4" | "vflip.mp4");
        let shape: &[usize] = if turned {
            &[16, 64, 48, 3]
        } else {
            &[16, 48, 64, 3]
        };
        assert_eq!(f.data.shape(), shape, "{name}");
        assert_eq!(
            f.data.as_slice().unwrap(),
            &cli[..],
            "{name}: pixels differ from ffmpeg's"
        );
        // Kept as stored: the CLI's -noautorotate, and the unrotated movie itself.
        let kept = video::decode(movie, &opts(false)).unwrap();
        assert_eq!(kept.data, stored.data, "{name} with autorotate off");
        assert_eq!(
            kept.data.as_slice().unwrap(),
            &cli_rgb(movie, &["-noautorotate"])[..]
        );
    }

    // The command line: `decode` reports the rotation; --no-autorotate keeps the stored size.
    let movie = cases[0].0.to_str().unwrap();
    let work = dir.path().join("work");
    let w = work.to_str().unwrap();
    let (ok, out, err) = brainscale(&["decode", "--movie", movie, "--work", w]);
    assert!(ok, "{err}");
    assert!(
        out.contains("16 frames 48x64") && out.contains("rotated 90° clockwise (90°), applied"),
        "{out}"
    );
    let (ok, out, err) = brainscale(&["decode", "--movie", movie, "--work", w, "--no-autorotate"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("16 frames 64x48") && out.contains("not applied"),
        "{out}"
    );
    // Resized and cropped square in the displayed orientation: the crop of the upright picture.
    let sq = video::decode(
        &cases[0].0,
        &DecodeOptions {
            size: Some(32),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sq.data.shape(), &[16, 32, 32, 3]);
}

/// An 8 fps, 4 s movie (32 frames) in `ext`'s container, and a copy cut to 60% of its bytes.
fn movie_and_cut(dir: &Path, ext: &str) -> (PathBuf, PathBuf) {
    let whole = dir.join(format!("whole.{ext}"));
    let codec: &[&str] = if ext == "webm" {
        &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-b:v",
            "200k",
        ]
    } else {
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    };
    let mut args = vec!["-f", "lavfi", "-i", "testsrc=size=64x48:rate=8", "-t", "4"];
    args.extend_from_slice(codec);
    args.push(whole.to_str().unwrap());
    ffmpeg(&args);
    let b = std::fs::read(&whole).unwrap();
    let cut = dir.join(format!("cut.{ext}"));
    std::fs::write(&cut, &b[..b.len() * 6 / 10]).unwrap();
    (whole, cut)
}

#[test]
fn matroska_and_webm_cut_short_are_refused_with_both_durations() {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["mkv", "webm"] {
        let (whole, cut) = movie_and_cut(dir.path(), ext);
        let f = video::decode(&whole, &Default::default()).unwrap();
        assert_eq!(f.len(), 32, "{ext}");
        assert!((f.duration() - 4.0).abs() < 1e-6, "{ext}: {}", f.duration());
        assert!(video::decoded_duration_check(&whole).unwrap().is_none());

        let e = format!(
            "{:#}",
            video::decode(&cut, &Default::default()).unwrap_err()
        );
        assert!(
            e.contains(&format!("cut.{ext}"))
                && e.contains("4.000")
                && e.contains("--allow-truncated"),
            "{e}"
        );
        let t = video::decoded_duration_check(&cut)
            .unwrap()
            .expect("truncated");
        assert!(
            (t.declared_s - 4.0).abs() < 1e-6 && t.decoded_s < 3.5,
            "{t}"
        );
        assert!(e.contains(&format!("{:.3}", t.decoded_s)), "{e} vs {t}");
        let allowed = video::decode(
            &cut,
            &DecodeOptions {
                allow_truncated: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(allowed.len() < 32 && (allowed.duration() - t.decoded_s).abs() < 1e-9);

        // The command line: refused with exit 1 and no frame cache; accepted with the flag.
        let work = dir.path().join(format!("work-{ext}"));
        let w = work.to_str().unwrap();
        let c = cut.to_str().unwrap();
        expect_error(
            &["decode", "--movie", c, "--work", w],
            &[
                &format!("cut.{ext}"),
                "ends early",
                "4.000 s",
                "--allow-truncated",
            ],
        );
        let frames_dir = work.join("frames");
        assert!(
            !frames_dir.exists() || std::fs::read_dir(&frames_dir).unwrap().next().is_none(),
            "nothing written"
        );
        let (ok, out, err) =
            brainscale(&["decode", "--movie", c, "--work", w, "--allow-truncated"]);
        assert!(ok, "{err}");
        assert!(out.contains("accepted with --allow-truncated"), "{out}");
        // The cache made with the flag does not let the movie through without it.
        expect_error(&["decode", "--movie", c, "--work", w], &["ends early"]);
    }
}

#[test]
fn real_movies_are_not_called_truncated() {
    let data = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/video"));
    for name in ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"] {
        let p = data.join(name);
        if !p.exists() {
            eprintln!("skipping {name}: {} not found", p.display());
            continue;
        }
        assert!(
            video::decoded_duration_check(&p).unwrap().is_none(),
            "{name}"
        );
    }
}

/// 3 s at 30 fps then 1 s at 5 fps (95 frames, 4 s), joined without re-encoding, in `ext`'s
/// container.
fn vfr_movie(d: &Path, ext: &str) -> PathBuf {
    for (name, rate, t) in [("a.mp4", 30, "3"), ("b.mp4", 5, "1")] {
        if d.join(name).exists() {
            continue;
        }
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=size=64x48:rate={rate}"),
            "-t",
            t,
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-video_track_timescale",
            "30000",
            d.join(name).to_str().unwrap(),
        ]);
    }
    std::fs::write(d.join("list.txt"), "file a.mp4\nfile b.mp4\n").unwrap();
    let vfr = d.join(format!("vfr.{ext}"));
    ffmpeg(&[
        "-f",
        "concat",
        "-i",
        d.join("list.txt").to_str().unwrap(),
        "-c",
        "copy",
        vfr.to_str().unwrap(),
    ]);
    vfr
}

#[test]
fn variable_frame_rate_movie_resamples_to_its_full_duration() {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["mp4", "mkv"] {
        let vfr = vfr_movie(dir.path(), ext);
        let native = video::decode(&vfr, &Default::default()).unwrap();
        assert_eq!(native.len(), 95, "{ext}");
        assert!(
            (native.duration() - 4.0).abs() < 1e-3,
            "{ext}: {}",
            native.duration()
        );
        let f = video::decode(
            &vfr,
            &DecodeOptions {
                fps: Some(24.0),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(f.len(), 96, "{ext}: 4 s at 24 fps");
        // The last output frame (3.958 s) shows the last input frame (3.8 s), like the CLI's fps filter.
        let last = native.data.index_axis(ndarray::Axis(0), 94);
        assert_eq!(f.data.index_axis(ndarray::Axis(0), 95), last);
        assert!(
            video::decoded_duration_check(&vfr).unwrap().is_none(),
            "{ext}"
        );
    }
}

/// A resampled rate (`--fps`) streams into the cache too (issue 21): output frame k is written
/// when the first input frame later than k/fps arrives. The cache equals the in-memory decode
/// and resample bit for bit: a rate other than the stream's (resampled as frames arrive), the
/// stream's own rate (native frames), and a variable-frame-rate movie at its declared average
/// rate (known to need resampling only at the end: a second pass over the streamed frames).
#[test]
fn streamed_resampled_cache_equals_the_in_memory_resample() {
    let data = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/video"));
    let dir = tempfile::tempdir().unwrap();
    let vfr = vfr_movie(dir.path(), "mp4");
    let vfr_rate = video::probe(&vfr).unwrap().avg_fps;
    let mut cases = vec![(vfr.clone(), Some(48), vfr_rate, "vfr, second pass")];
    for (name, size, fps, what) in [
        ("bikes.mp4", Some(48), 10.0, "fewer frames"),
        ("carphone_pristine.mp4", None, 40.0, "more frames"),
        ("bigbuckbunny.mp4", Some(32), 25.0, "the stream's rate"),
    ] {
        let p = data.join(name);
        if p.exists() {
            cases.push((p, size, fps, what));
        } else {
            eprintln!("skipping {name}: {} not found", p.display());
        }
    }
    for (p, size, fps, what) in cases {
        let o = DecodeOptions {
            size,
            fps: Some(fps),
            ..Default::default()
        };
        let want = video::decode(&p, &o).unwrap();
        let cache = dir.path().join("cache");
        let rows = video::decode_stage(&[p.clone()], &cache, &o).unwrap();
        let file = video::cache_path(&cache, &p, &o);
        let got = video::load_frames(&file).unwrap();
        assert_eq!(got.data, want.data, "{what}");
        assert_eq!(got.times, want.times, "{what}");
        assert_eq!((got.fps, got.end), (want.fps, want.end), "{what}");
        assert_eq!(rows[0].frames, want.len(), "{what}");
        assert_eq!(rows[0].duration, want.duration(), "{what}");
        let left: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".safetensors"))
            .collect();
        assert!(left.is_empty(), "{what}: {left:?}");
        if what.starts_with("vfr") {
            // Resampled: 4 s at the declared average rate, not the 95 native frames.
            let n = (4.0 * fps - 1e-9).ceil() as usize;
            assert_eq!((got.len(), got.end), (n, None), "{what} at {fps}");
        }
    }
}

/// The decode stage streams frames into the cache one at a time (issue 21): the cache holds
/// exactly the frames, times, rate and end of the in-memory decode, for real movies at their
/// native size and resized, and is what later stages load.
#[test]
fn streamed_frame_cache_equals_the_in_memory_decode() {
    let data = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/video"));
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [
        ("carphone_pristine.mp4", None),
        ("bigbuckbunny.mp4", Some(64)),
        ("bikes.mp4", Some(48)),
    ] {
        let p = data.join(name);
        if !p.exists() {
            eprintln!("skipping {name}: {} not found", p.display());
            continue;
        }
        let o = DecodeOptions {
            size,
            ..Default::default()
        };
        let want = video::decode(&p, &o).unwrap();
        if let Some(s) = size {
            // The same pixels as the ffmpeg CLI's area resize (shorter side to s, the other
            // rounded to the nearest pixel: `-1`) and centre crop. (The bench's `-2` rounds to
            // an even width: the same for the 1280×720 clip, 113 vs 112 columns for bikes.)
            let vf = format!("scale=-1:{s}:flags=area,crop={s}:{s}");
            assert_eq!(
                want.data.as_slice().unwrap(),
                &cli_rgb(&p, &["-vf", &vf])[..],
                "{name} at {s}"
            );
        }
        let cache = dir.path().join(name);
        let rows = video::decode_stage(&[p.clone()], &cache, &o).unwrap();
        let file = video::cache_path(&cache, &p, &o);
        let got = video::load_frames(&file).unwrap();
        assert_eq!(got.data, want.data, "{name}");
        assert_eq!(got.times, want.times, "{name}");
        assert_eq!((got.fps, got.end), (want.fps, want.end), "{name}");
        let (_, h, w, _) = want.data.dim();
        assert_eq!(
            (rows[0].frames, rows[0].height, rows[0].width),
            (want.len(), h, w),
            "{name}"
        );
        // A second run finds the cache current; decode_cached reads the same frames.
        let again = video::decode_cached(&p, &cache, &o).unwrap();
        assert_eq!(again.data, want.data, "{name}");
        assert!(!file.with_extension("safetensors.partial").exists());
        // Read by range (what tokenize and features do): the same frames, times and duration.
        let mut fc = video::FrameCache::open(&file).unwrap();
        assert_eq!(fc.len(), want.len(), "{name}");
        assert_eq!(fc.duration(), want.duration(), "{name}");
        let n = want.len();
        let part = fc.read(n / 3..n).unwrap();
        assert_eq!(
            part.data,
            want.data.slice(ndarray::s![n / 3.., .., .., ..]),
            "{name}"
        );
        assert_eq!(part.times, want.times.slice(ndarray::s![n / 3..]), "{name}");
        assert_eq!(part.end, want.end, "{name}");
        let e = format!("{:#}", fc.read(n - 1..n + 1).unwrap_err());
        assert!(e.contains(&file.display().to_string()), "{e}");
        // The baseline features read the cache in chunks: the same values bit for bit.
        use brainscale::fmri::features::{Baseline, Extractor};
        let whole = Baseline::default().extract(&want).unwrap();
        for chunk in [7, 1000] {
            let got = Baseline::default()
                .extract_cache_chunked(&mut fc, chunk)
                .unwrap();
            assert_eq!(got.times, whole.times, "{name}");
            assert_eq!(
                got.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                whole.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{name}"
            );
        }
    }
    // A cache cut short is refused at open, naming the file and the tensor.
    let src = std::fs::read_dir(dir.path().join("carphone_pristine.mp4"));
    if let Some(f) = src
        .ok()
        .and_then(|mut d| d.next())
        .map(|e| e.unwrap().path())
    {
        let b = std::fs::read(&f).unwrap();
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &b[..b.len() - 100]).unwrap();
        let e = format!("{:#}", video::FrameCache::open(&cut).err().unwrap());
        assert!(e.contains("cut.safetensors") && e.contains("times"), "{e}");
    }
}

/// The resampling rule written directly (the in-memory loop before issue 21): for each output
/// instant, walk to the latest frame at or before it.
fn naive(times: &[f64], duration: f64, fps: f64) -> Vec<usize> {
    let n_out = ((duration * fps) - 1e-9).ceil().max(1.0) as usize;
    let mut j = 0;
    (0..n_out)
        .map(|k| {
            let t = k as f64 / fps;
            while j + 1 < times.len() && times[j + 1] <= t + 1e-9 {
                j += 1;
            }
            j
        })
        .collect()
}

#[test]
fn resampling_as_frames_arrive_equals_the_direct_walk() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for case in 0..400 {
        let n = rng.gen_range(1..60);
        // Irregular times, sometimes exactly on output instants, sometimes starting late.
        let mut t = if case % 3 == 0 {
            0.0
        } else {
            rng.gen_range(0.0..0.5)
        };
        let mut times = vec![];
        for _ in 0..n {
            times.push(t);
            t += if case % 4 == 0 {
                0.04
            } else {
                rng.gen_range(0.001..0.3)
            };
        }
        let duration = t;
        let fps = [1.0, 7.3, 10.0, 24.0, 25.0, 60.0][case % 6];
        let frames = video::Frames {
            data: ndarray::Array4::from_shape_fn((n, 1, 1, 3), |(i, _, _, c)| (i * 3 + c) as u8),
            times: ndarray::Array1::from_vec(times.clone()),
            fps: 25.0,
            end: Some(duration),
        };
        let want = naive(&times, duration, fps);
        let got = video::resample(&frames, fps);
        let shown: Vec<usize> = got
            .data
            .outer_iter()
            .map(|f| f[[0, 0, 0]] as usize / 3)
            .collect();
        assert_eq!(shown, want, "case {case}: {times:?} at {fps}");
        // As frames arrive: each output decided once, in order.
        let mut r = video::Resampler::new(fps);
        let mut streamed = vec![];
        for (i, &ti) in times.iter().enumerate() {
            let ks = r.arrive(ti);
            assert_eq!(ks.start, streamed.len());
            streamed.extend(ks.map(|_| i.saturating_sub(1)));
        }
        let (n_out, ks) = r.finish(duration);
        streamed.extend(ks.map(|_| n - 1));
        streamed.truncate(n_out);
        assert_eq!(streamed, want, "case {case}");
    }
}
