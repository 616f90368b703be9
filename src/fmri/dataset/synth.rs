//! `dataset synth`: a movie-fMRI dataset with known ground truth.
//!
//! Movies are rendered from 8 latent factors per frame (4 luminance blobs, a drifting grating's
//! speed, a flickering texture's contrast, a moving disk's position, global luminance) and
//! encoded to H.264 MP4 with ffmpeg. Each voxel's response is the TR-averaged latents convolved
//! with the canonical HRF, times the voxel's weights (spatially smooth fields; a known fraction
//! of voxels has none), plus AR(1) noise and slow drift. The weights, the noise-free signal and
//! the per-frame latents are saved under derivatives/groundtruth/, so the ceiling r of every
//! voxel is known.
use crate::core::io::{self, Tensor};
use crate::fmri::dataset::nifti_io;
use crate::fmri::features::format::FrameFeatures;
use crate::fmri::hrf::canonical_hrf;
use anyhow::{bail, Context, Result};
use ndarray::ShapeBuilder;
use ndarray::{Array1, Array2, Array4, ArrayD, Axis, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const N_LATENTS: usize = 8;
pub const LATENT_NAMES: [&str; N_LATENTS] = [
    "blob_tl",
    "blob_tr",
    "blob_bl",
    "blob_br",
    "grating_speed",
    "flicker_contrast",
    "disk_x",
    "global_luminance",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Size {
    /// 2 subjects × 4 runs × 60 TRs, ~540 voxels: for tests.
    Tiny,
    /// 3 subjects × 6 runs × 200 TRs, ~20k voxels: for the demo.
    Medium,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    pub subjects: usize,
    pub runs: usize,
    pub trs_per_run: usize,
    pub tr: f64,
    pub fps: u32,
    pub frame_size: usize,
    pub dims: [usize; 3],
    pub voxel_mm: f32,
    /// Signal variance over noise variance at a voxel of median signal strength.
    pub snr: f64,
    /// Fraction of mask voxels that carry no signal.
    pub no_signal_fraction: f64,
    pub ar1: f64,
    /// Drift amplitude relative to the noise standard deviation.
    pub drift: f64,
    pub seed: u64,
    /// Two feature spaces: each signal voxel is driven by the latents of one band of
    /// [`BANDS`] only (chosen by a smooth field), recorded as `true_band` in the truth file.
    #[serde(default)]
    pub bands: bool,
    /// Show the last movie this many times: the last `repeat_test` runs (the default split's
    /// test runs, since they share a movie) are repeated viewings of one movie, with independent noise, so that a
    /// noise ceiling can be estimated from the repeats (`fmri::ceiling`). 0: every run its
    /// own movie. Otherwise 2 ≤ K ≤ runs − 2 (an error at generation otherwise).
    #[serde(default)]
    pub repeat_test: usize,
}

/// The two feature spaces of a `bands` dataset: names and latent indices.
pub const BANDS: [(&str, &[usize]); 2] = [("luminance", &[0, 1, 2, 3, 7]), ("motion", &[4, 5, 6])];

impl SynthConfig {
    pub fn preset(size: Size, seed: u64) -> Self {
        let base = Self {
            subjects: 2,
            runs: 4,
            trs_per_run: 60,
            tr: 1.5,
            fps: 24,
            frame_size: 64,
            dims: [12, 14, 12],
            voxel_mm: 3.0,
            snr: 1.0,
            no_signal_fraction: 0.3,
            ar1: 0.3,
            drift: 0.3,
            seed,
            bands: false,
            repeat_test: 0,
        };
        match size {
            Size::Tiny => base,
            Size::Medium => Self {
                subjects: 3,
                runs: 6,
                trs_per_run: 200,
                dims: [36, 44, 36],
                voxel_mm: 2.5,
                ..base
            },
        }
    }

    fn frames_per_run(&self) -> usize {
        (self.trs_per_run as f64 * self.tr * self.fps as f64).round() as usize
    }

    pub fn run_label(r: usize) -> String {
        format!("task-movie_run-{:02}", r + 1)
    }

    /// The movie run `r` shows (an index into the movies; see `repeat_test`).
    pub fn movie_of(&self, r: usize) -> usize {
        match self.repeat_test {
            k if k >= 2 => r.min(self.runs - k),
            _ => r,
        }
    }

    /// Number of distinct movies.
    pub fn n_movies(&self) -> usize {
        self.movie_of(self.runs - 1) + 1
    }

    fn validate(&self) -> Result<()> {
        if self.subjects == 0 || self.runs < 2 || self.trs_per_run < 10 {
            bail!("synth needs ≥1 subject, ≥2 runs and ≥10 TRs per run");
        }
        if !(self.tr > 0.0)
            || self.fps == 0
            || self.frame_size < 16
            || self.dims.iter().any(|&d| d < 4)
        {
            bail!("synth: TR, fps, frame size (≥16) and volume dims (≥4) must be positive");
        }
        // K viewings test, the other runs train: one viewing gives no ceiling (`fmri::ceiling`
        // needs ≥ 2 repeats) and ridge's CV over training runs needs ≥ 2 of them.
        if self.repeat_test == 1 {
            bail!(
                "synth: --repeat-test 1 is not allowed: the noise ceiling needs at least 2 \
                 viewings of the test movie (use ≥ 2, or leave the option out)"
            );
        }
        if self.repeat_test >= 2 && self.repeat_test + 2 > self.runs {
            bail!(
                "synth: --repeat-test {} with {} runs leaves {} training run(s); encode needs at \
                 least 2 (use --repeat-test ≤ {} or more --runs)",
                self.repeat_test,
                self.runs,
                self.runs.saturating_sub(self.repeat_test),
                self.runs.saturating_sub(2)
            );
        }
        if !(0.0..1.0).contains(&self.no_signal_fraction) || !(self.snr > 0.0) {
            bail!("synth: no_signal_fraction must be in [0, 1) and snr > 0");
        }
        Ok(())
    }
}

/// What a generated dataset holds, printed after generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthSummary {
    pub root: PathBuf,
    pub config: SynthConfig,
    pub voxels_per_subject: Vec<usize>,
    pub skipped: bool,
}

/// Writes the dataset under `out`; a complete dataset with the same config is left as is.
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<SynthSummary> {
    cfg.validate()?;
    let desc_path = out.join("dataset_description.json");
    if desc_path.exists() {
        if let Ok(v) = io::read_json::<serde_json::Value>(&desc_path) {
            let same = v
                .get("brainscale_synth")
                .and_then(|c| serde_json::from_value::<SynthConfig>(c.clone()).ok());
            let voxels = v
                .get("voxels_per_subject")
                .and_then(|c| serde_json::from_value(c.clone()).ok());
            if let (Some(c), Some(voxels)) = (same, voxels) {
                if &c == cfg {
                    return Ok(SynthSummary {
                        root: out.into(),
                        config: cfg.clone(),
                        voxels_per_subject: voxels,
                        skipped: true,
                    });
                }
            }
        }
        bail!(
            "{} holds a different dataset; choose another --out or delete it",
            out.display()
        );
    }
    let gt = out.join("derivatives/groundtruth");

    // Movies: latents, frames, MP4, per-frame latents as ground-truth features.
    let latents: Vec<Array2<f32>> = (0..cfg.n_movies())
        .into_par_iter()
        .map(|r| -> Result<Array2<f32>> {
            let lat = latent_series(cfg, r);
            let frames = render_movie(cfg, &lat, r);
            let label = SynthConfig::run_label(r);
            crate::fmri::video::encode_mp4(
                &out.join(format!("stimuli/{label}.mp4")),
                &frames,
                cfg.fps,
            )?;
            let times = Array1::from_iter((0..lat.nrows()).map(|i| i as f64 / cfg.fps as f64));
            let meta = HashMap::from([("latents".to_string(), LATENT_NAMES.join(","))]);
            FrameFeatures {
                values: lat.clone(),
                times,
            }
            .save(
                &gt.join(format!("stimuli/{label}_latents.safetensors")),
                meta,
            )?;
            Ok(lat)
        })
        .collect::<Result<_>>()?;

    // Stimulus drive per run: TR-averaged latents convolved with the HRF.
    let frames_per_tr = (cfg.tr * cfg.fps as f64).round() as usize;
    let hrf = canonical_hrf(cfg.tr);
    let drive: Vec<Array2<f64>> = (0..cfg.runs)
        .map(|r| &latents[cfg.movie_of(r)])
        .map(|lat| {
            let mut d = Array2::<f64>::zeros((cfg.trs_per_run, N_LATENTS));
            for t in 0..cfg.trs_per_run {
                let win = lat.slice(ndarray::s![t * frames_per_tr..(t + 1) * frames_per_tr, ..]);
                let m = win.mean_axis(Axis(0)).unwrap();
                d.row_mut(t).assign(&m.mapv(|v| v as f64));
            }
            let mut c = Array2::<f64>::zeros(d.raw_dim());
            for t in 0..cfg.trs_per_run {
                for (lag, &h) in hrf.iter().enumerate().take(t + 1) {
                    let row = d.row(t - lag).to_owned();
                    c.row_mut(t).scaled_add(h, &row);
                }
            }
            c
        })
        .collect();

    let voxels = (0..cfg.subjects)
        .into_par_iter()
        .map(|s| write_subject(cfg, s, &drive, out, &gt))
        .collect::<Result<Vec<_>>>()?;

    let desc = serde_json::json!({
        "Name": "brainscale synthetic movie-fMRI dataset",
        "BIDSVersion": "1.8.0",
        "DatasetType": "raw",
        "brainscale_synth": cfg,
        "voxels_per_subject": voxels,
        "latents": LATENT_NAMES,
    });
    io::write_json(&desc_path, &desc)?;
    Ok(SynthSummary {
        root: out.into(),
        config: cfg.clone(),
        voxels_per_subject: voxels,
        skipped: false,
    })
}

/// Smooth latent time courses in [-1, 1] at frame rate: Gaussian-smoothed white noise
/// (σ = 1.5 s), standardised, squashed by tanh.
fn latent_series(cfg: &SynthConfig, run: usize) -> Array2<f32> {
    let n = cfg.frames_per_run();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(7919).wrapping_add(run as u64));
    let sigma = 1.5 * cfg.fps as f64;
    let half = (3.0 * sigma) as usize;
    let kernel: Vec<f64> = (0..=2 * half)
        .map(|i| (-((i as f64 - half as f64) / sigma).powi(2) / 2.0).exp())
        .collect();
    let mut out = Array2::<f32>::zeros((n, N_LATENTS));
    for k in 0..N_LATENTS {
        let noise: Vec<f64> = (0..n + 2 * half)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect();
        let sm: Vec<f64> = (0..n)
            .map(|i| kernel.iter().zip(&noise[i..]).map(|(a, b)| a * b).sum())
            .collect();
        let m = sm.iter().sum::<f64>() / n as f64;
        let sd = (sm.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n as f64).sqrt();
        for (i, v) in sm.iter().enumerate() {
            out[[i, k]] = ((v - m) / sd).tanh() as f32;
        }
    }
    out
}

