//! Maps stage: per-voxel values → NIfTI maps with the BOLD's geometry, a PNG mosaic of axial
//! slices, and one summary row per subject in a CSV.

pub mod bands;
pub mod statmap;
use crate::core::io;
use crate::core::stats::{self, RSummary};
use crate::fmri::dataset::atlas::Atlas;
use crate::fmri::dataset::nifti_io::{self, Mask};
use anyhow::Result;
use image::{Rgb, RgbImage};
use ndarray::{Array1, ArrayD, IxDyn};
use nifti::NiftiHeader;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Writes a per-voxel map as a 3-D float32 NIfTI with `reference`'s affine.
pub fn write_map(
    path: &Path,
    reference: &NiftiHeader,
    mask: &Mask,
    values: &Array1<f64>,
) -> Result<()> {
    write_map_fill(path, reference, mask, values, 0.0)
}

/// As [`write_map`], with `fill` outside the mask.
pub fn write_map_fill(
    path: &Path,
    reference: &NiftiHeader,
    mask: &Mask,
    values: &Array1<f64>,
    fill: f32,
) -> Result<()> {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    nifti_io::write(path, reference, mask.unmask_fill(&v, fill).view())
}

/// File stems of the maps [`VoxelResults::significance_maps`] can write; `maps` removes those
/// whose statistic the current encode results lack, so none is left from an earlier encode.
pub const SIGNIFICANCE_STEMS: [&str; 5] = ["p", "q", "fwe_p", "repeat_ceiling_r", "normalised_r"];

/// Removes `<stem>.nii.gz` in `out_dir` for each significance stem absent from `res`
/// (stale maps of an earlier encode, e.g. p-values after re-encoding with `--permutations 0`).
fn remove_stale_maps(out_dir: &Path, res: &VoxelResults) -> Result<()> {
    let present: Vec<&str> = res.significance_maps().iter().map(|(n, _)| *n).collect();
    for stem in SIGNIFICANCE_STEMS {
        let f = out_dir.join(format!("{stem}.nii.gz"));
        if !present.contains(&stem) && f.exists() {
            std::fs::remove_file(&f)
                .map_err(|e| anyhow::anyhow!("{}: cannot remove stale map: {e}", f.display()))?;
        }
    }
    Ok(())
}

