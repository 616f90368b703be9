//! Voxel shards: a fit split into K contiguous shares of its voxel blocks (`--voxel-shard
//! k/K`, one SLURM array task each), each writing a part (safetensors with per-voxel tensors
//! and `shard`, `voxels`, `n_voxels` metadata), and the merge that joins the parts into the
//! output one unsharded run writes. Used by `encode` (`encode_stream`) and
//! `bench-whole-brain`.
use crate::core::io::{Tensor, TensorFile};
use anyhow::{bail, Context, Result};
use ndarray::{concatenate, ArrayD, Axis};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One share of the voxel blocks: shard `k` of `n` (k = 0..n-1, as SLURM array indices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(t: &str) -> Result<Self> {
        let bad = || anyhow::anyhow!("voxel shard `{t}`: expected k/K with 0 <= k < K, e.g. 0/4");
        let (k, n) = t.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || k >= n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl Shard {
    /// The blocks `b0..b1` of `n_blocks` this shard fits: a contiguous, non-empty share, the
    /// shards in order covering every block once. Errors when there are fewer blocks than
    /// shards (some shard would have nothing to fit, and its part could never be made).
    pub fn blocks(&self, n_blocks: usize) -> Result<(usize, usize)> {
        if self.n > n_blocks {
            bail!(
                "voxel shard {self}: {} shards but only {n_blocks} voxel block(s) to share \
                 (use at most {n_blocks} shards, or a smaller --block-voxels)",
                self.n
            );
        }
        Ok((self.k * n_blocks / self.n, (self.k + 1) * n_blocks / self.n))
    }

    /// The metadata that marks a part: `shard` = "k/K", `voxels` = "v0..v1", `n_voxels`.
    pub fn metadata(&self, v0: usize, v1: usize, n_voxels: usize) -> [(String, String); 3] {
        [
            ("shard".to_string(), self.to_string()),
            ("voxels".to_string(), format!("{v0}..{v1}")),
            ("n_voxels".to_string(), n_voxels.to_string()),
        ]
    }
}

/// Metadata keys that describe a part rather than the whole fit (dropped by [`merge`]).
pub const PART_KEYS: [&str; 3] = ["shard", "voxels", "n_voxels"];

/// What the parts of a fit hold and how they join.
pub struct Layout<'a> {
    /// Per-voxel tensors and their voxel axis (0 for [voxels] and [voxels, k], 1 for
    /// [k, voxels]); concatenated along it. Tensors absent from part 0 are skipped.
    pub per_voxel: &'a [(&'a str, usize)],
    /// Tensors the same in every part (e.g. `alphas`), taken from part 0.
    pub shared: &'a [&'a str],
    /// Metadata keys that must agree between the parts (the fit's inputs and options).
    pub same: &'a [&'a str],
}

/// The parts joined: the tensors and part 0's metadata without [`PART_KEYS`].
pub struct Merged {
    pub tensors: Vec<(String, Tensor)>,
    pub metadata: HashMap<String, String>,
    pub n_voxels: usize,
}

