//! The one model-config loader: every architecture's config (`models/*.toml`) is read, parsed,
//! checked and written by the default methods of [`ModelConfig`]; a config file names its
//! architecture (`model = "biot"`), which the bio-signal registry ([`crate::models::registry`])
//! dispatches on.
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// A model config read from TOML. Implementors give the architecture name and their checks;
/// load, parse and write come from here (so every config reports errors the same way).
pub trait ModelConfig: Serialize + DeserializeOwned + Sized {
    /// The architecture's name in config files (`model = "..."`).
    const ARCH: &'static str;

    /// Sizes and ranges that make a buildable model. Errors name the field and the rule.
    fn validate(&self) -> Result<()>;

    /// Parses TOML `text` (from `origin`, a file name for messages) and validates it. A `model`
    /// key, when present, must name this architecture; it is not a field of the config.
    fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut table: toml::Table =
            toml::from_str(text).with_context(|| format!("parsing model config {origin}"))?;
        if let Some(m) = table.remove("model") {
            if m.as_str() != Some(Self::ARCH) {
                bail!(
                    "model config {origin}: model = {m} but this is a \"{}\" config",
                    Self::ARCH
                );
            }
        }
        let cfg: Self = table
            .try_into()
            .with_context(|| format!("parsing model config {origin}"))?;
        cfg.validate()
            .with_context(|| format!("invalid model config {origin}"))?;
        Ok(cfg)
    }

    /// Reads and validates a TOML config file.
    fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading model config {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// TOML text that [`Self::load`] reads back: `model = "<arch>"`, then the fields.
    fn to_toml(&self) -> Result<String> {
        Ok(format!(
            "model = \"{}\"\n{}",
            Self::ARCH,
            toml::to_string(self)?
        ))
    }
}

/// Errors on the first `(name, value)` that is not positive: "`name` must be positive, got v".
pub fn positive(fields: &[(&str, i64)]) -> Result<()> {
    for &(name, v) in fields {
        if v <= 0 {
            bail!("{name} must be positive, got {v}");
        }
    }
    Ok(())
}

/// Errors on the first `(name, p)` outside [0, 1): "`name` must be in [0, 1), got p".
pub fn probabilities(fields: &[(&str, f64)]) -> Result<()> {
    for &(name, p) in fields {
        if !(0.0..1.0).contains(&p) {
            bail!("{name} must be in [0, 1), got {p}");
        }
    }
    Ok(())
}

/// Errors unless `d` is divisible by `by`: "`d_name` d is not divisible by `by_name` by".
pub fn divisible(d_name: &str, d: i64, by_name: &str, by: i64) -> Result<()> {
    if d % by != 0 {
        bail!("{d_name} {d} is not divisible by {by_name} {by}");
    }
    Ok(())
}
