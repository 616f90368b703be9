//! Parcellated time series in HDF5, as the Algonauts 2025 release and the CNeuroMod lab's
//! derivatives distribute them: one file per subject (and task), one 2-D dataset per run named
//! after the episode (`ses-001_task-s01e02a`, `ses-005_task-figures04_run-1`, or a bare key),
//! of shape (TRs, parcels), float32 or float64.
//!
//! Behind the default-on cargo feature `hdf5` (the system libhdf5, and through Debian's build
//! libcurl, OpenSSL, GnuTLS, Kerberos...): the GPU build leaves it out so that it links only
//! libtorch and the C/C++ runtime. Without it every function here fails naming the file.
use anyhow::Result;
use ndarray::Array2;
use std::path::Path;

/// A 2-D dataset found in a file: its path inside the file and its shape.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub shape: Vec<usize>,
}

/// How an attribute was stored, as read: a number (and whether it was float32, whose value
/// is taken as its shortest decimal form), or text.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Number(f64),
    Text(String),
}

/// Every dataset in the file (nested groups included), sorted by key.
pub fn entries(path: &Path) -> Result<Vec<Entry>> {
    #[cfg(feature = "hdf5")]
    {
        imp::entries(path)
    }
    #[cfg(not(feature = "hdf5"))]
    {
        Err(unsupported(path))
    }
}

/// A scalar or one-element attribute of the file's root (e.g. `RepetitionTime`), whichever way
/// it is stored: integer or float of either width, a numeric string (fixed or variable length,
/// ASCII or UTF-8), scalar or a one-element array. None when the attribute is absent; an error
/// naming the file, the attribute and what it holds when it is something else.
pub fn root_attr_value(path: &Path, name: &str) -> Result<Option<AttrValue>> {
    #[cfg(feature = "hdf5")]
    {
        imp::root_attr_value(path, name)
    }
    #[cfg(not(feature = "hdf5"))]
    {
        let _ = name;
        Err(unsupported(path))
    }
}

/// Reads one run as [TRs, parcels] float32, refusing non-finite values.
pub fn read_run(path: &Path, key: &str) -> Result<Array2<f32>> {
    #[cfg(feature = "hdf5")]
    {
        imp::read_run(path, key)
    }
    #[cfg(not(feature = "hdf5"))]
    {
        let _ = key;
        Err(unsupported(path))
    }
}

/// Writes runs as float32 datasets (what the Algonauts files hold), atomically; `tr` (seconds)
/// is stored as the root attribute `RepetitionTime` when given.
pub fn write_runs(path: &Path, runs: &[(String, Array2<f32>)], tr: Option<f64>) -> Result<()> {
    #[cfg(feature = "hdf5")]
    {
        imp::write_runs(path, runs, tr)
    }
    #[cfg(not(feature = "hdf5"))]
    {
        let _ = (runs, tr);
        Err(unsupported(path))
    }
}

/// The error of a build without the `hdf5` feature (the GPU build), naming the file.
#[cfg(not(feature = "hdf5"))]
fn unsupported(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: this build has no HDF5 support (feature hdf5); rebuild with default features",
        path.display()
    )
}

/// The libhdf5 side (hdf5-metno).
#[cfg(feature = "hdf5")]
mod imp {
    use super::{AttrValue, Entry};
    use anyhow::{anyhow, bail, Result};
    use ndarray::Array2;
    use std::path::Path;

    /// HDF5 file locking is turned off: brainscale only reads these files (and writes new ones
    /// under a temporary name), and locks fail on many cluster filesystems and in processes that
    /// inherit a descriptor of a file being written (fork while another thread writes).
    fn builder() -> ::hdf5_metno::FileBuilder {
        let mut b = ::hdf5_metno::File::with_options();
        b.fapl().file_locking(false);
        b
    }

    fn open(path: &Path) -> Result<::hdf5_metno::File> {
        if !path.exists() {
            bail!("{} not found", path.display());
        }
        ::hdf5_metno::silence_errors(true);
        builder()
            .open(path)
            .map_err(|e| anyhow!("{}: not a readable HDF5 file ({e})", path.display()))
    }

    fn walk(
        g: &::hdf5_metno::Group,
        prefix: &str,
        out: &mut Vec<Entry>,
        path: &Path,
    ) -> Result<()> {
        let mut names = g
            .member_names()
            .map_err(|e| anyhow!("{}: listing {prefix}/: {e}", path.display()))?;
        names.sort();
        for n in names {
            let full = if prefix.is_empty() {
                n.clone()
            } else {
                format!("{prefix}/{n}")
            };
            if let Ok(ds) = g.dataset(&n) {
                out.push(Entry {
                    key: full,
                    shape: ds.shape(),
                });
            } else if let Ok(sub) = g.group(&n) {
                walk(&sub, &full, out, path)?;
            }
        }
        Ok(())
    }

    pub(super) fn entries(path: &Path) -> Result<Vec<Entry>> {
        let f = open(path)?;
        let mut out = Vec::new();
        walk(&f, "", &mut out, path)?;
        Ok(out)
    }