/// Joins the parts `paths[k]` (part k of `paths.len()`). Refuses, naming the file: a missing
/// part (with `missing(k)` saying how to make it), a part of another shard count or index,
/// a voxel range that does not follow the previous part's, parts that differ in a `same`
/// metadata key, and parts that do not cover `0..n_voxels`.
pub fn merge(
    paths: &[PathBuf],
    layout: &Layout,
    missing: &dyn Fn(usize) -> String,
) -> Result<Merged> {
    let n = paths.len();
    if n == 0 {
        bail!("--shards must be at least 1");
    }
    let mut parts: Vec<TensorFile> = Vec::with_capacity(n);
    let mut next_v = 0usize;
    for (k, p) in paths.iter().enumerate() {
        if !p.exists() {
            bail!(
                "part {k} of {n} is missing: {} ({})",
                p.display(),
                missing(k)
            );
        }
        let f = TensorFile::open(p)?;
        let m = f.metadata();
        let get = |key: &str| -> Result<String> {
            m.get(key)
                .cloned()
                .with_context(|| format!("{}: not a shard part (no `{key}` metadata)", p.display()))
        };
        if get("shard")? != format!("{k}/{n}") {
            bail!(
                "{}: holds shard {}, expected {k}/{n}",
                p.display(),
                get("shard")?
            );
        }
        let range = get("voxels")?;
        let (a, b) = range
            .split_once("..")
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .with_context(|| format!("{}: bad `voxels` metadata `{range}`", p.display()))?;
        if a != next_v || b <= a {
            bail!(
                "{}: covers voxels {a}..{b} but the previous parts end at voxel {next_v} (mismatched part: refit it)",
                p.display()
            );
        }
        next_v = b;
        if let Some(f0) = parts.first() {
            let m0 = f0.metadata();
            for key in layout.same.iter().copied().chain(["n_voxels"]) {
                if m0.get(key) != m.get(key) {
                    bail!(
                        "{}: its `{key}` differs from part 0 ({}){}: the parts were fitted from \
                         different inputs or options (refit the mismatched part)",
                        p.display(),
                        paths[0].display(),
                        differing_fields(m.get(key), m0.get(key))
                    );
                }
            }
        }
        parts.push(f);
    }
    let m0 = parts[0].metadata();
    let total: usize = m0["n_voxels"]
        .parse()
        .with_context(|| format!("{}: bad `n_voxels` metadata", paths[0].display()))?;
    if next_v != total {
        bail!("the {n} parts cover voxels 0..{next_v} of {total} (mismatched parts)");
    }
    let mut tensors = vec![];
    for &(name, axis) in layout.per_voxel {
        if parts[0].has(name) {
            tensors.push((name.to_string(), join(&parts, name, axis)?));
        }
    }
    for &name in layout.shared {
        if parts[0].has(name) {
            tensors.push((name.to_string(), read(&parts[0], name)?));
        }
    }
    let metadata = m0
        .into_iter()
        .filter(|(k, _)| !PART_KEYS.contains(&k.as_str()))
        .collect();
    Ok(Merged {
        tensors,
        metadata,
        n_voxels: total,
    })
}

/// When `a` and `b` are JSON objects (as `inputs` keys often are): " (FIELD: A vs B, ...)" for
/// the fields that differ; otherwise empty.
pub fn differing_fields(a: Option<&String>, b: Option<&String>) -> String {
    let obj = |t: Option<&String>| match t.and_then(|t| serde_json::from_str(t).ok()) {
        Some(serde_json::Value::Object(m)) => Some(m),
        _ => None,
    };
    let (Some(a), Some(b)) = (obj(a), obj(b)) else {
        return String::new();
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("-".into(), |v| v.to_string());
            format!("{k}: {} vs {}", show(a.get(k)), show(b.get(k)))
        })
        .collect();
    if diff.is_empty() {
        String::new()
    } else {
        format!(" ({})", diff.join(", "))
    }
}

/// A tensor of any of the kinds parts hold (f64, f32, i64, i32, u8).
fn read(f: &TensorFile, name: &str) -> Result<Tensor> {
    f.f64(name)
        .map(Tensor::F64)
        .or_else(|_| f.f32(name).map(Tensor::F32))
        .or_else(|_| f.i64(name).map(Tensor::I64))
        .or_else(|_| f.i32(name).map(Tensor::I32))
        .or_else(|_| f.u8(name).map(Tensor::U8))
        .with_context(|| format!("{}: tensor `{name}`", f.path().display()))
}

fn cat<T: Clone>(arrs: &[ArrayD<T>], axis: usize, name: &str) -> Result<ArrayD<T>> {
    let views: Vec<_> = arrs.iter().map(|a| a.view()).collect();
    concatenate(Axis(axis), &views)
        .with_context(|| format!("joining `{name}` of the parts along axis {axis}"))
}

fn join(parts: &[TensorFile], name: &str, axis: usize) -> Result<Tensor> {
    let all: Vec<Tensor> = parts.iter().map(|f| read(f, name)).collect::<Result<_>>()?;
    macro_rules! same_kind {
        ($variant:ident) => {{
            let arrs = all
                .into_iter()
                .zip(parts)
                .map(|(t, f)| match t {
                    Tensor::$variant(a) => Ok(a),
                    _ => bail!(
                        "{}: `{name}` has another dtype than in part 0",
                        f.path().display()
                    ),
                })
                .collect::<Result<Vec<_>>>()?;
            Tensor::$variant(cat(&arrs, axis, name)?)
        }};
    }
    Ok(match &all[0] {
        Tensor::F64(_) => same_kind!(F64),
        Tensor::F32(_) => same_kind!(F32),
        Tensor::I64(_) => same_kind!(I64),
        Tensor::I32(_) => same_kind!(I32),
        Tensor::U8(_) => same_kind!(U8),
    })
}

/// Where part `k` of `n` lives in `dir`: `dir/part-k-of-n.safetensors`.
pub fn part_path(dir: &Path, k: usize, n: usize) -> PathBuf {
    dir.join(format!("part-{k}-of-{n}.safetensors"))
}
