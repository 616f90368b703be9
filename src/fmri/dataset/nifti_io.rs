//! NIfTI reading (NIfTI-1 and NIfTI-2, headers in nifti_header.rs) and NIfTI-1 writing on top of the `nifti` crate: typed volumes in x,y,z(,t) order,
//! the affine, the TR, masked time series, and atomic writes that keep the source geometry.
use crate::core::io;
use crate::fmri::dataset::nifti_header;
use anyhow::{anyhow, bail, Context, Result};
use ndarray::ShapeBuilder;
use ndarray::{Array2, ArrayD, ArrayViewD, IxDyn};
use nifti::writer::WriterOptions;
use nifti::{InMemNiftiVolume, IntoNdArray, NiftiHeader, NiftiType};
use std::path::Path;

/// Reads a NIfTI-1 or NIfTI-2 file's header only (cheap: used for discovery and checks).
pub fn read_header(path: &Path) -> Result<NiftiHeader> {
    let (h, _) = guard(|| nifti_header::read_header_versioned(path))
        .and_then(|r| r)
        .with_context(|| format!("{}: not a readable NIfTI header", path.display()))?;
    Ok(h)
}

/// Reads a whole NIfTI-1 or NIfTI-2 volume as f32, indexed [x, y, z(, t)], with the header's
/// scaling applied as nibabel does ([`nifti_header::scaling`]: a zero or non-finite
/// `scl_slope` means none). A file cut short is an error naming how much it holds.
pub fn read_f32(path: &Path) -> Result<(NiftiHeader, ArrayD<f32>)> {
    let (header, raw, _) = nifti_header::read_raw(path)?;
    let mut h = header.clone();
    let (slope, inter) = nifti_header::scaling(&header);
    // The crate scales with the header's fields: give it the sanitised ones.
    h.scl_slope = slope;
    h.scl_inter = inter;
    let data =
        guard(|| InMemNiftiVolume::from_raw_data(&h, raw).and_then(|v| v.into_ndarray::<f32>()))
            .and_then(|r| r.map_err(|e| anyhow!("{e}")))
            .with_context(|| {
                format!(
                    "{}: cannot convert the volume (datatype {}) to f32",
                    path.display(),
                    header.datatype
                )
            })?;
    Ok((header, data))
}

/// The `nifti` crate asserts on some malformed files instead of returning an error; turn such
/// a panic into an error so bad input never aborts the program.
pub(crate) fn guard<T>(f: impl FnOnce() -> T) -> Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r.map_err(|_| anyhow!("malformed file"))
}

/// Spatial dimensions (x, y, z) from a header.
pub fn spatial_dims(h: &NiftiHeader) -> [usize; 3] {
    [h.dim[1] as usize, h.dim[2] as usize, h.dim[3] as usize]
}

/// Number of volumes (dim[4], 1 for a 3-D image).
pub fn n_volumes(h: &NiftiHeader) -> usize {
    if h.dim[0] >= 4 {
        h.dim[4].max(1) as usize
    } else {
        1
    }
}

/// The voxel-to-world affine, chosen as nibabel does (see [`nifti_header::affine`]).
pub fn affine(h: &NiftiHeader) -> [[f64; 4]; 4] {
    nifti_header::affine(h)
}

/// The TR in seconds from pixdim[4] and the time unit (ms and µs converted; unknown units
/// count as seconds), as the float32 field's shortest decimal form; None when it is not set.
pub fn header_tr(h: &NiftiHeader) -> Option<f64> {
    let v = nifti_header::f32_decimal(h.pixdim[4]);
    if !(v > 0.0 && v.is_finite()) || h.dim[0] < 4 {
        return None;
    }
    Some(match h.xyzt_units & 0x38 {
        16 => v / 1e3,
        24 => v / 1e6,
        _ => v,
    })
}