/// Diverging colour map: blue (−max) → white (0) → red (+max).
fn diverging(v: f32, max: f32) -> Rgb<u8> {
    let t = (v / max).clamp(-1.0, 1.0);
    let (r, g, b) = if t >= 0.0 {
        (1.0, 1.0 - t, 1.0 - t)
    } else {
        (1.0 + t, 1.0 + t, 1.0)
    };
    Rgb([(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8])
}

/// Axial slices of a volume [x, y, z] in a near-square grid, each pixel `zoom`×`zoom`, with a
/// colour bar along the bottom; voxels outside the mask are dark grey. Anterior is up.
pub fn mosaic_png(
    path: &Path,
    vol: &ArrayD<f32>,
    mask: &Mask,
    max_abs: f32,
    zoom: u32,
) -> Result<()> {
    let [nx, ny, nz] = mask.dims;
    let cols = (nz as f64).sqrt().ceil() as usize;
    let rows = nz.div_ceil(cols);
    let (w, h) = ((cols * nx) as u32 * zoom, (rows * ny) as u32 * zoom + 12);
    let mut img = RgbImage::from_pixel(w, h, Rgb([0, 0, 0]));
    let mut inside = vec![false; nx * ny * nz];
    for &l in &mask.linear {
        inside[l] = true;
    }
    for z in 0..nz {
        let (ox, oy) = ((z % cols) * nx, (z / cols) * ny);
        for y in 0..ny {
            for x in 0..nx {
                let l = x + nx * (y + ny * z);
                let c = if inside[l] {
                    diverging(vol[IxDyn(&[x, y, z])], max_abs)
                } else {
                    Rgb([40, 40, 40])
                };
                for dy in 0..zoom {
                    for dx in 0..zoom {
                        let px = (ox + x) as u32 * zoom + dx;
                        let py = (oy + ny - 1 - y) as u32 * zoom + dy;
                        img.put_pixel(px, py, c);
                    }
                }
            }
        }
    }
    for x in 0..w {
        let c = diverging(
            (x as f32 / (w - 1).max(1) as f32 * 2.0 - 1.0) * max_abs,
            max_abs,
        );
        for y in h - 10..h {
            img.put_pixel(x, y, c);
        }
    }
    io::write_atomic(path, |tmp| {
        Ok(img.save_with_format(tmp, image::ImageFormat::Png)?)
    })
}

/// One results row per subject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SummaryRow {
    pub dataset: String,
    pub features: String,
    pub subject: String,
    pub voxels: usize,
    pub test_runs: String,
    pub mean_r: f64,
    pub top10_mean_r: f64,
    pub frac_r_above_0_1: f64,
    /// Ground-truth ceiling (synthetic data only; empty otherwise).
    pub ceiling_mean_r: Option<f64>,
    pub ceiling_top10_mean_r: Option<f64>,
    /// Mean r over voxels that carry signal, and its ceiling (synthetic data only).
    pub signal_mean_r: Option<f64>,
    pub signal_ceiling_mean_r: Option<f64>,
    pub noise_mean_r: Option<f64>,
    pub median_alpha: f64,
    /// Fraction of voxels with BH q < 0.05 and with FWE p < 0.05 under the block-permutation
    /// null (`encode --permutations`; empty without it).
    #[serde(default)]
    pub frac_q_below_0_05: Option<f64>,
    #[serde(default)]
    pub frac_fwe_below_0_05: Option<f64>,
    /// Noise ceiling from repeated viewings (mean over voxels), and the mean of r / ceiling
    /// over voxels whose ceiling reaches `fmri::ceiling::MIN_CEILING` (runs that repeat the
    /// test movie only).
    #[serde(default)]
    pub repeat_ceiling_mean_r: Option<f64>,
    #[serde(default)]
    pub normalised_mean_r: Option<f64>,
    /// Block-bootstrap 95% intervals (`fmri::bootstrap`) of mean r, top-10% r and the
    /// fraction with r > 0.1 (empty without them, e.g. results fitted without permutations).
    #[serde(default)]
    pub mean_r_ci_low: Option<f64>,
    #[serde(default)]
    pub mean_r_ci_high: Option<f64>,
    #[serde(default)]
    pub top10_mean_r_ci_low: Option<f64>,
    #[serde(default)]
    pub top10_mean_r_ci_high: Option<f64>,
    #[serde(default)]
    pub frac_r_above_0_1_ci_low: Option<f64>,
    #[serde(default)]
    pub frac_r_above_0_1_ci_high: Option<f64>,
    /// Block-bootstrap 95% interval of the fraction at q < 0.05 (each voxel against the r
    /// that put it at q < 0.05 in the original null; normal interval, see `fmri::bootstrap`).
    #[serde(default)]
    pub frac_q_below_0_05_ci_low: Option<f64>,
    #[serde(default)]
    pub frac_q_below_0_05_ci_high: Option<f64>,
    /// Per-band columns of a banded fit (see `maps_bands`), written after the others.
    #[serde(skip)]
    pub band_columns: Vec<(String, f64)>,
}

impl SummaryRow {
    pub fn r_summary(&self) -> RSummary {
        RSummary {
            mean_r: self.mean_r,
            top10_mean_r: self.top10_mean_r,
            frac_r_above_0_1: self.frac_r_above_0_1,
        }
    }
}

/// Replaces (or adds) the rows of `rows`' subjects/features in the CSV at `path`, atomically.
pub fn upsert_summary(path: &Path, rows: &[SummaryRow]) -> Result<()> {
    // A column-keeping upsert: per-band columns of other rows (banded fits) survive.
    let recs = rows
        .iter()
        .map(|r| {
            let mut rec = crate::fmri::maps::bands::to_record(r)?;
            rec.extend(
                r.band_columns
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string())),
            );
            Ok(rec)
        })
        .collect::<Result<Vec<_>>>()?;
    crate::fmri::maps::bands::upsert_csv(path, &["dataset", "features", "subject"], recs)
}

/// What the encode stage saved for one subject (WORK/encode/FEATURES/sub-XX/ridge.safetensors).
pub struct VoxelResults {
    pub test_r: Array1<f64>,
    pub test_r2: Array1<f64>,
    pub best_alpha: Array1<f64>,
    pub ceiling: Option<Array1<f64>>,
    pub has_signal: Option<Array1<u8>>,
    pub test_runs: String,
    /// Band results of a banded fit (`encode --bands`).
    pub bands: Option<crate::fmri::maps::bands::BandResults>,
    /// Block-permutation p, BH q and FWE p of test_r (see `fmri::significance`).
    pub p: Option<Array1<f64>>,
    pub q: Option<Array1<f64>>,
    pub fwe_p: Option<Array1<f64>>,
    /// How the null was drawn, e.g. "1000 permutations of 10-TR blocks".
    pub null: Option<String>,
    /// Noise ceiling from repeats and r / ceiling (NaN below the minimum ceiling).
    pub repeat_ceiling: Option<Array1<f64>>,
    pub normalised_r: Option<Array1<f64>>,
    /// Block-bootstrap resamples of the summaries.
    pub bootstrap: Option<crate::fmri::bootstrap::BootSummaries>,
}

