//! Statistical maps in the manner of nilearn's `plot_stat_map`: three orthogonal views through
//! the peak, an axial mosaic with slice coordinates in mm, a thresholded two-sided colour map
//! over a grey background (the subject's mean EPI, an anatomical image resampled to the map's
//! grid, or an atlas), a labelled colour bar and a title.
//!
//! [`layout`] computes everything the figure states (colour-bar range and ticks, threshold,
//! peak, cut coordinates and slice positions in mm from the affine) as a [`StatMapLayout`]
//! that tests check; [`draw`] only paints it.
//!
//! Orientation: volume axes (i, j, k) are taken as (x, y, z) up to sign, as in the NIfTI files
//! brainscale reads and writes (RAS+ or LAS+ affines); an axis whose affine diagonal is negative
//! is flipped, so views are neurological (left on the left, anterior up in axial views,
//! anterior right in sagittal views) and each voxel is drawn with its size in mm.
use crate::core::io;
use anyhow::{bail, Context, Result};
use ndarray::{ArrayD, IxDyn};
use plotters::prelude::*;
use std::path::Path;

/// Voxel index → mm (NIfTI sform/qform, row-major 4×4).
pub type Affine = [[f64; 4]; 4];

/// What to draw.
pub struct StatMapInput<'a> {
    /// The statistic on the voxel grid [x, y, z].
    pub stat: &'a ArrayD<f32>,
    /// Which voxels hold a value, indexed x + nx·(y + ny·z) (as [`crate::fmri::dataset::nifti_io::Mask`]).
    pub inside: &'a [bool],
    pub affine: Affine,
    /// Grey background on the same grid (mean EPI, resampled anatomy, atlas); None: the mask.
    pub background: Option<&'a ArrayD<f32>>,
    pub title: String,
    /// A second title line (e.g. what the background is).
    pub subtitle: String,
    /// |value| below this is not painted (nilearn's `threshold`); 0 paints every non-zero value.
    pub threshold: f32,
    /// Colour-bar limit; default: the largest |value| inside (nilearn's default).
    pub vmax: Option<f32>,
    /// Axial slices in the mosaic.
    pub n_slices: usize,
}

/// Everything the figure states, computed before drawing.
#[derive(Debug, Clone, PartialEq)]
pub struct StatMapLayout {
    pub title: String,
    pub subtitle: String,
    /// The colour bar runs from −vmax to +vmax.
    pub vmax: f32,
    pub threshold: f32,
    /// Colour-bar tick values (bottom to top).
    pub ticks: Vec<f32>,
    /// Smallest and largest value inside the mask.
    pub value_range: (f32, f32),
    /// Voxels inside the mask, and those painted (|value| ≥ threshold, non-zero).
    pub n_inside: usize,
    pub n_shown: usize,
    /// Voxel of the largest |value| and that value.
    pub peak_voxel: [usize; 3],
    pub peak_value: f32,
    /// Where the three orthogonal views cut, in mm (the peak's centre).
    pub cut_mm: [f64; 3],
    /// Mosaic slices: (k, z in mm at the peak's (i, j)).
    pub slices: Vec<(usize, f64)>,
}

/// The centre of voxel `v` in mm.
pub fn voxel_mm(a: &Affine, v: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (r, o) in out.iter_mut().enumerate() {
        *o = a[r][0] * v[0] + a[r][1] * v[1] + a[r][2] * v[2] + a[r][3];
    }
    out
}

fn dims3(v: &ArrayD<f32>, what: &str) -> Result<[usize; 3]> {
    match v.shape() {
        [x, y, z] => Ok([*x, *y, *z]),
        s => bail!("{what}: expected a 3-D volume, got shape {s:?}"),
    }
}

