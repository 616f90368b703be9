//! Decoding with ffmpeg-next (cargo feature `video`): probe, decode to RGB with the display
//! orientation applied, and the truncation check.
use crate::fmri::video::duration::{self, Declared, Timing, Truncation};
use crate::fmri::video::orientation::{self, Orientation};
use crate::fmri::video::{DecodeOptions, Frames};
use anyhow::{bail, Context, Result};
use ff::format::Pixel;
use ff::software::scaling::{Context as Scaler, Flags};
use ffmpeg_next as ff;
use ndarray::{Array1, Array4};
use std::path::Path;

/// What the container says about its video stream.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Stored frame size (before any display rotation).
    pub width: u32,
    pub height: u32,
    pub avg_fps: f64,
    /// Frame count declared by the container (0 when unknown).
    pub declared_frames: i64,
    /// Declared duration in seconds (the video stream's, its DURATION tag's or the
    /// container's; 0 when none).
    pub duration_s: f64,
    pub codec: String,
    /// Clockwise rotation of the stream's display matrix in degrees (None without one).
    pub rotation_deg: Option<f64>,
}

/// What decoding found besides the frames.
#[derive(Debug, Clone, Default)]
pub struct DecodeReport {
    /// Orientation the display matrix asks for (identity without one).
    pub display: Orientation,
    /// Clockwise rotation of the display matrix in degrees, when there is one.
    pub rotation_deg: Option<f64>,
    /// Whether `display` was applied (`DecodeOptions::autorotate`).
    pub applied: bool,
    /// Set when the movie ends early and `allow_truncated` let it through.
    pub truncated: Option<Truncation>,
}

impl DecodeReport {
    /// One line for `decode`'s output: the orientation and truncation, or "" when neither.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if let Some(deg) = self.rotation_deg.filter(|_| !self.display.is_identity()) {
            parts.push(format!(
                "display matrix: {} ({deg}°), {}",
                self.display.describe(),
                if self.applied {
                    "applied (--no-autorotate keeps the stored orientation)"
                } else {
                    "not applied (--no-autorotate)"
                }
            ));
        }
        if let Some(t) = &self.truncated {
            parts.push(format!("accepted with --allow-truncated: {t}"));
        }
        parts.join("; ")
    }
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

fn stream_display_matrix(st: &ff::format::stream::Stream) -> Option<orientation::DisplayMatrix> {
    st.side_data()
        .find(|d| d.kind() == ff::codec::packet::side_data::Type::DisplayMatrix)
        .and_then(|d| orientation::parse_display_matrix(d.data()))
}

/// The duration the file declares for its video stream (see [`duration`]).
fn declared(
    ictx: &ff::format::context::Input,
    st: &ff::format::stream::Stream,
) -> Option<Declared> {
    let tb = f64::from(st.time_base());
    if st.duration() > 0 {
        return Some(Declared {
            seconds: st.duration() as f64 * tb,
            by: "the video stream",
            slack_s: 0.0,
        });
    }
    let tag = st
        .metadata()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("DURATION"))
        .and_then(|(_, v)| duration::parse_duration_tag(v));
    if let Some(s) = tag {
        return Some(Declared {
            seconds: s,
            by: "the video stream's DURATION tag",
            slack_s: 0.0,
        });
    }
    (ictx.duration() > 0).then(|| Declared {
        seconds: ictx.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE),
        by: "the container",
        slack_s: if ictx.nb_streams() > 1 { 1.0 } else { 0.0 },
    })
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
    Ok(Probe {
        width: dec.width(),
        height: dec.height(),
        avg_fps: if r.denominator() != 0 {
            f64::from(r)
        } else {
            0.0
        },
        declared_frames: st.frames(),
        duration_s: declared(&ictx, &st).map_or(0.0, |d| d.seconds),
        codec: dec
            .codec()
            .map(|c| c.name().to_string())
            .unwrap_or_default(),
        rotation_deg: stream_display_matrix(&st).map(|m| orientation::rotation_degrees(&m)),
    })
}

/// Where a decoded frame's pixels go: its time (s) with them.
type Sink<'s> = &'s mut dyn FnMut(&[u8], f64) -> Result<()>;

/// Frames received from the decoder: timestamps always; with a scaler, RGB pixels in the
/// displayed orientation, cropped.
struct Collector<'a, 's> {
    path: &'a Path,
    pixels: Vec<u8>,
    /// When set, each frame's pixels go here as they are decoded instead of into `pixels`.
    sink: Option<Sink<'s>>,
    timing: Timing,
    scaler: Option<Scaler>,
    /// The scaler's output, allocated at the first frame and reused.
    rgb: ff::frame::Video,
    /// The frame as received, reused.
    frame: ff::frame::Video,
    /// Stored size after scaling.
    scaled: (usize, usize),
    /// Requested square side (None: the whole displayed frame).
    size: Option<u32>,
    /// Display matrix of the stream; a frame's own matrix takes precedence (as in ffmpeg).
    stream_matrix: Option<orientation::DisplayMatrix>,
    autorotate: bool,
    /// Fixed at the first frame: the display matrix's orientation and angle, the orientation
    /// applied (the same, or none without autorotate), output (width, height).
    layout: Option<(Orientation, Option<f64>, Orientation, (usize, usize))>,
    start: i64,
    tb: f64,
}

