//! The bio-signal track: data (readers, [`Windows`], normalisation, alignment, a synthetic
//! generator), pretraining, fine-tuning, the transfer study and its metrics; no model code.
//!
//! Every reader produces a [`Windows`]: windows `samples` [N, C, L] (f32), optional `labels`
//! [N] (i64, classes 0..K), the sampling rate and channel names. [`load`] dispatches on the
//! extension:
//! - `.edf`, `.bdf` (EDF, EDF+, BDF: [`edf`]) and `.csv` (accelerometer `time,x,y,z[,label]`:
//!   [`accel`]) are continuous recordings, cut into windows by [`window`];
//! - `.safetensors`, `.npy`, `.npz` hold TF-C-style windows ([`tensors`]).
//!
//! Then [`resample::align`] brings a downstream set to the pretraining rate and length,
//! [`synth::Generator`] streams labelled windows with known structure, and [`metrics`] scores
//! predictions. Model code consumes [`Windows::to_tensors`] / [`Windows::batch`]; the
//! pretraining and fine-tuning losses are in [`crate::models::objectives`], the models and
//! their engine adapters in [`crate::models::signal`] (chosen through
//! [`crate::models::registry`]), in-memory batch sources in [`train`], and the bench-train
//! cases in [`crate::perf::biosignal`].
pub mod accel;
pub mod annotations;
pub mod bids;
pub mod edf;
pub mod finetune;
pub mod metrics;
pub mod montage;
pub mod pretrain;
pub mod resample;
pub mod spectral;
pub mod synth;
pub mod tensors;
pub mod train;
pub mod transfer;
pub mod transfer_report;
pub mod window;

use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array2, Array3, Axis};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
pub use window::Norm;

/// Largest |x| expected after p95 normalisation of a real signal (a peak 1000× the 95th
/// percentile of |x|); above it [`Windows::normalise`] warns.
pub const P95_SPIKE_LIMIT: f32 = 1000.0;

/// Windows of a bio-signal set, TF-C layout, shared by every reader.
#[derive(Debug, Clone)]
pub struct Windows {
    /// [N windows, C channels, L samples], f32, physical units unless normalised.
    pub samples: Array3<f32>,
    /// [N] class indices in 0..classes; `None` for unlabelled pools.
    pub labels: Option<Array1<i64>>,
    /// Sampling rate in Hz; `None` when a tensor file does not state it.
    pub rate: Option<f64>,
    /// C channel names (`ch0`, `ch1`, ... when the file has none).
    pub channels: Vec<String>,
    /// Number of classes K when known (file metadata or `--classes`).
    pub classes: Option<usize>,
    /// File(s) the windows came from, for messages.
    pub source: String,
    /// Free-form provenance written back as safetensors metadata (modality, seed, ...).
    pub meta: BTreeMap<String, String>,
}

impl Windows {
    /// Number of windows N.
    pub fn len(&self) -> usize {
        self.samples.dim().0
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn n_channels(&self) -> usize {
        self.samples.dim().1
    }
    /// Window length L in samples.
    pub fn window_len(&self) -> usize {
        self.samples.dim().2
    }
    /// Window duration in seconds (L / rate), when the rate is known.
    pub fn window_seconds(&self) -> Option<f64> {
        self.rate.map(|r| self.window_len() as f64 / r)
    }

    /// Windows per label, in label order (empty when unlabelled).
    pub fn label_counts(&self) -> BTreeMap<i64, usize> {
        let mut m = BTreeMap::new();
        if let Some(l) = &self.labels {
            for &v in l {
                *m.entry(v).or_insert(0) += 1;
            }
        }
        m
    }

    /// Checks the invariants every consumer relies on; errors name the source and the fault:
    /// NaN/inf samples (first window, channel and sample), labels count ≠ N, labels outside
    /// 0..classes (or negative), rate not positive, channel names ≠ C.
    pub fn validate(&self) -> Result<()> {
        let (n, c, l) = self.samples.dim();
        if let Some(((i, ch, t), v)) = self.samples.indexed_iter().find(|(_, v)| !v.is_finite()) {
            bail!(
                "{}: non-finite sample {v} at window {i}, channel {ch} ('{}'), sample {t} \
                 (of [N={n}, C={c}, L={l}])",
                self.source,
                self.channels.get(ch).map(String::as_str).unwrap_or("?")
            );
        }
        if self.channels.len() != c {
            bail!(
                "{}: {} channel names for {c} channels",
                self.source,
                self.channels.len()
            );
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                bail!("{}: sampling rate {r} Hz is not positive", self.source);
            }
        }
        if let Some(lab) = &self.labels {
            if lab.len() != n {
                bail!("{}: {} labels for {n} windows", self.source, lab.len());
            }
            for (i, &y) in lab.iter().enumerate() {
                let bad = y < 0 || self.classes.is_some_and(|k| y as usize >= k);
                if bad {
                    bail!(
                        "{}: label {y} of window {i} is outside the class set 0..{}",
                        self.source,
                        self.classes
                            .map(|k| (k - 1).to_string())
                            .unwrap_or_else(|| "(non-negative)".into())
                    );
                }
            }
        }
        Ok(())
    }

