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
pub mod duration;
#[cfg(feature = "video")]
mod ffmpeg;
pub mod orientation;

use crate::core::io::{self, Tensor, TensorFile};
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
                if opts.fps.is_none() && !cache_is_current(&cache, m)? {
                    return Ok(decode_into_cache(m, &cache, opts, fingerprint(m)?)?.0);
                }
                let (f, note) = decode_cached_with_note(m, cache_dir, opts)?;
                let (_, height, width, _) = f.data.dim();
                Ok(DecodedMovie {
                    movie: m.clone(),
                    frames: f.len(),
                    width,
                    height,
                    fps: f.fps,
                    duration: f.duration(),
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

/// Saves frames to a cache file (atomically), recording where they came from.
pub fn save_frames(path: &Path, frames: &Frames, meta: HashMap<String, String>) -> Result<()> {
    let mut meta = meta;
    meta.insert("fps".into(), frames.fps.to_string());
    if let Some(e) = frames.end {
        meta.insert("end".into(), e.to_string());
    }
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
    let end = f.metadata().get("end").and_then(|s| s.parse().ok());
    Ok(Frames {
        data,
        times,
        fps,
        end,
    })
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

/// Version of the decoder's output in frame caches: caches of another version are remade
/// (2: display orientation, last-frame duration, truncation check).
#[cfg(feature = "video")]
const DECODER_VERSION: &str = "2";

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

/// A frame cache opened for reading frames by range: only its header and times are read at
/// open, so memory is bounded by the ranges read, not the movie (issue 21). Reads give the
/// same bytes as [`load_frames`] on the same file.
pub struct FrameCache {
    path: PathBuf,
    file: std::fs::File,
    /// File offset of frame 0.
    frames_at: u64,
    /// Frames, height, width.
    pub dims: (usize, usize, usize),
    /// Presentation time of each frame (s).
    pub times: Array1<f64>,
    pub fps: f64,
    /// As [`Frames::end`].
    pub end: Option<f64>,
}

impl FrameCache {
    /// Opens a cache written by [`save_frames`] or the streaming decode. Errors name the file
    /// and field: not safetensors, `frames` not U8 [T, H, W, 3], `times` not F64 [T], no fps.
    pub fn open(path: &Path) -> Result<Self> {
        use std::io::{Read, Seek, SeekFrom};
        let p = path.display();
        let h = io::TensorHeader::open(path)?;
        let fr = h.tensor("frames")?;
        let tm = h.tensor("times")?;
        if fr.dtype != "U8" || fr.shape.len() != 4 || fr.shape[3] != 3 {
            bail!(
                "{p}: frames must be U8 [T, H, W, 3], found {} {:?}",
                fr.dtype,
                fr.shape
            );
        }
        if tm.dtype != "F64" || tm.shape != [fr.shape[0]] {
            bail!(
                "{p}: {} times ({}) for frames of shape {:?}",
                tm.shape.first().copied().unwrap_or(0),
                tm.dtype,
                fr.shape
            );
        }
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {p}"))?;
        file.seek(SeekFrom::Start(tm.begin))?;
        let mut b = vec![0u8; (tm.end - tm.begin) as usize];
        file.read_exact(&mut b)
            .with_context(|| format!("{p}: reading times"))?;
        let times: Array1<f64> = b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let meta = h.metadata();
        let fps = meta
            .get("fps")
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{p}: no fps in metadata"))?;
        let end = meta.get("end").and_then(|s| s.parse().ok());
        Ok(Self {
            path: path.to_path_buf(),
            file,
            frames_at: fr.begin,
            dims: (fr.shape[0], fr.shape[1], fr.shape[2]),
            times,
            fps,
            end,
        })
    }

    pub fn len(&self) -> usize {
        self.dims.0
    }

    pub fn is_empty(&self) -> bool {
        self.dims.0 == 0
    }

    /// As [`Frames::duration`] (seconds).
    pub fn duration(&self) -> f64 {
        match self.end {
            Some(e) if !self.is_empty() => e,
            _ => self.times.last().map_or(0.0, |t| t + 1.0 / self.fps),
        }
    }

    /// Frames `range` (with their times; `end` set only when the range reaches the last
    /// frame). Errors: a range past the end, a read failure (both name the file).
    pub fn read(&mut self, range: std::ops::Range<usize>) -> Result<Frames> {
        use std::io::{Read, Seek, SeekFrom};
        let (t, h, w) = self.dims;
        if range.start > range.end || range.end > t {
            bail!("{}: frames {range:?} asked of {t}", self.path.display());
        }
        let fb = h * w * 3;
        let n = range.end - range.start;
        let mut buf = vec![0u8; n * fb];
        self.file
            .seek(SeekFrom::Start(self.frames_at + (range.start * fb) as u64))?;
        self.file
            .read_exact(&mut buf)
            .with_context(|| format!("{}: reading frames {range:?}", self.path.display()))?;
        Ok(Frames {
            data: Array4::from_shape_vec((n, h, w, 3), buf)?,
            times: self.times.slice(ndarray::s![range.clone()]).to_owned(),
            fps: self.fps,
            end: if range.end == t { self.end } else { None },
        })
    }
}

/// Decodes `movie` into the cache file `cache` (atomically) and returns its frame count,
/// (height, width), rate, duration and note. At the native rate (`opts.fps` None) the frames
/// stream from the decoder to the file one at a time ([`StreamingCache`]), so memory does not
/// grow with the movie; a resampled rate decodes in memory first.
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
    let (frames, (height, width), report) = if opts.fps.is_none() {
        let mut w = StreamingCache::create(cache)?;
        let (f, size, report) = {
            let mut sink = |px: &[u8]| w.push(px);
            ffmpeg::decode_streaming(movie, opts, &mut sink)?
        };
        let note = report.describe();
        meta.insert("note".to_string(), note);
        if let Some(t) = &report.truncated {
            meta.insert("truncated".to_string(), t.to_string());
        }
        w.finish(&f, size, meta)?;
        (f, size, report)
    } else {
        let (frames, report) = decode_with_report(movie, opts)?;
        meta.insert("note".to_string(), report.describe());
        if let Some(t) = &report.truncated {
            meta.insert("truncated".to_string(), t.to_string());
        }
        save_frames(cache, &frames, meta)?;
        let (_, h, w, _) = frames.data.dim();
        (frames, (h, w), report)
    };
    let note = report.describe();
    Ok((
        DecodedMovie {
            movie: movie.to_path_buf(),
            frames: frames.len(),
            width,
            height,
            fps: frames.fps,
            duration: frames.duration(),
            note: note.clone(),
        },
        note,
    ))
}

/// A frame cache written while decoding: a safetensors file whose header (a fixed 64 KiB,
/// space-padded as the format allows) is written last, the frames appended one at a time, the
/// times after them; renamed into place by [`StreamingCache::finish`] (a failed decode leaves
/// only the temporary file, removed on drop).
#[cfg(feature = "video")]
struct StreamingCache {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    bytes: u64,
    frame_bytes: Option<usize>,
}

#[cfg(feature = "video")]
const STREAM_HEADER: usize = 64 * 1024;

#[cfg(feature = "video")]
impl StreamingCache {
    fn create(path: &Path) -> Result<Self> {
        use std::io::Write;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating folder {}", parent.display()))?;
        }
        let tmp = path.with_extension("safetensors.partial");
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut file = std::io::BufWriter::with_capacity(1 << 20, f);
        file.write_all(&[0u8; 8 + STREAM_HEADER])?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
            bytes: 0,
            frame_bytes: None,
        })
    }

    fn push(&mut self, px: &[u8]) -> Result<()> {
        use std::io::Write;
        if *self.frame_bytes.get_or_insert(px.len()) != px.len() {
            bail!("{}: frames of different sizes", self.path.display());
        }
        self.file.as_mut().expect("open").write_all(px)?;
        self.bytes += px.len() as u64;
        Ok(())
    }

    fn finish(
        mut self,
        f: &Frames,
        (h, w): (usize, usize),
        mut meta: HashMap<String, String>,
    ) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let n = f.times.len();
        if self.bytes != (n * h * w * 3) as u64 {
            bail!(
                "{}: {} bytes of frames for {n} frames of {h}×{w}",
                self.path.display(),
                self.bytes
            );
        }
        meta.insert("fps".into(), f.fps.to_string());
        if let Some(e) = f.end {
            meta.insert("end".into(), e.to_string());
        }
        let mut file = self.file.take().expect("open");
        for t in f.times.iter() {
            file.write_all(&t.to_le_bytes())?;
        }
        let header = serde_json::json!({
            "__metadata__": meta,
            "frames": {"dtype": "U8", "shape": [n, h, w, 3], "data_offsets": [0, self.bytes]},
            "times": {"dtype": "F64", "shape": [n],
                      "data_offsets": [self.bytes, self.bytes + 8 * n as u64]},
        })
        .to_string();
        if header.len() > STREAM_HEADER {
            bail!("{}: frame cache header too long", self.path.display());
        }
        let mut padded = header.into_bytes();
        padded.resize(STREAM_HEADER, b' ');
        let mut file = file.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&(STREAM_HEADER as u64).to_le_bytes())?;
        file.write_all(&padded)?;
        file.sync_all()?;
        drop(file);
        io::commit(&self.tmp, &self.path)
    }
}

#[cfg(feature = "video")]
impl Drop for StreamingCache {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
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
pub use crate::fmri::video::ffmpeg::{
    decode, decode_with_report, decoded_duration_check, probe, DecodeReport, Probe,
};

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
        end: None,
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

/// Builds without ffmpeg cannot decode: an error naming the movie.
#[cfg(not(feature = "video"))]
pub fn decoded_duration_check(path: &Path) -> Result<Option<duration::Truncation>> {
    bail!(
        "cannot decode {}: this build has no video support (cargo feature `video`)",
        path.display()
    )
}
