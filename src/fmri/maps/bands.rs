//! Maps of a banded fit (`encode --bands`): per band the split-R² map (and unique-R² maps and
//! the shared-R² map with `--partition`), the band that explains most per voxel as a NIfTI
//! label map and a PNG mosaic, and the per-band columns of `summary.csv`. Also the CSV upsert
//! that keeps columns it does not know (the per-band ones) when other rows are rewritten.
use crate::core::io::{self, TensorFile};
use crate::fmri::dataset::atlas::Atlas;
use crate::fmri::dataset::nifti_io::{self, Mask};
use anyhow::{bail, Context, Result};
use image::{Rgb, RgbImage};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use nifti::NiftiHeader;
use std::collections::BTreeMap;
use std::path::Path;

/// Band colours of the top-band mosaic, in band order (Tableau 10).
pub const BAND_COLOURS: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// What a banded encode saved besides the single-band results.
#[derive(Debug, Clone)]
pub struct BandResults {
    pub names: Vec<String>,
    /// Product-measure R² split (bands × voxels).
    pub r2_split: Array2<f64>,
    /// Chosen band weights (bands × voxels).
    pub band_weights: Array2<f64>,
    pub unique_r2: Option<Array2<f64>>,
    pub shared_r2: Option<Array1<f64>>,
}

impl BandResults {
    /// Reads the band tensors of an encode file; `None` for a single-band fit.
    pub fn load(f: &TensorFile, path: &Path) -> Result<Option<Self>> {
        if !f.has("r2_split") {
            return Ok(None);
        }
        let what = |n: &str| format!("{}: {n}", path.display());
        let names: Vec<String> = f
            .metadata()
            .get("band_names")
            .with_context(|| what("metadata `band_names` missing (re-run encode --bands)"))?
            .split(',')
            .map(String::from)
            .collect();
        let r2_split = io::into_2d(f.f64("r2_split")?, &what("r2_split"))?;
        let band_weights = io::into_2d(f.f64("band_weights")?, &what("band_weights"))?;
        if r2_split.nrows() != names.len() || band_weights.dim() != r2_split.dim() {
            bail!(
                "{}: {} band names but r2_split is {:?} and band_weights {:?}",
                what("bands"),
                names.len(),
                r2_split.dim(),
                band_weights.dim()
            );
        }
        let unique_r2 = match f.has("unique_r2") {
            true => Some(io::into_2d(f.f64("unique_r2")?, &what("unique_r2"))?),
            false => None,
        };
        let shared_r2 = match f.has("shared_r2") {
            true => Some(io::into_1d(f.f64("shared_r2")?, &what("shared_r2"))?),
            false => None,
        };
        Ok(Some(Self {
            names,
            r2_split,
            band_weights,
            unique_r2,
            shared_r2,
        }))
    }

    /// Per voxel, 1 + the index of the band with the largest R² split, or 0 where no band
    /// has a positive split.
    pub fn top_band(&self) -> Array1<f64> {
        let t = crate::ridge::banded::top_rows(self.r2_split.view());
        Array1::from_iter(t.iter().enumerate().map(|(j, &b)| {
            if self.r2_split[[b, j]] > 0.0 {
                (b + 1) as f64
            } else {
                0.0
            }
        }))
    }

    /// The named per-voxel maps: r2_split_NAME, band_weight_NAME, [unique_r2_NAME,
    /// shared_r2], top_band.
    fn maps(&self) -> Vec<(String, Array1<f64>)> {
        let mut out = Vec::new();
        for (b, name) in self.names.iter().enumerate() {
            out.push((format!("r2_split_{name}"), self.r2_split.row(b).to_owned()));
            out.push((
                format!("band_weight_{name}"),
                self.band_weights.row(b).to_owned(),
            ));
            if let Some(u) = &self.unique_r2 {
                out.push((format!("unique_r2_{name}"), u.row(b).to_owned()));
            }
        }
        if let Some(s) = &self.shared_r2 {
            out.push(("shared_r2".into(), s.clone()));
        }
        out.push(("top_band".into(), self.top_band()));
        out
    }