impl VoxelResults {
    /// The significance and repeat-ceiling maps present, by file stem: `p`, `q`, `fwe_p`,
    /// `repeat_ceiling_r`, `normalised_r`.
    pub fn significance_maps(&self) -> Vec<(&'static str, &Array1<f64>)> {
        [
            ("p", &self.p),
            ("q", &self.q),
            ("fwe_p", &self.fwe_p),
            ("repeat_ceiling_r", &self.repeat_ceiling),
            ("normalised_r", &self.normalised_r),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        .collect()
    }

    pub fn load(path: &Path) -> Result<Self> {
        let f = io::TensorFile::open(path)?;
        let what = |n: &str| format!("{}: {n}", path.display());
        let opt_f64 = |n: &str| -> Result<Option<Array1<f64>>> {
            if f.has(n) {
                Ok(Some(io::into_1d(f.f64(n)?, &what(n))?))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            test_r: io::into_1d(f.f64("test_r")?, &what("test_r"))?,
            test_r2: io::into_1d(f.f64("test_r2")?, &what("test_r2"))?,
            best_alpha: io::into_1d(f.f64("best_alpha")?, &what("best_alpha"))?,
            ceiling: opt_f64("ceiling_r")?,
            has_signal: if f.has("has_signal") {
                Some(io::into_1d(f.u8("has_signal")?, &what("has_signal"))?)
            } else {
                None
            },
            test_runs: f.metadata().get("test_runs").cloned().unwrap_or_default(),
            bands: crate::fmri::maps::bands::BandResults::load(&f, path)?,
            p: opt_f64("test_p")?,
            q: opt_f64("test_q")?,
            fwe_p: opt_f64("test_fwe_p")?,
            repeat_ceiling: opt_f64("repeat_ceiling_r")?,
            normalised_r: opt_f64("normalised_r")?,
            bootstrap: match (
                opt_f64("boot_mean_r")?,
                opt_f64("boot_top10_r")?,
                opt_f64("boot_frac_r_0_1")?,
            ) {
                (Some(mean_r), Some(top10_r), Some(frac_r_0_1)) => {
                    Some(crate::fmri::bootstrap::BootSummaries {
                        mean_r,
                        top10_r,
                        frac_r_0_1,
                        frac_q05: opt_f64("boot_frac_q05")?,
                    })
                }
                _ => None,
            },
            null: match (
                f.metadata().get("permutations"),
                f.metadata().get("perm_block"),
            ) {
                (Some(n), Some(b)) if f.has("test_q") => {
                    Some(format!("{n} permutations of {b}-TR blocks"))
                }
                _ => None,
            },
        })
    }
}

/// Maps stage for one subject: NIfTI maps (r, r², best alpha, ceiling when known) with the
/// BOLD's geometry, a PNG mosaic of r, and the subject's summary row.
pub fn write_subject_maps(
    out_dir: &Path,
    dataset: &str,
    features: &str,
    subject: &str,
    reference: &NiftiHeader,
    mask: &Mask,
    res: &VoxelResults,
) -> Result<SummaryRow> {
    if res.test_r.len() != mask.len() {
        anyhow::bail!(
            "sub-{subject}: {} r values for a mask of {} voxels (re-run encode)",
            res.test_r.len(),
            mask.len()
        );
    }
    let h = reference;
    write_map(&out_dir.join("r.nii.gz"), h, mask, &res.test_r)?;
    write_map(&out_dir.join("r2.nii.gz"), h, mask, &res.test_r2)?;
    write_map(&out_dir.join("alpha.nii.gz"), h, mask, &res.best_alpha)?;
    if let Some(c) = &res.ceiling {
        write_map(&out_dir.join("ceiling_r.nii.gz"), h, mask, c)?;
    }
    // NaN outside the mask, not 0: a p, q or FWE p of 0 would read as "most significant", so
    // thresholding p < 0.05 in a viewer (nilearn, FSLeyes) would light up the background;
    // NaN is what nibabel/nilearn treat as "no value" (nilearn masks non-finite voxels).
    // The same for the ceiling and normalised r, where 0 is a real value. r, r² and alpha
    // keep 0 outside, nilearn's convention for stat maps.
    remove_stale_maps(out_dir, res)?;
    for (name, v) in res.significance_maps() {
        write_map_fill(
            &out_dir.join(format!("{name}.nii.gz")),
            h,
            mask,
            v,
            f32::NAN,
        )?;
    }
    let r32: Vec<f32> = res.test_r.iter().map(|&v| v as f32).collect();
    mosaic_png(
        &out_dir.join("r_mosaic.png"),
        &mask.unmask(&r32),
        mask,
        mosaic_scale(&r32),
        4,
    )?;
    if let Some(b) = &res.bands {
        b.write_voxel_maps(out_dir, h, mask)?;
    }
    Ok(summary_row(dataset, features, subject, res))
}

/// The summary row of one subject's per-voxel (or per-parcel) results.
fn summary_row(dataset: &str, features: &str, subject: &str, res: &VoxelResults) -> SummaryRow {
    let s = stats::summarize_r(res.test_r.view());
    let select_mean = |v: &Array1<f64>, want: u8| -> Option<f64> {
        let hs = res.has_signal.as_ref()?;
        let sel: Vec<f64> = v
            .iter()
            .zip(hs)
            .filter(|(_, &h)| h == want)
            .map(|(&x, _)| x)
            .collect();
        (!sel.is_empty()).then(|| sel.iter().sum::<f64>() / sel.len() as f64)
    };
    let ci = |f: fn(&crate::fmri::bootstrap::BootSummaries) -> &Array1<f64>| {
        res.bootstrap
            .as_ref()
            .map(|b| crate::fmri::bootstrap::interval95(f(b)))
    };
    let (ci_mean, ci_top, ci_frac) = (ci(|b| &b.mean_r), ci(|b| &b.top10_r), ci(|b| &b.frac_r_0_1));
    // Normal interval around the observed fraction (see `fmri::bootstrap` for why).
    let ci_q05 = res
        .bootstrap
        .as_ref()
        .and_then(|b| b.frac_q05.as_ref())
        .zip(res.q.as_ref())
        .map(|(f, q)| crate::fmri::bootstrap::normal_interval95(frac_below(q, 0.05), f));
    let mut alphas = res.best_alpha.to_vec();
    alphas.sort_by(f64::total_cmp);
    SummaryRow {
        dataset: dataset.into(),
        features: features.into(),
        subject: subject.into(),
        voxels: res.test_r.len(),
        test_runs: res.test_runs.clone(),
        mean_r: s.mean_r,
        top10_mean_r: s.top10_mean_r,
        frac_r_above_0_1: s.frac_r_above_0_1,
        ceiling_mean_r: res
            .ceiling
            .as_ref()
            .map(|c| stats::summarize_r(c.view()).mean_r),
        ceiling_top10_mean_r: res
            .ceiling
            .as_ref()
            .map(|c| stats::summarize_r(c.view()).top10_mean_r),
        signal_mean_r: select_mean(&res.test_r, 1),
        signal_ceiling_mean_r: res.ceiling.as_ref().and_then(|c| select_mean(c, 1)),
        noise_mean_r: select_mean(&res.test_r, 0),
        median_alpha: alphas[alphas.len() / 2],
        frac_q_below_0_05: res.q.as_ref().map(|q| frac_below(q, 0.05)),
        frac_fwe_below_0_05: res.fwe_p.as_ref().map(|p| frac_below(p, 0.05)),
        mean_r_ci_low: ci_mean.map(|c| c.0),
        mean_r_ci_high: ci_mean.map(|c| c.1),
        top10_mean_r_ci_low: ci_top.map(|c| c.0),
        top10_mean_r_ci_high: ci_top.map(|c| c.1),
        frac_r_above_0_1_ci_low: ci_frac.map(|c| c.0),
        frac_r_above_0_1_ci_high: ci_frac.map(|c| c.1),
        frac_q_below_0_05_ci_low: ci_q05.map(|c| c.0),
        frac_q_below_0_05_ci_high: ci_q05.map(|c| c.1),
        repeat_ceiling_mean_r: res
            .repeat_ceiling
            .as_ref()
            .map(|c| c.mean().unwrap_or(f64::NAN)),
        normalised_mean_r: res.normalised_r.as_ref().and_then(|n| {
            let v: Vec<f64> = n.iter().copied().filter(|x| x.is_finite()).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        }),
        band_columns: res
            .bands
            .as_ref()
            .map(|b| b.summary_columns())
            .unwrap_or_default(),
    }
}

/// Share of `v` strictly below `t`.
fn frac_below(v: &Array1<f64>, t: f64) -> f64 {
    v.iter().filter(|&&x| x < t).count() as f64 / v.len().max(1) as f64
}

/// Colour scale of an r mosaic: the 99th percentile of |r|, at least 0.1.
fn mosaic_scale(r: &[f32]) -> f32 {
    let mut a: Vec<f32> = r.iter().map(|v| v.abs()).collect();
    a.sort_by(f32::total_cmp);
    a[((a.len() as f64 * 0.99) as usize).min(a.len() - 1)].max(0.1)
}

/// Maps stage for a parcellated subject: `parcels.csv` (parcel, label, r, r², alpha[, ceiling])
/// always; with an atlas, the same NIfTI maps and PNG mosaic as voxel data (each parcel's
/// value painted over its voxels, with the atlas geometry). The summary row is over parcels.
pub fn write_parcel_maps(
    out_dir: &Path,
    dataset: &str,
    features: &str,
    subject: &str,
    n_parcels: usize,
    atlas: Option<&Atlas>,
    res: &VoxelResults,
) -> Result<SummaryRow> {
    if res.test_r.len() != n_parcels {
        anyhow::bail!(
            "sub-{subject}: {} r values for {n_parcels} parcels (re-run encode)",
            res.test_r.len()
        );
    }
    io::write_atomic(&out_dir.join("parcels.csv"), |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        w.write_record([
            "parcel",
            "label",
            "r",
            "r2",
            "alpha",
            "ceiling_r",
            "p",
            "q",
            "fwe_p",
        ])?;
        let cell = |v: &Option<Array1<f64>>, p: usize| {
            v.as_ref().map_or(String::new(), |c| c[p].to_string())
        };
        for p in 0..n_parcels {
            w.write_record([
                p.to_string(),
                (p + 1).to_string(),
                res.test_r[p].to_string(),
                res.test_r2[p].to_string(),
                res.best_alpha[p].to_string(),
                cell(&res.ceiling, p),
                cell(&res.p, p),
                cell(&res.q, p),
                cell(&res.fwe_p, p),
            ])?;
        }
        w.flush()?;
        Ok(())
    })?;
    if let Some(a) = atlas {
        let h = &a.header;
        let map = |name: &str, v: &Array1<f64>| -> Result<()> {
            let vol = a.volume(v.as_slice().expect("contiguous"))?;
            nifti_io::write(&out_dir.join(name), h, vol.view())
        };
        map("r.nii.gz", &res.test_r)?;
        map("r2.nii.gz", &res.test_r2)?;
        map("alpha.nii.gz", &res.best_alpha)?;
        if let Some(c) = &res.ceiling {
            map("ceiling_r.nii.gz", c)?;
        }
        remove_stale_maps(out_dir, res)?;
        for (name, v) in res.significance_maps() {
            map(&format!("{name}.nii.gz"), v)?;
        }
        let r32: Vec<f32> = res.test_r.iter().map(|&v| v as f32).collect();
        mosaic_png(
            &out_dir.join("r_mosaic.png"),
            &a.volume(res.test_r.as_slice().unwrap())?,
            &a.mask,
            mosaic_scale(&r32),
            4,
        )?;
    }
    if let Some(b) = &res.bands {
        b.write_parcel_maps(out_dir, atlas)?;
    }
    Ok(summary_row(dataset, features, subject, res))
}

