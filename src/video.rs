//! Decode stage: movie files → RGB frames at a chosen rate and size, with frame-exact
//! timestamps, cached on disk as safetensors (`frames` u8 [T, H, W, 3], `times` f64 [T]).
//!
//! Decoding uses ffmpeg-next (cargo feature `video`); the frame cache and its readers do not,
//! so GPU builds without ffmpeg can still read caches made elsewhere.
use crate::io::{self, Tensor, TensorFile};
use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array4};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Decoded frames of one movie.
#[derive(Debug, Clone)]
pub struct Frames {
    /// frames × height × width × 3 (RGB), u8.
    pub data: Array4<u8>,
    /// Presentation time of each frame in seconds, from the start of the movie.
    pub times: Array1<f64>,
    /// Frame rate of the sequence (requested, or the stream's average rate).
    pub fps: f64,
}

impl Frames {
    pub fn len(&self) -> usize {
        self.data.shape()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Duration covered by the frames: the last frame is shown for one frame period.
    pub fn duration(&self) -> f64 {
        self.times.last().map_or(0.0, |t| t + 1.0 / self.fps)
    }
}

/// How to decode: target rate (None = every native frame) and size (None = native; Some(n) =
/// shorter side resized to n, then centre-cropped to n × n).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    pub fps: Option<f64>,
    pub size: Option<u32>,
}

/// Saves frames to a cache file (atomically), recording where they came from.
pub fn save_frames(path: &Path, frames: &Frames, meta: HashMap<String, String>) -> Result<()> {
    let mut meta = meta;
    meta.insert("fps".into(), frames.fps.to_string());
    io::write_tensors(
        path,
        vec![
            ("frames", Tensor::U8(frames.data.clone().into_dyn())),
            ("times", Tensor::F64(frames.times.clone().into_dyn())),
        ],
        meta,
    )
}

/// Loads a frame cache written by [`save_frames`].
pub fn load_frames(path: &Path) -> Result<Frames> {
    let f = TensorFile::open(path)?;
    let data = f.u8("frames")?;
    let shape = data.shape().to_vec();
    let data: Array4<u8> = data.into_dimensionality().map_err(|_| {
        anyhow::anyhow!(
            "{}: frames must be [T, H, W, 3], found {shape:?}",
            path.display()
        )
    })?;
    let times = io::into_1d(f.f64("times")?, &format!("{}: times", path.display()))?;
    if times.len() != data.shape()[0] || data.shape()[3] != 3 {
        bail!(
            "{}: {} times for frames of shape {shape:?}",
            path.display(),
            times.len()
        );
    }
    let fps = f
        .metadata()
        .get("fps")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{}: no fps in metadata", path.display()))?;
    Ok(Frames { data, times, fps })
}

/// Cache file for a movie, keyed by its stem and the decode options.
pub fn cache_path(cache_dir: &Path, movie: &Path, opts: &DecodeOptions) -> PathBuf {
    let stem = movie
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fps = opts.fps.map_or("native".into(), |f| format!("{f}"));
    let size = opts.size.map_or("native".into(), |s| s.to_string());
    cache_dir.join(format!("{stem}_fps-{fps}_size-{size}.safetensors"))
}

/// A fingerprint of a source file (size and modification time) to invalidate stale caches.
#[cfg(feature = "video")]
fn fingerprint(path: &Path) -> Result<String> {
    let m = std::fs::metadata(path)
        .with_context(|| format!("movie file {} not found", path.display()))?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    Ok(format!("{}:{}", m.len(), mtime.map_or(0, |d| d.as_nanos())))
}

/// Decodes `movie` (or loads its cache when the cache matches the file and options).
#[cfg(feature = "video")]
pub fn decode_cached(movie: &Path, cache_dir: &Path, opts: &DecodeOptions) -> Result<Frames> {
    let cache = cache_path(cache_dir, movie, opts);
    let fp = fingerprint(movie)?;
    if cache.exists() {
        if let Ok(f) = TensorFile::open(&cache) {
            if f.metadata().get("source_fingerprint") == Some(&fp) {
                return load_frames(&cache);
            }
        }
    }
    let frames = decode(movie, opts)?;
    let meta = HashMap::from([
        ("source".to_string(), movie.display().to_string()),
        ("source_fingerprint".to_string(), fp),
    ]);
    save_frames(&cache, &frames, meta)?;
    Ok(frames)
}

