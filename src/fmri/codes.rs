//! The token cache: VQ-VAE codes of one movie's clips, stored as safetensors
//! (`codes` i64 [clips, t, h, w], `times` f64 [clips] clip centres in seconds) with metadata
//! naming the tokenizer (`tokenizer`: its folder, `n_codes`) and the clip cut
//! (`clip_len`, `frame_stride`, `hop`).
use crate::core::io::{self, Tensor as IoTensor, TensorFile};
use crate::models::gpt::TokenBatch;
use crate::nn::trainer::Data;
use anyhow::{bail, Context, Result};
use ndarray::{Array1, Array4};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Device;

/// Codes of one movie.
#[derive(Debug, Clone)]
pub struct CodeFile {
    pub codes: Array4<i64>,
    pub times: Array1<f64>,
    pub meta: HashMap<String, String>,
}

impl CodeFile {
    pub fn save(&self, path: &Path) -> Result<()> {
        io::write_tensors(
            path,
            vec![
                ("codes", IoTensor::I64(self.codes.clone().into_dyn())),
                ("times", IoTensor::F64(self.times.clone().into_dyn())),
            ],
            self.meta.clone(),
        )
    }

    pub fn load(path: &Path) -> Result<Self> {
        let f = TensorFile::open(path)?;
        let codes = f.i64("codes")?;
        let shape = codes.shape().to_vec();
        let codes: Array4<i64> = codes.into_dimensionality().map_err(|_| {
            anyhow::anyhow!(
                "{}: codes must be [clips, t, h, w], found {shape:?}",
                path.display()
            )
        })?;
        let times = io::into_1d(f.f64("times")?, &format!("{}: times", path.display()))?;
        if times.len() != codes.shape()[0] {
            bail!(
                "{}: {} times for {} clips",
                path.display(),
                times.len(),
                codes.shape()[0]
            );
        }
        let meta = f.metadata();
        let n_codes: i64 = meta
            .get("n_codes")
            .and_then(|s| s.parse().ok())
            .with_context(|| {
                format!(
                    "{}: no n_codes in metadata: not a brainscale code cache",
                    path.display()
                )
            })?;
        if let Some(&c) = codes.iter().find(|&&c| c < 0 || c >= n_codes) {
            bail!(
                "{}: code {c} outside the codebook 0..{n_codes}",
                path.display()
            );
        }
        Ok(Self { codes, times, meta })
    }

    pub fn n_codes(&self) -> i64 {
        self.meta
            .get("n_codes")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn latent_shape(&self) -> [i64; 3] {
        let s = self.codes.shape();
        [s[1] as i64, s[2] as i64, s[3] as i64]
    }
}

/// The code files of a folder (`*.codes.safetensors`, sorted), or the given files.
pub fn list_code_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading code folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|q| q.to_string_lossy().ends_with(".codes.safetensors"))
                .collect();
            v.sort();
            if v.is_empty() {
                bail!(
                    "{}: no *.codes.safetensors files (run `brainscale tokenize` first)",
                    p.display()
                );
            }
            out.extend(v);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("code cache {} not found", p.display());
        }
    }
    if out.is_empty() {
        bail!("no code caches given");
    }
    Ok(out)
}

/// Training sequences from code caches, split into train and held-out clips.
pub struct CodeData {
    /// [clips, t·h·w] i64, in file then clip order.
    pub train: tch::Tensor,
    pub eval: tch::Tensor,
    pub latent_shape: [i64; 3],
    pub n_codes: i64,
    /// Tokenizer folder recorded by `tokenize`.
    pub tokenizer: Option<PathBuf>,
}

/// Loads code caches; the last `eval_fraction` of each file's clips (at least one when the
/// fraction is positive) is held out, so held-out clips are not interleaved with training ones.
pub fn load_code_data(files: &[PathBuf], eval_fraction: f64) -> Result<CodeData> {
    if !(0.0..1.0).contains(&eval_fraction) {
        bail!("--eval-fraction must be in [0, 1), got {eval_fraction}");
    }
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    let mut shape: Option<([i64; 3], i64, Option<PathBuf>)> = None;
    for path in files {
        let f = CodeFile::load(path)?;
        let here = (
            f.latent_shape(),
            f.n_codes(),
            f.meta.get("tokenizer").map(PathBuf::from),
        );
        match &shape {
            None => shape = Some(here.clone()),
            Some(s) if s.0 != here.0 || s.1 != here.1 => bail!(
                "{}: codes of shape {:?} from a {}-code tokenizer differ from the first file's {:?} / {}",
                path.display(),
                here.0,
                here.1,
                s.0,
                s.1
            ),
            _ => {}
        }
        let n = f.codes.shape()[0];
        let n_eval = if eval_fraction > 0.0 && n > 0 {
            ((n as f64 * eval_fraction).ceil() as usize).min(n)
        } else {
            0
        };
        let l = f.codes.len() / n.max(1);
        let flat = f
            .codes
            .as_standard_layout()
            .to_owned()
            .into_shape_with_order((n, l))?;
        for (i, row) in flat.outer_iter().enumerate() {
            if i < n - n_eval {
                train.push(row.to_vec())
            } else {
                eval.push(row.to_vec())
            }
        }
    }
    let (latent_shape, n_codes, tokenizer) = shape.expect("at least one file");
    let to_tensor = |rows: Vec<Vec<i64>>| {
        let l = latent_shape.iter().product::<i64>();
        let flat: Vec<i64> = rows.concat();
        tch::Tensor::from_slice(&flat).view([-1, l])
    };
    Ok(CodeData {
        train: to_tensor(train),
        eval: to_tensor(eval),
        latent_shape,
        n_codes,
        tokenizer,
    })
}

/// Training clips from `train`, held-out clips from `eval`.
impl Data<TokenBatch> for CodeData {
    fn train_batch(
        &self,
        rng: &mut ChaCha8Rng,
        batch_size: usize,
        device: Device,
    ) -> Result<TokenBatch> {
        self.train.train_batch(rng, batch_size, device)
    }

    fn eval_len(&self) -> usize {
        Data::<TokenBatch>::eval_len(&self.eval)
    }

    fn eval_batch(&self, start: usize, len: usize, device: Device) -> Result<TokenBatch> {
        self.eval.eval_batch(start, len, device)
    }
}