/// Computes the figure's content (see [`StatMapLayout`]). Errors: shapes that disagree, an
/// empty mask, a negative or non-finite threshold.
pub fn layout(inp: &StatMapInput) -> Result<StatMapLayout> {
    let [nx, ny, nz] = dims3(inp.stat, "stat map")?;
    if inp.inside.len() != nx * ny * nz {
        bail!(
            "stat map: mask of {} voxels for a {nx}×{ny}×{nz} grid",
            inp.inside.len()
        );
    }
    if let Some(b) = inp.background {
        let d = dims3(b, "background")?;
        if d != [nx, ny, nz] {
            bail!(
                "background grid {d:?} differs from the map's {:?} (resample it first)",
                [nx, ny, nz]
            );
        }
    }
    if !(inp.threshold.is_finite() && inp.threshold >= 0.0) {
        bail!(
            "threshold must be a non-negative number, got {}",
            inp.threshold
        );
    }
    let (mut lo, mut hi, mut n_inside) = (f32::INFINITY, f32::NEG_INFINITY, 0usize);
    let (mut peak, mut peak_abs, mut peak_value) = ([0usize; 3], -1.0f32, 0.0f32);
    let (mut kmin, mut kmax) = (usize::MAX, 0usize);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if !inp.inside[i + nx * (j + ny * k)] {
                    continue;
                }
                n_inside += 1;
                kmin = kmin.min(k);
                kmax = kmax.max(k);
                let v = inp.stat[IxDyn(&[i, j, k])];
                if !v.is_finite() {
                    continue;
                }
                lo = lo.min(v);
                hi = hi.max(v);
                if v.abs() > peak_abs {
                    (peak, peak_abs, peak_value) = ([i, j, k], v.abs(), v);
                }
            }
        }
    }
    if n_inside == 0 {
        bail!("stat map: the mask is empty");
    }
    if peak_abs < 0.0 {
        bail!("stat map: no finite value inside the mask");
    }
    let vmax = match inp.vmax {
        Some(v) if v.is_finite() && v > 0.0 => v,
        Some(v) => bail!("vmax must be positive, got {v}"),
        None if peak_abs > 0.0 => peak_abs,
        None => 1.0,
    }
    .max(inp.threshold);
    let shown = |v: f32| v.is_finite() && v != 0.0 && v.abs() >= inp.threshold;
    let mut n_shown = 0;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if inp.inside[i + nx * (j + ny * k)] && shown(inp.stat[IxDyn(&[i, j, k])]) {
                    n_shown += 1;
                }
            }
        }
    }
    // −vmax, −vmax/2, 0, vmax/2, vmax (halving is exact in binary).
    let ticks = (0..5).map(|t| vmax * (t as f32 - 2.0) / 2.0).collect();
    let n = inp.n_slices.max(1).min(kmax - kmin + 1);
    let span = (kmax - kmin + 1) as f64;
    let mut ks: Vec<usize> = (0..n)
        .map(|s| kmin + (((s as f64 + 0.5) * span / n as f64).floor() as usize).min(kmax - kmin))
        .collect();
    ks.dedup();
    let (pi, pj) = (peak[0] as f64, peak[1] as f64);
    let slices = ks
        .into_iter()
        .map(|k| (k, voxel_mm(&inp.affine, [pi, pj, k as f64])[2]))
        .collect();
    Ok(StatMapLayout {
        title: inp.title.clone(),
        subtitle: inp.subtitle.clone(),
        vmax,
        threshold: inp.threshold,
        ticks,
        value_range: (lo, hi),
        n_inside,
        n_shown,
        peak_voxel: peak,
        peak_value,
        cut_mm: voxel_mm(&inp.affine, [pi, pj, peak[2] as f64]),
        slices,
    })
}

/// Two-sided colour map after nilearn's `cold_hot`, starting at the threshold: positive values
/// go dark red → red → yellow, negative ones dark blue → blue → cyan as |v| goes from the
/// threshold to vmax. None: not painted (below threshold, zero or not finite).
pub fn cold_hot(v: f32, vmax: f32, threshold: f32) -> Option<[u8; 3]> {
    if !v.is_finite() || v == 0.0 || v.abs() < threshold {
        return None;
    }
    let s = ((v.abs() - threshold) / (vmax - threshold).max(1e-12)).clamp(0.0, 1.0);
    let ramp = |a: [f32; 3], b: [f32; 3], c: [f32; 3]| {
        let (p, q, t) = if s < 0.5 {
            (a, b, s * 2.0)
        } else {
            (b, c, s * 2.0 - 1.0)
        };
        [0, 1, 2].map(|i| (p[i] + t * (q[i] - p[i])).round() as u8)
    };
    Some(if v > 0.0 {
        ramp([120.0, 0.0, 0.0], [255.0, 20.0, 0.0], [255.0, 255.0, 0.0])
    } else {
        ramp([0.0, 0.0, 120.0], [0.0, 40.0, 255.0], [0.0, 255.0, 255.0])
    })
}