impl Collector<'_, '_> {
    fn drain(&mut self, dec: &mut ff::decoder::Video) -> Result<()> {
        while dec.receive_frame(&mut self.frame).is_ok() {
            let frame = &self.frame;
            let pts = frame
                .timestamp()
                .or(frame.pts())
                .unwrap_or(self.timing.times.len() as i64);
            let dur = frame.packet().duration;
            self.timing.last_duration = (dur > 0).then(|| dur as f64 * self.tb);
            let time = (pts - self.start) as f64 * self.tb;
            self.timing.times.push(time);
            if self.layout.is_none() {
                let m = frame
                    .side_data(ff::frame::side_data::Type::DisplayMatrix)
                    .and_then(|d| orientation::parse_display_matrix(d.data()))
                    .or(self.stream_matrix);
                let o = match &m {
                    Some(m) => Orientation::from_display_matrix(m, self.path)?,
                    None => Orientation::default(),
                };
                let applied = if self.autorotate {
                    o
                } else {
                    Orientation::default()
                };
                let (dw, dh) = applied.displayed_size(self.scaled.0, self.scaled.1);
                let out = self.size.map_or((dw, dh), |n| (n as usize, n as usize));
                let deg = m.map(|m| orientation::rotation_degrees(&m));
                self.layout = Some((o, deg, applied, out));
            }
            let Some(scaler) = self.scaler.as_mut() else {
                continue;
            };
            let (_, _, o, (w, h)) = self.layout.expect("set above");
            // One pass of swscale: YUV → RGB and the resize together (the CLI's `scale`).
            scaler
                .run(frame, &mut self.rgb)
                .context("converting a frame to RGB")?;
            let (sw, sh) = self.scaled;
            let stride = self.rgb.stride(0);
            let data = self.rgb.data(0);
            let (dw, dh) = o.displayed_size(sw, sh);
            let (ox, oy) = ((dw - w) / 2, (dh - h) / 2);
            if self.sink.is_some() {
                // Streaming: `pixels` holds one frame at a time.
                self.pixels.clear();
            }
            if o.is_identity() {
                // The crop's rows straight from the scaler's picture: one copy.
                for y in oy..oy + h {
                    let row = y * stride + ox * 3;
                    self.pixels.extend_from_slice(&data[row..row + w * 3]);
                }
            } else {
                let mut packed = Vec::with_capacity(sw * sh * 3);
                for y in 0..sh {
                    packed.extend_from_slice(&data[y * stride..y * stride + sw * 3]);
                }
                let shown = o.apply(&packed, sw, sh, 3);
                for y in oy..oy + h {
                    let row = (y * dw + ox) * 3;
                    self.pixels.extend_from_slice(&shown[row..row + w * 3]);
                }
            }
            if let Some(sink) = self.sink.as_mut() {
                sink(&self.pixels, time)?;
            }
        }
        Ok(())
    }
}

/// Decodes every frame, applies the display orientation (unless `opts.autorotate` is off),
/// then resamples in time (latest frame at or before each output time) and space (shorter
/// side to `size`, centre crop of the displayed picture). A movie that ends before its
/// declared duration is an error naming the file and both durations unless
/// `opts.allow_truncated`.
pub fn decode_with_report(path: &Path, opts: &DecodeOptions) -> Result<(Frames, DecodeReport)> {
    run(path, opts, true)
}

/// Decodes every frame (see [`decode_with_report`]).
pub fn decode(path: &Path, opts: &DecodeOptions) -> Result<Frames> {
    Ok(decode_with_report(path, opts)?.0)
}

/// Decodes `path` without keeping pixels and compares the decoded duration with the declared
/// one: `Ok(Some(t))` when the movie ends early (`t` names the file and both durations, see
/// [`Truncation`]), `Ok(None)` when it is whole, an error when it cannot be read. Memory stays
/// small whatever the movie's length (for `dataset check --deep`).
pub fn decoded_duration_check(path: &Path) -> Result<Option<Truncation>> {
    let opts = DecodeOptions {
        allow_truncated: true,
        ..Default::default()
    };
    Ok(run(path, &opts, false)?.1.truncated)
}

/// Decodes at the native rate (`opts.fps` must be None), handing each frame's pixels
/// ([H, W, 3] u8, displayed orientation, cropped) and time (s) to `sink` as it is decoded, in
/// presentation order, so memory stays at one frame whatever the movie's length. Returns the frames' times, rate and end (with an
/// empty `data` of shape [n, 0, 0, 3]), the output (height, width) and the report; the checks
/// are those of [`decode_with_report`].
pub fn decode_streaming(
    path: &Path,
    opts: &DecodeOptions,
    sink: Sink,
) -> Result<(Frames, (usize, usize), DecodeReport)> {
    if opts.fps.is_some() {
        bail!("decode_streaming decodes at the native rate only");
    }
    run_with(path, opts, true, Some(sink))
}

