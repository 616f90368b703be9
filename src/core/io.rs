//! File helpers shared by every stage: atomic writes (temp file + rename) and safetensors I/O
//! with errors that name the file and the tensor.
use anyhow::{anyhow, bail, Context, Result};
use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A file's modification time in nanoseconds (0 when it is missing): part of the keys that
/// decide whether saved work is still valid.
pub fn mtime_ns(p: &Path) -> u128 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// A temporary sibling of `path` that keeps its extension(s), so writers that look at the
/// extension (`.nii.gz`, `.png`) behave the same; renamed into place by [`commit`].
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = format!(".tmp-{}-", std::process::id());
    path.with_file_name(format!("{tag}{name}"))
}

/// Renames a finished temporary file into place (atomic on one filesystem).
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Writes a file through `write(tmp_path)` then renames it into place; the parent folder is
/// created. An interrupted write never leaves a file under the final name.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating folder {}", parent.display()))?;
        }
    }
    let tmp = temp_path(path);
    let result = write(&tmp);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result.with_context(|| format!("writing {}", path.display()));
    }
    commit(&tmp, path)
}

/// Atomically writes bytes.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |tmp| Ok(std::fs::write(tmp, bytes)?))
}

/// Atomically writes pretty JSON.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_bytes(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// Reads JSON with the file named in the error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing JSON in {}", path.display()))
}

/// Atomically writes serde rows as CSV with a header.
pub fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    write_atomic(path, |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        for r in rows {
            w.serialize(r)?;
        }
        w.flush()?;
        Ok(())
    })
}

/// Reads serde rows from a CSV with a header; a missing file is no rows. Errors name the file.
pub fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    csv::Reader::from_path(path)
        .with_context(|| format!("reading {}", path.display()))?
        .deserialize()
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// Appends one row to a CSV written by [`write_csv`] (rewritten atomically).
pub fn append_csv<T: serde::Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    row: T,
) -> Result<()> {
    let mut rows: Vec<T> = read_csv(path)?;
    rows.push(row);
    write_csv(path, &rows)
}

/// One named array to store; f32, f64, i64 and u8 are what the pipeline needs.
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    I64(ArrayD<i64>),
    I32(ArrayD<i32>),
    U8(ArrayD<u8>),
}

impl Tensor {
    fn bytes(&self) -> (Dtype, Vec<usize>, Vec<u8>) {
        fn le<T: Copy, const N: usize>(a: &ArrayD<T>, f: fn(T) -> [u8; N]) -> Vec<u8> {
            a.iter().flat_map(|&x| f(x)).collect()
        }
        match self {
            Tensor::F32(a) => (Dtype::F32, a.shape().to_vec(), le(a, f32::to_le_bytes)),
            Tensor::F64(a) => (Dtype::F64, a.shape().to_vec(), le(a, f64::to_le_bytes)),
            Tensor::I64(a) => (Dtype::I64, a.shape().to_vec(), le(a, i64::to_le_bytes)),
            Tensor::I32(a) => (Dtype::I32, a.shape().to_vec(), le(a, i32::to_le_bytes)),
            Tensor::U8(a) => (Dtype::U8, a.shape().to_vec(), a.iter().copied().collect()),
        }
    }
}

/// Atomically writes named tensors (in logical, row-major order) plus string metadata.
pub fn write_tensors<S: Into<String>>(
    path: &Path,
    tensors: Vec<(S, Tensor)>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, t)| {
            let (d, s, b) = t.bytes();
            (n.into(), d, s, b)
        })
        .collect();
    let views = raw
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>>>()?;
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata)
    };
    write_atomic(path, |tmp| {
        safetensors::serialize_to_file(views, &meta, tmp).map_err(|e| anyhow!("{e}"))
    })
}

