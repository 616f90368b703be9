//! GPT-2 weights in the Hugging Face safetensors naming, so users can start from (or publish
//! to) existing GPT-2 checkpoints.
//!
//! HF GPT-2 names are ours without the `lm_head` (always tied there) and with an optional
//! `transformer.` prefix; its `Conv1D` layers (`c_attn`, `c_proj`, `c_fc`) store weights
//! transposed, [in, out], where ours are [out, in]. The causal-mask buffers
//! (`h.{i}.attn.bias`, `h.{i}.attn.masked_bias`) are skipped on load.
use crate::models::config::ModelConfig;
use crate::models::gpt::{GptConfig, PosEmbedding};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{nn, Kind, Tensor};

fn is_conv1d(name: &str) -> bool {
    name.ends_with(".weight")
        && (name.contains(".c_attn.") || name.contains(".c_proj.") || name.contains(".c_fc."))
}

/// Writes the model in `vs` (built from `cfg`) as a Hugging Face GPT-2 safetensors file.
pub fn save_hf(vs: &nn::VarStore, cfg: &GptConfig, path: &Path) -> Result<()> {
    if cfg.pos != PosEmbedding::Learned {
        bail!("only learned position embeddings exist in Hugging Face GPT-2; this model is factorized");
    }
    if !cfg.tie_weights {
        bail!("Hugging Face GPT-2 ties the output head to wte; this model has an untied head");
    }
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let named: Vec<(String, Tensor)> = vars
        .into_iter()
        .map(|(n, t)| {
            let t = t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float);
            let t = if is_conv1d(&n) {
                t.tr().contiguous()
            } else {
                t
            };
            (n, t)
        })
        .collect();
    crate::core::io::write_atomic(path, |tmp| {
        Tensor::write_safetensors(&named, tmp).map_err(|e| anyhow!("{e}"))
    })
}

/// Reads a Hugging Face GPT-2 safetensors file: the config implied by its shapes (vocab,
/// ctx, d_model, n_layer; `n_head` cannot be read from weights and must be given) and the
/// tensors renamed and transposed into our layout.
pub fn read_hf(path: &Path, n_head: i64) -> Result<(GptConfig, HashMap<String, Tensor>)> {
    let raw = Tensor::read_safetensors(path)
        .map_err(|e| anyhow!("reading Hugging Face GPT-2 weights {}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (name, t) in raw {
        let name = name
            .strip_prefix("transformer.")
            .unwrap_or(&name)
            .to_string();
        if name.ends_with(".attn.bias")
            || name.ends_with(".attn.masked_bias")
            || name == "lm_head.weight"
        {
            continue; // causal-mask buffers; lm_head is tied to wte in GPT-2
        }
        let t = t.to_kind(Kind::Float);
        let t = if is_conv1d(&name) {
            t.tr().contiguous()
        } else {
            t
        };
        out.insert(name, t);
    }
    let get = |n: &str| {
        out.get(n).ok_or_else(|| {
            anyhow!(
                "{}: no tensor '{n}': not a GPT-2 checkpoint",
                path.display()
            )
        })
    };
    let wte = get("wte.weight")?.size();
    let wpe = get("wpe.weight")?.size();
    if wte.len() != 2 || wpe.len() != 2 || wte[1] != wpe[1] {
        bail!(
            "{}: wte {wte:?} and wpe {wpe:?} shapes do not match",
            path.display()
        );
    }
    let n_layer = (0..)
        .take_while(|i| out.contains_key(&format!("h.{i}.ln_1.weight")))
        .count() as i64;
    if n_layer == 0 {
        bail!("{}: no transformer blocks (h.0.*) found", path.display());
    }
    let cfg = GptConfig {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        d_model: wte[1],
        n_layer,
        n_head,
        ctx: wpe[0],
        vocab: wte[0],
        dropout: 0.0,
        attn_dropout: 0.0,
        pos: PosEmbedding::Learned,
        latent_shape: None,
        tie_weights: true,
    };
    cfg.validate()
        .with_context(|| format!("{}: implied config", path.display()))?;
    Ok((cfg, out))
}

/// Copies HF GPT-2 weights into a model built from a matching config in `vs`; every
/// variable must be present with the same shape.
pub fn load_hf(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    let vars = vs.variables();
    let n_head = 1; // shapes do not depend on n_head
    let (_, tensors) = read_hf(path, n_head)?;
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            let src = tensors
                .get(&name)
                .ok_or_else(|| anyhow!("{}: missing tensor '{name}'", path.display()))?;
            if src.size() != var.size() {
                bail!(
                    "{}: tensor '{name}' has shape {:?}, the model expects {:?}",
                    path.display(),
                    src.size(),
                    var.size()
                );
            }
            var.copy_(&src.to_device(var.device()));
        }
        Ok(())
    })?;
    let extra: Vec<_> = tensors
        .keys()
        .filter(|k| !vs.variables().contains_key(*k))
        .cloned()
        .collect();
    if !extra.is_empty() {
        bail!(
            "{}: tensors the model does not have: {extra:?}",
            path.display()
        );
    }
    Ok(())
}
