//! The bio-signal architectures, one line each: `model = "<arch>"` in a config file picks the
//! config type (its [`ModelConfig::ARCH`]). Code that trains "any bio-signal model" takes a
//! [`BioModelConfig`] and runs its generic body through [`BioModelConfig::visit`]; nothing else
//! names the architectures.
//!
//! A config file without a `model` key is read when exactly one architecture parses it (fields
//! are checked strictly); otherwise the error names the file and asks for the key.
use crate::models::config::ModelConfig;
use crate::models::signal::SignalArch;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// A generic body over the architectures ([`BioModelConfig::visit`] calls it with the concrete
/// config type).
pub trait ArchVisitor {
    type Out;
    fn visit<A: SignalArch>(self, cfg: &A) -> Self::Out;
}

macro_rules! registry {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A bio-signal model config of any registered architecture.
        #[derive(Debug, Clone, PartialEq)]
        pub enum BioModelConfig {
            $($variant($ty),)*
        }

        $(impl From<$ty> for BioModelConfig {
            fn from(c: $ty) -> Self {
                Self::$variant(c)
            }
        })*

        impl BioModelConfig {
            /// Registered architecture names, in registry order.
            pub const ARCHS: &'static [&'static str] = &[$(<$ty as ModelConfig>::ARCH),*];

            /// Runs `v` on the concrete config.
            pub fn visit<V: ArchVisitor>(&self, v: V) -> V::Out {
                match self {
                    $(Self::$variant(c) => v.visit(c),)*
                }
            }

            /// Whether `table` has only fields of architecture `arch` (values not validated).
            fn deserializes_as(arch: &str, table: &toml::Table) -> bool {
                $(if arch == <$ty as ModelConfig>::ARCH {
                    return table.clone().try_into::<$ty>().is_ok();
                })*
                false
            }

            /// Parses `text` as architecture `arch`.
            fn parse_as(arch: &str, text: &str, origin: &str) -> Result<Self> {
                $(if arch == <$ty as ModelConfig>::ARCH {
                    return Ok(Self::$variant(<$ty as ModelConfig>::parse(text, origin)?));
                })*
                bail!(
                    "model config {origin}: unknown model \"{arch}\" (registered: {})",
                    Self::ARCHS.join(", ")
                )
            }
        }
    };
}

// One line per bio-signal architecture.
registry! {
    Biot(crate::models::biot::BiotConfig),
    Citrus(crate::models::citrus::CitrusConfig),
    ConvNet(crate::models::convnet::ConvNetConfig),
}

struct Name;
impl ArchVisitor for Name {
    type Out = (&'static str, String);
    fn visit<A: SignalArch>(self, cfg: &A) -> Self::Out {
        (A::ARCH, cfg.name().to_string())
    }
}

struct Toml;
impl ArchVisitor for Toml {
    type Out = Result<String>;
    fn visit<A: SignalArch>(self, cfg: &A) -> Self::Out {
        cfg.to_toml()
    }
}

impl BioModelConfig {
    /// Reads a bio-signal model config: the architecture from its `model` key (or, without one,
    /// the only architecture whose fields it has), then that config's checks.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading model config {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// [`Self::load`] on TOML text from `origin` (named in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let table: toml::Table =
            toml::from_str(text).with_context(|| format!("parsing model config {origin}"))?;
        if let Some(m) = table.get("model") {
            let Some(arch) = m.as_str() else {
                bail!("model config {origin}: model = {m} is not a name");
            };
            return Self::parse_as(arch, text, origin);
        }
        let fits: Vec<&str> = Self::ARCHS
            .iter()
            .copied()
            .filter(|a| Self::deserializes_as(a, &table))
            .collect();
        match fits[..] {
            [arch] => Self::parse_as(arch, text, origin),
            _ => bail!(
                "model config {origin} has no `model = \"...\"` line and {}: add one of {}",
                if fits.is_empty() {
                    "parses as no architecture".to_string()
                } else {
                    format!("parses as several ({})", fits.join(", "))
                },
                Self::ARCHS.join(", ")
            ),
        }
    }

    /// Whether `path` is a bio-signal model config (its `model` key names a registered
    /// architecture, or without one it parses as exactly one); false for unreadable files.
    pub fn is_signal_config(path: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let Ok(table) = toml::from_str::<toml::Table>(&text) else {
            return false;
        };
        match table.get("model").map(|m| m.as_str()) {
            Some(Some(arch)) => Self::ARCHS.contains(&arch),
            Some(None) => false,
            None => {
                Self::ARCHS
                    .iter()
                    .filter(|a| Self::deserializes_as(a, &table))
                    .count()
                    == 1
            }
        }
    }

    /// The architecture's registry name (`"biot"`).
    pub fn arch(&self) -> &'static str {
        self.visit(Name).0
    }

    /// The config's `name` field.
    pub fn name(&self) -> String {
        self.visit(Name).1
    }

    /// TOML text that [`Self::load`] reads back (with its `model` line).
    pub fn to_toml(&self) -> Result<String> {
        self.visit(Toml)
    }
}