    /// Normalises each window's channels in place (see [`window::Norm`]). Prints a warning
    /// (and returns it) when p95 normalisation leaves values above [`P95_SPIKE_LIMIT`]: a
    /// mostly flat channel with spikes, whose 95th percentile is near 0, is scaled ~10⁴× and
    /// gives losses of ~10⁷ in training.
    pub fn normalise(&mut self, norm: Norm) -> Option<String> {
        window::normalise(&mut self.samples, norm);
        if norm != Norm::None {
            self.meta.insert("norm".into(), norm.name().into());
        }
        if norm != Norm::P95 {
            return None;
        }
        let mut count = 0usize;
        let mut worst: Option<(f32, usize, usize)> = None;
        for (i, w) in self.samples.axis_iter(Axis(0)).enumerate() {
            for (c, ch) in w.axis_iter(Axis(0)).enumerate() {
                let m = ch.iter().fold(0f32, |a, v| a.max(v.abs()));
                if m > P95_SPIKE_LIMIT {
                    count += 1;
                    if worst.is_none_or(|(b, _, _)| m > b) {
                        worst = Some((m, i, c));
                    }
                }
            }
        }
        let (m, i, c) = worst?;
        let msg = format!(
            "{}: p95 normalisation scaled {count} window-channel(s) above {P95_SPIKE_LIMIT} \
             (largest |x| = {m:.3e} in window {i}, channel '{}'): a mostly flat channel with \
             spikes; check the channel, leave it out (--channels) or use --norm zscore",
            self.source,
            self.channels.get(c).map(String::as_str).unwrap_or("?")
        );
        eprintln!("warning: {msg}");
        Some(msg)
    }

    /// The windows at `indices` (in that order) as a new dataset.
    pub fn subset(&self, indices: &[usize]) -> Windows {
        let mut d = self.clone();
        d.samples = self.samples.select(Axis(0), indices);
        d.labels = self.labels.as_ref().map(|l| l.select(Axis(0), indices));
        d
    }

    /// All windows as tch tensors on `device`: samples f32 [N, C, L], labels i64 [N].
    pub fn to_tensors(&self, device: tch::Device) -> Result<(tch::Tensor, Option<tch::Tensor>)> {
        let all: Vec<usize> = (0..self.len()).collect();
        self.batch(&all, device)
    }

    /// The windows at `indices` as tch tensors on `device`: samples f32 [B, C, L], labels
    /// i64 [B] (None for unlabelled sets).
    pub fn batch(
        &self,
        indices: &[usize],
        device: tch::Device,
    ) -> Result<(tch::Tensor, Option<tch::Tensor>)> {
        let (_, c, l) = self.samples.dim();
        let mut buf = Vec::with_capacity(indices.len() * c * l);
        for &i in indices {
            if i >= self.len() {
                bail!(
                    "{}: window {i} out of range (N = {})",
                    self.source,
                    self.len()
                );
            }
            buf.extend(self.samples.index_axis(Axis(0), i).iter().copied());
        }
        let x = tch::Tensor::from_slice(&buf)
            .reshape([indices.len() as i64, c as i64, l as i64])
            .to_device(device);
        let y = self.labels.as_ref().map(|lab| {
            let v: Vec<i64> = indices.iter().map(|&i| lab[i]).collect();
            tch::Tensor::from_slice(&v).to_device(device)
        });
        Ok((x, y))
    }

