//! TF-C-style window tensors (Zhang et al., NeurIPS 2022, mims-harvard/TFC-pretraining):
//! `samples` [N, C, L] (or [N, L], read as C = 1) and `labels` [N], in safetensors, .npy or .npz.
//!
//! - safetensors: tensors `samples` (f32 or f64) and optionally `labels` (i64 or i32); metadata
//!   `sampling_rate_hz`, `classes` (a count `"5"` or a list `"0 = no seizure, 1 = seizure"`),
//!   `channels` (comma-separated); other metadata is kept in [`Windows::meta`].
//! - .npz: arrays `samples` and optionally `labels`.
//! - .npy: the samples; labels from a sibling: `samples.npy` → `labels.npy`,
//!   `NAME_samples.npy` → `NAME_labels.npy`, else `NAME.npy` → `NAME.labels.npy` (optional).
//!
//! - .npy/.npz metadata: a JSON object of strings in the sidecar `FILE.json` (e.g.
//!   `windows.npy.json`), the same keys as safetensors metadata; brainscale writes one with
//!   every .npy/.npz, so its own files say `layout = NCL` and read back as written.
//!
//! The rate is unknown unless stated (`--input-rate`).
//!
//! Layout: samples may be stored channels-first [N, C, L] (TF-C's) or channels-last
//! [N, L, C] (HAR-style exports). The layout is, in order: metadata `layout` (`NCL` or `NLC`);
//! the axis whose size equals the number of names in metadata `channels`; else the smaller of
//! the two non-batch axes is the channel axis, the rule of TF-C's own loader (which permutes
//! when the channel axis is not the smallest), with a warning when the file is transposed.
//! That last rule applies only to foreign files (no metadata saying the layout).
use crate::biosignal::Windows;
use crate::core::io::{self, Tensor, TensorFile};
use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array1, Array3, ArrayD, Ix1, Ix2, Ix3};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Parses a `classes` metadata value: a count (`"5"`) or an enumeration whose entries start
/// with their index (`"0 = no seizure, 1 = seizure"` → 2). None if neither.
pub fn parse_classes(s: &str) -> Option<usize> {
    if let Ok(k) = s.trim().parse::<usize>() {
        return Some(k);
    }
    let idx: Vec<usize> = s
        .split(',')
        .map(|e| e.split('=').next().unwrap_or("").trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    idx.iter().max().map(|m| m + 1)
}

fn to3(a: ArrayD<f32>, what: &str) -> Result<Array3<f32>> {
    let shape = a.shape().to_vec();
    match shape.len() {
        3 => Ok(a.into_dimensionality::<Ix3>()?),
        2 => Ok(a
            .into_dimensionality::<Ix2>()?
            .insert_axis(ndarray::Axis(1))),
        _ => bail!("{what}: samples must be [N, C, L] or [N, L], found shape {shape:?}"),
    }
}

fn to1(a: ArrayD<i64>, what: &str) -> Result<Array1<i64>> {
    let shape = a.shape().to_vec();
    match shape.as_slice() {
        [_] => Ok(a.into_dimensionality::<Ix1>()?),
        [_, 1] => Ok(Array1::from_iter(a.iter().copied())),
        _ => bail!("{what}: labels must be [N], found shape {shape:?}"),
    }
}

/// Reads a TF-C-style tensor file (see the module docs). Shape and dtype faults name the file
/// and tensor; values are checked later by [`Windows::validate`].
pub fn read(path: &Path) -> Result<Windows> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let src = path.display().to_string();
    let (samples, labels, meta) = match ext.as_str() {
        "safetensors" => read_safetensors(path)?,
        "npz" => {
            let (s, l, _) = read_npz(path)?;
            (s, l, read_meta_sidecar(path)?)
        }
        "npy" => {
            let s = read_npy_f32(path)?;
            let labels = match npy_labels_path(path) {
                Some(lp) => Some(to1(read_npy_i64(&lp)?, &lp.display().to_string())?),
                None => None,
            };
            (s, labels, read_meta_sidecar(path)?)
        }
        _ => bail!("{src}: not a tensor file (.safetensors, .npy, .npz)"),
    };
    let samples = to3(samples, &src)?;
    let (samples, transposed) = channels_first(samples, &meta, &src)?;
    let mut meta = meta;
    if let Some(why) = transposed {
        eprintln!("warning: {why}");
        meta.insert("layout_read".into(), "NLC transposed to NCL".into());
    }
    let (n, c, _) = samples.dim();
    if let Some(l) = &labels {
        if l.len() != n {
            bail!("{src}: {} labels for {n} windows", l.len());
        }
    }
    let rate = match meta.get("sampling_rate_hz").or_else(|| meta.get("rate")) {
        Some(s) => Some(
            s.trim()
                .parse::<f64>()
                .map_err(|_| anyhow!("{src}: metadata sampling_rate_hz {s:?} is not a number"))?,
        ),
        None => None,
    };
    let classes = meta.get("classes").and_then(|s| parse_classes(s));
    let channels = match meta.get("channels") {
        Some(s) => {
            let v: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
            if v.len() != c {
                bail!(
                    "{src}: metadata lists {} channel names for {c} channels",
                    v.len()
                );
            }
            v
        }
        None => (0..c).map(|i| format!("ch{i}")).collect(),
    };
    Ok(Windows {
        samples,
        labels,
        rate,
        channels,
        classes,
        source: src,
        meta,
    })
}