    /// NIfTI maps (with `reference`'s geometry) and `top_band.png` for voxel data.
    pub fn write_voxel_maps(
        &self,
        out_dir: &Path,
        reference: &NiftiHeader,
        mask: &Mask,
    ) -> Result<()> {
        if self.r2_split.ncols() != mask.len() {
            bail!(
                "{} band results for a mask of {} voxels (re-run encode --bands)",
                self.r2_split.ncols(),
                mask.len()
            );
        }
        for (name, v) in self.maps() {
            let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            nifti_io::write(
                &out_dir.join(format!("{name}.nii.gz")),
                reference,
                mask.unmask(&v32).view(),
            )?;
        }
        self.top_band_png(&out_dir.join("top_band.png"), mask, |v| {
            let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Ok(mask.unmask(&v32))
        })
    }

    /// `bands.csv` (one row per parcel: top band and each band's split, weight, unique R²)
    /// and, with an atlas, the same NIfTI maps and PNG as voxel data.
    pub fn write_parcel_maps(&self, out_dir: &Path, atlas: Option<&Atlas>) -> Result<()> {
        let maps = self.maps();
        io::write_atomic(&out_dir.join("bands.csv"), |tmp| {
            let mut w = csv::Writer::from_path(tmp)?;
            let mut header = vec!["parcel".to_string(), "label".to_string()];
            header.extend(maps.iter().map(|(n, _)| n.clone()));
            w.write_record(&header)?;
            for p in 0..self.r2_split.ncols() {
                let mut rec = vec![p.to_string(), (p + 1).to_string()];
                rec.extend(maps.iter().map(|(_, v)| v[p].to_string()));
                w.write_record(&rec)?;
            }
            w.flush()?;
            Ok(())
        })?;
        if let Some(a) = atlas {
            for (name, v) in &maps {
                let vol = a.volume(v.as_slice().expect("contiguous"))?;
                nifti_io::write(
                    &out_dir.join(format!("{name}.nii.gz")),
                    &a.header,
                    vol.view(),
                )?;
            }
            self.top_band_png(&out_dir.join("top_band.png"), &a.mask, |v| {
                a.volume(v.as_slice().expect("contiguous"))
            })?;
        }
        Ok(())
    }

    /// Axial mosaic of the top band: the band's colour, brighter where its split R² is larger
    /// (full colour at the 99th percentile of the positive splits); white where no band has a
    /// positive split, dark grey outside the mask. Along the bottom, one swatch per band in
    /// band order (colours [`BAND_COLOURS`]).
    fn top_band_png(
        &self,
        path: &Path,
        mask: &Mask,
        volume: impl Fn(&Array1<f64>) -> Result<ArrayD<f32>>,
    ) -> Result<()> {
        let top = self.top_band();
        let best = Array1::from_iter((0..top.len()).map(|j| {
            let b = top[j] as usize;
            if b == 0 {
                0.0
            } else {
                self.r2_split[[b - 1, j]]
            }
        }));
        let mut pos: Vec<f64> = best.iter().cloned().filter(|&x| x > 0.0).collect();
        pos.sort_by(f64::total_cmp);
        let scale = pos
            .get(((pos.len() as f64 * 0.99) as usize).min(pos.len().saturating_sub(1)))
            .cloned()
            .unwrap_or(1.0)
            .max(1e-6);
        let band_vol = volume(&top)?;
        let value_vol = volume(&best)?;
        let [nx, ny, nz] = mask.dims;
        let zoom = 4usize;
        let cols = (nz as f64).sqrt().ceil() as usize;
        let rows = nz.div_ceil(cols);
        let nb = self.names.len();
        let (w, h) = (cols * nx * zoom, rows * ny * zoom + 12);
        let mut img = RgbImage::from_pixel(w as u32, h as u32, Rgb([0, 0, 0]));
        let mut inside = vec![false; nx * ny * nz];
        for &l in &mask.linear {
            inside[l] = true;
        }
        let colour = |b: usize, t: f64| -> Rgb<u8> {
            let c = BAND_COLOURS[b % BAND_COLOURS.len()];
            let t = (t / scale).clamp(0.0, 1.0);
            // From white (t = 0) to the band colour (t = 1).
            Rgb(c.map(|x| (255.0 - (255.0 - x as f64) * (0.25 + 0.75 * t)) as u8))
        };
        for z in 0..nz {
            let (ox, oy) = ((z % cols) * nx, (z / cols) * ny);
            for y in 0..ny {
                for x in 0..nx {
                    let l = x + nx * (y + ny * z);
                    let c = if !inside[l] {
                        Rgb([40, 40, 40])
                    } else {
                        let b = band_vol[IxDyn(&[x, y, z])] as usize;
                        if b == 0 {
                            Rgb([255, 255, 255])
                        } else {
                            colour(b - 1, value_vol[IxDyn(&[x, y, z])] as f64)
                        }
                    };
                    for dy in 0..zoom {
                        for dx in 0..zoom {
                            let px = (ox + x) * zoom + dx;
                            let py = (oy + ny - 1 - y) * zoom + dy;
                            img.put_pixel(px as u32, py as u32, c);
                        }
                    }
                }
            }
        }
        for x in 0..w {
            let b = (x * nb / w.max(1)).min(nb - 1);
            for y in h - 10..h {
                img.put_pixel(x as u32, y as u32, colour(b, scale));
            }
        }
        io::write_atomic(path, |tmp| {
            Ok(img.save_with_format(tmp, image::ImageFormat::Png)?)
        })
    }