/// How each subject's publication-style map (`r_statmap.png`) is drawn: `maps --q`,
/// `--threshold`, `--background`.
#[derive(Debug, Clone)]
pub struct FigureOptions {
    /// Paint only voxels with BH q below this when the encode results hold q-values
    /// (default 0.05); None, or results without q: the fixed |r| threshold below.
    pub q: Option<f64>,
    /// |r| below this is not painted when thresholding by r (default 0.1).
    pub threshold: f32,
    /// An anatomical image (any grid, resampled to the map's by trilinear interpolation in
    /// mm) drawn under the map; default: the subject's mean EPI (voxel data) or the atlas.
    pub background: Option<std::path::PathBuf>,
}

impl Default for FigureOptions {
    fn default() -> Self {
        Self {
            q: Some(0.05),
            threshold: 0.1,
            background: None,
        }
    }
}

/// What a figure paints: r as is above a fixed |r|, or r where q is below a level.
#[derive(Debug, Clone, PartialEq)]
pub enum MapThreshold {
    AbsR(f32),
    /// BH q below `q`; `null` says how the null was drawn.
    Q {
        q: f64,
        null: String,
    },
}

impl MapThreshold {
    /// The rule `opts` asks for, given what `res` holds (q only when it was computed).
    pub fn choose(opts: &FigureOptions, res: &VoxelResults) -> Self {
        match (opts.q, &res.q) {
            (Some(q), Some(_)) => MapThreshold::Q {
                q,
                null: res
                    .null
                    .clone()
                    .unwrap_or_else(|| "block permutations".into()),
            },
            _ => MapThreshold::AbsR(opts.threshold),
        }
    }