/// A header for a new image with the given spatial geometry (voxel size in mm, origin so the
/// volume is centred on 0) and, for 4-D data, the TR in seconds.
pub fn new_header(dims: [usize; 3], voxel_mm: f32, tr: Option<f64>) -> NiftiHeader {
    let mut h = NiftiHeader::default();
    let off = |n: usize| -(n as f32 - 1.0) * voxel_mm / 2.0;
    h.pixdim = [
        1.0,
        voxel_mm,
        voxel_mm,
        voxel_mm,
        tr.unwrap_or(0.0) as f32,
        0.0,
        0.0,
        0.0,
    ];
    h.xyzt_units = 2 | 8; // mm, seconds
    h.sform_code = 1; // scanner anatomical
    h.qform_code = 1;
    h.srow_x = [voxel_mm, 0.0, 0.0, off(dims[0])];
    h.srow_y = [0.0, voxel_mm, 0.0, off(dims[1])];
    h.srow_z = [0.0, 0.0, voxel_mm, off(dims[2])];
    h.quatern_b = 0.0;
    h.quatern_c = 0.0;
    h.quatern_d = 0.0;
    h.quatern_x = off(dims[0]);
    h.quatern_y = off(dims[1]);
    h.quatern_z = off(dims[2]);
    h
}

/// Writes `data` ([x, y, z(, t)]) atomically with the geometry of `reference` (affine,
/// units, TR when 4-D). Values are stored as `T` (f32, i16 or u8).
pub fn write<T: nifti::DataElement + bytemuck::Pod>(
    path: &Path,
    reference: &NiftiHeader,
    data: ArrayViewD<T>,
) -> Result<()> {
    let mut h = reference.clone();
    if data.ndim() < 4 {
        h.pixdim[4] = 0.0;
    }
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    h.cal_min = 0.0;
    h.cal_max = 0.0;
    let datatype = match std::mem::size_of::<T>() {
        1 => NiftiType::Uint8,
        2 => NiftiType::Int16,
        4 => NiftiType::Float32,
        n => bail!("unsupported element size {n}"),
    };
    io::write_atomic(path, |tmp| {
        WriterOptions::new(tmp)
            .reference_header(&h)
            .write_nifti_with_type(&data, datatype)
            .map_err(|e| anyhow!("{e}"))
    })
}

/// Order of per-voxel vectors in saved outputs (metadata key `voxel_order`): the mask's
/// order, numpy/nilearn C order, see [`Mask`].
pub const VOXEL_ORDER: &str = "C: numpy data[mask] / nilearn NiftiMasker order (z fastest)";

/// A brain mask: the voxels inside it, in the order every per-voxel array uses.
///
/// That order is numpy's C order over the volume (x slowest, z fastest), the order of
/// `data[mask]` in numpy and of nilearn's `NiftiMasker`: a per-voxel vector `v` saved by
/// brainscale is unmasked in Python by `vol = np.zeros(mask.shape); vol[mask] = v`.
/// (Masks read by [`Mask::from_volume`] are in this order; an atlas's own voxel list is not
/// a per-voxel output and keeps the NIfTI order.)
#[derive(Debug, Clone)]
pub struct Mask {
    pub dims: [usize; 3],
    /// NIfTI (column-major) linear index x + nx·(y + ny·z) of each voxel in the mask, listed
    /// in C order (see above).
    pub linear: Vec<usize>,
}

impl Mask {
    /// Voxels with a value > 0; an empty mask is an error naming the file.
    pub fn from_volume(vol: &ArrayD<f32>, path: &Path) -> Result<Self> {
        if vol.ndim() < 3 || vol.shape()[3..].iter().any(|&d| d != 1) {
            bail!(
                "{}: a mask must be a 3-D image, found shape {:?}",
                path.display(),
                vol.shape()
            );
        }
        let dims = [vol.shape()[0], vol.shape()[1], vol.shape()[2]];
        let flat = vol.as_slice_memory_order().context("mask not contiguous")?;
        let f_order = vol.t().is_standard_layout();
        let mut linear = Vec::new();
        // C order (z fastest), as numpy and nilearn list a mask's voxels.
        for x in 0..dims[0] {
            for y in 0..dims[1] {
                for z in 0..dims[2] {
                    let v = if f_order {
                        flat[x + dims[0] * (y + dims[1] * z)]
                    } else {
                        vol[IxDyn(&[x, y, z])]
                    };
                    if v > 0.0 && v.is_finite() {
                        linear.push(x + dims[0] * (y + dims[1] * z));
                    }
                }
            }
        }
        if linear.is_empty() {
            bail!("{}: the brain mask is empty (no voxel > 0)", path.display());
        }
        Ok(Self { dims, linear })
    }