/// Brings [N, A, B] samples to [N, C, L] by the rule in the module docs. Returns the samples
/// and, when they were transposed from channels-last, the reason (for a warning).
pub fn channels_first(
    x: Array3<f32>,
    meta: &BTreeMap<String, String>,
    src: &str,
) -> Result<(Array3<f32>, Option<String>)> {
    let (_, a, b) = x.dim();
    let n_names = meta
        .get("channels")
        .map(|s| s.split(',').filter(|x| !x.trim().is_empty()).count());
    let last = match meta.get("layout").map(|s| s.trim().to_uppercase()) {
        Some(l) if l == "NCL" => false,
        Some(l) if l == "NLC" => true,
        Some(l) => bail!("{src}: metadata layout {l:?} is neither \"NCL\" nor \"NLC\""),
        None => match n_names {
            Some(k) if k == a => false,
            Some(k) if k == b => true,
            _ => b < a,
        },
    };
    if !last {
        return Ok((x, None));
    }
    let why = format!(
        "{src}: samples [N={}, {a}, {b}] read as channels-last [N, L={a}, C={b}] and \
         transposed to [N, C, L]{}",
        x.dim().0,
        if meta.contains_key("layout") || n_names == Some(b) {
            " (metadata says so)".to_string()
        } else {
            " (the channel axis is the smaller one, as TF-C's loader assumes; set metadata \
             layout=NCL if the file is channels-first)"
                .to_string()
        }
    );
    let t = x.permuted_axes([0, 2, 1]).as_standard_layout().to_owned();
    Ok((t, Some(why)))
}

type Parts = (ArrayD<f32>, Option<Array1<i64>>, BTreeMap<String, String>);

fn read_safetensors(path: &Path) -> Result<Parts> {
    let f = TensorFile::open(path)?;
    let src = path.display().to_string();
    let samples = f
        .f32("samples")
        .or_else(|_| f.f64("samples").map(|a| a.mapv(|v| v as f32)))
        .with_context(|| format!("{src}: tensor 'samples' must be f32 or f64"))?;
    let labels = if f.has("labels") {
        let l = f
            .i64("labels")
            .or_else(|_| i32_labels(&f))
            .with_context(|| format!("{src}: tensor 'labels' must be i64 or i32"))?;
        Some(to1(l, &src)?)
    } else {
        None
    };
    Ok((samples, labels, f.metadata().into_iter().collect()))
}

/// i32 labels through the raw safetensors view (crate::core::io has no i32 getter).
fn i32_labels(f: &TensorFile) -> Result<ArrayD<i64>> {
    let bytes = std::fs::read(f.path())?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("{e}"))?;
    let t = st.tensor("labels").map_err(|e| anyhow!("{e}"))?;
    if t.dtype() != safetensors::Dtype::I32 {
        bail!("labels are {:?}", t.dtype());
    }
    let v: Vec<i64> = t
        .data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
        .collect();
    Ok(ArrayD::from_shape_vec(t.shape().to_vec(), v)?)
}

