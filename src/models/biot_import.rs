//! Import of BIOT's published checkpoints (ycq091044/BIOT `pretrained-models/*.ckpt`:
//! `EEG-PREST-16-channels.ckpt`, `EEG-SHHS+PREST-18-channels.ckpt`,
//! `EEG-six-datasets-18-channels.ckpt`): PyTorch `state_dict`s of the authors' `BIOTEncoder`,
//! read natively (zip + pickle) with the `pytorch-reader` crate — no Python at use time.
//!
//! Names, authors' → brainscale ([`crate::models::biot`], under `encoder.`), with the
//! transformer's names those of lucidrains' `linear_attention_transformer`:
//! - `patch_embedding.projection.{weight,bias}` → `patch_embedding.{weight,bias}`;
//! - `channel_tokens.weight` [n_channels, d] → `channel_tokens.weight` (its rows set
//!   `n_channels`);
//! - `transformer.layers.layers.{i}.0.norm.*` → `layers.{i}.attn_norm.*`,
//!   `….{i}.0.fn.to_{q,k,v}.weight`, `….{i}.0.fn.to_out.{weight,bias}` → `layers.{i}.attn.*`,
//!   `….{i}.1.norm.*` → `layers.{i}.ff_norm.*`, `….{i}.1.fn.fn.w{1,2}.*` → `layers.{i}.ff.w{1,2}.*`;
//! - `index` (0..n_channels) and `positional_encoding.pe` [1, max_len, d] are buffers: `pe`'s
//!   length becomes `max_frames` (1000 in the reference) and its values are checked against
//!   the sinusoidal table; `index` must be 0..n_channels.
//!
//! A prefix `biot.` (a whole `BIOTClassifier` / `UnsupervisedPretrain` state dict) or a
//! top-level `state_dict` key (Lightning) is accepted; the classifier head is not imported.
//! The config is inferred: d from the projection, n_fft = 2·(bins − 1), hop = n_fft / 2
//! (the published models' 200/100; override with `hop`), heads 8 (not stored in the weights:
//! BIOT's value), depth from the layer count, ff_mult from `w1`.
use crate::models::biot::BiotConfig;
use anyhow::{anyhow, bail, Context, Result};
use pytorch_reader::{DType, PytorchReader};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Heads of every published BIOT checkpoint (not recoverable from the weights).
pub const BIOT_HEADS: i64 = 8;

/// A checkpoint read into brainscale's names and the config it implies.
pub struct ImportedBiot {
    pub config: BiotConfig,
    /// Encoder variables under brainscale's names, prefixed `encoder.` (f32, CPU).
    pub tensors: BTreeMap<String, Tensor>,
}

fn to_tensor(t: &pytorch_reader::Tensor, path: &Path) -> Result<Tensor> {
    let bytes = t
        .read()
        .with_context(|| format!("{}: reading tensor {}", path.display(), t.name))?;
    let shape: Vec<i64> = t.shape().iter().map(|&s| s as i64).collect();
    let kind = match t.dtype() {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I64 => Kind::Int64,
        d => bail!(
            "{}: tensor {} has element type {d:?}: expected a float (or int64 index)",
            path.display(),
            t.name
        ),
    };
    Ok(Tensor::from_data_size(&bytes, &shape, kind))
}