    /// Per-band summary columns: mean_r2_split_NAME, frac_top_NAME (fraction of voxels whose
    /// largest positive split is this band), median_band_weight_NAME, and with partitioning
    /// mean_unique_r2_NAME and mean_shared_r2.
    pub fn summary_columns(&self) -> Vec<(String, f64)> {
        let v = self.r2_split.ncols().max(1) as f64;
        let top = self.top_band();
        let mut out = Vec::new();
        for (b, name) in self.names.iter().enumerate() {
            out.push((
                format!("mean_r2_split_{name}"),
                self.r2_split.row(b).sum() / v,
            ));
            out.push((
                format!("frac_top_{name}"),
                top.iter().filter(|&&t| t as usize == b + 1).count() as f64 / v,
            ));
            let mut w = self.band_weights.row(b).to_vec();
            w.sort_by(f64::total_cmp);
            out.push((
                format!("median_band_weight_{name}"),
                w.get(w.len() / 2).cloned().unwrap_or(f64::NAN),
            ));
            if let Some(u) = &self.unique_r2 {
                out.push((format!("mean_unique_r2_{name}"), u.row(b).sum() / v));
            }
        }
        if let Some(s) = &self.shared_r2 {
            out.push(("mean_shared_r2".into(), s.sum() / v));
        }
        out
    }
}

/// One CSV row as (column, value) pairs, in the order serde writes them.
pub fn to_record<T: serde::Serialize>(row: &T) -> Result<Vec<(String, String)>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(row)?;
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let header: Vec<String> = r.headers()?.iter().map(String::from).collect();
    let rec = r.records().next().context("serialised row")??;
    Ok(header
        .into_iter()
        .zip(rec.iter().map(String::from))
        .collect())
}

/// Replaces (or adds) rows in the CSV at `path`, rows being identified by the values of the
/// `key` columns; every column of the file and of the new rows is kept (empty where a row has
/// none), rows are sorted by key, and the file is written atomically.
pub fn upsert_csv(path: &Path, key: &[&str], rows: Vec<Vec<(String, String)>>) -> Result<()> {
    let mut header: Vec<String> = Vec::new();
    let mut all: Vec<BTreeMap<String, String>> = Vec::new();
    let add_cols = |cols: &mut dyn Iterator<Item = &String>, header: &mut Vec<String>| {
        for c in cols {
            if !header.contains(c) {
                header.push(c.clone());
            }
        }
    };
    if path.exists() {
        let mut r = csv::Reader::from_path(path).with_context(|| format!("{}", path.display()))?;
        let h: Vec<String> = r.headers()?.iter().map(String::from).collect();
        add_cols(&mut h.iter(), &mut header);
        for rec in r.records() {
            // An unreadable row (e.g. a truncated line) is dropped, as before.
            if let Ok(rec) = rec {
                all.push(
                    h.iter()
                        .cloned()
                        .zip(rec.iter().map(String::from))
                        .collect(),
                );
            }
        }
    }
    let key_of = |m: &BTreeMap<String, String>| -> Vec<String> {
        key.iter()
            .map(|k| m.get(*k).cloned().unwrap_or_default())
            .collect()
    };
    for row in rows {
        add_cols(&mut row.iter().map(|(k, _)| k), &mut header);
        let m: BTreeMap<String, String> = row.into_iter().collect();
        let k = key_of(&m);
        all.retain(|o| key_of(o) != k);
        all.push(m);
    }
    all.sort_by_key(|m| key_of(m));
    io::write_atomic(path, |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        w.write_record(&header)?;
        for m in &all {
            w.write_record(header.iter().map(|c| m.get(c).map_or("", |s| s.as_str())))?;
        }
        w.flush()?;
        Ok(())
    })
}
