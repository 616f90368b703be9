//! Synthetic bio-signals with ground truth, deterministic from a seed: EEG-, ECG-, EMG- and
//! accelerometer-like windows at their real rates and window lengths, whose class depends on
//! spectral and temporal structure (what pretraining can learn), not on amplitude (each
//! window has a random gain).
//!
//! Every window is a pure function of (seed, modality, split, index) — [`Generator::window_in`]
//! seeds a ChaCha8 stream from those four — so a pretraining pool can stream fresh windows
//! forever (index 0, 1, 2, ...; data never repeat) and labelled sets are disjoint from it
//! (another split). Pretraining windows draw their class uniformly; labelled splits cycle
//! through the classes (index mod K), so small sets are balanced.
//!
//! Modalities ([`Modality::spec`] gives defaults; rates and lengths can be changed):
//! - EEG, 200 Hz, 4 channels × 1000 samples (5 s): 1/f^α background shared partly across
//!   channels; classes delta (1.5-3.5 Hz), theta (5-7 Hz), alpha (9-12 Hz, strongest at the
//!   last, "occipital", channel), spindles (12.5-14.5 Hz bursts of 0.5-1.5 s) and spike-wave
//!   (sharp 20-70 ms transients each followed by a slow wave). Every window also carries a weak
//!   distractor rhythm in a random band.
//! - ECG, 300 Hz (CinC 2017), 1 channel × 1500 (5 s): beats as sums of Gaussians (P, Q, R, S,
//!   T; McSharry et al. 2003, IEEE TBME 50:289); classes normal sinus, atrial fibrillation
//!   (irregular RR, no P, 4-8 Hz f-waves), wide QRS (bundle-branch-like notched R-R', 140 ms)
//!   and premature ventricular beats (1-3 wide, large beats without P, inverted T). Baseline
//!   wander, mains hum and noise everywhere.
//! - EMG, 4 kHz (TF-C EMG), 1 channel × 1500 (0.375 s): motor-unit action potential trains
//!   under a contraction-burst envelope; classes healthy (triphasic ~8 ms MUAPs, 8 units),
//!   myopathy (short, small, polyphasic MUAPs, many units, fast firing) and neuropathy (few
//!   large, long polyphasic MUAPs, slow firing).
//! - Accelerometer, 50 Hz (HAR), 3 axes × 128 (2.56 s), in g: walking, upstairs, downstairs
//!   (step rhythms of different cadence, amplitude, harmonics and heel-strike transients),
//!   sitting, standing, lying (static, told apart by the gravity direction).
use crate::biosignal::Windows;
use anyhow::{bail, Result};
use ndarray::{Array1, Array2, Array3, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use rustfft::{num_complex::Complex, FftPlanner};
use std::collections::BTreeMap;
use std::f64::consts::PI;

/// Generator version, written into metadata: bump when windows change.
pub const VERSION: &str = "1";

/// A bio-signal modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Eeg,
    Ecg,
    Emg,
    Accel,
}

/// Shape and classes of one modality's windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Hz.
    pub rate: f64,
    /// Samples per window L.
    pub length: usize,
    pub channels: Vec<String>,
    pub class_names: Vec<&'static str>,
}

impl Spec {
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }
    /// Window duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.length as f64 / self.rate
    }
}

impl Modality {
    pub const ALL: [Modality; 4] = [Modality::Eeg, Modality::Ecg, Modality::Emg, Modality::Accel];