    /// The values painted (r, zero where not significant) and the |value| threshold of the
    /// colour map. Errors when a q rule meets results without q.
    pub fn apply(&self, res: &VoxelResults) -> Result<(Array1<f64>, f32)> {
        match self {
            MapThreshold::AbsR(t) => Ok((res.test_r.clone(), *t)),
            MapThreshold::Q { q, .. } => {
                let qs = res.q.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("no q-values (re-run encode with --permutations)")
                })?;
                let r = ndarray::Zip::from(&res.test_r)
                    .and(qs)
                    .map_collect(|&r, &qv| if qv < *q { r } else { 0.0 });
                Ok((r, 0.0))
            }
        }
    }

    /// How the figure names the threshold.
    pub fn describe(&self, res: &VoxelResults) -> String {
        match self {
            MapThreshold::AbsR(t) => format!("|r| ≥ {t:.2}"),
            MapThreshold::Q { q, null } => {
                let n = res
                    .q
                    .as_ref()
                    .map_or(0, |v| v.iter().filter(|&&x| x < *q).count());
                format!("BH q < {q} ({n} significant; {null})")
            }
        }
    }
}

/// Largest 4-D run (in f32 bytes) read whole for a mean EPI; bigger runs fall back to the
/// mask as background (pass `--background` for real data at full resolution).
pub const MEAN_EPI_MAX_BYTES: usize = 1 << 30;