/// A safetensors file read into memory, with typed getters whose errors name file and tensor.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{} is not a valid safetensors file: {e}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
        })
    }

    fn view(&self, name: &str, want: Dtype) -> Result<(Vec<usize>, &[u8])> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("validated in open");
        let t = st
            .tensor(name)
            .map_err(|_| anyhow!("{} has no tensor named '{name}'", self.path.display()))?;
        if t.dtype() != want {
            bail!(
                "{}: tensor '{name}' is {:?}, expected {want:?}",
                self.path.display(),
                t.dtype()
            );
        }
        let shape = t.shape().to_vec();
        let data = t.data();
        // Re-borrow from self.bytes: the view's data is a slice of it.
        let start = data.as_ptr() as usize - self.bytes.as_ptr() as usize;
        Ok((shape, &self.bytes[start..start + data.len()]))
    }

    pub fn has(&self, name: &str) -> bool {
        safetensors::SafeTensors::deserialize(&self.bytes)
            .map(|st| st.tensor(name).is_ok())
            .unwrap_or(false)
    }

    pub fn f32(&self, name: &str) -> Result<ArrayD<f32>> {
        let (shape, b) = self.view(name, Dtype::F32)?;
        let v = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), v)?)
    }

    pub fn f64(&self, name: &str) -> Result<ArrayD<f64>> {
        let (shape, b) = self.view(name, Dtype::F64)?;
        let v = b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), v)?)
    }

    pub fn i64(&self, name: &str) -> Result<ArrayD<i64>> {
        let (shape, b) = self.view(name, Dtype::I64)?;
        let v = b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), v)?)
    }

    pub fn i32(&self, name: &str) -> Result<ArrayD<i32>> {
        let (shape, b) = self.view(name, Dtype::I32)?;
        let v = b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), v)?)
    }

    pub fn u8(&self, name: &str) -> Result<ArrayD<u8>> {
        let (shape, b) = self.view(name, Dtype::U8)?;
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), b.to_vec())?)
    }

    pub fn metadata(&self) -> HashMap<String, String> {
        safetensors::SafeTensors::read_metadata(&self.bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Converts a dynamic array to 2-D with an error naming the file and tensor.
pub fn into_2d<T>(a: ArrayD<T>, what: &str) -> Result<ndarray::Array2<T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality()
        .map_err(|_| anyhow!("{what}: expected a 2-D array, found shape {shape:?}"))
}

/// Converts a dynamic array to 1-D with an error naming the file and tensor.
pub fn into_1d<T>(a: ArrayD<T>, what: &str) -> Result<ndarray::Array1<T>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality()
        .map_err(|_| anyhow!("{what}: expected a 1-D array, found shape {shape:?}"))
}

/// A safetensors file holding one f32 tensor [rows, cols], written row block by row block
/// (header first, rows appended in order) so that the tensor never has to be in memory;
/// renamed into place by [`RowWriter::finish`] once complete (dropped unfinished, it
/// removes its temporary file). The one streamed safetensors writer of the program: ridge
/// weights of `fit_cv_streaming`, streamed encodes and their shard merges.
pub struct RowWriter {
    path: PathBuf,
    tmp: PathBuf,
    w: std::io::BufWriter<std::fs::File>,
    rows: usize,
    cols: usize,
    written: usize,
    done: bool,
}

impl Drop for RowWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl RowWriter {
    /// Starts `path` (its folder created) with tensor `name` of `rows` × `cols` and string
    /// metadata `meta`. Errors: the folder or the temporary file cannot be created.
    pub fn create(
        path: &Path,
        name: &str,
        rows: usize,
        cols: usize,
        meta: &[(&str, &str)],
    ) -> Result<Self> {
        use std::io::Write;
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
        let mut header = serde_json::Map::new();
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, rows * cols * 4]}),
        );
        let meta: serde_json::Map<String, serde_json::Value> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
        let mut h = serde_json::to_vec(&header)?;
        // The format pads the header with spaces to a multiple of 8 bytes.
        h.resize(h.len().div_ceil(8) * 8, b' ');
        let tmp = temp_path(path);
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            w,
            rows,
            cols,
            written: 0,
            done: false,
        })
    }

    /// Columns of the tensor.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Appends the rows of `a` (each `cols` long).
    pub fn rows(&mut self, a: ndarray::ArrayView2<f32>) -> Result<()> {
        use std::io::Write;
        if a.ncols() != self.cols {
            bail!(
                "{}: rows of {} values appended to a tensor of {} columns",
                self.path.display(),
                a.ncols(),
                self.cols
            );
        }
        for row in a.rows() {
            for x in row {
                self.w.write_all(&x.to_le_bytes())?;
            }
        }
        self.written += a.nrows();
        Ok(())
    }

    /// Appends `rows` whole rows of raw little-endian f32 bytes read from `r` (a
    /// [`TensorReader`] of another file). Errors: `r` ends early.
    pub fn copy_rows(&mut self, r: &mut impl std::io::Read, rows: usize) -> Result<()> {
        let want = (rows * self.cols * 4) as u64;
        let n = std::io::copy(&mut std::io::Read::take(r, want), &mut self.w)?;
        if n != want {
            bail!("{}: a part ended early", self.path.display());
        }
        self.written += rows;
        Ok(())
    }

    /// Checks that every row was written and renames the file into place.
    pub fn finish(mut self) -> Result<()> {
        use std::io::Write;
        if self.written != self.rows {
            bail!(
                "{}: {} of {} rows written",
                self.path.display(),
                self.written,
                self.rows
            );
        }
        self.w.flush()?;
        commit(&self.tmp, &self.path)?;
        self.done = true;
        Ok(())
    }
}

/// One tensor of a safetensors file, positioned at its first data byte for streamed reads
/// (the file is not read whole, unlike [`TensorFile`]); the counterpart of [`RowWriter`].
pub struct TensorReader {
    file: std::io::BufReader<std::fs::File>,
    /// Shape of the tensor; empty when the file has no tensor of that name.
    pub shape: Vec<usize>,
    /// Its safetensors dtype name (`F32`, ...).
    pub dtype: String,
}

