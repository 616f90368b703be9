//! The frame cache file: a movie's decoded frames as safetensors (`frames` u8 [T, H, W, 3],
//! `times` f64 [T] seconds, metadata `fps`, `end` and where they came from). Written whole
//! ([`save_frames`]) or streamed while decoding ([`StreamingCache`]); read whole
//! ([`load_frames`]) or by frame range ([`FrameCache`]), so memory is bounded by what is read.
use crate::core::io::{self, Tensor, TensorFile};
use crate::fmri::video::Frames;
use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array4};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

/// A frame cache written while decoding: a safetensors file whose header (a fixed 64 KiB,
/// space-padded as the format allows) is written last, the frames appended one at a time, the
/// times after them; renamed into place by [`StreamingCache::finish`] (a failed decode leaves
/// only the temporary file, removed on drop).
pub(crate) struct StreamingCache {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    frames: usize,
    frame_bytes: Option<usize>,
    /// Bytes handed to the kernel for write-back so far (see [`WRITEBACK_CHUNK`]).
    written_back: u64,
}

const STREAM_HEADER: usize = 64 * 1024;

/// Frames are handed to the kernel for write-back every this many bytes while decoding, so the
/// closing `fsync` waits only for the last chunk instead of the whole film (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts the write, does not wait for it). Without it
/// the fsync of a 1.4 GB cache held the decode's wall time ≈ 7 s at the end on a 216 MB/s disk.
const WRITEBACK_CHUNK: u64 = 32 << 20;

impl StreamingCache {
    /// Starts the cache that will be renamed to `path`, written as `path` with the extension
    /// `safetensors.<suffix>` meanwhile. Errors: the folder or file cannot be created.
    pub(crate) fn create(path: &Path, suffix: &str) -> Result<Self> {
        use std::io::Write;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating folder {}", parent.display()))?;
        }
        let tmp = path.with_extension(format!("safetensors.{suffix}"));
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        // Large writes: the kernel copies whole megabytes per call.
        let mut file = std::io::BufWriter::with_capacity(4 << 20, f);
        file.write_all(&[0u8; 8 + STREAM_HEADER])?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
            frames: 0,
            frame_bytes: None,
            written_back: 0,
        })
    }

    /// Appends one frame's pixels ([H, W, 3] u8). Errors: a frame of another size than the
    /// first, a failed write.
    pub(crate) fn push(&mut self, px: &[u8]) -> Result<()> {
        use std::io::Write;
        if *self.frame_bytes.get_or_insert(px.len()) != px.len() {
            bail!("{}: frames of different sizes", self.path.display());
        }
        self.file
            .as_mut()
            .expect("open")
            .write_all(px)
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        self.frames += 1;
        let end = (8 + STREAM_HEADER + self.frames * px.len()) as u64;
        if end.saturating_sub(self.written_back) >= WRITEBACK_CHUNK {
            let f = self.file.as_mut().expect("open");
            f.flush()
                .with_context(|| format!("writing {}", self.tmp.display()))?;
            start_writeback(f.get_ref(), self.written_back, end - self.written_back);
            self.written_back = end;
        }
        Ok(())
    }

    /// Frames pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.frames
    }

    /// Keeps only the first `n` frames (no-op when there are not more).
    pub(crate) fn truncate(&mut self, n: usize) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        if n >= self.frames {
            return Ok(());
        }
        let end = (8 + STREAM_HEADER + n * self.frame_bytes.unwrap_or(0)) as u64;
        let f = self.file.as_mut().expect("open");
        f.flush()?;
        f.get_ref().set_len(end)?;
        f.seek(SeekFrom::Start(end))?;
        self.frames = n;
        self.written_back = self.written_back.min(end);
        Ok(())
    }

    /// The frames written so far, for reading back in order: the open file positioned at
    /// frame 0 and the bytes of one frame (0 before the first frame).
    pub(crate) fn read_back(&mut self) -> Result<(std::fs::File, usize)> {
        use std::io::{Seek, SeekFrom, Write};
        self.file.as_mut().expect("open").flush()?;
        let mut f = std::fs::File::open(&self.tmp)
            .with_context(|| format!("reading back {}", self.tmp.display()))?;
        f.seek(SeekFrom::Start((8 + STREAM_HEADER) as u64))?;
        Ok((f, self.frame_bytes.unwrap_or(0)))
    }

    /// Writes the times, the header and renames the file into place. `times` must have one
    /// entry per frame pushed; `fps` and `end` as in [`Frames`]; `(h, w)` the frame size.
    pub(crate) fn finish(
        mut self,
        times: &[f64],
        fps: f64,
        end: Option<f64>,
        (h, w): (usize, usize),
        mut meta: HashMap<String, String>,
    ) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let n = times.len();
        let bytes = (self.frames * self.frame_bytes.unwrap_or(0)) as u64;
        if n != self.frames || bytes != (n * h * w * 3) as u64 {
            bail!(
                "{}: {} frames of {bytes} bytes for {n} times of {h}×{w} frames",
                self.path.display(),
                self.frames
            );
        }
        meta.insert("fps".into(), fps.to_string());
        if let Some(e) = end {
            meta.insert("end".into(), e.to_string());
        }
        let mut file = self.file.take().expect("open");
        let tb: Vec<u8> = times.iter().flat_map(|t| t.to_le_bytes()).collect();
        file.write_all(&tb)?;
        let header = serde_json::json!({
            "__metadata__": meta,
            "frames": {"dtype": "U8", "shape": [n, h, w, 3], "data_offsets": [0, bytes]},
            "times": {"dtype": "F64", "shape": [n],
                      "data_offsets": [bytes, bytes + 8 * n as u64]},
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

/// Starts the kernel's write-back of `len` bytes at `offset` without waiting for it; a hint
/// only (the closing fsync is what makes the file durable), so a failure is ignored.
#[cfg(target_os = "linux")]
fn start_writeback(f: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor and a byte range; the call reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &std::fs::File, _: u64, _: u64) {}

impl Drop for StreamingCache {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
