//! Parcellations given as a NIfTI label volume (e.g. Schaefer-1000 or MIST-444 in
//! MNI152NLin2009cAsym), both ways: voxel time series → parcel means, and per-parcel values →
//! a NIfTI map (so parcel r maps are written like voxel maps).
//!
//! Convention: label 0 is background; parcel column `p` (0-based) of a parcellated array is
//! label `p + 1`, as in the Algonauts 2025 and CNeuroMod releases (labels 1..=N).
use crate::fmri::dataset::nifti_io::{self, Mask};
use anyhow::{bail, Result};
use ndarray::{Array2, ArrayD};
use nifti::NiftiHeader;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Atlas {
    pub path: PathBuf,
    pub header: NiftiHeader,
    /// The voxels with a label > 0, in NIfTI (column-major) order.
    pub mask: Mask,
    /// Label of each voxel of `mask` (1..=n_parcels).
    pub labels: Vec<u32>,
    /// The largest label: parcellated arrays must have this many columns.
    pub n_parcels: usize,
}

impl Atlas {
    /// Reads a label volume; labels must be non-negative integers.
    pub fn read(path: &Path) -> Result<Self> {
        let (header, vol) = nifti_io::read_f32(path)?;
        if vol.ndim() < 3 || vol.shape()[3..].iter().any(|&d| d != 1) {
            bail!(
                "{}: an atlas must be a 3-D label image, found shape {:?}",
                path.display(),
                vol.shape()
            );
        }
        let mut ix = vec![0usize; vol.ndim()];
        let dims = [vol.shape()[0], vol.shape()[1], vol.shape()[2]];
        let mut linear = Vec::new();
        let mut labels = Vec::new();
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    ix[..3].copy_from_slice(&[x, y, z]);
                    let v = vol[ndarray::IxDyn(&ix)];
                    if !v.is_finite() || v < 0.0 || (v - v.round()).abs() > 1e-3 {
                        bail!("{}: not a label volume: value {v} at x={x}, y={y}, z={z} (labels must be integers >= 0)", path.display());
                    }
                    let l = v.round() as u32;
                    if l > 0 {
                        linear.push(x + dims[0] * (y + dims[1] * z));
                        labels.push(l);
                    }
                }
            }
        }
        if labels.is_empty() {
            bail!(
                "{}: the atlas has no parcel (every voxel is 0)",
                path.display()
            );
        }
        let n_parcels = *labels.iter().max().unwrap() as usize;
        Ok(Self {
            path: path.to_path_buf(),
            header,
            mask: Mask { dims, linear },
            labels,
            n_parcels,
        })
    }

    /// Labels in 1..=n_parcels that no voxel carries.
    pub fn missing_labels(&self) -> Vec<u32> {
        let mut seen = vec![false; self.n_parcels + 1];
        for &l in &self.labels {
            seen[l as usize] = true;
        }
        (1..=self.n_parcels as u32)
            .filter(|&l| !seen[l as usize])
            .collect()
    }

    /// Checks that a parcellated array's column count matches this atlas.
    pub fn check_parcels(&self, n: usize, what: &str) -> Result<()> {
        if n != self.n_parcels {
            bail!(
                "{what} has {n} parcels but the atlas {} has {} labels (parcel count differs from the atlas)",
                self.path.display(),
                self.n_parcels
            );
        }
        Ok(())
    }

    /// Parcel means of voxel time series `data` [T, voxels of `mask`]. Returns [T, n_parcels] and
    /// the labels with no voxel inside `mask` (their column is 0).
    pub fn parcel_means(
        &self,
        data: &Array2<f32>,
        mask: &Mask,
        what: &str,
    ) -> Result<(Array2<f32>, Vec<u32>)> {
        if mask.dims != self.mask.dims {
            bail!(
                "{what}: the data are {}x{}x{} but the atlas {} is {}x{}x{} (resample the atlas to the BOLD grid)",
                mask.dims[0], mask.dims[1], mask.dims[2], self.path.display(),
                self.mask.dims[0], self.mask.dims[1], self.mask.dims[2]
            );
        }
        if data.ncols() != mask.len() {
            bail!(
                "{what}: {} columns for a mask of {} voxels",
                data.ncols(),
                mask.len()
            );
        }
        // Label of each data column through the full volume.
        let mut vol_label = vec![0u32; mask.dims.iter().product()];
        for (&l, &lab) in self.mask.linear.iter().zip(&self.labels) {
            vol_label[l] = lab;
        }
        let mut counts = vec![0usize; self.n_parcels];
        let col_label: Vec<u32> = mask.linear.iter().map(|&l| vol_label[l]).collect();
        for &lab in &col_label {
            if lab > 0 {
                counts[lab as usize - 1] += 1;
            }
        }
        let mut out = Array2::<f32>::zeros((data.nrows(), self.n_parcels));
        for (t, row) in data.outer_iter().enumerate() {
            let mut sums = vec![0.0f64; self.n_parcels];
            for (&v, &lab) in row.iter().zip(&col_label) {
                if lab > 0 {
                    sums[lab as usize - 1] += v as f64;
                }
            }
            for p in 0..self.n_parcels {
                if counts[p] > 0 {
                    out[[t, p]] = (sums[p] / counts[p] as f64) as f32;
                }
            }
        }
        let empty = (0..self.n_parcels)
            .filter(|&p| counts[p] == 0)
            .map(|p| p as u32 + 1)
            .collect();
        Ok((out, empty))
    }

    /// Per-parcel values spread over the atlas voxels (the order of `self.mask`).
    pub fn to_voxels(&self, values: &[f64]) -> Result<Vec<f64>> {
        self.check_parcels(values.len(), "the parcel values")?;
        Ok(self
            .labels
            .iter()
            .map(|&l| values[l as usize - 1])
            .collect())
    }

    /// Per-parcel values as a 3-D volume (0 outside every parcel): the inverse transform.
    pub fn volume(&self, values: &[f64]) -> Result<ArrayD<f32>> {
        let v: Vec<f32> = self
            .to_voxels(values)?
            .into_iter()
            .map(|x| x as f32)
            .collect();
        Ok(self.mask.unmask(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{IxDyn, ShapeBuilder};

    fn write_atlas(dir: &Path) -> PathBuf {
        // 4x3x2 volume; labels by x (0 = background at x = 0), label 3 only at z = 1.
        let mut flat = vec![0.0f32; 24];
        for z in 0..2 {
            for y in 0..3 {
                for x in 0..4 {
                    let l = if z == 1 && x == 3 {
                        3
                    } else if x == 0 {
                        0
                    } else {
                        1 + (x > 1) as u32
                    };
                    flat[x + 4 * (y + 3 * z)] = l as f32;
                }
            }
        }
        let vol = ArrayD::from_shape_vec(IxDyn(&[4, 3, 2]).f(), flat).unwrap();
        let p = dir.join("atlas.nii.gz");
        nifti_io::write(
            &p,
            &nifti_io::new_header([4, 3, 2], 2.0, None),
            vol.mapv(|v| v as i16).view(),
        )
        .unwrap();
        p
    }

    #[test]
    fn parcel_means_and_inverse_agree_with_hand_computation() {
        let dir = tempfile::tempdir().unwrap();
        let a = Atlas::read(&write_atlas(dir.path())).unwrap();
        assert_eq!(a.n_parcels, 3);
        assert!(a.missing_labels().is_empty());
        // Data over the whole volume, value = x + 10 y + 100 z + 1000 t.
        let mask = Mask {
            dims: [4, 3, 2],
            linear: (0..24).collect(),
        };
        let data = Array2::from_shape_fn((2, 24), |(t, l)| {
            (l % 4 + 10 * ((l / 4) % 3) + 100 * (l / 12) + 1000 * t) as f32
        });
        let (p, empty) = a.parcel_means(&data, &mask, "test").unwrap();
        assert!(empty.is_empty());
        // Label 1: x = 1, all y, both z → mean x 1, y 1, z 0.5. Label 2: x = 2 (both z) and
        // x = 3 at z = 0 → x (2·6 + 3·3)/9, y 1, z 3/9. Label 3: x = 3, z = 1.
        let expect = [
            1.0 + 10.0 + 50.0,
            21.0 / 9.0 * 1.0 + 10.0 + 100.0 / 3.0,
            3.0 + 10.0 + 100.0,
        ];
        for p_ in 0..3 {
            assert!(
                (p[[0, p_]] - expect[p_] as f32).abs() < 1e-4,
                "parcel {p_}: {} vs {}",
                p[[0, p_]],
                expect[p_]
            );
            assert!((p[[1, p_]] - (expect[p_] + 1000.0) as f32).abs() < 1e-3);
        }
        // Inverse: each voxel gets its parcel's value; background stays 0.
        let vol = a.volume(&[0.5, -0.25, 0.75]).unwrap();
        assert_eq!(vol[IxDyn(&[0, 1, 0])], 0.0);
        assert_eq!(vol[IxDyn(&[1, 2, 1])], 0.5);
        assert_eq!(vol[IxDyn(&[3, 0, 0])], -0.25);
        assert_eq!(vol[IxDyn(&[3, 0, 1])], 0.75);
        let e = a.volume(&[0.5, 0.1]).unwrap_err().to_string();
        assert!(e.contains("2 parcels") && e.contains("3 labels"), "{e}");
    }

    #[test]
    fn non_integer_labels_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.nii.gz");
        let vol = ArrayD::from_elem(IxDyn(&[2, 2, 2]), 0.5f32);
        nifti_io::write(&p, &nifti_io::new_header([2, 2, 2], 2.0, None), vol.view()).unwrap();
        let e = Atlas::read(&p).unwrap_err().to_string();
        assert!(e.contains("not a label volume"), "{e}");
    }
}
