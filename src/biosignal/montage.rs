//! Named EEG channel sets (montages) built from what a recording holds, after label
//! normalisation.
//!
//! Labels are normalised to 10-20 electrode names: upper case, a leading type (`EEG `, `EEG-`)
//! and a trailing reference (`-REF`, `-LE`, `-AR`, `-AVG`, `-CZ`... when the rest is one
//! electrode) removed, and the old 10-20 names mapped to the new ones (T3 → T7, T4 → T8,
//! T5 → P7, T6 → P8; American Clinical Neurophysiology Society 2006 nomenclature). So
//! `EEG FP1-REF`, `Fp1` and `EEG Fp1-LE` are all `FP1`; `EEG T3-REF` is `T7`.
//!
//! A bipolar channel `A-B` is `A − B`: taken from a stored bipolar channel of that name
//! (CHB-MIT, TUH's bipolar exports), else derived from the referential channels A and B (the
//! common reference cancels). Montages, in BIOT's order (ycq091044/BIOT, its CHB-MIT/TUEV
//! loaders and the 18-channel pretrained checkpoints):
//! - `banana16`: FP1-F7, F7-T7, T7-P7, P7-O1, FP2-F8, F8-T8, T8-P8, P8-O2, FP1-F3, F3-C3,
//!   C3-P3, P3-O1, FP2-F4, F4-C4, C4-P4, P4-O2 (the double banana);
//! - `biot18`: the 16 above + C3-A2, C4-A1.
use crate::biosignal::Recording;
use anyhow::{bail, Result};
use ndarray::Array2;

/// A named bipolar channel set (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Montage {
    Banana16,
    Biot18,
}

const BANANA: [(&str, &str); 16] = [
    ("FP1", "F7"),
    ("F7", "T7"),
    ("T7", "P7"),
    ("P7", "O1"),
    ("FP2", "F8"),
    ("F8", "T8"),
    ("T8", "P8"),
    ("P8", "O2"),
    ("FP1", "F3"),
    ("F3", "C3"),
    ("C3", "P3"),
    ("P3", "O1"),
    ("FP2", "F4"),
    ("F4", "C4"),
    ("C4", "P4"),
    ("P4", "O2"),
];

impl Montage {
    pub fn name(self) -> &'static str {
        match self {
            Montage::Banana16 => "banana16",
            Montage::Biot18 => "biot18",
        }
    }

    /// Every montage, for messages and `check`.
    pub const ALL: [Montage; 2] = [Montage::Banana16, Montage::Biot18];

    /// Parses `banana16` / `biot18` (case-insensitive).
    pub fn parse(s: &str) -> Result<Montage> {
        match s.to_lowercase().as_str() {
            "banana16" | "banana" => Ok(Montage::Banana16),
            "biot18" => Ok(Montage::Biot18),
            _ => bail!("unknown montage '{s}' (known: banana16, biot18)"),
        }
    }

    /// The (anode, cathode) electrode pairs, in order.
    pub fn pairs(self) -> Vec<(&'static str, &'static str)> {
        let mut v = BANANA.to_vec();
        if self == Montage::Biot18 {
            v.extend([("C3", "A2"), ("C4", "A1")]);
        }
        v
    }

    /// Channel names `FP1-F7`, ... in order.
    pub fn channel_names(self) -> Vec<String> {
        self.pairs()
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect()
    }
}

/// References removed from the end of a referential label.
const REFERENCES: [&str; 9] = ["REF", "LE", "RE", "AR", "AVG", "AV", "CAR", "M1M2", "A1A2"];

/// One electrode name in the new 10-20 nomenclature (T3 → T7, T4 → T8, T5 → P7, T6 → P8).
fn electrode(s: &str) -> String {
    let u = s.trim().to_uppercase();
    match u.as_str() {
        "T3" => "T7".into(),
        "T4" => "T8".into(),
        "T5" => "P7".into(),
        "T6" => "P8".into(),
        _ => u,
    }
}

