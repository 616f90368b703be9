//! Accelerometer CSV: a header row naming `time` (seconds), `x`, `y`, `z` (any units, e.g. g or
//! m/s²) and optionally `label` (class index per sample), then one row per sample.
//!
//! The rate is 1 / median(Δt). Times must strictly increase. A step longer than
//! [`PAUSE_FACTOR`] × the median Δt is a pause (the logger stopped): nothing is interpolated
//! across it, the recording is split there ([`crate::biosignal::Recording::breaks`]) and no
//! window spans it. Within a segment, sampling is called uniform when every Δt is within 1% of
//! the median; otherwise each axis (and label, nearest sample) is linearly interpolated onto
//! the segment's uniform grid t₀ + k / rate (phone and watch loggers jitter), and
//! [`CsvInfo::regridded`] says so.
use crate::biosignal::Recording;
use anyhow::{bail, Context, Result};
use ndarray::Array2;
use std::path::Path;

/// A step between rows longer than this many median steps is a pause, not jitter: a few
/// dropped samples are interpolated, a longer silence is never invented.
pub const PAUSE_FACTOR: f64 = 4.0;

/// What the reader found beyond the samples.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvInfo {
    /// Rows read.
    pub rows: usize,
    /// Largest |Δt − median Δt| / median Δt over the steps that are not pauses.
    pub jitter: f64,
    /// Whether the samples were interpolated onto a uniform grid.
    pub regridded: bool,
    /// Pauses: (time of the last sample before it, s; its length Δt, s), in file order.
    pub pauses: Vec<(f64, f64)>,
}

/// Reads an accelerometer CSV into a 3-channel recording (`x`, `y`, `z`). Errors name the file,
/// the row and the fault: missing columns, unparsable or non-finite values, times not
/// increasing, negative labels, fewer than 2 rows.
pub fn read(path: &Path) -> Result<Recording> {
    read_with_info(path).map(|(r, _)| r)
}

/// [`read`], also returning the rate estimate's diagnostics.
pub fn read_with_info(path: &Path) -> Result<(Recording, CsvInfo)> {
    let src = path.display();
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("reading {src}"))?;
    let headers: Vec<String> = rdr
        .headers()
        .with_context(|| format!("{src}: reading the header row"))?
        .iter()
        .map(|h| h.to_lowercase())
        .collect();
    let col = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "{src}: no '{name}' column (header: {}; expected time,x,y,z[,label])",
                headers.join(",")
            )
        })
    };
    let (ct, cx, cy, cz) = (col("time")?, col("x")?, col("y")?, col("z")?);
    let cl = headers.iter().position(|h| h == "label");
    let mut t = Vec::new();
    let mut xyz: [Vec<f64>; 3] = Default::default();
    let mut labels = cl.map(|_| Vec::new());
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2; // 1-based, after the header
        let rec = rec.with_context(|| format!("{src}: row {row}"))?;
        let get = |c: usize, name: &str| -> Result<f64> {
            let s = rec.get(c).unwrap_or("");
            let v: f64 = s.parse().with_context(|| {
                format!("{src}: row {row}, column '{name}': {s:?} is not a number")
            })?;
            if !v.is_finite() {
                bail!("{src}: row {row}, column '{name}': non-finite value {s}");
            }
            Ok(v)
        };
        t.push(get(ct, "time")?);
        xyz[0].push(get(cx, "x")?);
        xyz[1].push(get(cy, "y")?);
        xyz[2].push(get(cz, "z")?);
        if let (Some(c), Some(l)) = (cl, labels.as_mut()) {
            let s = rec.get(c).unwrap_or("");
            let y: i64 = s.parse().with_context(|| {
                format!("{src}: row {row}, column 'label': {s:?} is not an integer")
            })?;
            if y < 0 {
                bail!("{src}: row {row}: label {y} is negative");
            }
            l.push(y);
        }
        if t.len() >= 2 && t[t.len() - 1] <= t[t.len() - 2] {
            bail!(
                "{src}: row {row}: time {} s does not increase (previous {} s)",
                t[t.len() - 1],
                t[t.len() - 2]
            );
        }
    }
    if t.len() < 2 {
        bail!(
            "{src}: {} data rows: need at least 2 to know the rate",
            t.len()
        );
    }
    let steps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let mut dt = steps.clone();
    dt.sort_by(|a, b| a.total_cmp(b));
    let med = dt[dt.len() / 2];
    let rate = 1.0 / med;
    let n = t.len();
    // Segment boundaries (row indices): a new segment starts after every pause.
    let mut seg_starts = vec![0];
    let mut pauses = Vec::new();
    for (i, &d) in steps.iter().enumerate() {
        if d > PAUSE_FACTOR * med {
            seg_starts.push(i + 1);
            pauses.push((t[i], d));
        }
    }
    let jitter = steps
        .iter()
        .filter(|&&d| d <= PAUSE_FACTOR * med)
        .map(|d| (d - med).abs() / med)
        .fold(0.0, f64::max);
    let regridded = jitter > 0.01;
    let mut ends = seg_starts[1..].to_vec();
    ends.push(n);
    let mut cols: [Vec<f32>; 3] = Default::default();
    let mut out_labels = labels.as_ref().map(|_| Vec::new());
    let mut breaks = Vec::new();
    for (&a, &b) in seg_starts.iter().zip(&ends) {
        if a > 0 {
            breaks.push(cols[0].len());
        }
        let ts = &t[a..b];
        let m = if regridded && b - a >= 2 {
            ((ts[ts.len() - 1] - ts[0]) * rate).floor() as usize + 1
        } else {
            b - a
        };
        let mut j = 0;
        for k in 0..m {
            if !regridded || b - a < 2 {
                for c in 0..3 {
                    cols[c].push(xyz[c][a + k] as f32);
                }
                if let (Some(nl), Some(l)) = (out_labels.as_mut(), labels.as_ref()) {
                    nl.push(l[a + k]);
                }
                continue;
            }
            let tk = ts[0] + k as f64 / rate;
            while j + 2 < ts.len() && ts[j + 1] <= tk {
                j += 1;
            }
            let w = ((tk - ts[j]) / (ts[j + 1] - ts[j])).clamp(0.0, 1.0);
            for c in 0..3 {
                cols[c].push((xyz[c][a + j] * (1.0 - w) + xyz[c][a + j + 1] * w) as f32);
            }
            if let (Some(nl), Some(l)) = (out_labels.as_mut(), labels.as_ref()) {
                nl.push(if w < 0.5 { l[a + j] } else { l[a + j + 1] });
            }
        }
    }
    labels = out_labels;
    let len = cols[0].len();
    let data = Array2::from_shape_fn((3, len), |(c, k)| cols[c][k]);
    Ok((
        Recording {
            source: path.to_path_buf(),
            channels: vec!["x".into(), "y".into(), "z".into()],
            rate,
            data,
            labels,
            annotations: Vec::new(),
            start_subsecond: 0.0,
            breaks,
            segment_onsets: Vec::new(),
        },
        CsvInfo {
            rows: n,
            jitter,
            regridded,
            pauses,
        },
    ))
}