    pub fn name(self) -> &'static str {
        match self {
            Modality::Eeg => "eeg",
            Modality::Ecg => "ecg",
            Modality::Emg => "emg",
            Modality::Accel => "accel",
        }
    }

    fn id(self) -> u64 {
        self as u64 + 1
    }

    /// Default rate, window length, channels and classes (see the module docs).
    pub fn spec(self) -> Spec {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        match self {
            Modality::Eeg => Spec {
                rate: 200.0,
                length: 1000,
                channels: names(&["F3", "C3", "P3", "O1"]),
                class_names: vec!["delta", "theta", "alpha", "spindle", "spike-wave"],
            },
            Modality::Ecg => Spec {
                rate: 300.0,
                length: 1500,
                channels: names(&["ECG"]),
                class_names: vec!["normal", "atrial-fibrillation", "wide-qrs", "pvc"],
            },
            Modality::Emg => Spec {
                rate: 4000.0,
                length: 1500,
                channels: names(&["EMG"]),
                class_names: vec!["healthy", "myopathy", "neuropathy"],
            },
            Modality::Accel => Spec {
                rate: 50.0,
                length: 128,
                channels: names(&["x", "y", "z"]),
                class_names: vec![
                    "walking",
                    "upstairs",
                    "downstairs",
                    "sitting",
                    "standing",
                    "lying",
                ],
            },
        }
    }

    /// Rates the generator's content is meant for (Hz, inclusive): EEG 100-256, ECG 250-1000,
    /// EMG 1-10 kHz, accelerometer 20-200.
    pub fn rate_range(self) -> (f64, f64) {
        match self {
            Modality::Eeg => (100.0, 256.0),
            Modality::Ecg => (250.0, 1000.0),
            Modality::Emg => (1000.0, 10000.0),
            Modality::Accel => (20.0, 200.0),
        }
    }
}

/// Which stream a window belongs to; streams never share windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SynthSplit {
    /// Unlabelled pretraining pool (classes drawn at random).
    Pretrain,
    Train,
    Val,
    Test,
}

impl SynthSplit {
    pub fn name(self) -> &'static str {
        match self {
            SynthSplit::Pretrain => "pretrain",
            SynthSplit::Train => "train",
            SynthSplit::Val => "val",
            SynthSplit::Test => "test",
        }
    }
}

/// SplitMix64 finaliser: decorrelates stream seeds built from small integers.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The deterministic window source.
#[derive(Debug, Clone)]
pub struct Generator {
    pub seed: u64,
    specs: [Spec; 4],
}

impl Generator {
    /// A generator with every modality at its default spec.
    pub fn new(seed: u64) -> Self {
        Generator {
            seed,
            specs: Modality::ALL.map(Modality::spec),
        }
    }

    /// Changes a modality's rate (Hz) and window length; errors outside [`Modality::rate_range`]
    /// or for windows shorter than 8 samples.
    pub fn with_shape(mut self, m: Modality, rate: f64, length: usize) -> Result<Self> {
        let (lo, hi) = m.rate_range();
        if !(rate >= lo && rate <= hi) {
            bail!(
                "{} rate {rate} Hz is outside the generator's range {lo}-{hi} Hz",
                m.name()
            );
        }
        if length < 8 {
            bail!("window length {length} is under 8 samples");
        }
        let s = &mut self.specs[m as usize];
        s.rate = rate;
        s.length = length;
        Ok(self)
    }

    pub fn spec(&self, m: Modality) -> &Spec {
        &self.specs[m as usize]
    }

    /// Pretraining-stream window `index`: samples [C, L] and its (hidden) class.
    pub fn window(&self, m: Modality, index: u64) -> (Array2<f32>, i64) {
        self.window_in(m, SynthSplit::Pretrain, index)
    }

    /// Window `index` of `split`: samples [C, L] (f32) and class in 0..K. Bit-identical for
    /// equal (seed, modality, split, index, spec).
    pub fn window_in(&self, m: Modality, split: SynthSplit, index: u64) -> (Array2<f32>, i64) {
        let stream = splitmix(splitmix(self.seed ^ splitmix(m.id() << 8 | split as u64)) ^ index);
        let mut rng = ChaCha8Rng::seed_from_u64(stream);
        let spec = self.spec(m);
        let k = spec.classes();
        let class = match split {
            SynthSplit::Pretrain => rng.gen_range(0..k),
            _ => (index % k as u64) as usize,
        };
        let x = match m {
            Modality::Eeg => eeg(&mut rng, spec, class),
            Modality::Ecg => ecg(&mut rng, spec, class),
            Modality::Emg => emg(&mut rng, spec, class),
            Modality::Accel => accel(&mut rng, spec, class),
        };
        (x.mapv(|v| v as f32), class as i64)
    }