const W: u32 = 1200;
const BAR_W: u32 = 150;
const PANEL_GAP: u32 = 12;

/// One voxel-grid view: which axis runs horizontally and vertically, and the fixed index.
#[derive(Clone, Copy)]
struct View {
    h: usize,
    v: usize,
    fixed: usize,
    at: usize,
}

struct Canvas {
    buf: Vec<u8>,
    w: u32,
    h: u32,
}

impl Canvas {
    fn put(&mut self, x: u32, y: u32, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let o = 3 * (y as usize * self.w as usize + x as usize);
            self.buf[o..o + 3].copy_from_slice(&c);
        }
    }
}

/// Grey levels of the background: 2nd-98th percentile of its in-mask values (or of all
/// non-zero values when the mask is everything).
fn grey_range(b: &ArrayD<f32>, inside: &[bool], dims: [usize; 3]) -> (f32, f32) {
    let [nx, ny, nz] = dims;
    let mut v = Vec::new();
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let x = b[IxDyn(&[i, j, k])];
                if inside[i + nx * (j + ny * k)] && x.is_finite() {
                    v.push(x);
                }
            }
        }
    }
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (q(0.02), q(0.98));
    (lo, if hi > lo { hi } else { lo + 1.0 })
}

/// Draws the figure of [`layout`] to a PNG (written to a temporary name and renamed).
pub fn draw(path: &Path, inp: &StatMapInput, lay: &StatMapLayout) -> Result<()> {
    crate::core::plot::ensure_font()?;
    let dims = dims3(inp.stat, "stat map")?;
    let a = &inp.affine;
    let vox: [f64; 3] = [0, 1, 2].map(|c| {
        (0..3)
            .map(|r| a[r][c] * a[r][c])
            .sum::<f64>()
            .sqrt()
            .max(1e-6)
    });
    let flip: [bool; 3] = [0, 1, 2].map(|c| a[c][c] < 0.0);
    let ext = [0, 1, 2].map(|c| dims[c] as f64 * vox[c]); // mm
                                                          // Ortho row: sagittal (y, z), coronal (x, z), axial (x, y) side by side.
    let avail = (W - BAR_W - 4 * PANEL_GAP) as f64;
    let s1 = (avail / (ext[1] + ext[0] + ext[0])).min(300.0 / ext[2].max(ext[1]));
    let cols = lay.slices.len().clamp(1, 6) as u32;
    let rows = (lay.slices.len() as u32).div_ceil(cols);
    let s2 = ((avail - (cols as f64 - 1.0) * 4.0) / cols as f64 / ext[0]).min(220.0 / ext[1]);
    let top = 70u32;
    let row1_h = (ext[2].max(ext[1]) * s1).ceil() as u32 + 30;
    let tile_h = (ext[1] * s2).ceil() as u32 + 24;
    let h = top + row1_h + 16 + rows * tile_h + 30;
    let mut cv = Canvas {
        buf: vec![0u8; (W * h * 3) as usize],
        w: W,
        h,
    };
    let (glo, ghi) = match inp.background {
        Some(b) => grey_range(b, inp.inside, dims),
        None => (0.0, 1.0),
    };
    let [nx, ny, _] = dims;
    let pixel = |i: usize, j: usize, k: usize| -> [u8; 3] {
        let l = i + nx * (j + ny * k);
        let v = inp.stat[IxDyn(&[i, j, k])];
        if inp.inside[l] {
            if let Some(c) = cold_hot(v, lay.vmax, lay.threshold) {
                return c;
            }
        }
        match inp.background {
            Some(b) => {
                let g = ((b[IxDyn(&[i, j, k])] - glo) / (ghi - glo)).clamp(0.0, 1.0);
                let g = if g.is_finite() {
                    (g * 215.0) as u8 + 10
                } else {
                    0
                };
                [g, g, g]
            }
            None if inp.inside[l] => [105, 105, 105],
            None => [0, 0, 0],
        }
    };
    // Paints one view at (x0, y0) with `s` pixels per mm; returns its pixel size.
    let paint = |cv: &mut Canvas, view: View, x0: u32, y0: u32, s: f64| -> (u32, u32) {
        let pw = (ext[view.h] * s).round() as u32;
        let ph = (ext[view.v] * s).round() as u32;
        for py in 0..ph {
            let fv = 1.0 - (py as f64 + 0.5) / ph as f64;
            let mut iv = ((fv * dims[view.v] as f64) as usize).min(dims[view.v] - 1);
            if flip[view.v] {
                iv = dims[view.v] - 1 - iv;
            }
            for px in 0..pw {
                let fh = (px as f64 + 0.5) / pw as f64;
                let mut ih = ((fh * dims[view.h] as f64) as usize).min(dims[view.h] - 1);
                if flip[view.h] {
                    ih = dims[view.h] - 1 - ih;
                }
                let mut idx = [0usize; 3];
                idx[view.h] = ih;
                idx[view.v] = iv;
                idx[view.fixed] = view.at;
                cv.put(x0 + px, y0 + py, pixel(idx[0], idx[1], idx[2]));
            }
        }
        (pw, ph)
    };
    // Where voxel index `i` of `axis` lands along a view side of `len` pixels.
    let pos = |axis: usize, i: usize, len: u32, vertical: bool| -> u32 {
        let i = if flip[axis] { dims[axis] - 1 - i } else { i };
        let f = (i as f64 + 0.5) / dims[axis] as f64;
        let f = if vertical { 1.0 - f } else { f };
        (f * len as f64) as u32
    };
    let p = lay.peak_voxel;
    let views = [
        (
            View {
                h: 1,
                v: 2,
                fixed: 0,
                at: p[0],
            },
            format!("x = {:.0} mm", lay.cut_mm[0]),
        ),
        (
            View {
                h: 0,
                v: 2,
                fixed: 1,
                at: p[1],
            },
            format!("y = {:.0} mm", lay.cut_mm[1]),
        ),
        (
            View {
                h: 0,
                v: 1,
                fixed: 2,
                at: p[2],
            },
            format!("z = {:.0} mm", lay.cut_mm[2]),
        ),
    ];
    let mut placed = Vec::new();
    let mut x = PANEL_GAP;
    for (view, label) in &views {
        let (pw, ph) = paint(&mut cv, *view, x, top, s1);
        placed.push((*view, label.clone(), x, top, pw, ph));
        x += pw + PANEL_GAP;
    }
    let mut tiles = Vec::new();
    let y1 = top + row1_h + 16;
    for (n, &(k, zmm)) in lay.slices.iter().enumerate() {
        let (c, r) = (n as u32 % cols, n as u32 / cols);
        let tw = (ext[0] * s2).round() as u32;
        let (tx, ty) = (PANEL_GAP + c * (tw + 4), y1 + r * tile_h);
        let view = View {
            h: 0,
            v: 1,
            fixed: 2,
            at: k,
        };
        let (pw, ph) = paint(&mut cv, view, tx, ty, s2);
        tiles.push((format!("z={zmm:.0}"), tx, ty, pw, ph));
    }
    // Colour bar: −vmax (bottom) … +vmax (top); the band inside ±threshold is not painted.
    let (bx, by0, by1) = (
        W - BAR_W + 20,
        top + 6,
        top + row1_h + 16 + rows * tile_h - 10,
    );
    let bh = by1 - by0;
    for y in 0..bh {
        // Top row +vmax, bottom row −vmax exactly.
        let v = lay.vmax - y as f32 / (bh - 1).max(1) as f32 * 2.0 * lay.vmax;
        let c = cold_hot(v, lay.vmax, lay.threshold).unwrap_or([60, 60, 60]);
        for x in 0..22 {
            cv.put(bx + x, by0 + y, c);
        }
    }
    let bar_y = |v: f32| by0 as f32 + (lay.vmax - v) / (2.0 * lay.vmax) * (bh - 1) as f32;
    {
        let backend = BitMapBackend::with_buffer(&mut cv.buf, (W, h));
        let root = backend.into_drawing_area();
        let white = RGBColor(235, 235, 235);
        let font = |sz: u32| ("sans-serif", sz).into_font().color(&white);
        root.draw_text(&lay.title, &font(24), (PANEL_GAP as i32, 10))
            .map_err(crate::core::plot::e)?;
        root.draw_text(&lay.subtitle, &font(15), (PANEL_GAP as i32, 42))
            .map_err(crate::core::plot::e)?;
        let cross = RGBColor(150, 220, 255);
        for (view, label, x, y, pw, ph) in &placed {
            // Crosshair through the cut of the other two views.
            let cx = pos(view.h, p[view.h], *pw, false) as i32 + *x as i32;
            let cy = pos(view.v, p[view.v], *ph, true) as i32 + *y as i32;
            root.draw(&PathElement::new(
                vec![(cx, *y as i32), (cx, (*y + *ph) as i32)],
                cross.mix(0.6),
            ))
            .map_err(crate::core::plot::e)?;
            root.draw(&PathElement::new(
                vec![(*x as i32, cy), ((*x + *pw) as i32, cy)],
                cross.mix(0.6),
            ))
            .map_err(crate::core::plot::e)?;
            root.draw_text(label, &font(15), (*x as i32 + 4, (*y + *ph) as i32 + 6))
                .map_err(crate::core::plot::e)?;
            if view.h == 0 {
                root.draw_text("L", &font(16), (*x as i32 + 4, *y as i32 + 4))
                    .map_err(crate::core::plot::e)?;
                root.draw_text("R", &font(16), ((*x + *pw) as i32 - 14, *y as i32 + 4))
                    .map_err(crate::core::plot::e)?;
            } else {
                root.draw_text("P", &font(16), (*x as i32 + 4, *y as i32 + 4))
                    .map_err(crate::core::plot::e)?;
                root.draw_text("A", &font(16), ((*x + *pw) as i32 - 14, *y as i32 + 4))
                    .map_err(crate::core::plot::e)?;
            }
        }
        for (label, x, y, _, ph) in &tiles {
            root.draw_text(label, &font(13), (*x as i32 + 2, (*y + *ph) as i32 + 3))
                .map_err(crate::core::plot::e)?;
        }
        let tick = |v: f32| -> Result<()> {
            let y = bar_y(v) as i32;
            root.draw(&PathElement::new(
                vec![(bx as i32 + 22, y), (bx as i32 + 28, y)],
                white,
            ))
            .map_err(crate::core::plot::e)?;
            root.draw_text(&format!("{v:.2}"), &font(14), (bx as i32 + 32, y - 7))
                .map_err(crate::core::plot::e)?;
            Ok(())
        };
        for &t in &lay.ticks {
            tick(t)?;
        }
        if lay.threshold > 0.0 {
            for t in [lay.threshold, -lay.threshold] {
                let y = bar_y(t) as i32;
                root.draw(&PathElement::new(
                    vec![(bx as i32 - 4, y), (bx as i32 + 22, y)],
                    white,
                ))
                .map_err(crate::core::plot::e)?;
            }
            // Beside the grey band, under the 0 tick.
            let y0 = bar_y(0.0) as i32;
            root.draw_text(
                &format!("|v| < {:.2}", lay.threshold),
                &font(12),
                (bx as i32 + 30, y0 + 10),
            )
            .map_err(crate::core::plot::e)?;
            root.draw_text("not shown", &font(12), (bx as i32 + 30, y0 + 24))
                .map_err(crate::core::plot::e)?;
        }
        let foot = format!(
            "peak {:.2} at ({:.0}, {:.0}, {:.0}) mm   {} of {} voxels shown",
            lay.peak_value, lay.cut_mm[0], lay.cut_mm[1], lay.cut_mm[2], lay.n_shown, lay.n_inside
        );
        root.draw_text(&foot, &font(14), (PANEL_GAP as i32, h as i32 - 22))
            .map_err(crate::core::plot::e)?;
        root.present().map_err(crate::core::plot::e)?;
    }
    let img = image::RgbImage::from_raw(W, h, cv.buf).context("figure buffer size")?;
    io::write_atomic(path, |tmp| {
        Ok(img.save_with_format(tmp, image::ImageFormat::Png)?)
    })
}

