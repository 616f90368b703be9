//! EDF, EDF+ and BDF reader: channels, per-channel rates, digital → physical scaling, EDF+
//! annotations (TAL) and the sub-second start time.
//!
//! Formats (byte layouts from the specifications):
//! - EDF: Kemp et al. 1992, "A simple format for exchange of digitized polygraphic recordings",
//!   Electroencephalogr. Clin. Neurophysiol. 82:391-393. A 256-byte ASCII header, then 256 bytes
//!   per signal (fields stored signal after signal: label 16, transducer 80, physical dimension 8,
//!   physical min 8, physical max 8, digital min 8, digital max 8, prefiltering 80, samples per
//!   record 8, reserved 32), then data records holding each signal's samples in turn as 16-bit
//!   little-endian two's complement integers.
//! - EDF+: Kemp & Olivan 2003, Clin. Neurophysiol. 114:1755-1761 (<https://www.edfplus.info>).
//!   Reserved field starts with `EDF+C` (contiguous) or `EDF+D`; signals labelled
//!   `EDF Annotations` hold Time-stamped Annotation Lists (TALs):
//!   `+onset[\x15duration]\x14text\x14[text\x14...]\x00`. The first TAL of each record is the
//!   record's time-keeping onset (seconds after the header start time); the first record's onset
//!   is the recording's sub-second start.
//! - BDF (BioSemi): same layout, first byte 0xFF then `BIOSEMI`, 24-bit little-endian samples.
//!
//! No crate was used: the Rust EDF crates on crates.io (edfplus 0.1, edf-reader 0.6, edf-rs 0.2)
//! are young or unmaintained, and none documents BDF plus EDF+ annotations. The reader is checked
//! against pyEDFlib on the three real files in `../shared/data/biosignal/edf` (tests/biosignal_data.rs).
use crate::biosignal::{resample, Recording};
use anyhow::{bail, Context, Result};
use ndarray::Array2;
use std::path::{Path, PathBuf};

/// Which variant of the format a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdfKind {
    /// Plain EDF (1992): 16-bit samples, no annotations.
    Edf,
    /// EDF+ (contiguous `EDF+C` or discontinuous `EDF+D`), 16-bit samples.
    EdfPlus { discontinuous: bool },
    /// BioSemi BDF: 24-bit samples (BDF+ when the reserved field says `BDF+C`/`BDF+D`).
    Bdf { plus: bool },
}

impl EdfKind {
    /// Bytes per stored sample: 2 (EDF) or 3 (BDF).
    pub fn sample_bytes(self) -> usize {
        match self {
            EdfKind::Bdf { .. } => 3,
            _ => 2,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            EdfKind::Edf => "EDF",
            EdfKind::EdfPlus {
                discontinuous: false,
            } => "EDF+C",
            EdfKind::EdfPlus {
                discontinuous: true,
            } => "EDF+D",
            EdfKind::Bdf { plus: false } => "BDF",
            EdfKind::Bdf { plus: true } => "BDF+",
        }
    }
}

/// One ordinary (non-annotation) signal.
#[derive(Debug, Clone)]
pub struct Signal {
    /// Label as stored, trimmed (e.g. `Fp1`, `EEG Fpz-Cz`).
    pub label: String,
    /// Physical dimension of `data`: `uV` for every voltage channel (converted from the
    /// file's V, mV, µV or nV, see [`voltage_scale`]), else the file's dimension as stored.
    pub unit: String,
    /// Physical dimension as stored in the header (latin-1 decoded, trimmed).
    pub unit_in_file: String,
    pub transducer: String,
    pub prefiltering: String,
    /// Sampling rate, Hz = samples per record / record duration.
    pub rate: f64,
    pub samples_per_record: usize,
    pub physical_min: f64,
    pub physical_max: f64,
    pub digital_min: i32,
    pub digital_max: i32,
    /// Samples in physical units (µV for voltages), length = records × samples per record;
    /// empty when `fault` is set.
    pub data: Vec<f32>,
    /// Why this signal cannot be read (e.g. CHB-MIT's dummy channel `-` with digital range
    /// 0..0); such a signal is an error only when it is selected ([`EdfFile::to_recording`]).
    pub fault: Option<String>,
}