    /// Windows `start..start+n` of `split` as arrays: samples [n, C, L], labels [n]
    /// (computed in parallel; deterministic).
    pub fn batch(
        &self,
        m: Modality,
        split: SynthSplit,
        start: u64,
        n: usize,
    ) -> (Array3<f32>, Array1<i64>) {
        let spec = self.spec(m);
        let windows: Vec<(Array2<f32>, i64)> = (0..n as u64)
            .into_par_iter()
            .map(|i| self.window_in(m, split, start + i))
            .collect();
        let mut x = Array3::zeros((n, spec.channels.len(), spec.length));
        let mut y = Array1::zeros(n);
        for (i, (w, c)) in windows.into_iter().enumerate() {
            x.index_axis_mut(Axis(0), i).assign(&w);
            y[i] = c;
        }
        (x, y)
    }

    /// A random batch for training: `batch` windows of `split` at indices drawn uniformly from
    /// 0..pool (a fixed pool of D = `pool` distinct windows, for data-size sweeps), or from
    /// 0..2⁶³ when `pool` is None (fresh windows: repeats have probability ~ steps·B²/2⁶⁴).
    /// Deterministic in the generator's seed and the state of `rng` (the engine seeds it per
    /// step and micro-batch). Returns samples [B, C, L] and classes [B].
    pub fn sample(
        &self,
        m: Modality,
        split: SynthSplit,
        rng: &mut impl Rng,
        batch: usize,
        pool: Option<u64>,
    ) -> (Array3<f32>, Array1<i64>) {
        let spec = self.spec(m);
        let idx: Vec<u64> = (0..batch)
            .map(|_| match pool {
                Some(d) => rng.gen_range(0..d.max(1)),
                None => rng.gen::<u64>() >> 1,
            })
            .collect();
        let windows: Vec<(Array2<f32>, i64)> = idx
            .par_iter()
            .map(|&i| self.window_in(m, split, i))
            .collect();
        let mut x = Array3::zeros((batch, spec.channels.len(), spec.length));
        let mut y = Array1::zeros(batch);
        for (i, (w, c)) in windows.into_iter().enumerate() {
            x.index_axis_mut(Axis(0), i).assign(&w);
            y[i] = c;
        }
        (x, y)
    }