    /// Writes the set as TF-C-style safetensors (see [`tensors::write`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        tensors::write(self, path)
    }

    /// Concatenates sets along N. Errors name the first file whose channel count, channel
    /// names, rate or window length differs from the first set's, or which is labelled when
    /// the first is not (or the reverse).
    pub fn concat(sets: &[Windows]) -> Result<Windows> {
        let Some(first) = sets.first() else {
            bail!("no datasets to concatenate");
        };
        for d in &sets[1..] {
            consistent(first, d)?;
        }
        let views: Vec<_> = sets.iter().map(|d| d.samples.view()).collect();
        let samples = ndarray::concatenate(Axis(0), &views)?;
        let labels = if first.labels.is_some() {
            let v: Vec<_> = sets
                .iter()
                .map(|d| d.labels.as_ref().unwrap().view())
                .collect();
            Some(ndarray::concatenate(Axis(0), &v)?)
        } else {
            None
        };
        let mut out = first.clone();
        out.samples = samples;
        out.labels = labels;
        out.classes = sets.iter().filter_map(|d| d.classes).max();
        out.source = sets
            .iter()
            .map(|d| d.source.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        out.validate()?;
        Ok(out)
    }
}

/// Checks that `d` can be pooled with `first`; the error names `d`'s file and the fault.
pub fn consistent(first: &Windows, d: &Windows) -> Result<()> {
    let src = &d.source;
    if d.n_channels() != first.n_channels() {
        bail!(
            "{src}: channel count mismatch: {} channels, but {} has {}",
            d.n_channels(),
            first.source,
            first.n_channels()
        );
    }
    if d.channels != first.channels {
        bail!(
            "{src}: channel names {:?} differ from {:?} in {}",
            d.channels,
            first.channels,
            first.source
        );
    }
    let rate_differs = match (d.rate, first.rate) {
        (Some(a), Some(b)) => (a - b).abs() > 1e-9 * b,
        (None, None) => false,
        _ => true,
    };
    if rate_differs {
        bail!(
            "{src}: sampling rate mismatch: {} but {} has {}",
            fmt_rate(d.rate),
            first.source,
            fmt_rate(first.rate)
        );
    }
    if d.window_len() != first.window_len() {
        bail!(
            "{src}: window length mismatch: {} samples, but {} has {}",
            d.window_len(),
            first.source,
            first.window_len()
        );
    }
    if d.labels.is_some() != first.labels.is_some() {
        bail!(
            "{src}: {} but {} is {}",
            if d.labels.is_some() {
                "labelled"
            } else {
                "unlabelled"
            },
            first.source,
            if first.labels.is_some() {
                "labelled"
            } else {
                "unlabelled"
            }
        );
    }
    Ok(())
}

/// A rate for messages: "128 Hz" or "unknown rate".
pub fn fmt_rate(r: Option<f64>) -> String {
    r.map(|r| format!("{r} Hz"))
        .unwrap_or_else(|| "unknown rate".into())
}

