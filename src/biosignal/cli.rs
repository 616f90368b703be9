//! `brainscale biosignal check | synth | resample`: argument parsing and printed summaries;
//! the work is done in the sibling modules.
use super::resample::{self, Method};
use super::synth::{Generator, Modality, Split};
use super::{accel, consistent, edf, file_kind, load, window, Dataset, FileKind, LoadOptions};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BiosignalCommand {
    /// Report channels, rates, durations, windows and label counts of bio-signal files, and
    /// every fault (corrupt header, record size mismatch, NaN/inf, labels outside the class
    /// set, channel/rate/length mismatch across files); exits non-zero on any fault.
    Check(CheckArgs),
    /// Write synthetic windows with ground truth (TF-C-style safetensors).
    Synth(SynthArgs),
    /// Bring a set to another rate and window length (sinc, linear, stretch or pad).
    Resample(ResampleArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// .edf, .bdf, .safetensors, .npy, .npz or .csv files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub load: LoadOptions,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(long, value_enum)]
    pub modality: Modality,
    /// Number of windows.
    #[arg(long)]
    pub n: usize,
    /// Write a labelled fine-tuning set (split `--split`) instead of an unlabelled pool.
    #[arg(long)]
    pub labelled: bool,
    /// Split of a labelled set (streams never overlap).
    #[arg(long, value_enum, default_value = "train")]
    pub split: Split,
    /// Keep the true classes of a pretraining pool as `labels` (for analysis).
    #[arg(long)]
    pub keep_labels: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// First window index in the stream.
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Sampling rate in Hz (default: the modality's).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Window length in samples (default: the modality's).
    #[arg(long)]
    pub length: Option<usize>,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ResampleArgs {
    pub input: PathBuf,
    /// Target rate, Hz.
    #[arg(long)]
    pub rate: f64,
    /// Target window length, samples.
    #[arg(long)]
    pub length: usize,
    #[arg(long, value_enum, default_value = "sinc")]
    pub method: Method,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub load: LoadOptions,
}

/// Runs one `biosignal` subcommand.
pub fn run(cmd: &BiosignalCommand) -> Result<()> {
    match cmd {
        BiosignalCommand::Check(a) => {
            let (text, faults) = check(&a.files, &a.load);
            print!("{text}");
            if !faults.is_empty() {
                for f in &faults {
                    eprintln!("fault: {f}");
                }
                bail!("{} fault(s) found", faults.len());
            }
        }
        BiosignalCommand::Synth(a) => {
            let spec = a.modality.spec();
            let g = Generator::new(a.seed).with_shape(
                a.modality,
                a.rate.unwrap_or(spec.rate),
                a.length.unwrap_or(spec.length),
            )?;
            let split = if a.labelled { a.split } else { Split::Pretrain };
            let ds = g.dataset(a.modality, split, a.start, a.n, a.keep_labels);
            ds.save(&a.out)?;
            println!(
                "wrote {}: {} {} windows [{}, {}, {}] at {} Hz, {}",
                a.out.display(),
                ds.len(),
                a.modality.name(),
                ds.len(),
                ds.n_channels(),
                ds.window_len(),
                g.spec(a.modality).rate,
                if ds.labels.is_some() {
                    format!(
                        "labelled ({}), counts {:?}",
                        split.name(),
                        ds.label_counts()
                    )
                } else {
                    "unlabelled pool".into()
                }
            );
        }
        BiosignalCommand::Resample(a) => {
            let ds = load(&a.input, &a.load)?;
            let out = resample::align(&ds, a.rate, a.length, a.method)?;
            out.save(&a.out)?;
            println!(
                "wrote {}: {} windows [{}, {}] at {} Hz from [{}, {}] at {} ({})",
                a.out.display(),
                out.len(),
                out.n_channels(),
                out.window_len(),
                a.rate,
                ds.n_channels(),
                ds.window_len(),
                super::fmt_rate(ds.rate),
                a.method.name()
            );
        }
    }
    Ok(())
}

/// The report `biosignal check` prints, and its faults (empty = all files usable together).
pub fn check(files: &[PathBuf], opts: &LoadOptions) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut faults = Vec::new();
    let mut loaded: Vec<Dataset> = Vec::new();
    for path in files {
        let _ = writeln!(out, "{}", path.display());
        if let Err(e) = describe(path, opts, &mut out) {
            faults.push(format!("{e:#}"));
            let _ = writeln!(out, "  FAULT: {e:#}");
            continue;
        }
        if let Some(note) = needs_common_rate(path, opts) {
            let _ = writeln!(out, "  note: {note}");
            continue;
        }
        match load(path, opts) {
            Ok(ds) => {
                let _ = writeln!(
                    out,
                    "  windows: {} × [{} ch, {} samples]{}{}",
                    ds.len(),
                    ds.n_channels(),
                    ds.window_len(),
                    ds.window_seconds()
                        .map(|s| format!(" = {s:.3} s"))
                        .unwrap_or_default(),
                    if opts.norm != window::Norm::None {
                        format!(", normalised {}", opts.norm.name())
                    } else {
                        String::new()
                    }
                );
                if ds.labels.is_some() {
                    let _ = writeln!(
                        out,
                        "  labels: {:?}{}",
                        ds.label_counts(),
                        ds.classes
                            .map(|k| format!(" of {k} classes"))
                            .unwrap_or_default()
                    );
                } else {
                    let _ = writeln!(out, "  labels: none");
                }
                if let Some(first) = loaded.first() {
                    if let Err(e) = consistent(first, &ds) {
                        faults.push(format!("{e:#}"));
                        let _ = writeln!(out, "  FAULT: {e:#}");
                    }
                }
                loaded.push(ds);
            }
            Err(e) => {
                faults.push(format!("{e:#}"));
                let _ = writeln!(out, "  FAULT: {e:#}");
            }
        }
    }
    let _ = writeln!(out, "{} file(s), {} fault(s)", files.len(), faults.len());
    (out, faults)
}

/// For an EDF/BDF whose selected channels have different rates and no `--common-rate`:
/// the reason it cannot be windowed as is (not a fault of the file).
fn needs_common_rate(path: &std::path::Path, opts: &LoadOptions) -> Option<String> {
    if opts.common_rate.is_some() || file_kind(path).ok()? != FileKind::Edf {
        return None;
    }
    let f = edf::read(path).ok()?;
    let rates: Vec<f64> = f
        .signals
        .iter()
        .filter(|s| opts.channels.as_ref().is_none_or(|c| c.contains(&s.label)))
        .map(|s| s.rate)
        .collect();
    let mixed = rates.iter().any(|&r| r != rates[0]);
    mixed.then(|| {
        "channels have different rates: windows need --common-rate R (sinc-resampled) or \
         --channels of one rate"
            .to_string()
    })
}

/// Format-specific facts (channels, rates, units, duration, annotations) before windowing.
fn describe(path: &std::path::Path, opts: &LoadOptions, out: &mut String) -> Result<()> {
    match file_kind(path)? {
        FileKind::Edf => {
            let f = edf::read(path)?;
            let _ = writeln!(
                out,
                "  {}: {} channels, {} records × {} s = {} s, start {} {} + {} s",
                f.kind.name(),
                f.signals.len(),
                f.n_records,
                f.record_duration,
                f.duration(),
                f.start_date,
                f.start_time,
                f.start_subsecond
            );
            for s in &f.signals {
                let _ = writeln!(
                    out,
                    "    {:<16} {:>8} Hz  {:<6} [{}, {}]",
                    s.label, s.rate, s.unit, s.physical_min, s.physical_max
                );
            }
            let _ = writeln!(out, "  annotations: {}", f.annotations.len());
            for a in f.annotations.iter().take(10) {
                let _ = writeln!(
                    out,
                    "    {:>10.4} s {}{}",
                    a.onset,
                    a.text,
                    a.duration.map(|d| format!(" ({d} s)")).unwrap_or_default()
                );
            }
            let w = opts.window.unwrap_or(super::EDF_WINDOW_S);
            let hop = opts.hop.unwrap_or(w);
            let n = if f.duration() >= w {
                ((f.duration() - w) / hop + 1e-9).floor() as usize + 1
            } else {
                0
            };
            let _ = writeln!(out, "  {w} s windows every {hop} s: {n}");
        }
        FileKind::AccelCsv => {
            let (rec, info) = accel::read_with_info(path)?;
            let _ = writeln!(
                out,
                "  accelerometer CSV: {} rows, {:.4} Hz, {:.3} s, timing jitter {:.2}%{}",
                info.rows,
                rec.rate,
                rec.duration(),
                100.0 * info.jitter,
                if info.regridded {
                    " (interpolated onto a uniform grid)"
                } else {
                    ""
                }
            );
        }
        FileKind::Tensors => {}
    }
    Ok(())
}
