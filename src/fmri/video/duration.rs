//! Truncated movies and the end of the last frame.
//!
//! Containers without a frame count (Matroska/WebM, MPEG-TS, AVI with a broken index) still
//! declare a duration: the video stream's own (`AVStream.duration`), the per-track `DURATION`
//! tag that ffmpeg and mkvmerge write into Matroska files, or the container's. A file cut short
//! keeps that header, so the decoded frames end before the declared end. A movie whose decoded
//! end falls short of the declared duration by more than its longest frame interval (at least
//! 1.5 typical frame periods) is truncated. When only the container's duration is known and the
//! file has other streams (audio may run longer than video), one more second of slack is given.
//!
//! The end of the movie is the last frame's timestamp plus that frame's own duration from the
//! stream (packet duration), or the declared end when the movie is not truncated and declares a
//! later end (a player shows the last frame until then). Only without either is the last frame
//! given one median frame interval. This is what makes a variable-frame-rate movie resample to
//! the right number of frames.
use std::fmt;
use std::path::{Path, PathBuf};

/// A duration the file declares for its video, and who declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// Seconds from the stream start.
    pub seconds: f64,
    /// "the video stream", "the video stream's DURATION tag", "the container".
    pub by: &'static str,
    /// Extra shortfall accepted beyond the frame-interval tolerance, in seconds.
    pub slack_s: f64,
}

/// Timestamps of the decoded frames.
#[derive(Debug, Clone, Default)]
pub struct Timing {
    /// Presentation time of each decoded frame in seconds from the stream start, in order.
    pub times: Vec<f64>,
    /// The last frame's own duration from the stream (packet duration), when the stream has it.
    pub last_duration: Option<f64>,
    /// Frame count the container declares (0 when it has none).
    pub declared_frames: i64,
    /// Average frame rate the stream declares (0 when unknown).
    pub avg_fps: f64,
}

impl Timing {
    /// Intervals between consecutive frames, in seconds.
    fn intervals(&self) -> Vec<f64> {
        self.times.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Median frame interval (one period at the average rate when there are < 2 frames).
    pub fn median_interval(&self) -> f64 {
        let mut d = self.intervals();
        if d.is_empty() {
            return if self.avg_fps > 0.0 {
                1.0 / self.avg_fps
            } else {
                1.0
            };
        }
        d.sort_by(f64::total_cmp);
        d[d.len() / 2]
    }

    /// End of the last decoded frame: its time plus its own duration, else one median interval.
    pub fn decoded_end(&self) -> f64 {
        let last = self.times.last().copied().unwrap_or(0.0);
        last + self
            .last_duration
            .filter(|d| *d > 0.0)
            .unwrap_or_else(|| self.median_interval())
    }

    /// How far the decoded end may fall short of the declared duration (seconds).
    pub fn tolerance(&self) -> f64 {
        let max = self.intervals().into_iter().fold(0.0, f64::max);
        (1.5 * self.median_interval()).max(max) + 1e-3
    }
}

/// A movie that ends before its header says it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncation {
    pub path: PathBuf,
    /// Declared duration in seconds and who declares it.
    pub declared_s: f64,
    pub declared_by: String,
    /// End of the last decoded frame, in seconds.
    pub decoded_s: f64,
    pub frames: usize,
    /// Frame count the container declares (0 when none).
    pub declared_frames: i64,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: the movie ends early: {} declares {:.3} s",
            self.path.display(),
            self.declared_by,
            self.declared_s
        )?;
        if self.declared_frames > 0 {
            write!(f, " ({} frames)", self.declared_frames)?;
        }
        write!(
            f,
            " but the frames decode only to {:.3} s ({} frames); the file is probably cut short",
            self.decoded_s, self.frames
        )
    }
}

/// Compares the decoded frames with what the file declares. Returns the end of the movie in
/// seconds (see the module docs) and the truncation, if any.
pub fn check(path: &Path, t: &Timing, declared: Option<&Declared>) -> (f64, Option<Truncation>) {
    let decoded = t.decoded_end();
    let n = t.times.len();
    let trunc = |declared_s: f64, by: &str| Truncation {
        path: path.to_path_buf(),
        declared_s,
        declared_by: by.to_string(),
        decoded_s: decoded,
        frames: n,
        declared_frames: t.declared_frames,
    };
    if t.declared_frames > 0 && (n as i64) < t.declared_frames {
        let (s, by) = declared.map_or((f64::NAN, "the container"), |d| (d.seconds, d.by));
        return (decoded, Some(trunc(s, by)));
    }
    match declared {
        Some(d) if d.seconds - decoded > t.tolerance() + d.slack_s => {
            (decoded, Some(trunc(d.seconds, d.by)))
        }
        Some(d) if d.slack_s == 0.0 && d.seconds > decoded => (d.seconds, None),
        _ => (decoded, None),
    }
}

/// Parses a Matroska `DURATION` tag ("HH:MM:SS.nnnnnnnnn") into seconds.
pub fn parse_duration_tag(s: &str) -> Option<f64> {
    let mut parts = s.trim().split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let v = h.parse::<f64>().ok()? * 3600.0
        + m.parse::<f64>().ok()? * 60.0
        + sec.parse::<f64>().ok()?;
    (v.is_finite() && v > 0.0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(times: &[f64], last: Option<f64>) -> Timing {
        Timing {
            times: times.to_vec(),
            last_duration: last,
            declared_frames: 0,
            avg_fps: 0.0,
        }
    }

    #[test]
    fn a_cut_of_two_frames_is_found_and_one_frame_of_rounding_is_not() {
        let p = Path::new("m.mkv");
        let t = timing(&(0..48).map(|i| i as f64 / 24.0).collect::<Vec<_>>(), None);
        let d = |s| Declared {
            seconds: s,
            by: "the container",
            slack_s: 0.0,
        };
        assert_eq!(check(p, &t, Some(&d(2.0))), (2.0, None));
        let (_, tr) = check(p, &t, Some(&d(2.0 + 2.0 / 24.0)));
        let msg = tr.expect("two frames short").to_string();
        assert!(
            msg.contains("m.mkv") && msg.contains("2.083") && msg.contains("2.000"),
            "{msg}"
        );
        // Rounding of the header by less than a frame: the declared end counts.
        let (end, tr) = check(p, &t, Some(&d(2.02)));
        assert!(tr.is_none() && (end - 2.02).abs() < 1e-12);
    }

    #[test]
    fn the_last_frame_lasts_as_long_as_its_stream_says() {
        // 3 s at 30 fps, then 5 frames of 0.2 s: 4 s in all, although the average rate is 23.75.
        let mut times: Vec<f64> = (0..90).map(|i| i as f64 / 30.0).collect();
        times.extend((0..5).map(|i| 3.0 + 0.2 * i as f64));
        let t = timing(&times, Some(0.2));
        assert!((t.decoded_end() - 4.0).abs() < 1e-12);
        assert_eq!(parse_duration_tag("00:00:04.000000000"), Some(4.0));
        assert_eq!(parse_duration_tag("01:02:03.5"), Some(3723.5));
        assert_eq!(parse_duration_tag("4.0"), None);
    }
}