impl Signal {
    /// Gain and offset of the linear map digital → physical:
    /// `phys = gain · (dig − digital_min) + physical_min` with
    /// `gain = (physical_max − physical_min) / (digital_max − digital_min)` (EDF spec; the gain
    /// may be negative, when physical max < physical min, as in some clinical exports).
    pub fn gain(&self) -> f64 {
        (self.physical_max - self.physical_min) / (self.digital_max - self.digital_min) as f64
    }
    /// Duration in seconds.
    pub fn duration(&self) -> f64 {
        self.data.len() as f64 / self.rate
    }
}

/// Record onsets closer than this (seconds) to the end of the previous record are contiguous:
/// TAL onsets are decimal strings, so a contiguous EDF+D can differ by rounding.
const GAP_TOL_S: f64 = 1e-6;

/// One EDF+ annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Seconds after the first sample (the TAL onset minus the sub-second start, as EDFlib).
    pub onset: f64,
    /// Seconds, `None` when the TAL gives no duration.
    pub duration: Option<f64>,
    pub text: String,
}

/// A whole EDF/EDF+/BDF file in memory.
#[derive(Debug, Clone)]
pub struct EdfFile {
    pub path: PathBuf,
    pub kind: EdfKind,
    pub patient: String,
    pub recording: String,
    /// Header start date `dd.mm.yy` and time `hh.mm.ss`, as stored.
    pub start_date: String,
    pub start_time: String,
    /// Seconds between the header start time and the first sample (EDF+: onset of the first
    /// record's time-keeping TAL; 0 for plain EDF/BDF).
    pub start_subsecond: f64,
    pub n_records: usize,
    /// Seconds per data record.
    pub record_duration: f64,
    /// Ordinary signals (annotation channels removed).
    pub signals: Vec<Signal>,
    pub annotations: Vec<Annotation>,
    /// Things read but worth telling the user (duplicate labels renamed, unknown units):
    /// printed by [`crate::biosignal::load`] and listed by `biosignal check`.
    pub warnings: Vec<String>,
    /// Onset of each data record, seconds after the first sample (file time): `r · record
    /// duration` for contiguous files, the time-keeping TAL onsets for EDF+D, which may
    /// leave gaps (Kemp & Olivan 2003, EDF+ §2.2.4).
    pub record_onsets: Vec<f64>,
}

impl EdfFile {
    /// Recording duration, seconds (records × record duration).
    pub fn duration(&self) -> f64 {
        self.n_records as f64 * self.record_duration
    }

    /// The gaps of an EDF+D: `(record index after the gap, gap seconds)`, increasing; empty
    /// for a contiguous file. Gaps under a microsecond (TAL rounding) are not gaps.
    pub fn gaps(&self) -> Vec<(usize, f64)> {
        let d = self.record_duration;
        (1..self.record_onsets.len())
            .filter_map(|r| {
                let g = self.record_onsets[r] - (self.record_onsets[r - 1] + d);
                (g > GAP_TOL_S).then_some((r, g))
            })
            .collect()
    }
}

/// Raw per-signal header fields.
struct SignalHeader {
    label: String,
    transducer: String,
    unit: String,
    physical_min: f64,
    physical_max: f64,
    digital_min: i32,
    digital_max: i32,
    prefiltering: String,
    samples_per_record: usize,
}

/// A header field as text: bytes up to the first NUL (C writers pad with NULs instead of
/// spaces), decoded as latin-1 (each byte its code point, as MNE's reader does, so "Cânula"
/// keeps its accent), trimmed.
fn latin1(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..end]
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Factor that converts a physical dimension to µV, `None` when it is not a voltage.
/// Accepted (case-insensitive, spaces ignored): `V`/`volt(s)`, `mV`/`millivolt(s)`,
/// `uV`/`µV`/`μV`/`mcV`/`microvolt(s)`/`micro V` and their UTF-8 bytes read as latin-1
/// (`Âµ`, `Î¼`) or Shift-JIS μ read as latin-1 (as MNE accepts), `nV`/`nanovolt(s)`, `kV`.
pub fn voltage_scale(unit: &str) -> Option<f64> {
    let u: String = unit
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    let u = u
        .replace("âµ", "u")
        .replace("î¼", "u")
        .replace("\u{83}ê", "u")
        .replace(['µ', 'μ'], "u");
    let u = u
        .strip_suffix('s')
        .filter(|x| x.ends_with("volt"))
        .unwrap_or(&u);
    let prefix = u.strip_suffix("volt").or_else(|| u.strip_suffix('v'))?;
    Some(match prefix {
        "" => 1e6,
        "m" | "milli" => 1e3,
        "u" | "mc" | "micro" => 1.0,
        "n" | "nano" => 1e-3,
        "k" | "kilo" => 1e9,
        _ => return None,
    })
}