/// The mean over time of a 4-D BOLD run on `dims` (the subject's mean EPI), or None when the
/// run is on another grid or larger than [`MEAN_EPI_MAX_BYTES`].
pub fn mean_epi(bold: &Path, dims: [usize; 3]) -> Result<Option<ArrayD<f32>>> {
    let h = nifti_io::read_header(bold)?;
    let d = nifti_io::spatial_dims(&h);
    let t = nifti_io::n_volumes(&h);
    if d != dims || d.iter().product::<usize>() * t * 4 > MEAN_EPI_MAX_BYTES {
        return Ok(None);
    }
    let (_, v) = nifti_io::read_f32(bold)?;
    if v.ndim() != 4 {
        return Ok(None);
    }
    Ok(Some(v.mean_axis(ndarray::Axis(3)).expect("t ≥ 1")))
}

/// Reads an anatomical image and resamples it to `reference`'s grid.
pub fn background_image(path: &Path, reference: &NiftiHeader) -> Result<ArrayD<f32>> {
    let (h, v) = nifti_io::read_f32(path)
        .map_err(|e| e.context(format!("--background {}", path.display())))?;
    let v = if v.ndim() == 4 {
        v.index_axis(ndarray::Axis(3), 0).to_owned()
    } else {
        v
    };
    crate::fmri::maps::statmap::resample_to(
        &v,
        &nifti_io::affine(&h),
        nifti_io::spatial_dims(reference),
        &nifti_io::affine(reference),
    )
    .map_err(|e| e.context(format!("--background {}", path.display())))
}

/// The title of a subject's figure: subject, features, `summary` (what the map's mean is) and
/// the test runs.
fn figure_title(row: &SummaryRow, summary: &str) -> String {
    format!(
        "sub-{} · {} · {summary} · test runs {}",
        row.subject,
        row.features,
        if row.test_runs.is_empty() {
            "-"
        } else {
            &row.test_runs
        }
    )
}

/// Draws `r_statmap.png` of a voxel subject: r on held-out runs, thresholded, over
/// `background` (described by `what`), three views through the peak and an axial mosaic.
pub fn write_subject_figure(
    out_dir: &Path,
    row: &SummaryRow,
    reference: &NiftiHeader,
    mask: &Mask,
    r: &Array1<f64>,
    background: Option<(&ArrayD<f32>, &str)>,
    threshold: f32,
) -> Result<crate::fmri::maps::statmap::StatMapLayout> {
    let label = format!("|r| ≥ {threshold:.2}");
    write_subject_figure_as(
        out_dir, row, reference, mask, r, background, threshold, &label,
    )
}