fn run(path: &Path, opts: &DecodeOptions, keep_pixels: bool) -> Result<(Frames, DecodeReport)> {
    let (f, _, r) = run_with(path, opts, keep_pixels, None)?;
    Ok((f, r))
}

fn run_with(
    path: &Path,
    opts: &DecodeOptions,
    keep_pixels: bool,
    sink: Option<Sink>,
) -> Result<(Frames, (usize, usize), DecodeReport)> {
    let streaming = sink.is_some();
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
    let rate = st.avg_frame_rate();
    let native_fps = if rate.denominator() != 0 && rate.numerator() > 0 {
        f64::from(rate)
    } else {
        0.0
    };
    let declared = declared(&ictx, &st);
    let stream_matrix = stream_display_matrix(&st);
    let declared_frames = st.frames();
    let mut ctx = ff::codec::context::Context::from_parameters(st.parameters())?;
    // Frame-threaded decoding with 3 frames in flight per core (at most 16, libavcodec's cap
    // for automatic counts): the ffmpeg CLI's automatic count (cores + 1) left the 2-core
    // development box 17% idle, since the decoder threads wait on each other's reference rows;
    // 6 threads there decode the same frames 11% faster (results/bench-video.md). The decoded
    // pixels do not depend on the count (frame threading is exact).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    ctx.set_threading(ff::threading::Config {
        kind: ff::threading::Type::Frame,
        count: (3 * cores).min(16),
        ..Default::default()
    });
    let mut dec = ctx
        .decoder()
        .video()
        .with_context(|| format!("{}: cannot open the video decoder", path.display()))?;
    let (w0, h0) = (dec.width(), dec.height());
    if w0 == 0 || h0 == 0 {
        bail!("{}: video stream has no frame size", path.display());
    }
    // The shorter side is the same in both orientations, so the scale is too.
    let (sw, sh) = match opts.size {
        Some(n) => {
            let scale = n as f64 / w0.min(h0) as f64;
            (
                ((w0 as f64 * scale).round() as u32).max(n),
                ((h0 as f64 * scale).round() as u32).max(n),
            )
        }
        None => (w0, h0),
    };
    let scaler = if keep_pixels {
        Some(
            Scaler::get(dec.format(), w0, h0, Pixel::RGB24, sw, sh, Flags::AREA).with_context(
                || {
                    format!(
                        "{}: cannot convert pixel format {:?}",
                        path.display(),
                        dec.format()
                    )
                },
            )?,
        )
    } else {
        None
    };
    let mut c = Collector {
        path,
        pixels: Vec::new(),
        sink,
        timing: Timing {
            declared_frames,
            avg_fps: native_fps,
            ..Default::default()
        },
        scaler,
        rgb: ff::frame::Video::empty(),
        frame: ff::frame::Video::empty(),
        scaled: (sw as usize, sh as usize),
        size: opts.size,
        stream_matrix,
        autorotate: opts.autorotate,
        layout: None,
        start,
        tb,
    };
    let mut corrupt = None;
    for (s, packet) in ictx.packets() {
        if s.index() != idx {
            continue;
        }
        if let Err(e) = dec.send_packet(&packet) {
            corrupt = Some(e);
            break;
        }
        c.drain(&mut dec)?;
    }
    dec.send_eof().ok();
    c.drain(&mut dec)?;
    let n = c.timing.times.len();
    if n == 0 {
        bail!(
            "{}: no video frame could be decoded (corrupt or empty file)",
            path.display()
        );
    }
    let (end, truncated) = duration::check(path, &c.timing, declared.as_ref());
    if let Some(e) = corrupt {
        if !opts.allow_truncated {
            bail!(
                "{}: truncated or corrupt video data after {n} frames ({e}); give \
                 --allow-truncated to use the frames before it",
                path.display()
            );
        }
    }
    if let Some(t) = &truncated {
        if !opts.allow_truncated {
            bail!("{t} (give --allow-truncated to use it as it is)");
        }
    }
    let (orientation, rotation_deg, _, (w, h)) = c.layout.expect("at least one frame");
    let report = DecodeReport {
        display: orientation,
        rotation_deg,
        applied: opts.autorotate,
        truncated,
    };
    let out_size = (h, w);
    let (w, h) = if keep_pixels && !streaming {
        (w, h)
    } else {
        (0, 0)
    };
    let pixels = if streaming { Vec::new() } else { c.pixels };
    let native = Array4::from_shape_vec((n, h, w, 3), pixels)?;
    let times = Array1::from_vec(c.timing.times);
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
        end: Some(end),
    };
    Ok((
        match opts.fps {
            Some(fps) if (fps - fps_native).abs() > 1e-9 || frames.is_vfr() => {
                crate::fmri::video::resample::resample(&frames, fps)
            }
            _ => frames,
        },
        out_size,
        report,
    ))
}
