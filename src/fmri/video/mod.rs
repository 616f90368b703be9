//! Decode stage: movie files → RGB frames at a chosen rate and size, with frame-exact
//! timestamps, cached on disk as safetensors (`frames` u8 [T, H, W, 3], `times` f64 [T]).
//!
//! Decoding uses ffmpeg-next (cargo feature `video`); the frame cache and its readers do not,
//! so GPU builds without ffmpeg can still read caches made elsewhere.
//!
//! Conventions (as ffmpeg's command-line tool): frames come out in their displayed orientation
//! (the stream's display matrix applied: 90/180/270° and flips, see [`orientation`]) unless
//! `autorotate` is off; a movie that ends before the duration its header declares is refused
//! unless `allow_truncated` (see [`duration`]); the last frame lasts as long as its own stream
//! timestamps say, so variable-frame-rate movies resample to the right number of frames.
pub mod cache;
pub mod duration;
#[cfg(feature = "video")]
mod ffmpeg;
pub mod orientation;
pub mod resample;

use crate::core::io;
pub use crate::fmri::video::cache::{load_frames, save_frames, FrameCache};
pub use crate::fmri::video::resample::{resample, Resampler};
use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array4};
#[cfg(feature = "video")]
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
    /// End of the last frame in seconds: its time plus its own duration from the stream (see
    /// [`duration`]). None: one frame period (1/fps) after the last frame.
    pub end: Option<f64>,
}

impl Frames {
    pub fn len(&self) -> usize {
        self.data.shape()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Duration covered by the frames in seconds: up to [`Frames::end`], else the last frame
    /// is shown for one frame period.
    pub fn duration(&self) -> f64 {
        match self.end {
            Some(e) if !self.is_empty() => e,
            _ => self.times.last().map_or(0.0, |t| t + 1.0 / self.fps),
        }
    }

    /// Whether the frames are not evenly spaced at `fps` (a variable-frame-rate movie).
    pub fn is_vfr(&self) -> bool {
        let t0 = self.times.first().copied().unwrap_or(0.0);
        self.times
            .iter()
            .enumerate()
            .any(|(i, t)| (t - t0 - i as f64 / self.fps).abs() > 0.01 / self.fps)
    }
}

/// How to decode: target rate (None = every native frame) and size (None = native; Some(n) =
/// shorter side resized to n, then centre-cropped to n × n), display orientation and
/// truncation. `Default`: native rate and size, autorotate on, truncated movies refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    pub fps: Option<f64>,
    pub size: Option<u32>,
    /// Apply the stream's display matrix (rotation, flips) as ffmpeg's CLI does by default.
    pub autorotate: bool,
    /// Accept a movie that ends before its declared duration (frames up to the cut).
    pub allow_truncated: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            fps: None,
            size: None,
            autorotate: true,
            allow_truncated: false,
        }
    }
}

/// Display orientation and truncation choices of every stage that decodes movies (decode,
/// features, demo; the CLI's flags are `cli::fmri::DecodeFlagArgs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct DecodeFlags {
    /// Keep frames in their stored orientation (default: apply the display matrix's rotation
    /// and flips, as ffmpeg does).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_autorotate: bool,
    /// Accept movies that end before the duration their header declares.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_truncated: bool,
}

impl DecodeFlags {
    /// Decode options with these flags.
    pub fn options(&self, fps: Option<f64>, size: Option<u32>) -> DecodeOptions {
        DecodeOptions {
            fps,
            size,
            autorotate: !self.no_autorotate,
            allow_truncated: self.allow_truncated,
        }
    }
}