/// Renders frames [T, H, W, 3] from latents; everything but the latents is fixed per movie.
fn render_movie(cfg: &SynthConfig, lat: &Array2<f32>, run: usize) -> Array4<u8> {
    let (n, s) = (lat.nrows(), cfg.frame_size);
    let sf = s as f32;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed ^ run as u64);
    let texture: Vec<f32> = (0..s * s)
        .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
        .collect();
    let theta: f32 = rng.gen_range(0.0..std::f32::consts::PI);
    let blobs = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    let mut frames = Array4::<u8>::zeros((n, s, s, 3));
    let mut phase = 0.0f32;
    let wavelength = sf / 8.0;
    for (t, mut frame) in frames.axis_iter_mut(Axis(0)).enumerate() {
        let z = lat.row(t);
        let speed = 0.75 * (1.0 + z[4]) * sf / 64.0; // pixels per frame, 0..1.5 at 64 px
        phase += 2.0 * std::f32::consts::PI * speed / wavelength;
        let flicker = 0.12 * (1.0 + z[5]) * if t % 2 == 0 { 1.0 } else { -1.0 };
        let disk_x = sf * (0.5 + 0.35 * z[6]);
        let (disk_y, disk_r) = (sf * 0.86, sf * 0.08);
        for y in 0..s {
            for x in 0..s {
                let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
                let mut g = 0.5 + 0.1 * z[7];
                for (k, (bx, by)) in blobs.iter().enumerate() {
                    let d2 = (xf - bx * sf).powi(2) + (yf - by * sf).powi(2);
                    g += 0.25 * z[k] * (-d2 / (2.0 * (0.11 * sf).powi(2))).exp();
                }
                let dc = ((xf - sf / 2.0).powi(2) + (yf - sf / 2.0).powi(2)).sqrt();
                if dc < 0.16 * sf {
                    let u = xf * theta.cos() + yf * theta.sin();
                    g += 0.15 * (2.0 * std::f32::consts::PI * u / wavelength - phase).sin();
                }
                if y < s / 5 && x >= 3 * s / 8 && x < 5 * s / 8 {
                    g += flicker * texture[y * s + x];
                }
                let disk = (disk_r + 0.5 - ((xf - disk_x).powi(2) + (yf - disk_y).powi(2)).sqrt())
                    .clamp(0.0, 1.0);
                let rgb = [g + 0.30 * disk, g + 0.15 * disk, g + 0.05 * disk];
                for c in 0..3 {
                    frame[[y, x, c]] = (rgb[c].clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
    }
    frames
}

/// A smooth random field over the volume (sum of Gaussian bumps), one value per linear index.
fn smooth_field(rng: &mut ChaCha8Rng, dims: [usize; 3], bumps: usize) -> Vec<f64> {
    let sigma = 0.25 * *dims.iter().min().unwrap() as f64;
    let centers: Vec<([f64; 3], f64)> = (0..bumps)
        .map(|_| {
            let c = [0, 1, 2].map(|i| rng.gen_range(0.2..0.8) * dims[i] as f64);
            (c, rng.sample::<f64, _>(StandardNormal))
        })
        .collect();
    let mut out = vec![0.0; dims.iter().product()];
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let p = [x as f64, y as f64, z as f64];
                out[x + dims[0] * (y + dims[1] * z)] = centers
                    .iter()
                    .map(|(c, a)| {
                        a * (-(0..3).map(|i| (p[i] - c[i]).powi(2)).sum::<f64>()
                            / (2.0 * sigma * sigma))
                            .exp()
                    })
                    .sum();
            }
        }
    }
    out
}