    pub(super) fn root_attr_value(path: &Path, name: &str) -> Result<Option<AttrValue>> {
        use ::hdf5_metno::types::{
            FixedAscii, FixedUnicode, FloatSize, TypeDescriptor, VarLenAscii, VarLenUnicode,
        };
        let f = open(path)?;
        if !f
            .attr_names()
            .map_err(|e| anyhow!("{}: {e}", path.display()))?
            .iter()
            .any(|n| n == name)
        {
            return Ok(None);
        }
        let a = f
            .attr(name)
            .map_err(|e| anyhow!("{}: attribute {name}: {e}", path.display()))?;
        let shape = a.shape();
        if a.size() != 1 {
            bail!(
                "{}: attribute {name} holds {} values (shape {shape:?}); expected one number",
                path.display(),
                a.size()
            );
        }
        let desc = a.dtype().and_then(|t| t.to_descriptor()).map_err(|e| {
            anyhow!(
                "{}: attribute {name}: unreadable type ({e})",
                path.display()
            )
        })?;
        let err = |e: ::hdf5_metno::Error| anyhow!("{}: attribute {name}: {e}", path.display());
        Ok(Some(match desc {
            TypeDescriptor::Float(FloatSize::U4) => {
                let v = a.read_raw::<f32>().map_err(err)?[0];
                AttrValue::Number(crate::fmri::dataset::nifti_header::f32_decimal(v))
            }
            TypeDescriptor::Float(_) | TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
                AttrValue::Number(a.read_raw::<f64>().map_err(err)?[0])
            }
            TypeDescriptor::VarLenUnicode => {
                AttrValue::Text(a.read_raw::<VarLenUnicode>().map_err(err)?[0].to_string())
            }
            TypeDescriptor::VarLenAscii => {
                AttrValue::Text(a.read_raw::<VarLenAscii>().map_err(err)?[0].to_string())
            }
            // HDF5 converts between fixed-length strings of different sizes (same character set).
            TypeDescriptor::FixedAscii(n) if n <= 256 => {
                AttrValue::Text(a.read_raw::<FixedAscii<256>>().map_err(err)?[0].to_string())
            }
            TypeDescriptor::FixedUnicode(n) if n <= 256 => {
                AttrValue::Text(a.read_raw::<FixedUnicode<256>>().map_err(err)?[0].to_string())
            }
            other => bail!(
                "{}: attribute {name} has type {other:?}; expected a number or a numeric string",
                path.display()
            ),
        }))
    }

    pub(super) fn read_run(path: &Path, key: &str) -> Result<Array2<f32>> {
        let f = open(path)?;
        let ds = f
            .dataset(key)
            .map_err(|e| anyhow!("{}: no dataset '{key}' ({e})", path.display()))?;
        if ds.ndim() != 2 {
            bail!(
                "{}: dataset '{key}' has shape {:?}; expected (TRs, parcels)",
                path.display(),
                ds.shape()
            );
        }
        let a: Array2<f32> = ds
            .read_2d::<f32>()
            .map_err(|e| anyhow!("{}: reading '{key}' as float32: {e}", path.display()))?;
        if let Some(pos) = a.iter().position(|v| !v.is_finite()) {
            let bad = a.iter().filter(|v| !v.is_finite()).count();
            bail!(
                "{}: dataset '{key}' has {bad} NaN or infinite value(s) (first at TR {}, parcel {})",
                path.display(),
                pos / a.ncols(),
                pos % a.ncols()
            );
        }
        Ok(a)
    }

    pub(super) fn write_runs(
        path: &Path,
        runs: &[(String, Array2<f32>)],
        tr: Option<f64>,
    ) -> Result<()> {
        crate::core::io::write_atomic(path, |tmp| {
            let f = builder()
                .create(tmp)
                .map_err(|e| anyhow!("creating {}: {e}", tmp.display()))?;
            for (key, a) in runs {
                let std = a.as_standard_layout();
                f.new_dataset_builder()
                    .with_data(&std.view())
                    .create(key.as_str())
                    .map_err(|e| anyhow!("writing dataset '{key}': {e}"))?;
            }
            if let Some(tr) = tr {
                f.new_attr::<f64>()
                    .create("RepetitionTime")
                    .and_then(|a| a.write_scalar(&tr))
                    .map_err(|e| anyhow!("{e}"))?;
            }
            f.close().map_err(|e| anyhow!("{e}"))?;
            Ok(())
        })
    }
}

#[cfg(all(test, not(feature = "hdf5")))]
mod tests {
    /// The GPU build names the file and the feature instead of failing obscurely.
    #[test]
    fn without_the_feature_every_call_names_the_file_and_the_feature() {
        let p = std::path::Path::new("sub-01_task-friends_bold.h5");
        let e = format!("{:#}", super::entries(p).unwrap_err());
        assert!(e.starts_with("sub-01_task-friends_bold.h5: "), "{e}");
        assert!(e.contains("no HDF5 support (feature hdf5)"), "{e}");
        assert!(super::read_run(p, "x").is_err());
        assert!(super::root_attr_value(p, "RepetitionTime").is_err());
    }
}