fn read_npy_f32(path: &Path) -> Result<ArrayD<f32>> {
    use ndarray_npy::read_npy;
    let src = path.display();
    if let Ok(a) = read_npy::<_, ArrayD<f32>>(path) {
        return Ok(a);
    }
    read_npy::<_, ArrayD<f64>>(path)
        .map(|a| a.mapv(|v| v as f32))
        .map_err(|e| anyhow!("{src}: cannot read samples as a float32/float64 .npy array: {e}"))
}

fn read_npy_i64(path: &Path) -> Result<ArrayD<i64>> {
    use ndarray_npy::read_npy;
    if let Ok(a) = read_npy::<_, ArrayD<i64>>(path) {
        return Ok(a);
    }
    if let Ok(a) = read_npy::<_, ArrayD<i32>>(path) {
        return Ok(a.mapv(|v| v as i64));
    }
    let f = read_npy::<_, ArrayD<f64>>(path).map_err(|e| {
        anyhow!(
            "{}: cannot read labels as an int64/int32/float64 .npy array: {e}",
            path.display()
        )
    })?;
    if let Some(v) = f.iter().find(|v| v.fract() != 0.0 || !v.is_finite()) {
        bail!("{}: label {v} is not an integer", path.display());
    }
    Ok(f.mapv(|v| v as i64))
}

fn read_npz(path: &Path) -> Result<Parts> {
    use ndarray_npy::NpzReader;
    let src = path.display().to_string();
    let open = || -> Result<NpzReader<std::fs::File>> {
        NpzReader::new(std::fs::File::open(path).with_context(|| format!("reading {src}"))?)
            .map_err(|e| anyhow!("{src}: not a valid .npz archive: {e}"))
    };
    let mut z = open()?;
    let names = z.names().map_err(|e| anyhow!("{src}: {e}"))?;
    let has = |n: &str| names.iter().any(|x| x == n || x == &format!("{n}.npy"));
    if !has("samples") {
        bail!(
            "{src}: no array named 'samples' (arrays: {})",
            names.join(", ")
        );
    }
    let samples = match z.by_name::<ndarray::OwnedRepr<f32>, ndarray::IxDyn>("samples") {
        Ok(a) => a,
        Err(_) => open()?
            .by_name::<ndarray::OwnedRepr<f64>, ndarray::IxDyn>("samples")
            .map_err(|e| anyhow!("{src}: 'samples' must be float32 or float64: {e}"))?
            .mapv(|v| v as f32),
    };
    let labels = if has("labels") {
        let l = match open()?.by_name::<ndarray::OwnedRepr<i64>, ndarray::IxDyn>("labels") {
            Ok(a) => a,
            Err(_) => open()?
                .by_name::<ndarray::OwnedRepr<i32>, ndarray::IxDyn>("labels")
                .map_err(|e| anyhow!("{src}: 'labels' must be int64 or int32: {e}"))?
                .mapv(|v| v as i64),
        };
        Some(to1(l, &src)?)
    } else {
        None
    };
    Ok((samples, labels, BTreeMap::new()))
}

/// The metadata sidecar of a .npy/.npz: `FILE.json` beside it (see the module docs).
pub fn meta_sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    path.with_file_name(name)
}

/// Reads the metadata sidecar of `path` if there is one: a JSON object whose values are
/// strings (numbers are taken as their text). Errors name the sidecar and the fault.
fn read_meta_sidecar(path: &Path) -> Result<BTreeMap<String, String>> {
    let p = meta_sidecar(path);
    if !p.is_file() {
        return Ok(BTreeMap::new());
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", p.display()))?;
    let serde_json::Value::Object(m) = v else {
        bail!("{}: not a JSON object of metadata", p.display());
    };
    m.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            other => bail!("{}: field '{k}' must be a string, not {other}", p.display()),
        })
        .collect()
}

