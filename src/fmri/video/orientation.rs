//! Display orientation of a movie: the display matrix a container stores beside the video
//! stream (phones record upright video as landscape frames plus a "rotate 90°" tag) and what
//! ffmpeg's command-line tool does with it by default (autorotate).
//!
//! The decision follows `fftools/ffmpeg_filter.c` (FFmpeg 5.1–7): the angle from
//! `av_display_rotation_get` (libavutil/display.c), rounded and folded into [0, 360); 90° becomes
//! `transpose=clock` or `cclock_flip`, 180° becomes `hflip` and/or `vflip`, 270° becomes
//! `transpose=cclock` or `clock_flip`, 0° with a negative y scale becomes `vflip`, by the signs
//! of the matrix entries. Other angles (the CLI's `rotate` filter, which interpolates) are refused.
use anyhow::{bail, Result};
use std::path::Path;

/// How a stored frame maps to the displayed picture: transpose first (rows become columns),
/// then mirror left-right (`hflip`), then top-bottom (`vflip`). All are pixel permutations, so
/// applying them to RGB frames gives exactly what ffmpeg's filters give on the decoded frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Orientation {
    pub transpose: bool,
    pub hflip: bool,
    pub vflip: bool,
}

/// A display matrix read from a stream: 3×3 row-major, entries 0, 1, 3, 4 in 16.16 fixed point
/// (libavutil/display.h).
pub type DisplayMatrix = [i32; 9];

/// Parses display-matrix side data (36 bytes, native-endian i32s as libavutil stores them).
pub fn parse_display_matrix(bytes: &[u8]) -> Option<DisplayMatrix> {
    if bytes.len() < 36 {
        return None;
    }
    let mut m = [0i32; 9];
    for (i, v) in m.iter_mut().enumerate() {
        *v = i32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().ok()?);
    }
    Some(m)
}

/// Clockwise rotation in degrees, in [0, 360), that ffmpeg's CLI applies for `m`
/// (`get_rotation` in fftools: minus `av_display_rotation_get`, rounded to a whole degree).
/// NaN when the matrix has a zero column (no rotation can be read).
pub fn rotation_degrees(m: &DisplayMatrix) -> f64 {
    let f = |i: usize| m[i] as f64 / 65536.0;
    let (s0, s1) = (f(0).hypot(f(3)), f(1).hypot(f(4)));
    if s0 == 0.0 || s1 == 0.0 {
        return f64::NAN;
    }
    let ccw = -(f(1) / s1).atan2(f(0) / s0).to_degrees();
    let mut theta = -ccw.round();
    theta -= 360.0 * (theta / 360.0 + 0.9 / 360.0).floor();
    theta
}

impl Orientation {
    /// What ffmpeg's CLI autorotate does for `m` (see the module docs); an error naming the
    /// file and the angle for rotations that are not a multiple of 90°.
    pub fn from_display_matrix(m: &DisplayMatrix, path: &Path) -> Result<Self> {
        let theta = rotation_degrees(m);
        let o = |transpose, hflip, vflip| Orientation {
            transpose,
            hflip,
            vflip,
        };
        Ok(if (theta - 90.0).abs() < 1.0 {
            if m[3] > 0 {
                o(true, false, false) // transpose=cclock_flip
            } else {
                o(true, true, false) // transpose=clock
            }
        } else if (theta - 180.0).abs() < 1.0 {
            o(false, m[0] < 0, m[4] < 0)
        } else if (theta - 270.0).abs() < 1.0 {
            if m[3] < 0 {
                o(true, true, true) // transpose=clock_flip
            } else {
                o(true, false, true) // transpose=cclock
            }
        } else if theta.abs() > 1.0 {
            bail!(
                "{}: the display matrix rotates the picture by {theta}°, not a multiple of 90°; \
                 give --no-autorotate to decode the frames as stored",
                path.display()
            )
        } else {
            o(false, false, m[4] < 0)
        })
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }

