//! NIfTI headers as the standards define them: reading NIfTI-1 and NIfTI-2 files (gzip or
//! not, told by their magic bytes), the data scaling rule, the voxel-to-world affine (qform
//! from the quaternion, sform, chosen by their codes) and comparing two grids in world space.
//!
//! Sources: the NIfTI-1 header `nifti1.h` and reference library `nifti1_io.c`
//! (`nifti_quatern_to_mat44`), the NIfTI-2 header `nifti2.h`, and nibabel 5
//! (`Nifti1Header.get_best_affine`, `get_slope_inter`), whose choices brainscale follows.
use anyhow::{anyhow, bail, Context, Result};
use nifti::{Endianness, NiftiHeader};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Which NIfTI standard a file follows (told by `sizeof_hdr`: 348 or 540).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Nifti1,
    Nifti2,
}

/// The file's bytes as a stream, gunzipped when it starts with the gzip magic bytes.
pub(crate) fn open_stream(path: &Path) -> Result<Box<dyn Read>> {
    if !path.exists() {
        bail!("{} not found", path.display());
    }
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let head = r
        .fill_buf()
        .with_context(|| format!("reading {}", path.display()))?;
    let gz = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    Ok(if gz {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

/// Reads as many bytes as the stream holds up to `buf.len()`; returns how many.
pub(crate) fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The standard a header's first four bytes (`sizeof_hdr`, either byte order) announce.
fn version_of(bytes: &[u8], path: &Path) -> Result<(Version, Endianness)> {
    if bytes.len() < 4 {
        bail!(
            "{}: not a NIfTI file ({} bytes; a header needs 348)",
            path.display(),
            bytes.len()
        );
    }
    let le = i32::from_le_bytes(bytes[..4].try_into().unwrap());
    let be = i32::from_be_bytes(bytes[..4].try_into().unwrap());
    Ok(match (le, be) {
        (348, _) => (Version::Nifti1, Endianness::Little),
        (_, 348) => (Version::Nifti1, Endianness::Big),
        (540, _) => (Version::Nifti2, Endianness::Little),
        (_, 540) => (Version::Nifti2, Endianness::Big),
        _ => bail!(
            "{}: not a NIfTI file (header size field is {le}; NIfTI-1 has 348, NIfTI-2 540)",
            path.display()
        ),
    })
}

/// Parses a NIfTI-2 header (540 bytes) into the NIfTI-1 header type the rest of brainscale
/// uses. Sizes beyond NIfTI-1's 16-bit dimensions are refused, naming NIfTI-2.
fn parse_nifti2(b: &[u8], endian: Endianness, path: &Path) -> Result<(NiftiHeader, u64)> {
    let little = endian == Endianness::Little;
    let i16_at = |o: usize| {
        let a = [b[o], b[o + 1]];
        if little {
            i16::from_le_bytes(a)
        } else {
            i16::from_be_bytes(a)
        }
    };
    let i32_at = |o: usize| {
        let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if little {
            i32::from_le_bytes(a)
        } else {
            i32::from_be_bytes(a)
        }
    };
    let i64_at = |o: usize| {
        let a: [u8; 8] = b[o..o + 8].try_into().unwrap();
        if little {
            i64::from_le_bytes(a)
        } else {
            i64::from_be_bytes(a)
        }
    };
    let f64_at = |o: usize| f64::from_bits(i64_at(o) as u64);
    let mut h = NiftiHeader {
        endianness: endian,
        ..Default::default()
    };
    h.datatype = i16_at(12);
    h.bitpix = i16_at(14);
    for i in 0..8 {
        let d = i64_at(16 + 8 * i);
        if !(0..=i64::from(u16::MAX)).contains(&d) {
            bail!(
                "{}: NIfTI-2 file with dim[{i}] = {d}, beyond what brainscale reads (0..=65535)",
                path.display()
            );
        }
        h.dim[i] = d as u16;
    }
    h.intent_p1 = f64_at(80) as f32;
    h.intent_p2 = f64_at(88) as f32;
    h.intent_p3 = f64_at(96) as f32;
    for i in 0..8 {
        h.pixdim[i] = f64_at(104 + 8 * i) as f32;
    }
    let vox_offset = i64_at(168);
    if vox_offset < 540 {
        bail!(
            "{}: NIfTI-2 file with vox_offset {vox_offset} (must be >= 540: not a single .nii file?)",
            path.display()
        );
    }
    h.vox_offset = vox_offset as f32;
    h.scl_slope = f64_at(176) as f32;
    h.scl_inter = f64_at(184) as f32;
    h.cal_max = f64_at(192) as f32;
    h.cal_min = f64_at(200) as f32;
    h.slice_duration = f64_at(208) as f32;
    h.toffset = f64_at(216) as f32;
    h.slice_start = i64_at(224).clamp(i16::MIN as i64, i16::MAX as i64) as i16;
    h.slice_end = i64_at(232).clamp(i16::MIN as i64, i16::MAX as i64) as i16;
    h.descrip = b[240..320].to_vec();
    h.aux_file.copy_from_slice(&b[320..344]);
    h.qform_code = i32_at(344) as i16;
    h.sform_code = i32_at(348) as i16;
    h.quatern_b = f64_at(352) as f32;
    h.quatern_c = f64_at(360) as f32;
    h.quatern_d = f64_at(368) as f32;
    h.quatern_x = f64_at(376) as f32;
    h.quatern_y = f64_at(384) as f32;
    h.quatern_z = f64_at(392) as f32;
    for j in 0..4 {
        h.srow_x[j] = f64_at(400 + 8 * j) as f32;
        h.srow_y[j] = f64_at(432 + 8 * j) as f32;
        h.srow_z[j] = f64_at(464 + 8 * j) as f32;
    }
    h.slice_code = i32_at(496) as u8;
    h.xyzt_units = i32_at(500) as u8;
    h.intent_code = i32_at(504) as i16;
    h.intent_name.copy_from_slice(&b[508..524]);
    h.dim_info = b[524];
    h.magic = *b"n+1\0";
    Ok((h, vox_offset as u64))
}

/// Parses the header at the start of `bytes` (NIfTI-1 or NIfTI-2); returns it, where the
/// data start, and the version.
pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<(NiftiHeader, u64, Version)> {
    let (version, endian) = version_of(bytes, path)?;
    match version {
        Version::Nifti1 => {
            if bytes.len() < 348 {
                bail!(
                    "{}: NIfTI-1 header cut short ({} of 348 bytes)",
                    path.display(),
                    bytes.len()
                );
            }
            let h = NiftiHeader::from_reader(&bytes[..348])
                .map_err(|e| anyhow!("{}: invalid NIfTI-1 header ({e})", path.display()))?;
            if &h.magic == b"ni1\0" {
                bail!(
                    "{}: a NIfTI-1 header of a .hdr/.img pair: convert it to a single .nii file",
                    path.display()
                );
            }
            let off = h.vox_offset.max(352.0) as u64;
            Ok((h, off, version))
        }
        Version::Nifti2 => {
            if bytes.len() < 540 {
                bail!(
                    "{}: NIfTI-2 header cut short ({} of 540 bytes)",
                    path.display(),
                    bytes.len()
                );
            }
            let (h, off) = parse_nifti2(bytes, endian, path)?;
            Ok((h, off, version))
        }
    }
}

/// Reads a NIfTI-1 or NIfTI-2 header (gzipped or not) and says which standard it follows.
pub fn read_header_versioned(path: &Path) -> Result<(NiftiHeader, Version)> {
    let mut r = open_stream(path)?;
    let mut buf = vec![0u8; 540];
    let n = read_up_to(&mut *r, &mut buf)
        .with_context(|| format!("{}: not a readable NIfTI header", path.display()))?;
    buf.truncate(n);
    let (h, _, v) = parse(&buf, path)?;
    Ok((h, v))
}

/// Bytes of image data the header announces (product of dims × bytes per voxel).
pub fn data_bytes(h: &NiftiHeader) -> Result<usize> {
    let nd = h.dim[0] as usize;
    if !(1..=7).contains(&nd) {
        bail!("dim[0] = {} (must be 1..7)", h.dim[0]);
    }
    let voxels: usize = h.dim[1..=nd].iter().map(|&d| d.max(1) as usize).product();
    let bits = h.bitpix.max(0) as usize;
    if bits == 0 || bits % 8 != 0 {
        bail!("bitpix = {} (not a whole number of bytes)", h.bitpix);
    }
    Ok(voxels * bits / 8)
}

/// Reads a whole file: the header and the raw data bytes (scaling not applied). A file that
/// ends before the data the header announces is an error saying how many volumes it holds.
pub fn read_raw(path: &Path) -> Result<(NiftiHeader, Vec<u8>, Version)> {
    let mut r = open_stream(path)?;
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).map_err(|e| {
        anyhow!(
            "{}: corrupt or truncated file: the compressed stream ends early or is damaged ({e})",
            path.display()
        )
    })?;
    let (h, off, v) = parse(&bytes, path)?;
    let need = data_bytes(&h).with_context(|| format!("{}: invalid header", path.display()))?;
    let off = off as usize;
    let have = bytes.len().saturating_sub(off);
    if have < need {
        let nt = if h.dim[0] >= 4 {
            h.dim[4].max(1) as usize
        } else {
            1
        };
        let per_vol = (need / nt.max(1)).max(1);
        bail!(
            "{}: the file is cut short: it holds {have} of the {need} data bytes its header announces \
             ({} of {nt} volumes complete)",
            path.display(),
            have / per_vol
        );
    }
    bytes.drain(..off);
    bytes.truncate(need);
    Ok((h, bytes, v))
}

/// The scaling applied to stored values, (slope, intercept): as nibabel and nifti1_io, a zero
/// or non-finite `scl_slope` means no scaling (1, 0), and a non-finite `scl_inter` is 0.
pub fn scaling(h: &NiftiHeader) -> (f32, f32) {
    if h.scl_slope == 0.0 || !h.scl_slope.is_finite() {
        return (1.0, 0.0);
    }
    let inter = if h.scl_inter.is_finite() {
        h.scl_inter
    } else {
        0.0
    };
    (h.scl_slope, inter)
}

/// A 4×4 voxel-to-world affine (row-major, mm).
pub type Affine = [[f64; 4]; 4];

/// The sform affine from `srow_x/y/z`.
pub fn sform_affine(h: &NiftiHeader) -> Affine {
    let r = |v: [f32; 4]| v.map(|x| x as f64);
    [r(h.srow_x), r(h.srow_y), r(h.srow_z), [0.0, 0.0, 0.0, 1.0]]
}

/// The qform affine ("method 2" of nifti1.h, as `nifti_quatern_to_mat44`): the rotation of
/// the unit quaternion (a, b, c, d) with a = sqrt(1 − b² − c² − d²) (a 180° rotation when
/// that is ~0), the voxel sizes pixdim[1..3] (1 where not positive), qfac = sign of pixdim[0]
/// (−1 flips the third axis; 0 counts as 1) and the offsets qoffset_x/y/z.
pub fn qform_affine(h: &NiftiHeader) -> Affine {
    let (mut b, mut c, mut d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
    let mut a = 1.0 - (b * b + c * c + d * d);
    if a < 1e-7 {
        let n = (b * b + c * c + d * d).sqrt();
        if n > 0.0 {
            b /= n;
            c /= n;
            d /= n;
        }
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let pos = |v: f32| if v > 0.0 { v as f64 } else { 1.0 };
    let (xd, yd) = (pos(h.pixdim[1]), pos(h.pixdim[2]));
    let zd = pos(h.pixdim[3]) * if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    [
        [
            (a * a + b * b - c * c - d * d) * xd,
            2.0 * (b * c - a * d) * yd,
            2.0 * (b * d + a * c) * zd,
            h.quatern_x as f64,
        ],
        [
            2.0 * (b * c + a * d) * xd,
            (a * a + c * c - b * b - d * d) * yd,
            2.0 * (c * d - a * b) * zd,
            h.quatern_y as f64,
        ],
        [
            2.0 * (b * d - a * c) * xd,
            2.0 * (c * d + a * b) * yd,
            (a * a + d * d - c * c - b * b) * zd,
            h.quatern_z as f64,
        ],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// The affine of a header with neither code set, as nibabel's `get_base_affine` (Analyze
/// convention): voxel sizes on the diagonal, x flipped, the volume centred on the origin.
pub fn base_affine(h: &NiftiHeader) -> Affine {
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        let zoom = h.pixdim[i + 1] as f64;
        let zoom = if i == 0 { -zoom } else { zoom };
        let origin = (h.dim[i + 1].max(1) as f64 - 1.0) / 2.0;
        m[i][i] = zoom;
        m[i][3] = -origin * zoom;
    }
    m[3][3] = 1.0;
    m
}

/// Which transform [`affine`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffineSource {
    Sform,
    Qform,
    Base,
}

/// The transform a header's affine comes from, as nibabel chooses it (`get_best_affine`):
/// the sform when `sform_code` > 0, else the qform when `qform_code` > 0, else the base affine.
pub fn affine_source(h: &NiftiHeader) -> AffineSource {
    if h.sform_code > 0 {
        AffineSource::Sform
    } else if h.qform_code > 0 {
        AffineSource::Qform
    } else {
        AffineSource::Base
    }
}

/// The voxel-to-world affine of a header (see [`affine_source`]).
pub fn affine(h: &NiftiHeader) -> Affine {
    match affine_source(h) {
        AffineSource::Sform => sform_affine(h),
        AffineSource::Qform => qform_affine(h),
        AffineSource::Base => base_affine(h),
    }
}

fn apply(m: &Affine, ijk: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (r, o) in out.iter_mut().enumerate() {
        *o = m[r][0] * ijk[0] + m[r][1] * ijk[1] + m[r][2] * ijk[2] + m[r][3];
    }
    out
}

/// Why two images are not on the same voxel grid in the world, or None when they are: the same
/// dimensions (x, y, z), and every corner of the grid within 1% of a voxel (of the smaller
/// voxel size) of the same world position under both images' affines. Comparing positions,
/// not header fields, accepts the same geometry stored once as a qform and once as an sform.
pub fn grid_mismatch(a: &NiftiHeader, b: &NiftiHeader) -> Option<String> {
    let dims = |h: &NiftiHeader| [h.dim[1] as usize, h.dim[2] as usize, h.dim[3] as usize];
    let (da, db) = (dims(a), dims(b));
    if da != db {
        return Some(format!(
            "the grids differ: {}x{}x{} vs {}x{}x{} voxels",
            da[0], da[1], da[2], db[0], db[1], db[2]
        ));
    }
    let (ma, mb) = (affine(a), affine(b));
    let voxel = |m: &Affine| {
        (0..3)
            .map(|j| (0..3).map(|i| m[i][j] * m[i][j]).sum::<f64>().sqrt())
            .fold(f64::INFINITY, f64::min)
    };
    let tol = 0.01 * voxel(&ma).min(voxel(&mb));
    let mut worst = (0.0f64, [0.0; 3], [0.0; 3], [0.0; 3]);
    for corner in 0..8 {
        let ijk = [0, 1, 2].map(|k| {
            if corner >> k & 1 == 1 {
                (da[k].max(1) - 1) as f64
            } else {
                0.0
            }
        });
        let (pa, pb) = (apply(&ma, ijk), apply(&mb, ijk));
        let dist = (0..3).map(|k| (pa[k] - pb[k]).powi(2)).sum::<f64>().sqrt();
        // NaN in an affine is a mismatch too.
        if !(dist <= worst.0) {
            worst = (dist, ijk, pa, pb);
        }
    }
    if worst.0 <= tol {
        return None;
    }
    let f = |p: [f64; 3]| format!("({:.2}, {:.2}, {:.2})", p[0], p[1], p[2]);
    Some(format!(
        "the grids sit at different places in the world: voxel {} is at {} mm in one and {} mm in \
         the other ({:.2} mm apart; tolerance {:.3} mm)",
        f(worst.1).replace(".00", ""),
        f(worst.2),
        f(worst.3),
        worst.0,
        tol
    ))
}

/// The f64 a float32 header field stands for: its shortest decimal form (1.49f32 → 1.49, not
/// 1.4900000095367432), so values print and compare as they were written.
pub fn f32_decimal(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(x as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qform_rotation_about_z_by_90_degrees() {
        // b = c = 0, d = sin(45°): a rotation of 90° about z maps i to +y and j to −x.
        let mut h = NiftiHeader::default();
        h.pixdim = [1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0];
        h.quatern_d = std::f32::consts::FRAC_1_SQRT_2;
        h.quatern_x = 10.0;
        h.qform_code = 1;
        h.sform_code = 0;
        let m = affine(&h);
        let expect = [
            [0.0, -3.0, 0.0, 10.0],
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 4.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        for i in 0..4 {
            for j in 0..4 {
                assert!((m[i][j] - expect[i][j]).abs() < 1e-6, "{m:?}");
            }
        }
        // qfac −1 flips the third axis.
        h.pixdim[0] = -1.0;
        assert!((affine(&h)[2][2] + 4.0).abs() < 1e-6);
    }

    #[test]
    fn scaling_rule() {
        let mut h = NiftiHeader::default();
        for (s, i, want) in [
            (f32::NAN, 5.0, (1.0, 0.0)),
            (f32::INFINITY, 0.0, (1.0, 0.0)),
            (0.0, 3.0, (1.0, 0.0)),
            (2.0, f32::NAN, (2.0, 0.0)),
            (2.0, 3.0, (2.0, 3.0)),
        ] {
            h.scl_slope = s;
            h.scl_inter = i;
            assert_eq!(scaling(&h), want);
        }
    }

    #[test]
    fn f32_decimal_drops_float_noise() {
        assert_eq!(f32_decimal(1.49), 1.49);
        assert_eq!(f32_decimal(0.8), 0.8);
    }
}