fn write_subject(
    cfg: &SynthConfig,
    s: usize,
    drive: &[Array2<f64>],
    out: &Path,
    gt: &Path,
) -> Result<usize> {
    let sub = format!("sub-{:02}", s + 1);
    let mut rng =
        ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(104729).wrapping_add(1000 + s as u64));
    let dims = cfg.dims;
    let nvox_all: usize = dims.iter().product();

    // Ellipsoid brain mask.
    let radii = [0, 1, 2]
        .map(|i| 0.44 * dims[i] as f64 * (1.0 + 0.03 * rng.sample::<f64, _>(StandardNormal)));
    let mut linear = Vec::new();
    let mut mask_vol = vec![0u8; nvox_all];
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let p = [x, y, z];
                let r2: f64 = (0..3)
                    .map(|i| ((p[i] as f64 + 0.5 - dims[i] as f64 / 2.0) / radii[i]).powi(2))
                    .sum();
                if r2 <= 1.0 {
                    let l = x + dims[0] * (y + dims[1] * z);
                    linear.push(l);
                    mask_vol[l] = 1;
                }
            }
        }
    }
    let nv = linear.len();

    // Weights: smooth fields per latent; each voxel's weight vector scaled to a smooth gain;
    // the lowest `no_signal_fraction` of a smooth presence field carries nothing.
    let fields: Vec<Vec<f64>> = (0..N_LATENTS)
        .map(|_| smooth_field(&mut rng, dims, 3))
        .collect();
    let gain_field = smooth_field(&mut rng, dims, 2);
    let presence = smooth_field(&mut rng, dims, 4);
    let mut pres: Vec<f64> = linear.iter().map(|&l| presence[l]).collect();
    pres.sort_by(f64::total_cmp);
    let cut = pres[((cfg.no_signal_fraction * nv as f64) as usize).min(nv - 1)];
    let (gmin, gmax) = linear
        .iter()
        .map(|&l| gain_field[l])
        .fold((f64::MAX, f64::MIN), |(a, b), g| (a.min(g), b.max(g)));
    let mut weights = Array2::<f64>::zeros((nv, N_LATENTS));
    let mut has_signal = Array1::<u8>::zeros(nv);
    // Drawn only for `bands` datasets, so that the others stay as they were.
    let band_field = cfg.bands.then(|| smooth_field(&mut rng, dims, 4));
    let mut true_band = Array1::<u8>::from_elem(nv, u8::MAX);
    for (v, &l) in linear.iter().enumerate() {
        if cfg.no_signal_fraction > 0.0 && presence[l] < cut {
            continue;
        }
        has_signal[v] = 1;
        let mut w: Vec<f64> = fields.iter().map(|f| f[l]).collect();
        if let Some(bf) = &band_field {
            let b = usize::from(bf[l] >= 0.0);
            true_band[v] = b as u8;
            for (k, wk) in w.iter_mut().enumerate() {
                if !BANDS[b].1.contains(&k) {
                    *wk = 0.0;
                }
            }
        }
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        let gain = 0.4 + 0.6 * (gain_field[l] - gmin) / (gmax - gmin).max(1e-12);
        for k in 0..N_LATENTS {
            weights[[v, k]] = w[k] / norm * gain;
        }
    }

    // Noise-free signal per run and the noise level from the median signal strength.
    let signals: Vec<Array2<f64>> = drive.iter().map(|d| d.dot(&weights.t())).collect();
    let mut sds: Vec<f64> = (0..nv)
        .filter(|&v| has_signal[v] == 1)
        .map(|v| {
            let col: Vec<f64> = signals.iter().flat_map(|s| s.column(v).to_vec()).collect();
            let m = col.iter().sum::<f64>() / col.len() as f64;
            (col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / col.len() as f64).sqrt()
        })
        .collect();
    sds.sort_by(f64::total_cmp);
    let noise_sd = if sds.is_empty() {
        1.0
    } else {
        sds[sds.len() / 2] / cfg.snr.sqrt()
    };
    let scale = 10.0 / noise_sd; // BOLD units: noise sd = 10 around a baseline of ~1000
    let baseline = smooth_field(&mut rng, dims, 3);

    let header_mask = nifti_io::new_header(dims, cfg.voxel_mm, None);
    let func = out.join(&sub).join("func");
    nifti_io::write(
        &func.join(format!("{sub}_task-movie_desc-brain_mask.nii.gz")),
        &header_mask,
        ArrayD::from_shape_vec(IxDyn(&dims).f(), mask_vol)?.view(),
    )?;
    let header = nifti_io::new_header(dims, cfg.voxel_mm, Some(cfg.tr));
    let mut truth: Vec<(String, Tensor)> = vec![
        (
            "weights".into(),
            Tensor::F32(weights.mapv(|v| v as f32).into_dyn()),
        ),
        (
            "has_signal".into(),
            Tensor::U8(has_signal.clone().into_dyn()),
        ),
        (
            "mask_linear".into(),
            Tensor::I64(Array1::from_iter(linear.iter().map(|&l| l as i64)).into_dyn()),
        ),
    ];
    if cfg.bands {
        truth.push(("true_band".into(), Tensor::U8(true_band.into_dyn())));
    }
    for (r, signal) in signals.iter().enumerate() {
        let label = SynthConfig::run_label(r);
        let nt = cfg.trs_per_run;
        let mut bold = vec![0i16; nvox_all * nt];
        for l in 0..nvox_all {
            // Outside the brain: a dark, noisy background.
            for t in 0..nt {
                bold[l + nvox_all * t] =
                    (20.0 + 3.0 * rng.sample::<f64, _>(StandardNormal)).round() as i16;
            }
        }
        for (v, &l) in linear.iter().enumerate() {
            let base = 1000.0 + 150.0 * baseline[l];
            let (freq, ph): (f64, f64) = (
                rng.gen_range(0.5..1.5),
                rng.gen_range(0.0..std::f64::consts::TAU),
            );
            let mut e = rng.sample::<f64, _>(StandardNormal);
            for t in 0..nt {
                if t > 0 {
                    e = cfg.ar1 * e
                        + (1.0 - cfg.ar1 * cfg.ar1).sqrt() * rng.sample::<f64, _>(StandardNormal);
                }
                let drift =
                    cfg.drift * (std::f64::consts::TAU * freq * t as f64 / nt as f64 + ph).cos();
                let value = base + scale * signal[[t, v]] + 10.0 * (e + drift);
                bold[l + nvox_all * t] = value.round().clamp(-32768.0, 32767.0) as i16;
            }
        }
        let stem = format!("{sub}_{label}_bold");
        nifti_io::write(
            &func.join(format!("{stem}.nii.gz")),
            &header,
            ArrayD::from_shape_vec(IxDyn(&[dims[0], dims[1], dims[2], nt]).f(), bold)?.view(),
        )?;
        io::write_json(
            &func.join(format!("{stem}.json")),
            &serde_json::json!({"RepetitionTime": cfg.tr, "TaskName": "movie", "StimulusFile": format!("stimuli/{}.mp4", SynthConfig::run_label(cfg.movie_of(r)))}),
        )?;
        truth.push((
            format!("signal_{label}"),
            Tensor::F32((signal * scale).mapv(|v| v as f32).into_dyn()),
        ));
    }
    io::write_tensors(
        &gt.join(format!("{sub}_truth.safetensors")),
        truth,
        HashMap::new(),
    )?;
    Ok(nv)
}