/// How files become windows. Defaults: EDF/BDF 10-s windows (BIOT's clips), CSV 2.56-s windows
/// (HAR's 128 samples at 50 Hz), hop = window, no normalisation.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Window length in seconds for continuous recordings (EDF/BDF/CSV).
    pub window: Option<f64>,
    /// Hop between window starts in seconds (default: the window length, no overlap).
    pub hop: Option<f64>,
    /// Common rate (Hz) for recordings whose channels have different rates: every channel is
    /// resampled to it with the sinc resampler.
    pub common_rate: Option<f64>,
    /// Keep only these channels, in this order.
    pub channels: Option<Vec<String>>,
    /// Per-channel normalisation of each window.
    pub norm: Norm,
    /// Number of classes K: labels must lie in 0..K (overrides file metadata).
    pub classes: Option<usize>,
    /// Sampling rate (Hz) of tensor files that do not state one in their metadata.
    pub input_rate: Option<f64>,
    /// Build this bipolar montage from an EDF/BDF's channels (after label normalisation,
    /// see [`montage`]) instead of taking `channels`.
    pub montage: Option<montage::Montage>,
    /// Label EDF/BDF windows from a Sleep-EDF hypnogram (annotation-only EDF+ beside the PSG
    /// file): AASM classes W, N1, N2, N3, REM ([`annotations::sleep_stage`]).
    pub hypnogram: Option<PathBuf>,
    /// Label EDF+ windows from the file's own annotations (classes: the sorted distinct texts).
    pub annotation_labels: bool,
}

/// A continuous multichannel recording at one rate, before windowing.
#[derive(Debug, Clone)]
pub struct Recording {
    pub source: PathBuf,
    pub channels: Vec<String>,
    /// Hz.
    pub rate: f64,
    /// [C, T] physical units.
    pub data: Array2<f32>,
    /// Per-sample class labels (accelerometer CSV `label` column), length T.
    pub labels: Option<Vec<i64>>,
    /// EDF+ annotations (onsets in seconds after the first sample).
    pub annotations: Vec<edf::Annotation>,
    /// Seconds between the header start time and the first sample.
    pub start_subsecond: f64,
    /// Sample indices where continuity breaks (sample `b − 1` and `b` are not adjacent in
    /// time: an accelerometer logger's pause, an EDF+D gap), increasing; windows never span
    /// one.
    pub breaks: Vec<usize>,
    /// File time (seconds after the first sample) of the sample at each of `breaks`, when
    /// known (EDF+D record onsets); empty otherwise, and then time `t` is sample `t · rate`.
    /// Annotation onsets, in file time, are placed on samples through it.
    pub segment_onsets: Vec<f64>,
}

impl Recording {
    /// Where a window of `len` samples that starts at gap-filled sample `g` (file time
    /// `g / rate`) lies in `data`: its first column, or None when it would cross a gap or
    /// fall in one. Without known segment onsets, `g` itself (when it fits).
    pub fn window_at(&self, g: usize, len: usize) -> Option<usize> {
        let t = self.data.ncols();
        let known = self.segment_onsets.len() == self.breaks.len();
        let mut seg_s = vec![0];
        let mut seg_g = vec![0i64];
        for (k, &b) in self.breaks.iter().enumerate() {
            seg_s.push(b);
            seg_g.push(if known {
                (self.segment_onsets[k] * self.rate).round() as i64
            } else {
                b as i64
            });
        }
        seg_s.push(t);
        (0..seg_g.len()).find_map(|k| {
            let off = g as i64 - seg_g[k];
            let seg_len = (seg_s[k + 1] - seg_s[k]) as i64;
            (off >= 0 && off + len as i64 <= seg_len).then(|| seg_s[k] + off as usize)
        })
    }

    /// Duration in seconds (T / rate).
    pub fn duration(&self) -> f64 {
        self.data.ncols() as f64 / self.rate
    }

