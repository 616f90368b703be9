//! The voxel-major cache: a subject's BOLD runs converted once into voxel blocks on disk, so
//! that the encode stage can stream Y block by block with bounded memory
//! (`encode --stream`, `encode_stream`).
//!
//! Layout of a cache folder (default WORK/voxcache/sub-XX):
//! - `run-<label>.safetensors`, one per run: tensors `block-00000`, `block-00001`, ... of
//!   f32 [TRs of the run, voxels of the block] (the last block may be narrower), the run's
//!   time series exactly as `load_subject` gives them (masked, confounds regressed out,
//!   parcel means), not yet z-scored: the reader z-scores each run's block after trimming,
//!   as `encode` does, so streamed fits are bit-identical to in-memory ones for every split
//!   and trim (a cache z-scored over whole runs, z-scored again after trimming, differs by
//!   rounding: on the medium synthetic dataset with 3 + 2 TRs trimmed, one voxel in 22616
//!   changed its best alpha). Metadata `key` records what the file was made from. Reading
//!   one voxel block reads one contiguous slab of each run file.
//! - `voxels.safetensors`: `voxel_ijk` int32 [voxels, 3] (voxel data) and the metadata
//!   `voxel_order`, `n_columns`, `block_voxels`.
//!
//! Safetensors (not chunked HDF5) because every file is then written by one sequential pass
//! and renamed into place (an interrupted conversion leaves no half-written file that a rerun
//! would trust: runs already converted are skipped, the others redone), and any reader
//! (numpy, torch, `safetensors` in Python) opens a block without HDF5.
//!
//! Memory: converting holds one run's masked time series (the NIfTI is read volume by
//! volume, gzip decompressed as a stream: `nifti_stream`); reading holds one block.
use crate::core::io;
use crate::fmri::dataset::load::RunReader;
use crate::fmri::dataset::{Space, Subject};
use anyhow::{bail, Context, Result};
use ndarray::{s, Array2};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Default voxels per block: the ridge's voxel chunk size (so a streamed fit chunks its
/// voxels exactly as an in-memory one) and ~1 MB per 64 TRs.
pub const DEFAULT_BLOCK: usize = 4096;

/// Format version, part of every run file's key.
const VERSION: &str = "voxcache-2";

/// The default cache folder of a subject.
pub fn default_dir(work: &Path, subject: &str) -> PathBuf {
    work.join("voxcache").join(format!("sub-{subject}"))
}

/// An opened cache: where each run's blocks are.
#[derive(Debug, Clone)]
pub struct VoxCache {
    pub dir: PathBuf,
    /// Columns (mask voxels, or parcels).
    pub n_columns: usize,
    pub block: usize,
    /// Per run (subject order): file and TR count.
    pub runs: Vec<(PathBuf, usize)>,
    /// (i, j, k) of each voxel (empty for parcels).
    pub voxel_ijk: Option<Array2<i32>>,
}

/// What converting did.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildReport {
    pub converted: usize,
    pub skipped: usize,
}

fn run_path(dir: &Path, label: &str) -> PathBuf {
    dir.join(format!("run-{label}.safetensors"))
}

fn block_name(b: usize) -> String {
    format!("block-{b:05}")
}

/// What a run's cached blocks depend on: the format, the block size, the subject's space
/// and options (mask, atlas, confound columns) and the run's files (by modification time).
fn run_key(s: &Subject, i: usize, n_columns: usize, block: usize) -> String {
    let r = &s.runs[i];
    let m = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| format!("{}@{}", p.display(), io::mtime_ns(p)))
            .unwrap_or_default()
    };
    format!(
        "{VERSION}|block {block}|columns {n_columns}|mask {}|atlas {}|confounds {:?}|{:?}|{}@{}",
        m(&s.mask),
        m(&s.atlas),
        s.confound_columns,
        r.source,
        r.bold.display(),
        io::mtime_ns(&r.bold)
    )
}