/// Ground truth of one subject. The file lists voxels in NIfTI order (`mask_linear`);
/// [`Truth::in_mask_order`] puts them in a mask's order.
pub struct Truth {
    pub weights: Array2<f32>,
    pub has_signal: Array1<u8>,
    /// Band (index into [`BANDS`]) driving each voxel, 255 for none (`bands` datasets only).
    pub true_band: Option<Array1<u8>>,
    /// Noise-free signal per run label (`task-movie_run-YY`), [TRs, voxels].
    pub signal: HashMap<String, Array2<f32>>,
    /// NIfTI linear index of each voxel above.
    pub mask_linear: Vec<usize>,
}

impl Truth {
    /// The same truth with voxels in the order of `mask_linear` (a [`crate::fmri::dataset::nifti_io::Mask`]'s
    /// `linear`); an error when the voxel sets differ.
    pub fn in_mask_order(self, mask_linear: &[usize]) -> Result<Self> {
        let pos: HashMap<usize, usize> = self
            .mask_linear
            .iter()
            .enumerate()
            .map(|(i, &l)| (l, i))
            .collect();
        let idx: Vec<usize> = mask_linear
            .iter()
            .map(|l| pos.get(l).copied())
            .collect::<Option<_>>()
            .filter(|v: &Vec<usize>| v.len() == self.mask_linear.len())
            .context("the ground truth's voxels are not the subject mask's")?;
        let cols = |a: &Array2<f32>| a.select(ndarray::Axis(1), &idx);
        Ok(Self {
            weights: self.weights.select(ndarray::Axis(0), &idx),
            has_signal: self.has_signal.select(ndarray::Axis(0), &idx),
            true_band: self
                .true_band
                .as_ref()
                .map(|b| b.select(ndarray::Axis(0), &idx)),
            signal: self
                .signal
                .iter()
                .map(|(k, v)| (k.clone(), cols(v)))
                .collect(),
            mask_linear: mask_linear.to_vec(),
        })
    }
}