/// Writes the metadata sidecar of a .npy/.npz (atomically).
fn write_meta_sidecar(ds: &Windows, path: &Path) -> Result<()> {
    let m: BTreeMap<String, String> = metadata(ds).into_iter().collect();
    let text = serde_json::to_string_pretty(&m)?;
    io::write_atomic(&meta_sidecar(path), |tmp| {
        std::fs::write(tmp, &text).map_err(|e| anyhow!("{e}"))
    })
}

/// The labels file belonging to a samples .npy, if it exists (see the module docs).
pub fn npy_labels_path(path: &Path) -> Option<PathBuf> {
    let cand = labels_sibling(path);
    cand.exists().then_some(cand)
}

/// Where the labels of a samples .npy live: `samples.npy` → `labels.npy`,
/// `NAME_samples.npy` → `NAME_labels.npy`, else `NAME.npy` → `NAME.labels.npy`.
pub fn labels_sibling(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let dir = path.parent().unwrap_or(Path::new(""));
    if stem == "samples" {
        dir.join("labels.npy")
    } else if let Some(base) = stem.strip_suffix("_samples") {
        dir.join(format!("{base}_labels.npy"))
    } else {
        dir.join(format!("{stem}.labels.npy"))
    }
}

/// Metadata written with a set: its `meta`, plus `sampling_rate_hz`, `channels`, `classes`.
fn metadata(ds: &Windows) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = ds.meta.clone().into_iter().collect();
    if let Some(r) = ds.rate {
        m.insert("sampling_rate_hz".into(), r.to_string());
    }
    m.insert("channels".into(), ds.channels.join(","));
    m.insert("layout".into(), "NCL".into());
    m.remove("layout_read");
    if let Some(k) = ds.classes {
        // Keep a descriptive list ("0 = a, 1 = b") when it agrees with K.
        if m.get("classes").and_then(|s| parse_classes(s)) != Some(k) {
            m.insert("classes".into(), k.to_string());
        }
    }
    m
}

/// Writes `ds` atomically: `.safetensors` (samples f32 [N, C, L], labels i64 [N], metadata),
/// `.npy` (samples; labels to the sibling named in the module docs) or `.npz`; for these two
/// the metadata (layout NCL, channels, rate, classes) goes to the sidecar `FILE.json`, so
/// that [`read`] returns what was written whatever the sizes of C and L.
pub fn write(ds: &Windows, path: &Path) -> Result<()> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "safetensors" => {
            let mut t = vec![("samples", Tensor::F32(ds.samples.clone().into_dyn()))];
            if let Some(l) = &ds.labels {
                t.push(("labels", Tensor::I64(l.clone().into_dyn())));
            }
            io::write_tensors(path, t, metadata(ds))
        }
        "npy" => {
            io::write_atomic(path, |tmp| {
                ndarray_npy::write_npy(tmp, &ds.samples).map_err(|e| anyhow!("{e}"))
            })?;
            if let Some(l) = &ds.labels {
                let lp = labels_sibling(path);
                io::write_atomic(&lp, |tmp| {
                    ndarray_npy::write_npy(tmp, l).map_err(|e| anyhow!("{e}"))
                })?;
            }
            write_meta_sidecar(ds, path)
        }
        "npz" => {
            io::write_atomic(path, |tmp| {
                let mut z = ndarray_npy::NpzWriter::new(std::fs::File::create(tmp)?);
                z.add_array("samples", &ds.samples)
                    .map_err(|e| anyhow!("{e}"))?;
                if let Some(l) = &ds.labels {
                    z.add_array("labels", l).map_err(|e| anyhow!("{e}"))?;
                }
                z.finish().map_err(|e| anyhow!("{e}"))?;
                Ok(())
            })?;
            write_meta_sidecar(ds, path)
        }
        _ => bail!(
            "{}: output must end in .safetensors, .npy or .npz",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_metadata() {
        assert_eq!(parse_classes("5"), Some(5));
        assert_eq!(parse_classes("0 = no seizure, 1 = seizure"), Some(2));
        assert_eq!(parse_classes("seizure or not"), None);
    }
}