/// Reads a BIOT encoder checkpoint (see the module docs). `hop` overrides the STFT hop (the
/// weights do not hold it). Errors name the file and the missing, unexpected or mis-shaped
/// tensor.
pub fn import(path: &Path, hop: Option<i64>) -> Result<ImportedBiot> {
    let open = |key: Option<&str>| -> Result<PytorchReader> {
        match key {
            None => PytorchReader::new(path),
            Some(k) => PytorchReader::with_top_level_key(path, k),
        }
        .map_err(|e| anyhow!("{}: not a readable PyTorch checkpoint: {e}", path.display()))
    };
    let mut reader = open(None)?;
    if reader
        .get("state_dict.patch_embedding.projection.weight")
        .is_some()
        || reader.keys().iter().any(|k| k.starts_with("state_dict."))
    {
        reader = open(Some("state_dict"))?;
    }
    // Strip a module prefix (`biot.`, `model.biot.`) in front of the encoder's names.
    let anchor = "patch_embedding.projection.weight";
    let prefix = reader
        .keys()
        .into_iter()
        .find_map(|k| k.strip_suffix(anchor).map(str::to_string))
        .with_context(|| {
            let mut keys = reader.keys();
            keys.sort();
            format!(
                "{}: no '{anchor}': not a BIOT encoder state dict (first tensors: {})",
                path.display(),
                keys.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
    let get = |name: &str| -> Result<Tensor> {
        let full = format!("{prefix}{name}");
        let t = reader
            .get(&full)
            .with_context(|| format!("{}: missing tensor '{full}'", path.display()))?;
        to_tensor(t, path)
    };
    let proj = get("patch_embedding.projection.weight")?;
    let (d, bins) = proj.size2()?;
    let table = get("channel_tokens.weight")?;
    let (n_channels, d_table) = table.size2()?;
    if d_table != d {
        bail!(
            "{}: channel_tokens.weight is [{n_channels}, {d_table}] but the projection gives d = {d}",
            path.display()
        );
    }
    let mut depth = 0;
    while reader
        .get(&format!(
            "{prefix}transformer.layers.layers.{depth}.0.fn.to_q.weight"
        ))
        .is_some()
    {
        depth += 1;
    }
    if depth == 0 {
        bail!(
            "{}: no transformer layers ('{prefix}transformer.layers.layers.0.0.fn.to_q.weight')",
            path.display()
        );
    }
    let w1 = get("transformer.layers.layers.0.1.fn.fn.w1.weight")?;
    let ff = w1.size()[0];
    let max_frames = match reader.get(&format!("{prefix}positional_encoding.pe")) {
        Some(pe) => pe.shape().get(1).copied().unwrap_or(1000) as i64,
        None => 1000,
    };
    let n_fft = 2 * (bins - 1);
    let config = BiotConfig {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default(),
        d_model: d,
        n_layer: depth,
        n_head: BIOT_HEADS,
        n_fft,
        hop: hop.unwrap_or(n_fft / 2),
        n_channels,
        ff_mult: ff / d,
        max_frames,
        ..BiotConfig::default()
    };
    let mut tensors = BTreeMap::new();
    let mut put = |ours: String, theirs: &str| -> Result<()> {
        tensors.insert(format!("encoder.{ours}"), get(theirs)?.to_kind(Kind::Float));
        Ok(())
    };
    put(
        "patch_embedding.weight".into(),
        "patch_embedding.projection.weight",
    )?;
    put(
        "patch_embedding.bias".into(),
        "patch_embedding.projection.bias",
    )?;
    put("channel_tokens.weight".into(), "channel_tokens.weight")?;
    for i in 0..depth {
        let t = format!("transformer.layers.layers.{i}");
        for (ours, theirs) in [
            ("attn_norm.weight", "0.norm.weight"),
            ("attn_norm.bias", "0.norm.bias"),
            ("attn.to_q.weight", "0.fn.to_q.weight"),
            ("attn.to_k.weight", "0.fn.to_k.weight"),
            ("attn.to_v.weight", "0.fn.to_v.weight"),
            ("attn.to_out.weight", "0.fn.to_out.weight"),
            ("attn.to_out.bias", "0.fn.to_out.bias"),
            ("ff_norm.weight", "1.norm.weight"),
            ("ff_norm.bias", "1.norm.bias"),
            ("ff.w1.weight", "1.fn.fn.w1.weight"),
            ("ff.w1.bias", "1.fn.fn.w1.bias"),
            ("ff.w2.weight", "1.fn.fn.w2.weight"),
            ("ff.w2.bias", "1.fn.fn.w2.bias"),
        ] {
            put(format!("layers.{i}.{ours}"), &format!("{t}.{theirs}"))?;
        }
    }
    // Buffers: the channel index must be the identity, the positions BIOT's sinusoids.
    if let Ok(idx) = get("index") {
        let want = Tensor::arange(n_channels, (Kind::Int64, tch::Device::Cpu));
        if !idx.to_kind(Kind::Int64).equal(&want) {
            bail!(
                "{}: index is not 0..{n_channels}: channel rows are permuted",
                path.display()
            );
        }
    }
    if let Ok(pe) = get("positional_encoding.pe") {
        let ours = crate::models::layers::sinusoidal_table(max_frames, d, tch::Device::Cpu);
        let diff = (pe.to_kind(Kind::Float).view([max_frames, d]) - ours)
            .abs()
            .max()
            .double_value(&[]);
        if diff > 1e-4 {
            bail!(
                "{}: positional_encoding.pe differs from BIOT's sinusoidal table by {diff}",
                path.display()
            );
        }
    }
    // Every tensor under the prefix must have been used (an unknown one means another model).
    let known = |k: &str| {
        let k = &k[prefix.len().min(k.len())..];
        k.starts_with("patch_embedding.projection.")
            || k.starts_with("channel_tokens.")
            || k.starts_with("transformer.layers.layers.")
            || k == "index"
            || k == "positional_encoding.pe"
    };
    if let Some(k) = reader
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .find(|k| !known(k))
    {
        bail!(
            "{}: unexpected tensor '{k}': not the BIOTEncoder of ycq091044/BIOT (local \
             attention heads or another transformer?)",
            path.display()
        );
    }
    Ok(ImportedBiot { config, tensors })
}

impl ImportedBiot {
    /// Writes the encoder as brainscale safetensors (the variable names of [`super::biot::Biot`]
    /// and [`super::biot::BiotPretrain`]), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let named: Vec<(&str, &Tensor)> =
            self.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        crate::core::io::write_atomic(path, |tmp| {
            Tensor::write_safetensors(&named, tmp).map_err(|e| anyhow!("{e}"))
        })
    }
}