/// Normalises a stored label (see the module docs): `EEG FP1-REF` → `FP1`, `EEG T3-LE` → `T7`,
/// `Fp1-F7` → `FP1-F7`, `T5-O1` → `P7-O1`. Labels that are not EEG electrodes come out upper
/// case with the type prefix removed.
pub fn normalise_label(label: &str) -> String {
    let mut s = label.trim().to_uppercase();
    for p in ["EEG ", "EEG-", "EEG_", "EEG:"] {
        if let Some(r) = s.strip_prefix(p) {
            s = r.trim().to_string();
        }
    }
    let parts: Vec<&str> = s.split('-').map(str::trim).collect();
    match parts.as_slice() {
        [a] => electrode(a),
        [a, r] if REFERENCES.contains(r) => electrode(a),
        [a, b] => format!("{}-{}", electrode(a), electrode(b)),
        _ => s,
    }
}

/// The pairs of `montage` that channels labelled `labels` cannot form, each with its missing
/// electrode(s): `"T7-P7 (no T7)"`. Empty when the montage can be built.
pub fn missing(labels: &[String], montage: Montage) -> Vec<String> {
    let norm: Vec<String> = labels.iter().map(|c| normalise_label(c)).collect();
    let has = |name: &str| norm.iter().any(|n| n == name);
    montage
        .pairs()
        .into_iter()
        .filter(|(a, b)| !has(&format!("{a}-{b}")) && !(has(a) && has(b)))
        .map(|(a, b)| {
            let gone: Vec<&str> = [a, b].into_iter().filter(|e| !has(e)).collect();
            format!("{a}-{b} (no {})", gone.join(", no "))
        })
        .collect()
}

/// Builds `montage` from `rec`'s channels (see the module docs). Errors name the file, the
/// missing electrode(s) of each pair that cannot be formed and the channels present.
pub fn apply(rec: &Recording, montage: Montage) -> Result<Recording> {
    let norm: Vec<String> = rec.channels.iter().map(|c| normalise_label(c)).collect();
    let find = |name: &str| norm.iter().position(|n| n == name);
    let missing = missing(&rec.channels, montage);
    if !missing.is_empty() {
        bail!(
            "{}: montage {} cannot be formed: {} (channels, normalised: {})",
            rec.source.display(),
            montage.name(),
            missing.join("; "),
            norm.join(", ")
        );
    }
    let t = rec.data.ncols();
    let rows: Vec<_> = montage
        .pairs()
        .into_iter()
        .map(|(a, b)| match find(&format!("{a}-{b}")) {
            Some(i) => rec.data.row(i).to_owned(),
            None => {
                let (i, j) = (find(a).unwrap_or(0), find(b).unwrap_or(0));
                &rec.data.row(i) - &rec.data.row(j)
            }
        })
        .collect();
    let mut data = Array2::zeros((rows.len(), t));
    for (i, r) in rows.iter().enumerate() {
        data.row_mut(i).assign(r);
    }
    Ok(Recording {
        channels: montage.channel_names(),
        data,
        ..rec.clone()
    })
}

/// The stored labels `apply` needs from a file whose labels are `labels`: per pair, the stored
/// bipolar channel if present, else the two referential ones. Missing ones are left out (the
/// error comes from [`apply`]).
pub fn needed(labels: &[String], montage: Montage) -> Vec<String> {
    let norm: Vec<String> = labels.iter().map(|c| normalise_label(c)).collect();
    let mut out: Vec<String> = Vec::new();
    let mut push = |name: &str| {
        if let Some(i) = norm.iter().position(|n| n == name) {
            if !out.contains(&labels[i]) {
                out.push(labels[i].clone());
            }
            true
        } else {
            false
        }
    };
    for (a, b) in montage.pairs() {
        if !push(&format!("{a}-{b}")) {
            push(a);
            push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_normalise() {
        for (raw, want) in [
            ("EEG FP1-REF", "FP1"),
            ("Fp1", "FP1"),
            ("EEG T3-LE", "T7"),
            ("T6", "P8"),
            ("EEG T5-REF", "P7"),
            ("FP1-F7", "FP1-F7"),
            ("T3-T5", "T7-P7"),
            ("ECG", "ECG"),
            ("EEG A2-REF", "A2"),
        ] {
            assert_eq!(normalise_label(raw), want, "{raw}");
        }
        assert_eq!(Montage::Biot18.pairs().len(), 18);
        assert_eq!(Montage::Biot18.channel_names()[17], "C4-A1");
    }
}