/// Reads `derivatives/groundtruth/sub-XX_truth.safetensors` if the dataset has one.
pub fn load_truth(root: &Path, subject: &str, labels: &[String]) -> Result<Option<Truth>> {
    let path = root.join(format!(
        "derivatives/groundtruth/sub-{subject}_truth.safetensors"
    ));
    if !path.exists() {
        return Ok(None);
    }
    let f = io::TensorFile::open(&path)?;
    let w = io::into_2d(f.f32("weights")?, "weights")?;
    let hs = io::into_1d(f.u8("has_signal")?, "has_signal")?;
    let mut signal = HashMap::new();
    for l in labels {
        signal.insert(
            l.clone(),
            io::into_2d(f.f32(&format!("signal_{l}"))?, "signal")?,
        );
    }
    let mask_linear = io::into_1d(f.i64("mask_linear")?, "mask_linear")?
        .iter()
        .map(|&l| l as usize)
        .collect();
    let true_band = match f.has("true_band") {
        true => Some(io::into_1d(f.u8("true_band")?, "true_band")?),
        false => None,
    };
    Ok(Some(Truth {
        weights: w,
        has_signal: hs,
        true_band,
        signal,
        mask_linear,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_test_must_leave_a_ceiling_and_two_training_runs() {
        let cfg = |runs, k| SynthConfig {
            runs,
            repeat_test: k,
            ..SynthConfig::preset(Size::Tiny, 0)
        };
        assert!(cfg(5, 0).validate().is_ok());
        assert!(cfg(5, 2).validate().is_ok());
        assert!(cfg(5, 3).validate().is_ok());
        let e = cfg(5, 1).validate().unwrap_err().to_string();
        assert!(
            e.contains("--repeat-test 1") && e.contains("2 viewings"),
            "{e}"
        );
        for k in [4, 5, 6] {
            let e = cfg(5, k).validate().unwrap_err().to_string();
            assert!(
                e.contains(&format!("--repeat-test {k}"))
                    && e.contains("5 runs")
                    && e.contains("≤ 3"),
                "{e}"
            );
        }
    }
}