/// Loads a cache made elsewhere (builds without ffmpeg).
#[cfg(not(feature = "video"))]
pub fn decode_cached(movie: &Path, cache_dir: &Path, opts: &DecodeOptions) -> Result<Frames> {
    let cache = cache_path(cache_dir, movie, opts);
    if cache.exists() {
        return load_frames(&cache);
    }
    bail!(
        "cannot decode {}: this build has no video support (cargo feature `video`); \
         decode on a machine with ffmpeg and copy {}",
        movie.display(),
        cache.display()
    )
}

#[cfg(feature = "video")]
pub use ffmpeg_decode::{decode, probe, Probe};

#[cfg(feature = "video")]
mod ffmpeg_decode {
    use super::*;
    use ff::format::Pixel;
    use ff::software::scaling::{Context as Scaler, Flags};
    use ffmpeg_next as ff;

    /// What the container says about its video stream.
    #[derive(Debug, Clone)]
    pub struct Probe {
        pub width: u32,
        pub height: u32,
        pub avg_fps: f64,
        /// Frame count declared by the container (0 when unknown).
        pub declared_frames: i64,
        pub duration_s: f64,
        pub codec: String,
    }

    fn open(path: &Path) -> Result<ff::format::context::Input> {
        if !path.exists() {
            bail!("movie file {} not found", path.display());
        }
        ff::init().context("initialising ffmpeg")?;
        ff::util::log::set_level(ff::util::log::Level::Fatal);
        ff::format::input(&path)
            .map_err(|e| anyhow::anyhow!("{}: not a readable movie ({e})", path.display()))
    }

    /// Reads the video stream's header information without decoding.
    pub fn probe(path: &Path) -> Result<Probe> {
        let ictx = open(path)?;
        let st = ictx
            .streams()
            .best(ff::media::Type::Video)
            .with_context(|| format!("{}: no video stream", path.display()))?;
        let dec = ff::codec::context::Context::from_parameters(st.parameters())?
            .decoder()
            .video()
            .with_context(|| format!("{}: cannot open the video decoder", path.display()))?;
        let r = st.avg_frame_rate();
        let tb = st.time_base();
        Ok(Probe {
            width: dec.width(),
            height: dec.height(),
            avg_fps: if r.denominator() != 0 {
                f64::from(r)
            } else {
                0.0
            },
            declared_frames: st.frames(),
            duration_s: if st.duration() > 0 {
                st.duration() as f64 * f64::from(tb)
            } else {
                0.0
            },
            codec: dec
                .codec()
                .map(|c| c.name().to_string())
                .unwrap_or_default(),
        })
    }

    /// Frames received from the decoder, converted to RGB and cropped.
    struct Collector {
        pixels: Vec<u8>,
        times: Vec<f64>,
        scaler: Scaler,
        /// x offset, y offset, width, height.
        crop: (u32, u32, u32, u32),
        start: i64,
        tb: f64,
    }

    impl Collector {
        fn drain(&mut self, dec: &mut ff::decoder::Video) -> Result<()> {
            let mut frame = ff::frame::Video::empty();
            let (ox, oy, w, h) = self.crop;
            while dec.receive_frame(&mut frame).is_ok() {
                let pts = frame
                    .timestamp()
                    .or(frame.pts())
                    .unwrap_or(self.times.len() as i64);
                let mut rgb = ff::frame::Video::empty();
                self.scaler
                    .run(&frame, &mut rgb)
                    .context("converting a frame to RGB")?;
                let stride = rgb.stride(0);
                let data = rgb.data(0);
                for y in oy..oy + h {
                    let row = y as usize * stride + ox as usize * 3;
                    self.pixels
                        .extend_from_slice(&data[row..row + w as usize * 3]);
                }
                self.times.push((pts - self.start) as f64 * self.tb);
            }
            Ok(())
        }
    }