/// [`write_subject_figure`] with the threshold named by `label` (e.g. "BH q < 0.05 (…)");
/// `r` holds zeros where nothing is to be painted.
#[allow(clippy::too_many_arguments)]
pub fn write_subject_figure_as(
    out_dir: &Path,
    row: &SummaryRow,
    reference: &NiftiHeader,
    mask: &Mask,
    r: &Array1<f64>,
    background: Option<(&ArrayD<f32>, &str)>,
    threshold: f32,
    label: &str,
) -> Result<crate::fmri::maps::statmap::StatMapLayout> {
    let what = ("r_statmap.png", "Pearson r per voxel on held-out runs");
    let title = figure_title(row, &format!("mean r {:.3}", row.mean_r));
    subject_figure(
        what, &title, out_dir, reference, mask, r, background, threshold, label,
    )
}

/// `normalised_r_statmap.png`: r / noise ceiling from repeats (`values`, zero or NaN where
/// not painted), the voxels chosen by the rule `label` names, over `background`.
#[allow(clippy::too_many_arguments)]
pub fn write_normalised_figure(
    out_dir: &Path,
    row: &SummaryRow,
    reference: &NiftiHeader,
    mask: &Mask,
    values: &Array1<f64>,
    background: Option<(&ArrayD<f32>, &str)>,
    label: &str,
) -> Result<crate::fmri::maps::statmap::StatMapLayout> {
    let what = (
        "normalised_r_statmap.png",
        "r / noise ceiling from repeated viewings (ceiling ≥ 0.1)",
    );
    // The mean of this map's quantity (over voxels whose ceiling reaches the floor), not r's.
    let title = figure_title(
        row,
        &row.normalised_mean_r
            .map_or("mean r / ceiling n/a".into(), |n| {
                format!("mean r / ceiling {n:.3}")
            }),
    );
    subject_figure(
        what, &title, out_dir, reference, mask, values, background, 0.0, label,
    )
}

#[allow(clippy::too_many_arguments)]
fn subject_figure(
    (file, quantity): (&str, &str),
    title: &str,
    out_dir: &Path,
    reference: &NiftiHeader,
    mask: &Mask,
    r: &Array1<f64>,
    background: Option<(&ArrayD<f32>, &str)>,
    threshold: f32,
    label: &str,
) -> Result<crate::fmri::maps::statmap::StatMapLayout> {
    let r32: Vec<f32> = r.iter().map(|&v| v as f32).collect();
    let stat = mask.unmask(&r32);
    let [nx, ny, nz] = mask.dims;
    let mut inside = vec![false; nx * ny * nz];
    for &l in &mask.linear {
        inside[l] = true;
    }
    let bg = background.map_or("background: brain mask".to_string(), |(_, w)| {
        format!("background: {w}")
    });
    crate::fmri::maps::statmap::plot_stat_map(
        &out_dir.join(file),
        &crate::fmri::maps::statmap::StatMapInput {
            stat: &stat,
            inside: &inside,
            affine: nifti_io::affine(reference),
            background: background.map(|(b, _)| b),
            title: title.to_string(),
            subtitle: format!("{quantity}, {label}; {bg}; neurological view (L left)"),
            threshold,
            vmax: None,
            n_slices: 12,
        },
    )
}

/// Draws `r_statmap.png` of a parcellated subject over its atlas: each parcel's r painted
/// over its voxels; the background shows the atlas, parcel borders lighter.
pub fn write_parcel_figure(
    out_dir: &Path,
    row: &SummaryRow,
    atlas: &Atlas,
    r: &Array1<f64>,
    threshold: f32,
) -> Result<crate::fmri::maps::statmap::StatMapLayout> {
    let label = format!("|r| ≥ {threshold:.2}");
    write_parcel_figure_as(out_dir, row, atlas, r, threshold, &label)
}

