//! Accelerometer CSV: a header row naming `time` (seconds), `x`, `y`, `z` (any units, e.g. g or
//! m/s²) and optionally `label` (class index per sample), then one row per sample.
//!
//! The rate is 1 / median(Δt). Times must strictly increase. Sampling is called uniform when
//! every Δt is within 1% of the median; otherwise each axis (and label, nearest sample) is
//! linearly interpolated onto the uniform grid t₀ + k / rate (phone and watch loggers jitter),
//! and [`CsvInfo::regridded`] says so.
use crate::biosignal::Recording;
use anyhow::{bail, Context, Result};
use ndarray::Array2;
use std::path::Path;

/// What the reader found beyond the samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CsvInfo {
    /// Rows read.
    pub rows: usize,
    /// Largest |Δt − median Δt| / median Δt.
    pub jitter: f64,
    /// Whether the samples were interpolated onto a uniform grid.
    pub regridded: bool,
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
    let mut dt: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    dt.sort_by(|a, b| a.total_cmp(b));
    let med = dt[dt.len() / 2];
    let jitter = dt.iter().map(|d| (d - med).abs() / med).fold(0.0, f64::max);
    let rate = 1.0 / med;
    let regridded = jitter > 0.01;
    let n = t.len();
    let data = if regridded {
        let m = ((t[n - 1] - t[0]) * rate).floor() as usize + 1;
        let mut out = Array2::zeros((3, m));
        let mut j = 0;
        let mut new_labels = labels.as_ref().map(|_| Vec::with_capacity(m));
        for k in 0..m {
            let tk = t[0] + k as f64 / rate;
            while j + 2 < n && t[j + 1] <= tk {
                j += 1;
            }
            let a = ((tk - t[j]) / (t[j + 1] - t[j])).clamp(0.0, 1.0);
            for c in 0..3 {
                out[[c, k]] = (xyz[c][j] * (1.0 - a) + xyz[c][j + 1] * a) as f32;
            }
            if let (Some(nl), Some(l)) = (new_labels.as_mut(), labels.as_ref()) {
                nl.push(if a < 0.5 { l[j] } else { l[j + 1] });
            }
        }
        labels = new_labels;
        out
    } else {
        Array2::from_shape_fn((3, n), |(c, k)| xyz[c][k] as f32)
    };
    Ok((
        Recording {
            source: path.to_path_buf(),
            channels: vec!["x".into(), "y".into(), "z".into()],
            rate,
            data,
            labels,
            annotations: Vec::new(),
            start_subsecond: 0.0,
        },
        CsvInfo {
            rows: n,
            jitter,
            regridded,
        },
    ))
}