    /// Decodes every frame, then resamples in time (latest frame at or before each output
    /// time) and space (shorter side to `size`, centre crop).
    pub fn decode(path: &Path, opts: &DecodeOptions) -> Result<Frames> {
        let mut ictx = open(path)?;
        let st = ictx
            .streams()
            .best(ff::media::Type::Video)
            .with_context(|| format!("{}: no video stream", path.display()))?;
        let idx = st.index();
        let tb = f64::from(st.time_base());
        let start = if st.start_time() != ff::ffi::AV_NOPTS_VALUE {
            st.start_time()
        } else {
            0
        };
        let declared = st.frames();
        let rate = st.avg_frame_rate();
        let native_fps = if rate.denominator() != 0 && rate.numerator() > 0 {
            f64::from(rate)
        } else {
            0.0
        };
        let mut dec = ff::codec::context::Context::from_parameters(st.parameters())?
            .decoder()
            .video()
            .with_context(|| format!("{}: cannot open the video decoder", path.display()))?;
        let (w0, h0) = (dec.width(), dec.height());
        if w0 == 0 || h0 == 0 {
            bail!("{}: video stream has no frame size", path.display());
        }
        let (sw, sh, out) = match opts.size {
            Some(n) => {
                let scale = n as f64 / w0.min(h0) as f64;
                let (sw, sh) = (
                    (w0 as f64 * scale).round() as u32,
                    (h0 as f64 * scale).round() as u32,
                );
                (sw.max(n), sh.max(n), (n, n))
            }
            None => (w0, h0, (w0, h0)),
        };
        let scaler = Scaler::get(dec.format(), w0, h0, Pixel::RGB24, sw, sh, Flags::AREA)
            .with_context(|| {
                format!(
                    "{}: cannot convert pixel format {:?}",
                    path.display(),
                    dec.format()
                )
            })?;
        let (ox, oy) = ((sw - out.0) / 2, (sh - out.1) / 2);

        let mut out_frames = Collector {
            pixels: Vec::new(),
            times: Vec::new(),
            scaler,
            crop: (ox, oy, out.0, out.1),
            start,
            tb,
        };
        for (s, packet) in ictx.packets() {
            if s.index() != idx {
                continue;
            }
            dec.send_packet(&packet).map_err(|e| {
                anyhow::anyhow!(
                    "{}: truncated or corrupt video data after {} frames ({e})",
                    path.display(),
                    out_frames.times.len()
                )
            })?;
            out_frames.drain(&mut dec)?;
        }
        dec.send_eof().ok();
        out_frames.drain(&mut dec)?;
        let Collector { pixels, times, .. } = out_frames;
        let n = times.len();
        if n == 0 {
            bail!(
                "{}: no video frame could be decoded (corrupt or empty file)",
                path.display()
            );
        }
        if declared > 0 && (n as i64) < declared {
            bail!(
                "{}: truncated video: the container declares {declared} frames but only {n} decode",
                path.display()
            );
        }
        let native = Array4::from_shape_vec((n, out.1 as usize, out.0 as usize, 3), pixels)?;
        let times = Array1::from_vec(times);
        let fps_native = if native_fps > 0.0 {
            native_fps
        } else if n > 1 {
            (n - 1) as f64 / (times[n - 1] - times[0])
        } else {
            1.0
        };
        let frames = Frames {
            data: native,
            times,
            fps: fps_native,
        };
        Ok(match opts.fps {
            Some(fps) if (fps - fps_native).abs() > 1e-9 => resample(&frames, fps),
            _ => frames,
        })
    }
}

/// Resamples frames to `fps`: output frame k at time k/fps shows the latest input frame whose
/// time is at or before it (what a viewer sees at that instant).
pub fn resample(frames: &Frames, fps: f64) -> Frames {
    let dur = frames.duration();
    let n_out = ((dur * fps) - 1e-9).ceil().max(1.0) as usize;
    let (_, h, w, c) = frames.data.dim();
    let mut data = Array4::<u8>::zeros((n_out, h, w, c));
    let mut j = 0;
    for k in 0..n_out {
        let t = k as f64 / fps;
        while j + 1 < frames.len() && frames.times[j + 1] <= t + 1e-9 {
            j += 1;
        }
        data.index_axis_mut(ndarray::Axis(0), k)
            .assign(&frames.data.index_axis(ndarray::Axis(0), j));
    }
    Frames {
        data,
        times: Array1::from_iter((0..n_out).map(|k| k as f64 / fps)),
        fps,
    }
}

/// Encodes RGB frames to an H.264 MP4 with the `ffmpeg` program (used by `dataset synth`).
/// Single-threaded and bit-exact flags keep the output identical for the same frames.
pub fn encode_mp4(path: &Path, frames: &Array4<u8>, fps: u32) -> Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let (_, h, w, _) = frames.dim();
    io::write_atomic(path, |tmp| {
        let mut child = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
            ])
            .args(["-s", &format!("{w}x{h}"), "-r", &fps.to_string(), "-i", "-"])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p",
            ])
            .args([
                "-threads",
                "1",
                "-fflags",
                "+bitexact",
                "-flags:v",
                "+bitexact",
                "-f",
                "mp4",
            ])
            .arg(tmp)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running ffmpeg (is it installed? `make deps` installs it)")?;
        let bytes = frames.as_standard_layout();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(bytes.as_slice().unwrap())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    })
}
