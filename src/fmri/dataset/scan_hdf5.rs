//! Scanning a parcellated HDF5 subject (Algonauts 2025, CNeuroMod derivatives): every 2-D
//! dataset of its `.h5` files is a run, keyed by episode; the TR is `--tr`, the file's
//! `RepetitionTime`, or CNeuroMod's; the atlas is the subject's `atlas/*.nii.gz` by default.
use crate::fmri::dataset::hdf5;
use crate::fmri::dataset::scan::{
    is_nifti, name_of, parse_tr_text, read_sidecar, sidecar_tr, Scanner,
};
use crate::fmri::dataset::{entity, Run, RunSource, Subject, CNEUROMOD_TR};
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::Path;
use std::path::PathBuf;

impl Scanner<'_> {
    pub(super) fn hdf5_subject(&mut self, files: &[PathBuf], s: &mut Subject) {
        if s.atlas.is_none() {
            s.atlas = files
                .iter()
                .find(|p| {
                    let n = name_of(p);
                    is_nifti(&n)
                        && (p.parent().is_some_and(|d| name_of(d) == "atlas")
                            || n.contains("dseg")
                            || n.contains("parcellation"))
                })
                .cloned();
        }
        let mut parcels: Option<(usize, String)> = None;
        for file in files.iter().filter(|p| {
            let n = name_of(p);
            n.ends_with(".h5") || n.ends_with(".hdf5")
        }) {
            let entries = match hdf5::entries(file) {
                Ok(e) => e,
                Err(e) => {
                    self.problems.push(format!("{e:#}"));
                    continue;
                }
            };
            let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
            let file_tr = match self.hdf5_file_tr(file, &stem) {
                Ok(t) => t,
                Err(e) => {
                    self.problems.push(format!("{e:#}"));
                    continue;
                }
            };
            let tr = match (self.opts.tr, file_tr) {
                (Some(u), Some((f, src))) if (u - f).abs() > 1e-3 => {
                    self.problems.push(format!(
                        "{}: --tr {u} s differs from the file's RepetitionTime {f} s (from {src})",
                        file.display()
                    ));
                    continue;
                }
                (Some(t), _) | (None, Some((t, _))) => t,
                (None, None) => {
                    self.notes.push(format!("{}: no RepetitionTime; assuming CNeuroMod's TR of {CNEUROMOD_TR} s (set --tr)", file.display()));
                    CNEUROMOD_TR
                }
            };
            if !(tr > 0.0 && tr.is_finite()) {
                self.problems
                    .push(format!("{}: invalid TR {tr}", file.display()));
                continue;
            }
            for e in entries {
                if e.shape.len() != 2 {
                    self.notes.push(format!(
                        "{}: dataset '{}' of shape {:?} ignored (runs are (TRs, parcels))",
                        file.display(),
                        e.key,
                        e.shape
                    ));
                    continue;
                }
                let what = format!("sub-{} run '{}' in {}", s.id, e.key, file.display());
                match &parcels {
                    None => parcels = Some((e.shape[1], e.key.clone())),
                    Some((n, first)) if *n != e.shape[1] => {
                        self.problems.push(format!(
                            "{what}: {} parcels, but run '{first}' has {n}",
                            e.shape[1]
                        ));
                        continue;
                    }
                    _ => {}
                }
                let base = e.key.rsplit('/').next().unwrap().to_string();
                let task = entity(&base, "task").unwrap_or_else(|| base.clone());
                let id = match entity(&base, "run") {
                    Some(r) => format!("{task}_run-{r}"),
                    None => task.clone(),
                };
                let Some(movie) = self.movie_for(&task, &what, &serde_json::Value::Null) else {
                    continue;
                };
                s.runs.push(Run {
                    id,
                    task: task.clone(),
                    bold: file.clone(),
                    movie,
                    tr,
                    n_volumes: e.shape[0],
                    key: e.key.replace('/', "_"),
                    episode: task,
                    source: RunSource::Hdf5 {
                        dataset: e.key.clone(),
                    },
                });
            }
        }
        s.n_parcels = parcels.map(|p| p.0);
        // The same episode seen twice without a run entity: fall back to the unique keys.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for r in &s.runs {
            *seen.entry(r.id.clone()).or_default() += 1;
        }
        for r in &mut s.runs {
            if seen[&r.id] > 1 {
                r.id = r.key.clone();
            }
        }
    }

    /// The TR an HDF5 file states: its root attribute `RepetitionTime` (any numeric or text
    /// encoding, see [`hdf5::root_attr_value`]), else that of a JSON sidecar with the file's
    /// stem. Both must agree when both are present. Returns the value and where it came from.
    fn hdf5_file_tr(&self, file: &Path, stem: &str) -> Result<Option<(f64, String)>> {
        let attr_what = format!("{}: attribute RepetitionTime", file.display());
        let attr = match hdf5::root_attr_value(file, "RepetitionTime")? {
            None => None,
            Some(hdf5::AttrValue::Number(v)) => Some(parse_tr_text(&v.to_string(), &attr_what)?),
            Some(hdf5::AttrValue::Text(t)) => Some(parse_tr_text(&t, &attr_what)?),
        };
        let side_path = file.with_file_name(format!("{stem}.json"));
        let side = sidecar_tr(&read_sidecar(&side_path)?, &side_path)?;
        Ok(match (attr, side) {
            (Some(a), Some(b)) if (a - b).abs() > 1e-3 => bail!(
                "{}: the RepetitionTime attribute ({a} s) differs from the sidecar {} ({b} s)",
                file.display(),
                side_path.display()
            ),
            (Some(a), _) => Some((a, "the attribute RepetitionTime".into())),
            (None, Some(b)) => Some((b, side_path.display().to_string())),
            (None, None) => None,
        })
    }
}