/// Converts the subject's runs into the cache at `dir` (resumable: runs whose file exists
/// with the same key are skipped), then opens it. `block`: voxels per block (> 0).
///
/// Errors: those of reading the runs (named files), a block size of 0, I/O errors naming
/// the file.
pub fn build(
    s: &Subject,
    dir: &Path,
    block: usize,
    progress: bool,
) -> Result<(VoxCache, BuildReport)> {
    if block == 0 {
        bail!("--block-voxels must be at least 1");
    }
    let reader = RunReader::open(s)?;
    let space = reader.space()?;
    let n_columns = space.len();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let vpath = dir.join("voxels.safetensors");
    let ijk = match &space {
        Space::Voxels { mask, .. } => Some(mask.voxel_ijk()),
        Space::Parcels { .. } => None,
    };
    let meta = HashMap::from([
        (
            "voxel_order".to_string(),
            crate::fmri::dataset::nifti_io::VOXEL_ORDER.to_string(),
        ),
        ("n_columns".to_string(), n_columns.to_string()),
        ("block_voxels".to_string(), block.to_string()),
    ]);
    let tensors = match &ijk {
        Some(a) => vec![("voxel_ijk", io::Tensor::I32(a.clone().into_dyn()))],
        None => vec![(
            "n_columns",
            io::Tensor::I64(ndarray::arr1(&[n_columns as i64]).into_dyn()),
        )],
    };
    io::write_tensors(&vpath, tensors, meta)?;

    let bar = if progress {
        crate::core::progress::progress(s.runs.len() as u64, "voxel cache")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut rep = BuildReport::default();
    let mut runs = Vec::with_capacity(s.runs.len());
    for (i, r) in s.runs.iter().enumerate() {
        let path = run_path(dir, &r.label());
        let key = run_key(s, i, n_columns, block);
        let done = read_header(&path)
            .ok()
            .filter(|h| h.metadata.get("key") == Some(&key));
        let nt = match done {
            Some(h) => {
                rep.skipped += 1;
                h.rows
            }
            None => {
                let (y, _) = reader.read(i, true)?;
                if y.ncols() != n_columns {
                    bail!(
                        "{}: {} columns, the subject's space has {n_columns}",
                        r.bold.display(),
                        y.ncols()
                    );
                }
                write_run(&path, &y, block, &key)?;
                rep.converted += 1;
                y.nrows()
            }
        };
        runs.push((path, nt));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((
        VoxCache {
            dir: dir.to_path_buf(),
            n_columns,
            block,
            runs,
            voxel_ijk: ijk,
        },
        rep,
    ))
}

/// Writes a run's [TRs, columns] as blocks of `block` columns (safetensors, one pass,
/// temp + rename).
fn write_run(path: &Path, y: &Array2<f32>, block: usize, key: &str) -> Result<()> {
    let (nt, v) = y.dim();
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (b, j0) in (0..v).step_by(block).enumerate() {
        let w = (j0 + block).min(v) - j0;
        let bytes = nt * w * 4;
        header.insert(
            block_name(b),
            serde_json::json!({"dtype": "F32", "shape": [nt, w], "data_offsets": [off, off + bytes]}),
        );
        off += bytes;
    }
    header.insert(
        "__metadata__".to_string(),
        serde_json::json!({"key": key, "layout": "TRs x voxels of the block (not z-scored)"}),
    );
    io::write_atomic(path, |tmp| {
        let mut h = serde_json::to_vec(&header)?;
        h.resize(h.len().div_ceil(8) * 8, b' ');
        let mut w = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for j0 in (0..v).step_by(block) {
            let blk = y.slice(s![.., j0..(j0 + block).min(v)]);
            for row in blk.rows() {
                for x in row {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
        }
        w.flush()?;
        Ok(())
    })
}

/// A run file's header: tensor name → (shape, data offsets), metadata, where data start.
struct RunHeader {
    tensors: HashMap<String, ([usize; 2], [usize; 2])>,
    metadata: HashMap<String, String>,
    data_start: u64,
    rows: usize,
}

fn read_header(path: &Path) -> Result<RunHeader> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{}: not a safetensors file (too short)", path.display()))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        bail!("{}: header of {n} bytes (corrupt file)", path.display());
    }
    let mut h = vec![0u8; n as usize];
    f.read_exact(&mut h)
        .with_context(|| format!("{}: header cut short", path.display()))?;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&h)
        .with_context(|| format!("{}: header is not JSON", path.display()))?;
    let mut tensors = HashMap::new();
    let mut metadata = HashMap::new();
    let mut rows = 0;
    for (k, v) in json {
        if k == "__metadata__" {
            if let Some(m) = v.as_object() {
                for (mk, mv) in m {
                    metadata.insert(mk.clone(), mv.as_str().unwrap_or_default().to_string());
                }
            }
            continue;
        }
        let get = |field: &str| -> Option<[usize; 2]> {
            let a = v.get(field)?.as_array()?;
            Some([a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize])
        };
        let (Some(shape), Some(offs)) = (get("shape"), get("data_offsets")) else {
            bail!("{}: tensor {k} has no 2-D shape or offsets", path.display());
        };
        if v.get("dtype").and_then(|d| d.as_str()) != Some("F32")
            || offs[1] - offs[0] != shape[0] * shape[1] * 4
        {
            bail!("{}: tensor {k} is not f32 of its shape", path.display());
        }
        rows = shape[0];
        tensors.insert(k, (shape, offs));
    }
    Ok(RunHeader {
        tensors,
        metadata,
        data_start: 8 + n,
        rows,
    })
}

impl VoxCache {
    /// Number of blocks.
    pub fn n_blocks(&self) -> usize {
        self.n_columns.div_ceil(self.block)
    }

    /// Voxel range of block `b`.
    pub fn block_range(&self, b: usize) -> (usize, usize) {
        (b * self.block, ((b + 1) * self.block).min(self.n_columns))
    }

    /// Columns `j0..j1` of run `run` (subject order): [TRs, j1 - j0]. `j0` must start a
    /// block; the range may span several blocks.
    pub fn read(&self, run: usize, j0: usize, j1: usize) -> Result<Array2<f32>> {
        let (path, nt) = &self.runs[run];
        if j0 % self.block != 0 || j1 > self.n_columns || j0 >= j1 {
            bail!(
                "{}: voxels {j0}..{j1} do not start a block of {} or are out of range",
                self.dir.display(),
                self.block
            );
        }
        let h = read_header(path)?;
        let mut f =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut out = Array2::<f32>::zeros((*nt, j1 - j0));
        let mut buf = Vec::new();
        let mut c0 = 0;
        for b in j0 / self.block..(j1 - 1) / self.block + 1 {
            let name = block_name(b);
            let Some(&(shape, offs)) = h.tensors.get(&name) else {
                bail!("{}: no tensor {name} (rebuild the cache)", path.display());
            };
            let (bj0, bj1) = self.block_range(b);
            if shape != [*nt, bj1 - bj0] {
                bail!(
                    "{}: {name} is {:?}, expected [{nt}, {}] (rebuild the cache)",
                    path.display(),
                    shape,
                    bj1 - bj0
                );
            }
            buf.resize(offs[1] - offs[0], 0u8);
            f.seek(SeekFrom::Start(h.data_start + offs[0] as u64))?;
            f.read_exact(&mut buf)
                .with_context(|| format!("{}: {name} cut short", path.display()))?;
            let w = (bj1.min(j1)) - bj0;
            for t in 0..*nt {
                let row = &buf[t * shape[1] * 4..];
                for j in 0..w {
                    let o = j * 4;
                    out[[t, c0 + j]] =
                        f32::from_le_bytes([row[o], row[o + 1], row[o + 2], row[o + 3]]);
                }
            }
            c0 += w;
        }
        Ok(out)
    }
}