    /// A set of `n` windows from `start` as a [`Windows`] with metadata (modality, rate, seed,
    /// split, classes, generator version). Pretraining pools are unlabelled unless
    /// `keep_labels` (the true classes are then kept for analysis).
    pub fn dataset(
        &self,
        m: Modality,
        split: SynthSplit,
        start: u64,
        n: usize,
        keep_labels: bool,
    ) -> Windows {
        let spec = self.spec(m);
        let (samples, labels) = self.batch(m, split, start, n);
        let mut meta = BTreeMap::new();
        meta.insert("modality".into(), m.name().into());
        meta.insert("seed".into(), self.seed.to_string());
        meta.insert("split".into(), split.name().into());
        meta.insert("start_index".into(), start.to_string());
        meta.insert(
            "generator".into(),
            format!("brainscale biosignal synth v{VERSION}"),
        );
        meta.insert(
            "classes".into(),
            spec.class_names
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{i} = {c}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        Windows {
            samples,
            labels: (split != SynthSplit::Pretrain || keep_labels).then_some(labels),
            rate: Some(spec.rate),
            channels: spec.channels.clone(),
            classes: Some(spec.classes()),
            source: format!("synth {} {} seed {}", m.name(), split.name(), self.seed),
            meta,
        }
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// Unit-variance 1/f^α noise of n samples (white noise shaped in the frequency domain).
fn pink(rng: &mut ChaCha8Rng, n: usize, alpha: f64) -> Vec<f64> {
    let mut buf: Vec<Complex<f64>> = (0..n).map(|_| Complex::new(normal(rng), 0.0)).collect();
    // One planner per thread: planning (twiddles, a sin/cos each) cost more than the FFTs of a
    // window; a cached plan computes the same numbers.
    thread_local! {
        static PLANNER: std::cell::RefCell<FftPlanner<f64>> = std::cell::RefCell::new(FftPlanner::new());
    }
    let (fwd, inv) = PLANNER.with(|p| {
        let mut p = p.borrow_mut();
        (p.plan_fft_forward(n), p.plan_fft_inverse(n))
    });
    fwd.process(&mut buf);
    // Bins k and n − k share the frequency min(k, n − k): one power for both.
    for k in 1..=n / 2 {
        let g = (k as f64).powf(-alpha / 2.0);
        buf[k] *= g;
        if n - k != k {
            buf[n - k] *= g;
        }
    }
    if let Some(b) = buf.first_mut() {
        *b *= 0.0;
    }
    inv.process(&mut buf);
    let v: Vec<f64> = buf.iter().map(|c| c.re).collect();
    let sd = (v.iter().map(|x| x * x).sum::<f64>() / n as f64)
        .sqrt()
        .max(1e-12);
    v.into_iter().map(|x| x / sd).collect()
}

/// EEG-like window [C, L] in µV (see the module docs).
fn eeg(rng: &mut ChaCha8Rng, spec: &Spec, class: usize) -> Array2<f64> {
    let (c, n, rate) = (spec.channels.len(), spec.length, spec.rate);
    let alpha_exp = rng.gen_range(0.8..1.4);
    let common = pink(rng, n, alpha_exp);
    let gain = 20.0 * rng.gen_range(0.5..2.0);
    let t = |i: usize| i as f64 / rate;
    let mut x = Array2::zeros((c, n));
    for ch in 0..c {
        let own = pink(rng, n, alpha_exp);
        for i in 0..n {
            x[[ch, i]] = 0.6 * common[i] + 0.8 * own[i];
        }
    }
    // A weak distractor rhythm in a random band, present in every class.
    let (df, damp, dph) = (
        rng.gen_range(1.0..15.0),
        rng.gen_range(0.0..0.4),
        rng.gen_range(0.0..2.0 * PI),
    );
    let amp = rng.gen_range(0.8..1.4);
    match class {
        0..=2 => {
            let f = match class {
                0 => rng.gen_range(1.5..3.5),
                1 => rng.gen_range(5.0..7.0),
                _ => rng.gen_range(9.0..12.0),
            };
            let ph = rng.gen_range(0.0..2.0 * PI);
            let fm = rng.gen_range(0.1..0.4); // slow amplitude modulation
            for ch in 0..c {
                // Alpha is occipital: strongest at the last channel.
                let w = if class == 2 {
                    0.4 + 0.6 * (ch + 1) as f64 / c as f64
                } else {
                    1.0
                };
                let lag = rng.gen_range(-0.3..0.3);
                for i in 0..n {
                    let env = 1.0 + 0.3 * (2.0 * PI * fm * t(i)).sin();
                    x[[ch, i]] += 1.4 * amp * w * env * (2.0 * PI * f * t(i) + ph + lag).sin();
                }
            }
        }
        3 => {
            let bursts = rng.gen_range(1..=3);
            for _ in 0..bursts {
                let f = rng.gen_range(12.5..14.5);
                let centre = rng.gen_range(0.1..0.9) * n as f64 / rate;
                let width = rng.gen_range(0.5..1.5) / 4.0; // envelope σ, s
                let ph = rng.gen_range(0.0..2.0 * PI);
                for ch in 0..c {
                    for i in 0..n {
                        let e = (-(t(i) - centre).powi(2) / (2.0 * width * width)).exp();
                        x[[ch, i]] += 3.0 * amp * e * (2.0 * PI * f * t(i) + ph).sin();
                    }
                }
            }
        }
        _ => {
            let dur = n as f64 / rate;
            let count = ((dur * rng.gen_range(0.6..1.2)).round() as usize).max(2);
            for _ in 0..count {
                let at = rng.gen_range(0.05..0.95) * dur;
                let width = rng.gen_range(0.02..0.07) / 2.0;
                let polarity = if rng.gen_bool(0.8) { -1.0 } else { 1.0 };
                for ch in 0..c {
                    let w = rng.gen_range(0.6..1.0);
                    for i in 0..n {
                        let u = (t(i) - at) / width;
                        let spike = (-0.5 * u * u).exp();
                        // Slow wave 150-250 ms after the spike.
                        let v = (t(i) - at - 0.2) / 0.08;
                        let slow = -0.5 * (-0.5 * v * v).exp();
                        x[[ch, i]] += polarity * 5.0 * amp * w * (spike + slow);
                    }
                }
            }
        }
    }
    for ch in 0..c {
        for i in 0..n {
            x[[ch, i]] = gain * (x[[ch, i]] + damp * (2.0 * PI * df * t(i) + dph).sin());
        }
    }
    x
}

/// One Gaussian wave of an ECG beat: amplitude (mV), centre (s from R), width σ (s).
type Wave = (f64, f64, f64);

/// ECG-like window [1, L] in mV (see the module docs).
fn ecg(rng: &mut ChaCha8Rng, spec: &Spec, class: usize) -> Array2<f64> {
    let (n, rate) = (spec.length, spec.rate);
    let dur = n as f64 / rate;
    let hr: f64 = rng.gen_range(55.0..100.0);
    let rr = 60.0 / hr;
    let normal_beat: Vec<Wave> = vec![
        (0.15, -0.20, 0.025),
        (-0.10, -0.03, 0.010),
        (1.00, 0.0, 0.012),
        (-0.25, 0.03, 0.010),
        (0.30, 0.25 * rr.sqrt(), 0.060),
    ];
    let wide: Vec<Wave> = vec![
        (0.15, -0.22, 0.025),
        (0.70, -0.02, 0.018),
        (0.80, 0.055, 0.020),
        (-0.35, 0.10, 0.018),
        (-0.15, 0.32 * rr.sqrt(), 0.070),
    ];
    let pvc: Vec<Wave> = vec![(1.6, 0.0, 0.035), (-0.6, 0.08, 0.030), (-0.45, 0.30, 0.080)];
    // Beat times (R peaks), starting before the window so it opens mid-rhythm.
    let mut beats: Vec<(f64, &Vec<Wave>, bool)> = Vec::new();
    let mut tr = -rng.gen_range(0.0..rr);
    let n_pvc = if class == 3 { rng.gen_range(1..=3) } else { 0 };
    let total_beats = (dur / rr).ceil() as usize + 2;
    let pvc_at: Vec<usize> = (0..n_pvc)
        .map(|_| rng.gen_range(1..total_beats.max(2)))
        .collect();
    let mut k = 0;
    while tr < dur + 0.5 {
        let is_pvc = pvc_at.contains(&k);
        let shape = match class {
            2 => &wide,
            _ if is_pvc => &pvc,
            _ => &normal_beat,
        };
        beats.push((tr, shape, class == 1 || is_pvc));
        let step = match class {
            1 => rr * rng.gen_range(0.55..1.45),
            _ => rr * (1.0 + 0.03 * normal(rng)),
        };
        // A PVC comes early and is followed by a compensatory pause.
        tr += if pvc_at.contains(&(k + 1)) {
            0.6 * step
        } else if is_pvc {
            1.4 * step
        } else {
            step
        };
        k += 1;
    }
    let amp = rng.gen_range(0.5..2.0);
    let (wander_f, wander_ph) = (rng.gen_range(0.1..0.5), rng.gen_range(0.0..2.0 * PI));
    let mains = if rng.gen_bool(0.5) { 50.0 } else { 60.0 };
    let (fw_f, fw_ph) = (rng.gen_range(4.0..8.0), rng.gen_range(0.0..2.0 * PI));
    let mut x = Array2::zeros((1, n));
    for i in 0..n {
        let t = i as f64 / rate;
        let mut v = 0.0;
        for (tb, shape, no_p) in &beats {
            if (t - tb).abs() > 0.7 {
                continue;
            }
            for (j, &(a, mu, sd)) in shape.iter().enumerate() {
                if *no_p && j == 0 && shape.len() == 5 {
                    continue; // AF and PVC beats have no P wave
                }
                v += a * (-(t - tb - mu).powi(2) / (2.0 * sd * sd)).exp();
            }
        }
        if class == 1 {
            v += 0.06 * (2.0 * PI * fw_f * t + fw_ph).sin();
        }
        v += 0.15 * (2.0 * PI * wander_f * t + wander_ph).sin();
        v += 0.02 * (2.0 * PI * mains * t).sin();
        x[[0, i]] = amp * (v + 0.03 * normal(rng));
    }
    x
}

/// EMG-like window [1, L] in mV (see the module docs).
fn emg(rng: &mut ChaCha8Rng, spec: &Spec, class: usize) -> Array2<f64> {
    let (n, rate) = (spec.length, spec.rate);
    let dur = n as f64 / rate;
    // (units, MUAP amplitude, phase count, phase width σ s, MUAP span s, firing Hz)
    type Emg = (usize, f64, usize, f64, f64, (f64, f64));
    let (units, a0, phases, width, span, fire): Emg = match class {
        0 => (8, 1.0, 1, 0.0015, 0.0, (8.0, 15.0)),
        1 => (20, 0.35, 4, 0.0004, 0.004, (15.0, 25.0)),
        _ => (3, 4.0, 3, 0.0022, 0.014, (5.0, 10.0)),
    };
    // Contraction burst envelope: a raised plateau over part of the window.
    let (on, off) = {
        let a = rng.gen_range(0.0..0.4) * dur;
        (a, a + rng.gen_range(0.5..1.0) * dur)
    };
    let env = |t: f64| {
        let s = 0.01;
        1.0 / (1.0 + (-(t - on) / s).exp()) * 1.0 / (1.0 + ((t - off) / s).exp())
    };
    let mut x = vec![0.0; n];
    for _ in 0..units {
        let amp = a0 * rng.gen_range(0.5..1.5);
        // Template: triphasic (healthy) or a sum of shifted biphasic phases.
        let comps: Vec<(f64, f64)> = (0..phases)
            .map(|j| {
                let off = if phases == 1 {
                    0.0
                } else {
                    span * (j as f64 / (phases - 1) as f64 - 0.5)
                };
                (
                    off,
                    if j.is_multiple_of(2) { 1.0 } else { -0.8 } * rng.gen_range(0.6..1.2),
                )
            })
            .collect();
        let rate_u = rng.gen_range(fire.0..fire.1);
        let mut tf = rng.gen_range(0.0..1.0 / rate_u) - 0.02;
        while tf < dur + 0.02 {
            if rng.gen::<f64>() < env(tf.clamp(0.0, dur)) + 0.05 {
                let half = (span / 2.0 + 5.0 * width) * rate;
                let lo = ((tf * rate - half).floor().max(0.0)) as usize;
                let hi = ((tf * rate + half).ceil().max(0.0) as usize).min(n);
                for (i, xi) in x.iter_mut().enumerate().take(hi).skip(lo) {
                    let t = i as f64 / rate - tf;
                    for &(o, s) in &comps {
                        let u = (t - o) / width;
                        let shape = if phases == 1 {
                            (1.0 - u * u) * (-0.5 * u * u).exp()
                        } else {
                            -u * (-0.5 * u * u).exp()
                        };
                        *xi += amp * s * shape;
                    }
                }
            }
            tf += (1.0 / rate_u) * (1.0 + 0.15 * normal(rng)).max(0.3);
        }
    }
    let gain = rng.gen_range(0.5..2.0);
    let mut out = Array2::zeros((1, n));
    for i in 0..n {
        out[[0, i]] = gain * (x[i] + 0.05 * normal(rng));
    }
    out
}

/// Accelerometer-like window [3, L] in g (see the module docs).
fn accel(rng: &mut ChaCha8Rng, spec: &Spec, class: usize) -> Array2<f64> {
    let (n, rate) = (spec.length, spec.rate);
    // Gravity direction per posture, with a random tilt of up to ~10°.
    let g0 = match class {
        3 => [0.45, 0.0, 0.89],  // sitting: device tilted forward
        5 => [0.98, 0.15, 0.1],  // lying: gravity along x
        _ => [0.05, 0.05, 0.99], // upright
    };
    let mut g = g0.map(|v| v + 0.08 * normal(rng));
    let norm = (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt();
    g.iter_mut().for_each(|v| *v /= norm);
    let mut x = Array2::zeros((3, n));
    let (f, az, h2, impact) = match class {
        0 => (rng.gen_range(1.6..2.0), 0.25, 0.3, 0.0),
        1 => (rng.gen_range(1.2..1.5), 0.35, 0.6, 0.0),
        2 => (rng.gen_range(1.8..2.2), 0.40, 0.3, 0.6),
        _ => (0.0, 0.0, 0.0, 0.0),
    };
    let gain = rng.gen_range(0.7..1.3);
    let ph = rng.gen_range(0.0..2.0 * PI);
    let sway = rng.gen_range(0.3..0.7);
    for i in 0..n {
        let t = i as f64 / rate;
        let mut d = [0.0; 3];
        if f > 0.0 {
            let w = 2.0 * PI * f * t + ph;
            d[2] = az * (w.sin() + h2 * (2.0 * w).sin());
            d[0] = sway * az * (0.5 * w).sin();
            d[1] = 0.5 * az * (w + 1.0).cos();
            if impact > 0.0 {
                // Heel strike: a sharp transient once per step.
                let phase = (w / (2.0 * PI)).fract();
                d[2] += impact * (-(phase / 0.04).powi(2)).exp();
            }
        } else {
            // Postural tremor, ~8-12 Hz, tiny.
            d[0] = 0.005 * (2.0 * PI * 10.0 * t + ph).sin();
        }
        for a in 0..3 {
            x[[a, i]] = g[a] + gain * d[a] + 0.02 * normal(rng);
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_determinism() {
        let g = Generator::new(7);
        for m in Modality::ALL {
            let s = m.spec();
            let (a, ca) = g.window(m, 3);
            let (b, cb) = g.window(m, 3);
            assert_eq!(a.dim(), (s.channels.len(), s.length));
            assert_eq!((a, ca), (b, cb));
            assert!(ca >= 0 && (ca as usize) < s.classes());
        }
        // A pool of D = 3 windows only ever yields those three.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (x, _) = g.sample(Modality::Accel, SynthSplit::Pretrain, &mut rng, 16, Some(3));
        for w in x.axis_iter(Axis(0)) {
            assert!((0..3).any(|i| g.window(Modality::Accel, i).0 == w));
        }
        let (a, _) = g.window(Modality::Eeg, 0);
        let (b, _) = g.window_in(Modality::Eeg, SynthSplit::Train, 0);
        assert_ne!(a, b, "splits are different streams");
    }
}