impl TensorReader {
    /// Reads the header of `file` (opened from `path`, named in errors) and seeks to the
    /// data of tensor `name`. Errors: no header, a header cut short or not JSON.
    pub fn new(file: std::fs::File, path: &Path, name: &str) -> Result<Self> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::io::BufReader::new(file);
        let mut len = [0u8; 8];
        file.read_exact(&mut len)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let hl = u64::from_le_bytes(len);
        let mut h = vec![0u8; hl.min(1 << 20) as usize];
        file.read_exact(&mut h)
            .with_context(|| format!("{}: header cut short", path.display()))?;
        let json: serde_json::Value = serde_json::from_slice(&h)
            .with_context(|| format!("{}: header is not JSON", path.display()))?;
        let t = &json[name];
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as usize)
                    .collect()
            })
            .unwrap_or_default();
        let start = t["data_offsets"][0].as_u64().unwrap_or(0);
        file.seek(SeekFrom::Start(8 + hl + start))?;
        Ok(Self {
            file,
            shape,
            dtype: t["dtype"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// The tensor's data from its first byte on.
    pub fn data(&mut self) -> &mut impl std::io::Read {
        &mut self.file
    }
}

/// The header of a safetensors file, read without its data (8-byte length, JSON), for
/// streamed reads of large files by byte range; checks that every tensor's bytes lie inside
/// the file and match its shape and dtype.
pub struct TensorHeader {
    path: PathBuf,
    /// File offset of the data section (8 + header length).
    pub data_start: u64,
    json: serde_json::Map<String, serde_json::Value>,
}

/// One tensor's entry in a [`TensorHeader`]: dtype name (`U8`, `F64`, ...), shape, and its
/// bytes' range in the file (absolute offsets).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub begin: u64,
    pub end: u64,
}

impl TensorHeader {
    /// Reads the header of `path`. Errors name the file: no header, a header cut short or
    /// longer than 100 MB, not JSON.
    pub fn open(path: &Path) -> Result<Self> {
        use std::io::Read;
        let mut f =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let file_len = f.metadata()?.len();
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let hl = u64::from_le_bytes(len);
        if hl > 100_000_000 || 8 + hl > file_len {
            bail!(
                "{}: not a safetensors file (header length {hl})",
                path.display()
            );
        }
        let mut h = vec![0u8; hl as usize];
        f.read_exact(&mut h)
            .with_context(|| format!("{}: header cut short", path.display()))?;
        let json: serde_json::Value = serde_json::from_slice(&h)
            .with_context(|| format!("{}: header is not JSON", path.display()))?;
        let json = match json {
            serde_json::Value::Object(m) => m,
            _ => bail!("{}: header is not a JSON object", path.display()),
        };
        let me = Self {
            path: path.to_path_buf(),
            data_start: 8 + hl,
            json,
        };
        for name in me.json.keys().filter(|k| *k != "__metadata__") {
            let e = me.tensor(name)?;
            if e.end > file_len {
                bail!(
                    "{}: tensor '{name}' ends at byte {} of a {file_len}-byte file (cut short?)",
                    path.display(),
                    e.end
                );
            }
        }
        Ok(me)
    }

    /// The `__metadata__` strings (empty when absent).
    pub fn metadata(&self) -> HashMap<String, String> {
        self.json
            .get("__metadata__")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tensor `name`'s entry. Errors: no such tensor, a malformed entry, or a byte range that
    /// does not match its shape and dtype.
    pub fn tensor(&self, name: &str) -> Result<TensorEntry> {
        let p = self.path.display();
        let t = self
            .json
            .get(name)
            .ok_or_else(|| anyhow!("{p} has no tensor named '{name}'"))?;
        let dtype = t["dtype"]
            .as_str()
            .ok_or_else(|| anyhow!("{p}: tensor '{name}' has no dtype"))?
            .to_string();
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect())
            .ok_or_else(|| anyhow!("{p}: tensor '{name}' has no valid shape"))?;
        let off = |i: usize| t["data_offsets"][i].as_u64();
        let (Some(b), Some(e)) = (off(0), off(1)) else {
            bail!("{p}: tensor '{name}' has no valid data_offsets");
        };
        let width = match dtype.as_str() {
            "U8" | "I8" | "BOOL" => 1,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "F32" | "I32" | "U32" => 4,
            "F64" | "I64" | "U64" => 8,
            d => bail!("{p}: tensor '{name}' has unknown dtype {d}"),
        };
        let n: usize = shape.iter().product::<usize>() * width;
        if e < b || e - b != n as u64 {
            bail!(
                "{p}: tensor '{name}' of shape {shape:?} {dtype} has {} bytes",
                e.wrapping_sub(b)
            );
        }
        Ok(TensorEntry {
            dtype,
            shape,
            begin: self.data_start + b,
            end: self.data_start + e,
        })
    }
}