/// Physical dimensions that are known and not voltages (kept as stored, no warning).
fn known_other_unit(unit: &str) -> bool {
    const KNOWN: &[&str] = &[
        "", "%", "degc", "°c", "degf", "k", "bpm", "1/min", "mmhg", "cmh2o", "mbar", "pa", "hpa",
        "g", "mg", "m/s^2", "m/s2", "m/s²", "ohm", "kohm", "us", "ms", "s", "hz", "l/s", "l/min",
        "ml", "l", "cm", "mm", "m", "a.u.", "au", "%spo2", "nm", "lux", "deg", "rad", "-", "n",
        "cnt", "counts", "kg", "mv/v",
    ];
    let u = unit.trim().to_lowercase();
    KNOWN.contains(&u.as_str())
}

/// Renames duplicate labels as MNE does (`_unique_channel_names`): every occurrence of a
/// repeated label `X` becomes `X-0`, `X-1`, ... (a letter suffix when that name is taken).
/// Returns the warning, `None` when the labels were unique.
pub fn rename_duplicates(labels: &mut [String]) -> Option<String> {
    let mut dups: Vec<String> = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        if labels[..i].contains(l) && !dups.contains(l) {
            dups.push(l.clone());
        }
    }
    if dups.is_empty() {
        return None;
    }
    for stem in &dups {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| &labels[i] == stem).collect();
        for (k, &i) in idx.iter().enumerate() {
            let candidates =
                std::iter::once(k.to_string()).chain(('a'..='z').map(|c| c.to_string()));
            for suffix in candidates {
                let name = format!("{stem}-{suffix}");
                if !labels.contains(&name) {
                    labels[i] = name;
                    break;
                }
            }
        }
    }
    Some(format!(
        "channel labels are not unique, found duplicates for {}: renamed with running numbers \
         (as MNE): {}",
        dups.iter()
            .map(|d| format!("'{d}'"))
            .collect::<Vec<_>>()
            .join(", "),
        labels.join(", ")
    ))
}

/// Reads an EDF, EDF+ or BDF file. Errors name the file, the field (and signal) and the fault:
/// truncated header, unparsable numbers, header size ≠ 256·(signals+1), digital max ≤ min,
/// physical max = min, record count inconsistent with the file size, EDF+D with gaps.
pub fn read(path: &Path) -> Result<EdfFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes, path).with_context(|| format!("{}: not a valid EDF/BDF file", path.display()))
}