    /// Cuts windows of `window_s` seconds every `hop_s` seconds (lengths rounded to samples),
    /// within each continuous segment (between [`Recording::breaks`]): the hop restarts at
    /// every segment and a window never spans a break.
    /// A labelled recording gives each window the label most of its samples carry (ties: the
    /// smallest). Errors if the window is shorter than one sample or longer than the recording.
    pub fn windows(&self, window_s: f64, hop_s: f64) -> Result<Windows> {
        let len = (window_s * self.rate).round() as usize;
        let hop = (hop_s * self.rate).round() as usize;
        if len == 0 || hop == 0 {
            bail!(
                "{}: window {window_s} s / hop {hop_s} s is under one sample at {} Hz",
                self.source.display(),
                self.rate
            );
        }
        if len > self.data.ncols() {
            bail!(
                "{}: window of {window_s} s is longer than the recording ({:.3} s)",
                self.source.display(),
                self.duration()
            );
        }
        // Window start samples, segment by segment.
        let t = self.data.ncols();
        let mut bounds = vec![0];
        bounds.extend(self.breaks.iter().copied().filter(|&b| b > 0 && b < t));
        bounds.push(t);
        let starts: Vec<usize> = bounds
            .windows(2)
            .flat_map(|w| {
                let n = window::window_count(w[1] - w[0], len, hop);
                (0..n).map(move |i| w[0] + i * hop)
            })
            .collect();
        if starts.is_empty() {
            bail!(
                "{}: no continuous segment is as long as one window of {window_s} s (the \
                 recording has {} pause(s); longest segment {:.3} s)",
                self.source.display(),
                bounds.len() - 2,
                bounds.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) as f64 / self.rate
            );
        }
        let (c, _) = self.data.dim();
        let mut samples = ndarray::Array3::zeros((starts.len(), c, len));
        for (i, &s0) in starts.iter().enumerate() {
            samples
                .index_axis_mut(Axis(0), i)
                .assign(&self.data.slice(ndarray::s![.., s0..s0 + len]));
        }
        let labels = self.labels.as_ref().map(|lab| {
            Array1::from_iter(starts.iter().map(|&s0| {
                let mut counts = BTreeMap::new();
                for &y in &lab[s0..s0 + len] {
                    *counts.entry(y).or_insert(0usize) += 1;
                }
                let best = counts.values().copied().max().unwrap_or(0);
                counts
                    .into_iter()
                    .find(|&(_, c)| c == best)
                    .map(|(y, _)| y)
                    .unwrap_or(0)
            }))
        });
        let mut meta = BTreeMap::new();
        meta.insert("window_s".into(), window_s.to_string());
        meta.insert("hop_s".into(), hop_s.to_string());
        Ok(Windows {
            samples,
            labels,
            rate: Some(self.rate),
            channels: self.channels.clone(),
            classes: None,
            source: self.source.display().to_string(),
            meta,
        })
    }
}

/// The kind of file a path holds, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Edf,
    Tensors,
    AccelCsv,
}

/// Classifies `path` by extension (case-insensitive); errors on anything else.
pub fn file_kind(path: &Path) -> Result<FileKind> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    Ok(match ext.as_str() {
        "edf" | "bdf" => FileKind::Edf,
        "safetensors" | "npy" | "npz" => FileKind::Tensors,
        "csv" => FileKind::AccelCsv,
        _ => bail!(
            "{}: unknown extension '{ext}' (expected .edf, .bdf, .safetensors, .npy, .npz or .csv)",
            path.display()
        ),
    })
}

/// Default window lengths, seconds, for continuous formats.
pub const EDF_WINDOW_S: f64 = 10.0;
pub const ACCEL_WINDOW_S: f64 = 2.56;