    pub fn read(path: &Path) -> Result<(NiftiHeader, Self)> {
        let (h, vol) = read_f32(path)?;
        Ok((h, Self::from_volume(&vol, path)?))
    }

    pub fn len(&self) -> usize {
        self.linear.len()
    }

    pub fn is_empty(&self) -> bool {
        self.linear.is_empty()
    }

    /// Voxel indices (i, j, k) of every voxel in the mask, in the mask's order: an int32
    /// array [voxels, 3], saved beside per-voxel outputs as `voxel_ijk`.
    pub fn voxel_ijk(&self) -> ndarray::Array2<i32> {
        ndarray::Array2::from_shape_fn((self.len(), 3), |(v, a)| self.coords(v)[a] as i32)
    }

    /// Voxel (x, y, z) indices of the mask's `i`-th voxel.
    pub fn coords(&self, i: usize) -> [usize; 3] {
        let l = self.linear[i];
        [
            l % self.dims[0],
            (l / self.dims[0]) % self.dims[1],
            l / (self.dims[0] * self.dims[1]),
        ]
    }

    /// Time series of the mask's voxels from a 4-D volume [x, y, z, t]: an array [t, voxel].
    pub fn extract(&self, bold: &ArrayD<f32>, path: &Path) -> Result<Array2<f32>> {
        let s = bold.shape();
        if s.len() != 4 {
            bail!(
                "{}: BOLD must be a 4-D image, found shape {s:?}",
                path.display()
            );
        }
        if s[..3] != self.dims {
            bail!(
                "{}: BOLD volume is {}x{}x{} but the mask is {}x{}x{}",
                path.display(),
                s[0],
                s[1],
                s[2],
                self.dims[0],
                self.dims[1],
                self.dims[2]
            );
        }
        let nt = s[3];
        let nvox = self.dims.iter().product::<usize>();
        let bold_f = bold.t().is_standard_layout();
        let owned;
        let flat = if bold_f {
            bold.as_slice_memory_order().unwrap()
        } else {
            owned = bold.t().as_standard_layout().to_owned();
            owned.as_slice().unwrap()
        };
        let mut out = Array2::<f32>::zeros((nt, self.len()));
        for t in 0..nt {
            let vol = &flat[t * nvox..(t + 1) * nvox];
            for (o, &l) in out.row_mut(t).iter_mut().zip(&self.linear) {
                *o = vol[l];
            }
        }
        let bad: Vec<usize> = (0..self.len())
            .filter(|&v| out.column(v).iter().any(|x| !x.is_finite()))
            .collect();
        if let Some(&first) = bad.first() {
            let c = self.coords(first);
            bail!(
                "{}: {} voxel(s) inside the mask contain NaN or infinite values (first at x={}, y={}, z={})",
                path.display(), bad.len(), c[0], c[1], c[2]
            );
        }
        Ok(out)
    }

    /// Scatters per-voxel values back into a 3-D volume [x, y, z] (0 outside the mask).
    pub fn unmask(&self, values: &[f32]) -> ArrayD<f32> {
        self.unmask_fill(values, 0.0)
    }

    /// As [`Mask::unmask`], with `fill` outside the mask (e.g. NaN for p-value maps).
    pub fn unmask_fill(&self, values: &[f32], fill: f32) -> ArrayD<f32> {
        let mut flat = vec![fill; self.dims.iter().product()];
        for (&l, &v) in self.linear.iter().zip(values) {
            flat[l] = v;
        }
        ArrayD::from_shape_vec(IxDyn(&self.dims).f(), flat).expect("mask dims")
    }
}
