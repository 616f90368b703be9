//! A 4-D NIfTI read volume by volume: the (gzip'd) stream is decompressed as it is read and
//! only the mask's voxels of each volume are kept, so a run costs its masked time series
//! [TRs, voxels] in memory, never the whole file (nor its decompressed bytes).
//!
//! Values, checks and errors are those of `nifti_io::read_f32` + `Mask::extract` (the same
//! crate converts each volume, with the header's scaling as nibabel applies it).
use crate::fmri::dataset::nifti_header::{self, grid_mismatch};
use crate::fmri::dataset::nifti_io::{guard, n_volumes, spatial_dims, Mask};
use anyhow::{anyhow, bail, Context, Result};
use ndarray::Array2;
use nifti::{InMemNiftiVolume, IntoNdArray, NiftiHeader};
use std::io::Read;
use std::path::Path;

/// The mask's voxels of every volume of the 4-D NIfTI at `path`: [TRs, mask voxels], in the
/// mask's order. With `mask_header`, the BOLD must be on its grid (`mask_path` names it in
/// the error). Errors name the file: not 4-D, another grid, cut short (how many volumes are
/// complete), NaN or infinite values inside the mask (first voxel's x, y, z).
pub fn read_masked(
    path: &Path,
    mask: &Mask,
    mask_header: Option<&NiftiHeader>,
    mask_path: &Path,
) -> Result<Array2<f32>> {
    let mut r = nifti_header::open_stream(path)?;
    let mut head = vec![0u8; 540];
    let got = nifti_header::read_up_to(&mut *r, &mut head)
        .with_context(|| format!("{}: not a readable NIfTI header", path.display()))?;
    head.truncate(got);
    let (header, off, _) = nifti_header::parse(&head, path)?;
    if let Some(mh) = mask_header {
        if let Some(why) = grid_mismatch(&header, mh) {
            bail!(
                "{}: the BOLD is not on the grid of the brain mask {}: {why}",
                path.display(),
                mask_path.display()
            );
        }
    }
    if header.dim[0] != 4 {
        bail!(
            "{}: BOLD must be a 4-D image, found {} dimensions",
            path.display(),
            header.dim[0]
        );
    }
    let dims = spatial_dims(&header);
    if dims != mask.dims {
        bail!(
            "{}: BOLD volume is {}x{}x{} but the mask is {}x{}x{}",
            path.display(),
            dims[0],
            dims[1],
            dims[2],
            mask.dims[0],
            mask.dims[1],
            mask.dims[2]
        );
    }
    let nt = n_volumes(&header);
    let bits = header.bitpix.max(0) as usize;
    if bits == 0 || bits % 8 != 0 {
        bail!(
            "{}: invalid header: bitpix = {} (not a whole number of bytes)",
            path.display(),
            header.bitpix
        );
    }
    let nvox: usize = dims.iter().product();
    let vol_bytes = nvox * bits / 8;
    // Bytes already read past the header belong to the data; a larger offset is skipped.
    let off = off as usize;
    let leftover = if off <= got {
        head[off..].to_vec()
    } else {
        let skip = (off - got) as u64;
        let n = std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink())
            .with_context(|| format!("{}: corrupt or truncated file", path.display()))?;
        if n < skip {
            bail!(
                "{}: the file ends inside its header extensions",
                path.display()
            );
        }
        Vec::new()
    };
    let mut data = std::io::Cursor::new(leftover).chain(r);

    // One volume's header: the crate converts 3-D volumes with the sanitised scaling.
    let mut h3 = header.clone();
    h3.dim[0] = 3;
    h3.dim[4] = 1;
    let (slope, inter) = nifti_header::scaling(&header);
    h3.scl_slope = slope;
    h3.scl_inter = inter;

    let mut out = Array2::<f32>::zeros((nt, mask.len()));
    let mut buf = vec![0u8; vol_bytes];
    for t in 0..nt {
        let n = nifti_header::read_up_to(&mut data, &mut buf).map_err(|e| {
            anyhow!(
                "{}: corrupt or truncated file: the compressed stream ends early or is damaged ({e})",
                path.display()
            )
        })?;
        if n < vol_bytes {
            bail!(
                "{}: the file is cut short: it holds {} of the {} data bytes its header announces \
                 ({t} of {nt} volumes complete)",
                path.display(),
                t * vol_bytes + n,
                nt * vol_bytes
            );
        }
        let vol = guard(|| {
            InMemNiftiVolume::from_raw_data(&h3, buf.clone()).and_then(|v| v.into_ndarray::<f32>())
        })
        .and_then(|r| r.map_err(|e| anyhow!("{e}")))
        .with_context(|| {
            format!(
                "{}: cannot convert volume {t} (datatype {}) to f32",
                path.display(),
                header.datatype
            )
        })?;
        // NIfTI order (x fastest) whatever layout the crate returns.
        let owned;
        let flat = if vol.t().is_standard_layout() {
            vol.as_slice_memory_order().expect("contiguous volume")
        } else {
            owned = vol.t().as_standard_layout().to_owned();
            owned.as_slice().expect("standard layout")
        };
        for (o, &l) in out.row_mut(t).iter_mut().zip(&mask.linear) {
            *o = flat[l];
        }
    }
    let bad: Vec<usize> = (0..mask.len())
        .filter(|&v| out.column(v).iter().any(|x| !x.is_finite()))
        .collect();
    if let Some(&first) = bad.first() {
        let c = mask.coords(first);
        bail!(
            "{}: {} voxel(s) inside the mask contain NaN or infinite values (first at x={}, y={}, z={})",
            path.display(), bad.len(), c[0], c[1], c[2]
        );
    }
    Ok(out)
}