/// Parses EDF/BDF bytes; `path` is only used in messages and stored in the result.
pub fn parse(bytes: &[u8], path: &Path) -> Result<EdfFile> {
    if bytes.len() < 256 {
        bail!(
            "header truncated: {} bytes, the fixed header alone is 256",
            bytes.len()
        );
    }
    let field = |off: usize, len: usize| latin1(&bytes[off..off + len]);
    let version = &bytes[0..8];
    let bdf = version[0] == 0xFF && &version[1..8] == b"BIOSEMI";
    if !bdf && field(0, 8) != "0" {
        bail!(
            "version field is {:?}: expected \"0\" (EDF) or 0xFF\"BIOSEMI\" (BDF)",
            String::from_utf8_lossy(version)
        );
    }
    let reserved = field(192, 44);
    let kind = if bdf {
        EdfKind::Bdf {
            plus: reserved.starts_with("BDF+"),
        }
    } else if reserved.starts_with("EDF+") {
        EdfKind::EdfPlus {
            discontinuous: reserved.starts_with("EDF+D"),
        }
    } else {
        EdfKind::Edf
    };
    let header_bytes: usize = num(&field(184, 8), "header size (bytes 184-191)")?;
    let n_records_field: i64 = num(&field(236, 8), "number of data records (bytes 236-243)")?;
    let record_duration: f64 = num(&field(244, 8), "data record duration (bytes 244-251)")?;
    let ns: usize = num(&field(252, 4), "number of signals (bytes 252-255)")?;
    if ns == 0 {
        bail!("number of signals is 0");
    }
    if header_bytes != 256 * (ns + 1) {
        bail!(
            "header size field says {header_bytes} bytes but {ns} signals need 256·({ns}+1) = {}",
            256 * (ns + 1)
        );
    }
    if bytes.len() < header_bytes {
        bail!(
            "signal headers truncated: file has {} bytes, header needs {header_bytes}",
            bytes.len()
        );
    }
    if !(record_duration.is_finite() && record_duration >= 0.0) {
        bail!("data record duration is {record_duration} s: must be positive (or 0 in an annotation-only EDF+)");
    }
    // Field offsets within the signal-header block, in units of `ns` entries.
    let sig = |i: usize, before: usize, len: usize| field(256 + before * ns + i * len, len);
    let mut headers = Vec::with_capacity(ns);
    for i in 0..ns {
        let label = sig(i, 0, 16);
        let what = |name: &str| format!("signal {} ('{label}'): {name}", i + 1);
        headers.push(SignalHeader {
            transducer: sig(i, 16, 80),
            unit: sig(i, 96, 8),
            physical_min: num(&sig(i, 104, 8), &what("physical minimum"))?,
            physical_max: num(&sig(i, 112, 8), &what("physical maximum"))?,
            digital_min: num(&sig(i, 120, 8), &what("digital minimum"))?,
            digital_max: num(&sig(i, 128, 8), &what("digital maximum"))?,
            prefiltering: sig(i, 136, 80),
            samples_per_record: num(&sig(i, 216, 8), &what("samples per record"))?,
            label,
        });
    }
    let sb = kind.sample_bytes();
    let record_bytes: usize = headers.iter().map(|h| h.samples_per_record * sb).sum();
    if record_bytes == 0 {
        bail!("every signal has 0 samples per record");
    }
    let data_bytes = bytes.len() - header_bytes;
    let n_records = if n_records_field < 0 {
        // -1: unknown (recording still running when written); infer from the size.
        if !data_bytes.is_multiple_of(record_bytes) {
            bail!(
                "record size mismatch: {data_bytes} data bytes are not a whole number of \
                 {record_bytes}-byte records"
            );
        }
        data_bytes / record_bytes
    } else {
        let n = n_records_field as usize;
        if n * record_bytes != data_bytes {
            bail!(
                "record size mismatch: header says {n} records of {record_bytes} bytes \
                 ({} bytes) but the file holds {data_bytes} data bytes{}",
                n * record_bytes,
                if data_bytes < n * record_bytes {
                    " (truncated)"
                } else {
                    ""
                }
            );
        }
        n
    };
    let is_annot = |h: &SignalHeader| {
        matches!(kind, EdfKind::EdfPlus { .. } | EdfKind::Bdf { plus: true })
            && h.label == "EDF Annotations"
            || bdf && h.label == "BDF Annotations"
    };
    if record_duration == 0.0 && headers.iter().any(|h| !is_annot(h)) {
        bail!(
            "data record duration is 0 s: only an annotation-only EDF+ may have it, and this \
             file has ordinary signals"
        );
    }
    // A signal whose header gives no valid scale is kept with its fault: the file stays
    // readable when that signal is not selected (CHB-MIT's dummy channel '-', range 0..0).
    let faults: Vec<Option<String>> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if is_annot(h) {
                return None;
            }
            let what = format!("signal {} ('{}')", i + 1, h.label);
            let (lo, hi) = if bdf {
                (-(1 << 23), (1 << 23) - 1)
            } else {
                (-32768, 32767)
            };
            if h.samples_per_record == 0 {
                Some(format!("{what}: 0 samples per record"))
            } else if h.digital_max <= h.digital_min {
                Some(format!(
                    "{what}: digital maximum {} is not above digital minimum {}",
                    h.digital_max, h.digital_min
                ))
            } else if h.physical_max == h.physical_min || !h.physical_max.is_finite() {
                Some(format!(
                    "{what}: physical minimum and maximum ({}, {}) give no scale",
                    h.physical_min, h.physical_max
                ))
            } else if h.digital_min < lo || h.digital_max > hi {
                Some(format!(
                    "{what}: digital range [{}, {}] exceeds the {}-bit sample range",
                    h.digital_min,
                    h.digital_max,
                    8 * sb
                ))
            } else {
                None
            }
        })
        .collect();

    // Offsets of each signal within a record.
    let mut offsets = Vec::with_capacity(ns);
    let mut acc = 0;
    for h in &headers {
        offsets.push(acc);
        acc += h.samples_per_record * sb;
    }
    let data = &bytes[header_bytes..];
    let decode = |b: &[u8]| -> i32 {
        if sb == 3 {
            // Sign-extend 24-bit little endian.
            ((b[0] as i32) | ((b[1] as i32) << 8) | ((b[2] as i32) << 16)) << 8 >> 8
        } else {
            i16::from_le_bytes([b[0], b[1]]) as i32
        }
    };
    let mut signals = Vec::new();
    let mut annot_channels = Vec::new();
    let mut warnings = Vec::new();
    for (i, h) in headers.into_iter().enumerate() {
        if is_annot(&h) {
            annot_channels.push((offsets[i], h.samples_per_record * sb));
            continue;
        }
        let fault = faults[i].clone();
        // Every voltage is converted to µV so that files in V, mV and µV pool correctly.
        let scale = voltage_scale(&h.unit);
        if scale.is_none() && !known_other_unit(&h.unit) {
            warnings.push(format!(
                "signal {} ('{}'): unknown physical dimension '{}': values kept as stored \
                 (not converted to µV)",
                i + 1,
                h.label,
                h.unit
            ));
        }
        let (unit, to_uv) = match scale {
            Some(f) => ("uV".to_string(), f),
            None => (h.unit.clone(), 1.0),
        };
        let gain = (h.physical_max - h.physical_min) / (h.digital_max - h.digital_min) as f64;
        let mut out = Vec::new();
        if fault.is_none() {
            out.reserve(n_records * h.samples_per_record);
            for r in 0..n_records {
                let start = r * record_bytes + offsets[i];
                for c in data[start..start + h.samples_per_record * sb].chunks_exact(sb) {
                    let d = decode(c);
                    out.push(((gain * (d - h.digital_min) as f64 + h.physical_min) * to_uv) as f32);
                }
            }
        }
        signals.push(Signal {
            rate: if record_duration > 0.0 {
                h.samples_per_record as f64 / record_duration
            } else {
                0.0
            },
            label: h.label,
            unit,
            unit_in_file: h.unit,
            fault,
            transducer: h.transducer,
            prefiltering: h.prefiltering,
            samples_per_record: h.samples_per_record,
            physical_min: h.physical_min,
            physical_max: h.physical_max,
            digital_min: h.digital_min,
            digital_max: h.digital_max,
            data: out,
        });
    }
    if signals.is_empty() && annot_channels.is_empty() {
        bail!("no ordinary signals and no annotation channel");
    }
    let mut labels: Vec<String> = signals.iter().map(|s| s.label.clone()).collect();
    if let Some(w) = rename_duplicates(&mut labels) {
        warnings.push(w);
        for (s, l) in signals.iter_mut().zip(labels) {
            s.label = l;
        }
    }

    // Annotations: the first TAL of each record keeps time; the rest are events.
    let mut annotations = Vec::new();
    // The time-keeping onset of each record, None when the record has no TAL.
    let mut record_onsets: Vec<Option<f64>> = vec![None; n_records];
    for r in 0..n_records {
        let mut first_in_record = true;
        for &(off, len) in &annot_channels {
            let start = r * record_bytes + off;
            let block = &data[start..start + len];
            for tal in block.split(|&b| b == 0).filter(|t| !t.is_empty()) {
                let (onset, duration, texts) = parse_tal(tal)
                    .with_context(|| format!("annotation in data record {}", r + 1))?;
                if first_in_record {
                    record_onsets[r] = Some(onset);
                    first_in_record = false;
                    // The time-keeping TAL may carry no text; any text it has is an event.
                }
                for text in texts.into_iter().filter(|t| !t.is_empty()) {
                    annotations.push(Annotation {
                        onset,
                        duration,
                        text,
                    });
                }
            }
        }
    }
    let discontinuous = matches!(
        kind,
        EdfKind::EdfPlus {
            discontinuous: true
        }
    ) || matches!(kind, EdfKind::Bdf { plus: true })
        && reserved.starts_with("BDF+D");
    let timed = !annot_channels.is_empty() && record_duration > 0.0 && !signals.is_empty();
    if discontinuous && annot_channels.is_empty() && !signals.is_empty() {
        bail!(
            "reserved field says EDF+D but there is no 'EDF Annotations' signal: the record \
             onsets (and so the gaps) of a discontinuous file are unknown"
        );
    }
    if timed && discontinuous {
        // Every record of EDF+D must say when it starts (Kemp & Olivan 2003): without its
        // TAL a record cannot be placed, and reading it as contiguous would shift every later
        // sample. Checked per record, not skipped for the whole file.
        if let Some(r) = record_onsets.iter().position(Option::is_none) {
            bail!(
                "data record {} of {n_records} has no time-keeping TAL: an EDF+D record must \
                 state its onset, so its place in time (and any gap before it) is unknown",
                r + 1
            );
        }
    }
    let start_subsecond = record_onsets.first().copied().flatten().unwrap_or(0.0);
    let mut onsets: Vec<f64> = (0..n_records).map(|r| r as f64 * record_duration).collect();
    if timed {
        // EDF+C must be contiguous (records without a TAL are contiguous by declaration);
        // EDF+D records may leave gaps but never overlap or go back in time.
        for (r, t) in record_onsets.iter().enumerate() {
            let Some(t) = *t else { continue };
            let expected = start_subsecond + r as f64 * record_duration;
            let tol = 1e-6 * record_duration.max(1.0) + 1e-7;
            if !discontinuous && (t - expected).abs() > tol {
                bail!(
                    "data record {} starts at {t} s, expected {expected} s: the reserved field \
                     says EDF+C (contiguous) but the time-keeping TALs leave a gap (a \
                     discontinuous file must say EDF+D)",
                    r + 1
                );
            }
            if discontinuous {
                onsets[r] = t - start_subsecond;
                if r > 0 && onsets[r] < onsets[r - 1] + record_duration - tol {
                    bail!(
                        "data record {} starts at {t} s, before the end of record {} ({} s): \
                         EDF+D records must not overlap",
                        r + 1,
                        r,
                        onsets[r - 1] + start_subsecond + record_duration
                    );
                }
            }
        }
    }
    for a in &mut annotations {
        a.onset -= start_subsecond;
    }
    Ok(EdfFile {
        path: path.to_path_buf(),
        kind,
        patient: field(8, 80),
        recording: field(88, 80),
        start_date: field(168, 8),
        start_time: field(176, 8),
        start_subsecond,
        n_records,
        record_duration,
        signals,
        annotations,
        warnings,
        record_onsets: onsets,
    })
}