/// Computes the layout and draws it; returns the layout.
pub fn plot_stat_map(path: &Path, inp: &StatMapInput) -> Result<StatMapLayout> {
    let lay = layout(inp).with_context(|| format!("figure {}", path.display()))?;
    draw(path, inp, &lay).with_context(|| format!("drawing {}", path.display()))?;
    Ok(lay)
}

/// Resamples `src` (with affine `src_affine`) onto a grid of `dims` with affine `dst_affine`
/// by trilinear interpolation in mm; points outside `src` get 0. For backgrounds: an
/// anatomical image at another resolution drawn under a map.
pub fn resample_to(
    src: &ArrayD<f32>,
    src_affine: &Affine,
    dims: [usize; 3],
    dst_affine: &Affine,
) -> Result<ArrayD<f32>> {
    let sd = dims3(src, "background image")?;
    let inv = invert(src_affine).context("background image: its affine is not invertible")?;
    let mut out = ArrayD::<f32>::zeros(IxDyn(&dims));
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let mm = voxel_mm(dst_affine, [i as f64, j as f64, k as f64]);
                let f = voxel_mm(&inv, mm);
                let base = f.map(|x| x.max(0.0).floor());
                if (0..3).any(|c| !(f[c] >= -1e-9 && f[c] <= (sd[c] - 1) as f64 + 1e-9)) {
                    continue;
                }
                let mut acc = 0.0f64;
                for corner in 0..8 {
                    let mut w = 1.0;
                    let mut idx = [0usize; 3];
                    for c in 0..3 {
                        let up = (corner >> c) & 1 == 1;
                        let t = f[c] - base[c];
                        let ix = (base[c] as usize + up as usize).min(sd[c] - 1);
                        idx[c] = ix;
                        w *= if up { t } else { 1.0 - t };
                    }
                    if w != 0.0 {
                        acc += w * src[IxDyn(&idx)] as f64;
                    }
                }
                out[IxDyn(&[i, j, k])] = acc as f32;
            }
        }
    }
    Ok(out)
}