/// Reads one file into windows (see [`LoadOptions`]), applies `--classes`, validates
/// (finite samples, labels in the class set) and normalises. Errors name the file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Windows> {
    let mut ds = match file_kind(path)? {
        FileKind::Edf if bids::is_bids(path) => bids::load(path, opts)?,
        FileKind::Edf => {
            let f = edf::read(path)?;
            for w in &f.warnings {
                eprintln!("warning: {}: {w}", path.display());
            }
            let rec = match opts.montage {
                None => f.to_recording(opts.channels.as_deref(), opts.common_rate)?,
                Some(m) => {
                    if opts.channels.is_some() {
                        bail!("{}: give --channels or --montage, not both", path.display());
                    }
                    let labels: Vec<String> = f.signals.iter().map(|s| s.label.clone()).collect();
                    let names = montage::needed(&labels, m);
                    let rec = if names.is_empty() {
                        Recording {
                            source: path.to_path_buf(),
                            channels: labels,
                            rate: 1.0,
                            data: Array2::zeros((f.signals.len(), 0)),
                            labels: None,
                            annotations: Vec::new(),
                            start_subsecond: 0.0,
                            breaks: Vec::new(),
                            segment_onsets: Vec::new(),
                        }
                    } else {
                        f.to_recording(Some(&names), opts.common_rate)?
                    };
                    montage::apply(&rec, m)?
                }
            };
            let w = opts.window.unwrap_or(EDF_WINDOW_S);
            let hop = opts.hop.unwrap_or(w);
            match (&opts.hypnogram, opts.annotation_labels) {
                (Some(h), _) => {
                    let hyp = edf::read(h)?;
                    let events = annotations::from_edf(&hyp.annotations);
                    let mut ds = annotations::labelled_windows(
                        &rec,
                        &events,
                        &annotations::sleep_stage,
                        annotations::SLEEP_CLASSES.len(),
                        w,
                        hop,
                    )
                    .map_err(|e| anyhow::anyhow!("{e:#} (hypnogram {})", h.display()))?
                    .0;
                    ds.meta.insert(
                        "classes".into(),
                        annotations::SLEEP_CLASSES
                            .iter()
                            .enumerate()
                            .map(|(i, n)| format!("{i} = {n}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    );
                    ds
                }
                (None, true) => {
                    let events = annotations::from_edf(&f.annotations);
                    let map = annotations::class_map(&events);
                    annotations::labelled_windows(
                        &rec,
                        &events,
                        &|d| map.get(d).copied(),
                        map.len(),
                        w,
                        hop,
                    )?
                    .0
                }
                (None, false) => rec.windows(w, hop)?,
            }
        }
        _ if opts.montage.is_some() => bail!(
            "{}: --montage applies to EDF/BDF recordings (named electrodes), not to this file",
            path.display()
        ),
        FileKind::AccelCsv => {
            let rec = accel::read(path)?;
            let w = opts.window.unwrap_or(ACCEL_WINDOW_S);
            let ds = rec.windows(w, opts.hop.unwrap_or(w))?;
            select_channels(ds, opts.channels.as_deref())?
        }
        FileKind::Tensors => {
            let mut ds = tensors::read(path)?;
            if ds.rate.is_none() {
                ds.rate = opts.input_rate;
            }
            select_channels(ds, opts.channels.as_deref())?
        }
    };
    if let Some(k) = opts.classes {
        ds.classes = Some(k);
    }
    ds.validate()?;
    check_zero_based(&ds)?;
    ds.normalise(opts.norm);
    Ok(ds)
}

/// Classes are numbered 0..K−1. Labels that are exactly 1..K (a 1-based export, K ≥ 2) with
/// no class count given would leave class 0 empty and fail much later in training: refused
/// here, naming the file.
pub fn check_zero_based(ds: &Windows) -> Result<()> {
    if ds.classes.is_some() {
        return Ok(());
    }
    let counts = ds.label_counts();
    let k = counts.len() as i64;
    if k >= 2 && counts.keys().copied().eq(1..=k) {
        bail!(
            "{}: labels run 1..{k} with no label 0: classes are numbered from 0 (0..{}); \
             renumber the labels, or give --classes {} if class 0 exists but is absent here",
            ds.source,
            k - 1,
            k + 1
        );
    }
    Ok(())
}

/// Loads several files and pools them; a file whose channels, rate or window length differ
/// from the first's is an error naming it.
pub fn load_all(paths: &[PathBuf], opts: &LoadOptions) -> Result<Windows> {
    let sets = paths
        .iter()
        .map(|p| load(p, opts))
        .collect::<Result<Vec<_>>>()?;
    Windows::concat(&sets)
}

fn select_channels(ds: Windows, channels: Option<&[String]>) -> Result<Windows> {
    let Some(names) = channels else {
        return Ok(ds);
    };
    let idx = names
        .iter()
        .map(|n| {
            ds.channels.iter().position(|c| c == n).with_context(|| {
                format!(
                    "{}: no channel '{n}' (channels: {})",
                    ds.source,
                    ds.channels.join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = ds.clone();
    out.samples = ds.samples.select(Axis(1), &idx);
    out.channels = names.to_vec();
    Ok(out)
}