/// Parses one TAL (without its trailing NUL): `+onset[\x15duration]\x14text\x14...`.
fn parse_tal(tal: &[u8]) -> Result<(f64, Option<f64>, Vec<String>)> {
    let mut parts = tal.split(|&b| b == 0x14);
    let head = parts.next().unwrap_or_default();
    let mut hp = head.split(|&b| b == 0x15);
    let onset_s = String::from_utf8_lossy(hp.next().unwrap_or_default()).to_string();
    if !(onset_s.starts_with('+') || onset_s.starts_with('-')) {
        bail!("TAL onset {onset_s:?} does not start with '+' or '-'");
    }
    let onset: f64 = num(&onset_s, "TAL onset")?;
    let duration = match hp.next() {
        Some(d) if !d.is_empty() => Some(num(&String::from_utf8_lossy(d), "TAL duration")?),
        _ => None,
    };
    let mut texts: Vec<String> = parts
        .map(|t| String::from_utf8_lossy(t).trim().to_string())
        .collect();
    // A TAL ends with 0x14, so the split leaves one empty tail.
    if texts.last().is_some_and(|t| t.is_empty()) {
        texts.pop();
    }
    Ok((onset, duration, texts))
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T> {
    s.trim()
        .trim_start_matches('+')
        .parse::<T>()
        .map_err(|_| anyhow::anyhow!("{what}: {s:?} is not a number"))
}

impl EdfFile {
    /// The selected channels (all ordinary signals when `channels` is None) as one recording.
    /// Channels with different rates need `common_rate`: each is then sinc-resampled to it and
    /// all are cut to the shortest. The gaps of an EDF+D become [`Recording::breaks`] (with
    /// their file times in [`Recording::segment_onsets`]): samples are stored back to back,
    /// each segment resampled on its own, and no window spans a gap. Errors name the file and the missing channel or the rates.
    pub fn to_recording(
        &self,
        channels: Option<&[String]>,
        common_rate: Option<f64>,
    ) -> Result<Recording> {
        let picked: Vec<&Signal> = match channels {
            None => self.signals.iter().collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    self.signals
                        .iter()
                        .find(|s| &s.label == n)
                        .with_context(|| {
                            format!(
                                "{}: no channel '{n}' (channels: {})",
                                self.path.display(),
                                self.signals
                                    .iter()
                                    .map(|s| s.label.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })
                })
                .collect::<Result<_>>()?,
        };
        if picked.is_empty() {
            bail!(
                "{}: no ordinary signals: an annotation-only EDF+ (e.g. a hypnogram) holds \
                 labels for another recording, not samples",
                self.path.display()
            );
        }
        if let Some(s) = picked.iter().find(|s| s.fault.is_some()) {
            bail!(
                "{}: {} (leave it out with --channels: {})",
                self.path.display(),
                s.fault.as_deref().unwrap_or_default(),
                self.signals
                    .iter()
                    .filter(|s| s.fault.is_none())
                    .map(|s| s.label.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        let rates: Vec<f64> = picked.iter().map(|s| s.rate).collect();
        let mixed = rates
            .iter()
            .any(|&r| (r - rates[0]).abs() > 1e-9 * rates[0]);
        let rate = match common_rate {
            Some(r) if r.is_finite() && r > 0.0 => r,
            Some(r) => bail!("common rate {r} Hz must be positive"),
            None if mixed => bail!(
                "{}: channels have different rates ({}): choose a common rate (--common-rate) \
                 or channels of one rate (--channels)",
                self.path.display(),
                picked
                    .iter()
                    .map(|s| format!("{} {} Hz", s.label, s.rate))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => rates[0],
        };
        // Segments: runs of records between EDF+D gaps. Each is resampled on its own (a sinc
        // across a gap would smear one segment into the next) and cut to its shortest channel.
        let mut seg_records = vec![0];
        seg_records.extend(self.gaps().into_iter().map(|(r, _)| r));
        seg_records.push(self.n_records);
        let mut series: Vec<Vec<f32>> = vec![Vec::new(); picked.len()];
        let mut breaks = Vec::new();
        let mut segment_onsets = Vec::new();
        for w in seg_records.windows(2) {
            let (r0, r1) = (w[0], w[1]);
            let parts: Vec<Vec<f32>> = picked
                .iter()
                .map(|s| {
                    let part = &s.data[r0 * s.samples_per_record..r1 * s.samples_per_record];
                    if (s.rate - rate).abs() <= 1e-9 * rate {
                        part.to_vec()
                    } else {
                        let x: Vec<f64> = part.iter().map(|&v| v as f64).collect();
                        let num = resample::resampled_len(x.len(), s.rate, rate);
                        resample::fft_resample(&x, num)
                            .into_iter()
                            .map(|v| v as f32)
                            .collect()
                    }
                })
                .collect();
            let n = parts.iter().map(Vec::len).min().unwrap_or(0);
            if r0 > 0 {
                breaks.push(series[0].len());
                segment_onsets.push(self.record_onsets[r0]);
            }
            for (out, p) in series.iter_mut().zip(parts) {
                out.extend_from_slice(&p[..n]);
            }
        }
        let t = series.iter().map(Vec::len).min().unwrap_or(0);
        let data = Array2::from_shape_fn((series.len(), t), |(c, i)| series[c][i]);
        Ok(Recording {
            source: self.path.clone(),
            channels: picked.iter().map(|s| s.label.clone()).collect(),
            rate,
            data,
            labels: None,
            annotations: self.annotations.clone(),
            start_subsecond: self.start_subsecond,
            breaks,
            segment_onsets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tal_parsing() {
        let (o, d, t) = parse_tal(b"+1.5\x152.25\x14Spike\x14Note\x14").unwrap();
        assert_eq!((o, d), (1.5, Some(2.25)));
        assert_eq!(t, vec!["Spike", "Note"]);
        let (o, d, t) = parse_tal(b"+0.3945312\x14\x14").unwrap();
        assert_eq!((o, d), (0.3945312, None));
        assert!(t.iter().all(|s| s.is_empty()));
        assert!(parse_tal(b"1.0\x14x\x14").is_err());
    }

    #[test]
    fn int24_sign_extension() {
        let f =
            |b: [u8; 3]| ((b[0] as i32) | ((b[1] as i32) << 8) | ((b[2] as i32) << 16)) << 8 >> 8;
        assert_eq!(f([0xFF, 0xFF, 0x7F]), 8_388_607);
        assert_eq!(f([0x00, 0x00, 0x80]), -8_388_608);
        assert_eq!(f([0xFF, 0xFF, 0xFF]), -1);
    }
}