    /// Displayed (width, height) of a stored `w` × `h` frame.
    pub fn displayed_size(&self, w: usize, h: usize) -> (usize, usize) {
        if self.transpose {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// In words, for reports: "none", "rotated 90° clockwise", "mirrored left-right", ...
    pub fn describe(&self) -> &'static str {
        match (self.transpose, self.hflip, self.vflip) {
            (false, false, false) => "none",
            (false, true, false) => "mirrored left-right",
            (false, false, true) => "mirrored top-bottom",
            (false, true, true) => "rotated 180°",
            (true, false, false) => "transposed (rotated 90° clockwise and mirrored)",
            (true, true, false) => "rotated 90° clockwise",
            (true, false, true) => "rotated 90° counter-clockwise",
            (true, true, true) => "anti-transposed (rotated 90° counter-clockwise and mirrored)",
        }
    }

    /// Applies the orientation to a packed image of `h` rows × `w` columns × `c` channels;
    /// returns the displayed image, packed, of size [`Self::displayed_size`].
    pub fn apply(&self, src: &[u8], w: usize, h: usize, c: usize) -> Vec<u8> {
        if self.is_identity() {
            return src.to_vec();
        }
        let (dw, dh) = self.displayed_size(w, h);
        let mut out = vec![0u8; src.len()];
        for y in 0..dh {
            let yy = if self.vflip { dh - 1 - y } else { y };
            for x in 0..dw {
                let xx = if self.hflip { dw - 1 - x } else { x };
                let (sy, sx) = if self.transpose { (xx, yy) } else { (yy, xx) };
                let (o, s) = ((y * dw + x) * c, (sy * w + sx) * c);
                out[o..o + c].copy_from_slice(&src[s..s + c]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: i32 = 65536;

    fn orient(m: DisplayMatrix) -> Orientation {
        Orientation::from_display_matrix(&m, Path::new("x")).unwrap()
    }

    #[test]
    fn matrices_map_to_the_cli_filters() {
        let w = 1 << 30;
        // ffprobe calls this matrix "rotation of -90.00 degrees"; ffmpeg shows it turned
        // clockwise. `-metadata:s:v rotate=90` (FFmpeg 5.1) writes its mirror image.
        assert_eq!(rotation_degrees(&[0, ONE, 0, -ONE, 0, 0, 0, 0, w]), 90.0);
        assert_eq!(rotation_degrees(&[0, -ONE, 0, ONE, 0, 0, 0, 0, w]), 270.0);
        let cw = orient([0, ONE, 0, -ONE, 0, 0, 0, 0, w]);
        assert_eq!(cw.describe(), "rotated 90° clockwise");
        assert_eq!(
            orient([0, -ONE, 0, ONE, 0, 0, 0, 0, w]).describe(),
            "rotated 90° counter-clockwise"
        );
        assert_eq!(
            orient([-ONE, 0, 0, 0, -ONE, 0, 0, 0, w]).describe(),
            "rotated 180°"
        );
        assert_eq!(
            orient([-ONE, 0, 0, 0, ONE, 0, 0, 0, w]).describe(),
            "mirrored left-right"
        );
        assert_eq!(
            orient([ONE, 0, 0, 0, -ONE, 0, 0, 0, w]).describe(),
            "mirrored top-bottom"
        );
        assert!(orient([ONE, 0, 0, 0, ONE, 0, 0, 0, w]).is_identity());
        let odd = Orientation::from_display_matrix(
            &[46341, 46341, 0, -46341, 46341, 0, 0, 0, w],
            Path::new("phone.mp4"),
        );
        let e = format!("{:#}", odd.unwrap_err());
        assert!(e.contains("phone.mp4") && e.contains("45"), "{e}");
    }

    #[test]
    fn apply_rotates_a_2x3_image() {
        // 2 rows × 3 columns, one channel: a b c / d e f.
        let src = [1u8, 2, 3, 4, 5, 6];
        let cw = Orientation {
            transpose: true,
            hflip: true,
            vflip: false,
        };
        // Clockwise: d a / e b / f c.
        assert_eq!(cw.apply(&src, 3, 2, 1), vec![4, 1, 5, 2, 6, 3]);
        let ccw = Orientation {
            transpose: true,
            hflip: false,
            vflip: true,
        };
        assert_eq!(ccw.apply(&src, 3, 2, 1), vec![3, 6, 2, 5, 1, 4]);
        let r180 = Orientation {
            transpose: false,
            hflip: true,
            vflip: true,
        };
        assert_eq!(r180.apply(&src, 3, 2, 1), vec![6, 5, 4, 3, 2, 1]);
    }
}