/// A movie's file stem ("clip" for `movies/clip.mp4`): the name its frames, tokens and
/// features are stored under.
pub fn movie_stem(movie: &Path) -> String {
    movie
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every movie decoded (or read from its cache under `cache_dir`, see [`decode_cached`]) as
/// `opts` says: (file stem, frames) in the order given. The one decode loop of the stages that
/// need all frames (tokenize, pretrain, grid cells). Errors name the movie.
pub fn decode_all(
    movies: &[PathBuf],
    cache_dir: &Path,
    opts: &DecodeOptions,
) -> Result<Vec<(String, Frames)>> {
    movies
        .iter()
        .map(|m| Ok((movie_stem(m), decode_cached(m, cache_dir, opts)?)))
        .collect()
}

/// What the decode stage reports of one movie (its frames stay in the cache).
#[derive(Debug, Clone)]
pub struct DecodedMovie {
    pub movie: PathBuf,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    /// Seconds.
    pub duration: f64,
    /// Display orientation applied and truncation accepted ("" when neither).
    pub note: String,
}

/// The decode stage (`brainscale decode`): each movie decoded into `cache_dir` (or found
/// there), one at a time so that only one movie's frames are held. Errors: a movie that
/// cannot be decoded, or a build without the `video` feature.
pub fn decode_stage(
    movies: &[PathBuf],
    cache_dir: &Path,
    opts: &DecodeOptions,
) -> Result<Vec<DecodedMovie>> {
    #[cfg(feature = "video")]
    {
        movies
            .iter()
            .map(|m| {
                // A fresh decode streams into the cache without holding the frames.
                let cache = cache_path(cache_dir, m, opts);
                if !cache_is_current(&cache, m)? {
                    return Ok(decode_into_cache(m, &cache, opts, fingerprint(m)?)?.0);
                }
                let (_, note) = decode_to_cache(m, cache_dir, opts)?;
                let fc = FrameCache::open(&cache)?;
                let (frames, height, width) = fc.dims;
                Ok(DecodedMovie {
                    movie: m.clone(),
                    frames,
                    width,
                    height,
                    fps: fc.fps,
                    duration: fc.duration(),
                    note,
                })
            })
            .collect()
    }
    #[cfg(not(feature = "video"))]
    {
        let _ = (movies, cache_dir, opts);
        bail!("this build has no video support (built without the `video` feature)")
    }
}

/// Cache file for a movie, keyed by its stem and the decode options.
pub fn cache_path(cache_dir: &Path, movie: &Path, opts: &DecodeOptions) -> PathBuf {
    let stem = movie
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fps = opts.fps.map_or("native".into(), |f| format!("{f}"));
    let size = opts.size.map_or("native".into(), |s| s.to_string());
    let rot = if opts.autorotate { "" } else { "_stored" };
    cache_dir.join(format!("{stem}_fps-{fps}_size-{size}{rot}.safetensors"))
}

/// A fingerprint of a file (size and modification time, ns) to invalidate caches made from it.
/// Errors: the file cannot be read (names it).
pub fn file_fingerprint(path: &Path) -> Result<String> {
    let m = std::fs::metadata(path).with_context(|| format!("{} not found", path.display()))?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    Ok(format!("{}:{}", m.len(), mtime.map_or(0, |d| d.as_nanos())))
}

/// [`file_fingerprint`] of a movie (the error says "movie file").
#[cfg(feature = "video")]
fn fingerprint(path: &Path) -> Result<String> {
    if !path.exists() {
        bail!("movie file {} not found", path.display());
    }
    file_fingerprint(path)
}

/// Version of the decoder's output in frame caches: caches of another version are remade
/// (2: display orientation, last-frame duration, truncation check); codes and features record
/// it too.
pub const DECODER_VERSION: &str = "2";

/// Decodes `movie` (or loads its cache when the cache matches the file and options).
#[cfg(feature = "video")]
pub fn decode_cached(movie: &Path, cache_dir: &Path, opts: &DecodeOptions) -> Result<Frames> {
    Ok(decode_cached_with_note(movie, cache_dir, opts)?.0)
}

/// [`decode_cached`], with the note `decode` prints: display orientation and an accepted
/// truncation ("" when neither). A cache of a truncated movie is refused like the movie
/// unless `opts.allow_truncated`.
#[cfg(feature = "video")]
pub fn decode_cached_with_note(
    movie: &Path,
    cache_dir: &Path,
    opts: &DecodeOptions,
) -> Result<(Frames, String)> {
    let (cache, note) = decode_to_cache(movie, cache_dir, opts)?;
    Ok((load_frames(&cache)?, note))
}

/// Makes sure the frame cache of `movie` is current (decoding it when it is not, streamed at
/// the native rate) and returns its path and note, without loading the frames: only the cache
/// header is read. Open it with [`FrameCache`] to read frames as they are needed.
#[cfg(feature = "video")]
pub fn decode_to_cache(
    movie: &Path,
    cache_dir: &Path,
    opts: &DecodeOptions,
) -> Result<(PathBuf, String)> {
    let cache = cache_path(cache_dir, movie, opts);
    let fp = fingerprint(movie)?;
    if cache.exists() {
        if let Ok(h) = io::TensorHeader::open(&cache) {
            let m = h.metadata();
            if m.get("source_fingerprint") == Some(&fp)
                && m.get("decoder").map(String::as_str) == Some(DECODER_VERSION)
            {
                if let (Some(t), false) = (m.get("truncated"), opts.allow_truncated) {
                    bail!("{t} (give --allow-truncated to use it as it is)");
                }
                let note = m.get("note").cloned().unwrap_or_default();
                return Ok((cache, note));
            }
        }
    }
    let note = decode_into_cache(movie, &cache, opts, fp)?.1;
    Ok((cache, note))
}

/// The cache of a movie decoded elsewhere (builds without ffmpeg): its path and note.
#[cfg(not(feature = "video"))]
pub fn decode_to_cache(
    movie: &Path,
    cache_dir: &Path,
    opts: &DecodeOptions,
) -> Result<(PathBuf, String)> {
    let cache = cache_path(cache_dir, movie, opts);
    if cache.exists() {
        let note = io::TensorHeader::open(&cache)?
            .metadata()
            .get("note")
            .cloned()
            .unwrap_or_default();
        return Ok((cache, note));
    }
    bail!(
        "cannot decode {}: this build has no video support (cargo feature `video`); \
         decode on a machine with ffmpeg and copy {}",
        movie.display(),
        cache.display()
    )
}

/// Every movie's frame cache made current ([`decode_to_cache`]): (file stem, cache path) in
/// the order given, no frames held.
pub fn decode_all_to_cache(
    movies: &[PathBuf],
    cache_dir: &Path,
    opts: &DecodeOptions,
) -> Result<Vec<(String, PathBuf)>> {
    movies
        .iter()
        .map(|m| Ok((movie_stem(m), decode_to_cache(m, cache_dir, opts)?.0)))
        .collect()
}

/// Decodes `movie` into the cache file `cache` (atomically) and returns its frame count,
/// (height, width), rate, duration and note. The frames stream from the decoder to the file one
/// at a time ([`StreamingCache`]), resampled as they come when `opts.fps` differs from the
/// stream's declared rate ([`Resampler`]), so memory does not grow with the movie. When the
/// asked rate equals the declared one (or none is declared), whether to resample depends on the
/// frames' timing (a variable-frame-rate movie), known only at the end: the native frames are
/// streamed to the file, then resampled from it in a second pass if needed. The frames are
/// those of [`decode_with_report`] bit for bit.
#[cfg(feature = "video")]
fn decode_into_cache(
    movie: &Path,
    cache: &Path,
    opts: &DecodeOptions,
    fp: String,
) -> Result<(DecodedMovie, String)> {
    let mut meta = HashMap::from([
        ("source".to_string(), movie.display().to_string()),
        ("source_fingerprint".to_string(), fp),
        ("decoder".to_string(), DECODER_VERSION.to_string()),
    ]);
    let declared_fps = match opts.fps {
        Some(_) => probe(movie)?.avg_fps,
        None => 0.0,
    };
    let direct = opts
        .fps
        .filter(|&f| declared_fps > 0.0 && (f - declared_fps).abs() > 1e-9);
    let mut w = StreamingCache::create(cache, "partial")?;
    let mut rs = direct.map(ResampleSink::new);
    let native_opts = DecodeOptions { fps: None, ..*opts };
    let (native, size, report) = {
        let mut sink = |px: &[u8], t: f64| match rs.as_mut() {
            Some(r) => r.push(px, t, &mut w),
            None => w.push(px),
        };
        ffmpeg::decode_streaming(movie, &native_opts, &mut sink)?
    };
    let note = report.describe();
    meta.insert("note".to_string(), note.clone());
    if let Some(t) = &report.truncated {
        meta.insert("truncated".to_string(), t.to_string());
    }
    let frames = match (opts.fps, rs) {
        (Some(fps), Some(r)) => {
            r.finish(native.duration(), &mut w)?;
            timing_only(w.len(), fps, None)
        }
        (Some(fps), None) if (fps - native.fps).abs() > 1e-9 || native.is_vfr() => {
            // Second pass: the native frames read back in order from the partial file.
            let mut out = StreamingCache::create(cache, "resampling")?;
            let (mut file, fb) = w.read_back()?;
            let mut r = ResampleSink::new(fps);
            let mut px = vec![0u8; fb];
            for &t in native.times.iter() {
                std::io::Read::read_exact(&mut file, &mut px)
                    .with_context(|| format!("{}: reading back frames", cache.display()))?;
                r.push(&px, t, &mut out)?;
            }
            r.finish(native.duration(), &mut out)?;
            drop(w);
            w = out;
            timing_only(w.len(), fps, None)
        }
        _ => native,
    };
    let times = frames.times.as_slice().expect("contiguous");
    w.finish(times, frames.fps, frames.end, size, meta)?;
    Ok((
        DecodedMovie {
            movie: movie.to_path_buf(),
            frames: frames.len(),
            width: size.1,
            height: size.0,
            fps: frames.fps,
            duration: frames.duration(),
            note: note.clone(),
        },
        note,
    ))
}

/// The timing of `n` frames resampled at `fps` (frame k at k/fps), without pixels.
#[cfg(feature = "video")]
fn timing_only(n: usize, fps: f64, end: Option<f64>) -> Frames {
    Frames {
        data: Array4::zeros((n, 0, 0, 3)),
        times: Array1::from_iter((0..n).map(|k| k as f64 / fps)),
        fps,
        end,
    }
}

/// The [`Resampler`] writing into a streamed cache: it keeps the previous input frame, the one
/// the output frames decided by the next arrival show.
#[cfg(feature = "video")]
struct ResampleSink {
    r: Resampler,
    prev: Vec<u8>,
}

#[cfg(feature = "video")]
impl ResampleSink {
    fn new(fps: f64) -> Self {
        Self {
            r: Resampler::new(fps),
            prev: Vec::new(),
        }
    }

    /// Input frame `px` at `t` seconds.
    fn push(&mut self, px: &[u8], t: f64, w: &mut StreamingCache) -> Result<()> {
        for _ in self.r.arrive(t) {
            w.push(&self.prev)?;
        }
        self.prev.clear();
        self.prev.extend_from_slice(px);
        Ok(())
    }

    /// After the last frame of a movie of `duration` s: the remaining output frames, and the
    /// cut at the output length.
    fn finish(self, duration: f64, w: &mut StreamingCache) -> Result<()> {
        let (n, rest) = self.r.finish(duration);
        for _ in rest {
            w.push(&self.prev)?;
        }
        w.truncate(n)
    }
}

/// Whether `cache` holds `movie` decoded by this decoder version (its header says so).
#[cfg(feature = "video")]
fn cache_is_current(cache: &Path, movie: &Path) -> Result<bool> {
    if !cache.exists() {
        return Ok(false);
    }
    let fp = fingerprint(movie)?;
    Ok(io::TensorHeader::open(cache).is_ok_and(|f| {
        let m = f.metadata();
        m.get("source_fingerprint") == Some(&fp)
            && m.get("decoder").map(String::as_str) == Some(DECODER_VERSION)
    }))
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
use crate::fmri::video::cache::StreamingCache;
#[cfg(feature = "video")]
pub use crate::fmri::video::ffmpeg::{
    decode, decode_with_report, decoded_duration_check, probe, DecodeReport, Probe,
};

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

/// Builds without ffmpeg cannot decode: an error naming the movie.
#[cfg(not(feature = "video"))]
pub fn decoded_duration_check(path: &Path) -> Result<Option<duration::Truncation>> {
    bail!(
        "cannot decode {}: this build has no video support (cargo feature `video`)",
        path.display()
    )
}