/// Inverse of an affine 4×4 (the 3×3 part by cofactors).
fn invert(a: &Affine) -> Option<Affine> {
    let m = |r: usize, c: usize| a[r][c];
    let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
        - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
        + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let mut inv = [[0.0; 4]; 4];
    for r in 0..3 {
        for c in 0..3 {
            let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
            let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
            inv[r][c] = (m(r1, c1) * m(r2, c2) - m(r1, c2) * m(r2, c1)) / det;
        }
    }
    for r in 0..3 {
        inv[r][3] = -(0..3).map(|c| inv[r][c] * a[c][3]).sum::<f64>();
    }
    inv[3][3] = 1.0;
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affine(vox: f64, origin: [f64; 3]) -> Affine {
        [
            [vox, 0.0, 0.0, origin[0]],
            [0.0, vox, 0.0, origin[1]],
            [0.0, 0.0, vox, origin[2]],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    #[test]
    fn layout_states_the_data() {
        let (nx, ny, nz) = (6, 5, 4);
        let mut stat = ArrayD::<f32>::zeros(IxDyn(&[nx, ny, nz]));
        let mut inside = vec![false; nx * ny * nz];
        for k in 1..4 {
            for j in 0..ny {
                for i in 1..nx {
                    inside[i + nx * (j + ny * k)] = true;
                    // Away from the threshold (0.05) by 0.005: no rounding ties.
                    stat[IxDyn(&[i, j, k])] = 0.01 * (i + j + k) as f32 - 0.045;
                }
            }
        }
        stat[IxDyn(&[3, 2, 2])] = -0.8; // the peak (largest |r|) is negative here
        stat[IxDyn(&[0, 0, 0])] = 5.0; // outside the mask: ignored
        let inp = StatMapInput {
            stat: &stat,
            inside: &inside,
            affine: affine(2.0, [-10.0, -20.0, 4.0]),
            background: None,
            title: "t".into(),
            subtitle: String::new(),
            threshold: 0.05,
            vmax: None,
            n_slices: 12,
        };
        let l = layout(&inp).unwrap();
        assert_eq!(l.vmax, 0.8);
        assert_eq!(l.ticks, vec![-0.8, -0.4, 0.0, 0.4, 0.8]);
        assert_eq!(l.peak_voxel, [3, 2, 2]);
        assert_eq!(l.peak_value, -0.8);
        assert_eq!(l.cut_mm, [-4.0, -16.0, 8.0]);
        assert_eq!(l.n_inside, 5 * 5 * 3);
        // Painted: |v| ≥ 0.05, i.e. i + j + k ≥ 10 (or the peak).
        let mut want = 1;
        for k in 1..4 {
            for j in 0..ny {
                for i in 1..nx {
                    if (i, j, k) != (3, 2, 2) && i + j + k >= 10 {
                        want += 1;
                    }
                }
            }
        }
        assert_eq!(l.n_shown, want);
        // Slices only where the mask is (k = 1..3), at z = 4 + 2k mm.
        assert_eq!(l.slices, vec![(1, 6.0), (2, 8.0), (3, 10.0)]);
        assert_eq!(l.value_range.0, -0.8);
        assert!((l.value_range.1 - (0.01 * 12.0 - 0.045)).abs() < 1e-6);
        // Colours: nothing below the threshold, red side for +, blue side for −.
        assert_eq!(cold_hot(0.049, 0.8, 0.05), None);
        let p = cold_hot(0.8, 0.8, 0.05).unwrap();
        assert_eq!(p, [255, 255, 0]);
        let n = cold_hot(-0.05, 0.8, 0.05).unwrap();
        assert_eq!(n, [0, 0, 120]);
        // An explicit vmax below the threshold is raised to it.
        let inp2 = StatMapInput {
            vmax: Some(0.01),
            ..inp
        };
        assert_eq!(layout(&inp2).unwrap().vmax, 0.05);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let stat = ArrayD::<f32>::zeros(IxDyn(&[2, 2, 2]));
        let inside = vec![false; 8];
        let inp = StatMapInput {
            stat: &stat,
            inside: &inside,
            affine: affine(1.0, [0.0; 3]),
            background: None,
            title: String::new(),
            subtitle: String::new(),
            threshold: 0.1,
            vmax: None,
            n_slices: 4,
        };
        assert!(format!("{}", layout(&inp).unwrap_err()).contains("empty"));
        let short = vec![true; 7];
        let e = layout(&StatMapInput {
            inside: &short,
            ..inp
        })
        .unwrap_err();
        assert!(format!("{e}").contains("7 voxels"), "{e}");
    }

    #[test]
    fn resampling_matches_a_linear_field() {
        // A linear field in mm is reproduced exactly by trilinear interpolation.
        let f = |p: [f64; 3]| (1.0 + 0.5 * p[0] - 0.25 * p[1] + 0.1 * p[2]) as f32;
        let sa = affine(1.0, [0.0; 3]);
        let mut src = ArrayD::<f32>::zeros(IxDyn(&[10, 10, 10]));
        for ((i, j), k) in (0..10)
            .flat_map(|i| (0..10).map(move |j| (i, j)))
            .flat_map(|ij| (0..10).map(move |k| (ij, k)))
        {
            src[IxDyn(&[i, j, k])] = f([i as f64, j as f64, k as f64]);
        }
        let da = affine(2.5, [0.5, 1.0, 1.5]);
        let out = resample_to(&src, &sa, [3, 3, 3], &da).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                for k in 0..3 {
                    let mm = voxel_mm(&da, [i as f64, j as f64, k as f64]);
                    assert!((out[IxDyn(&[i, j, k])] - f(mm)).abs() < 1e-4, "{i} {j} {k}");
                }
            }
        }
        let inv = invert(&da).unwrap();
        let back = voxel_mm(&inv, voxel_mm(&da, [1.0, 2.0, 0.0]));
        assert!((back[0] - 1.0).abs() < 1e-12 && (back[1] - 2.0).abs() < 1e-12);
    }
}
