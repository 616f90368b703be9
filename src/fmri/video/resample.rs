//! Frame-rate conversion: output frame k, at time k/fps, shows the latest input frame whose time
//! is at or before it (what a viewer sees at that instant; the ffmpeg CLI's `fps` filter with
//! `round=down`). [`Resampler`] applies the rule as frames arrive, so a decode can stream a
//! resampled movie without holding it; [`resample`] applies it to frames in memory.
use crate::fmri::video::Frames;
use ndarray::{Array1, Array4, Axis};
use std::ops::Range;

/// Tolerance (s) under which an input frame counts as shown at an output instant.
const EPS: f64 = 1e-9;

/// Number of output frames at `fps` for a movie of `duration` seconds (at least one).
pub fn output_len(duration: f64, fps: f64) -> usize {
    ((duration * fps) - EPS).ceil().max(1.0) as usize
}

/// The resampling rule applied to input frames as they arrive, in presentation order: output
/// frame k is decided when the first input frame later than k/fps arrives (it gets the frame
/// before that one), or at the end (it gets the last frame).
#[derive(Debug, Clone)]
pub struct Resampler {
    fps: f64,
    /// First output frame not yet decided.
    next: usize,
    /// Input frames seen.
    seen: usize,
}

impl Resampler {
    /// A resampler to `fps` output frames per second (positive, finite).
    pub fn new(fps: f64) -> Self {
        Self {
            fps,
            next: 0,
            seen: 0,
        }
    }

    /// Input frame i (the i-th call, from 0) arrives at `t` seconds: returns the output frames
    /// now decided, which show input frame i − 1 (empty for the first frame). The range may run
    /// past the movie's output length ([`output_len`]), known only at the end: cut it there.
    pub fn arrive(&mut self, t: f64) -> Range<usize> {
        let start = self.next;
        if self.seen > 0 && t.is_finite() {
            while t > self.next as f64 / self.fps + EPS {
                self.next += 1;
            }
        }
        self.seen += 1;
        start..self.next
    }

    /// After the last input frame, for a movie of `duration` seconds: the output length and the
    /// output frames still undecided, which show the last input frame.
    pub fn finish(&self, duration: f64) -> (usize, Range<usize>) {
        let n = output_len(duration, self.fps);
        (n, self.next.min(n)..n)
    }
}

/// Resamples frames to `fps` with the rule of [`Resampler`]: output frame k at time k/fps shows
/// the latest input frame at or before it; `duration()` seconds give [`output_len`] frames.
pub fn resample(frames: &Frames, fps: f64) -> Frames {
    let (n_in, h, w, c) = frames.data.dim();
    let n_out = output_len(frames.duration(), fps);
    let mut data = Array4::<u8>::zeros((n_out, h, w, c));
    let mut fill = |ks: Range<usize>, j: usize| {
        for k in ks.start.min(n_out)..ks.end.min(n_out) {
            data.index_axis_mut(Axis(0), k)
                .assign(&frames.data.index_axis(Axis(0), j));
        }
    };
    let mut r = Resampler::new(fps);
    for (i, &t) in frames.times.iter().enumerate() {
        let ks = r.arrive(t);
        if i > 0 {
            fill(ks, i - 1);
        }
    }
    if n_in > 0 {
        fill(r.finish(frames.duration()).1, n_in - 1);
    }
    Frames {
        data,
        times: Array1::from_iter((0..n_out).map(|k| k as f64 / fps)),
        fps,
        end: None,
    }
}