/// [`write_parcel_figure`] with the threshold named by `label`.
pub fn write_parcel_figure_as(
    out_dir: &Path,
    row: &SummaryRow,
    atlas: &Atlas,
    r: &Array1<f64>,
    threshold: f32,
    label: &str,
) -> Result<crate::fmri::maps::statmap::StatMapLayout> {
    let stat = atlas.volume(r.as_slice().expect("contiguous"))?;
    let labels: Vec<f32> = atlas.labels.iter().map(|&l| l as f32).collect();
    let lab = atlas.mask.unmask(&labels);
    let [nx, ny, nz] = atlas.mask.dims;
    let mut inside = vec![false; nx * ny * nz];
    for &l in &atlas.mask.linear {
        inside[l] = true;
    }
    let mut bg = ArrayD::<f32>::zeros(IxDyn(&[nx, ny, nz]));
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let l = lab[IxDyn(&[i, j, k])];
                if l == 0.0 {
                    continue;
                }
                let border = [(1i64, 0i64, 0i64), (0, 1, 0), (0, 0, 1)]
                    .iter()
                    .any(|&(a, b, c)| {
                        let (x, y, z) = (i as i64 + a, j as i64 + b, k as i64 + c);
                        x < nx as i64 && y < ny as i64 && z < nz as i64 && {
                            let o = lab[IxDyn(&[x as usize, y as usize, z as usize])];
                            o != 0.0 && o != l
                        }
                    });
                bg[IxDyn(&[i, j, k])] = if border { 2.0 } else { 1.0 };
            }
        }
    }
    crate::fmri::maps::statmap::plot_stat_map(
        &out_dir.join("r_statmap.png"),
        &crate::fmri::maps::statmap::StatMapInput {
            stat: &stat,
            inside: &inside,
            affine: nifti_io::affine(&atlas.header),
            background: Some(&bg),
            title: figure_title(row, &format!("mean r {:.3}", row.mean_r)),
            subtitle: format!(
                "Pearson r per parcel on held-out runs, {label}; background: atlas {} ({} parcels)",
                atlas.path.file_name().unwrap_or_default().to_string_lossy(),
                atlas.n_parcels
            ),
            threshold,
            vmax: None,
            n_slices: 12,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(n: usize, with_p: bool) -> VoxelResults {
        let v = |x: f64| Some(Array1::from_elem(n, x));
        VoxelResults {
            test_r: Array1::from_elem(n, 0.3),
            test_r2: Array1::from_elem(n, 0.09),
            best_alpha: Array1::from_elem(n, 10.0),
            ceiling: None,
            has_signal: None,
            test_runs: "04".into(),
            bands: None,
            p: if with_p { v(0.01) } else { None },
            q: if with_p { v(0.02) } else { None },
            fwe_p: if with_p { v(0.03) } else { None },
            null: None,
            repeat_ceiling: if with_p { v(0.6) } else { None },
            normalised_r: if with_p { v(0.5) } else { None },
            bootstrap: None,
        }
    }

    /// p/q/FWE p and the ceiling maps are NaN outside the mask (0 would pass p < 0.05), r is 0;
    /// re-running maps on results without them removes the old files.
    #[test]
    fn significance_maps_are_nan_outside_the_mask_and_never_stale() {
        let dir = tempfile::tempdir().unwrap();
        let mut vol = ArrayD::<f32>::zeros(IxDyn(&[4, 4, 4]));
        vol[IxDyn(&[1, 2, 1])] = 1.0;
        vol[IxDyn(&[2, 2, 3])] = 1.0;
        let mask = Mask::from_volume(&vol, Path::new("mask")).unwrap();
        let h = nifti_io::new_header([4, 4, 4], 2.0, None);
        let d = dir.path();
        write_subject_maps(d, "ds", "f", "01", &h, &mask, &results(2, true)).unwrap();
        let read = |s: &str| {
            nifti_io::read_f32(&d.join(format!("{s}.nii.gz")))
                .unwrap()
                .1
        };
        for stem in SIGNIFICANCE_STEMS {
            let m = read(stem);
            assert!(m[IxDyn(&[1, 2, 1])].is_finite() && m[IxDyn(&[2, 2, 3])].is_finite());
            let outside = m.iter().filter(|x| x.is_nan()).count();
            assert_eq!(outside, 64 - 2, "{stem}");
        }
        assert!((read("p")[IxDyn(&[1, 2, 1])] - 0.01).abs() < 1e-6);
        let r = read("r");
        assert_eq!(r[IxDyn(&[0, 0, 0])], 0.0);
        write_subject_maps(d, "ds", "f", "01", &h, &mask, &results(2, false)).unwrap();
        for stem in SIGNIFICANCE_STEMS {
            assert!(!d.join(format!("{stem}.nii.gz")).exists(), "{stem} left");
        }
        assert!(d.join("r.nii.gz").exists());
    }
}
