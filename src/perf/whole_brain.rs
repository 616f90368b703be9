//! `brainscale bench-whole-brain`: the streamed ridge ([`crate::ridge::blocks`]) on a generated
//! whole-brain problem whose Y does not fit in memory. X (n × p) is held; each voxel block of
//! Y is generated on the fly from a seed (counter-based, so a voxel's values do not depend on
//! the block size or the thread count) and fitted, so the disk is never used and memory stays
//! at X + one block + the ridge's chunks. Prints wall time, FLOPs, the ratio to this machine's
//! GEMM peak and the peak resident memory (VmHWM).
//!
//! With `--out DIR` the per-voxel results (test r and R², best alpha, CV scores) are written
//! to `DIR/whole-brain.safetensors`; `--voxel-shard k/K` fits one contiguous share of the
//! blocks into `DIR/parts/part-k-of-K.safetensors`, `--merge K` joins the parts, and
//! `--slurm-shards K` runs the K shards as one SLURM job array (see `cli`): the same data,
//! sharded, must give the single run's outputs. Typed options in, a report out; `cli::perf`
//! parses the flags and prints.
//!
//! Y_ij = s_j z_ij + e_ij with z_ij = (X_i,a(j) + X_i,b(j)) / √2 (two features per voxel),
//! s_j² from 0.01 to 1 across voxels, and e_ij unit noise, so the expected test r of voxel j
//! is about s_j / √(1 + s_j²) (minus the shrinkage and estimation losses).
use crate::core::io::{Tensor, TensorFile};
use crate::core::memory::human_bytes;
use crate::exec::shards::{self, Shard};
use crate::perf::ridge::{machine, process_cpu_seconds, Machine};
use crate::ridge::blocks::{fit_cv_blocks, prepared_bytes, Design, VoxelBlocks};
use crate::ridge::{bench_alphas, Backend, Dtype, Folds, RidgeDevice, RidgeOptions};
use anyhow::{bail, Context, Result};
use ndarray::{s, Array1, Array2, Axis};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `bench-whole-brain` fits (the fit; merging and SLURM arrays are `cli::perf`'s).
#[derive(Debug, Clone)]
pub struct WholeBrain {
    /// TRs in all (training and test rows).
    pub n: usize,
    /// Features.
    pub p: usize,
    /// Voxels.
    pub v: usize,
    /// Share of the TRs held out as the test run (the last rows), in (0, 0.5).
    pub test_fraction: f64,
    /// Training runs (leave-one-run-out folds).
    pub folds: usize,
    /// Number of alphas (log-spaced from 0.1 to 1e6).
    pub alphas: usize,
    /// Voxels per streamed block.
    pub block_voxels: usize,
    /// Budget of the whole process in bytes (X, the prepared X side, a block, outputs and the
    /// ridge's chunks): `--process-memory`.
    pub process_memory: u64,
    /// The ridge's voxel-chunk budget within it (`--max-memory`, as in every ridge command;
    /// `None`: what the process budget leaves).
    pub chunk_memory: Option<u64>,
    pub backend: Backend,
    pub device: RidgeDevice,
    pub dtype: Dtype,
    pub tf32: bool,
    pub partial_fractions: bool,
    /// Fit only the first K blocks (a quick look at the rate).
    pub max_blocks: Option<usize>,
    pub seed: u64,
    /// Folder of the per-voxel results (whole-brain.safetensors, or parts/ with `shard`).
    pub out: Option<PathBuf>,
    /// Fit only this shard's contiguous share of the voxel blocks.
    pub shard: Option<Shard>,
}

/// What `bench-whole-brain` measured.
#[derive(Debug, Clone)]
pub struct WholeBrainReport {
    pub machine: Machine,
    pub n_train: usize,
    pub n_test: usize,
    /// Bytes of Y in f32 (never stored).
    pub y_bytes: u64,
    /// Voxels fitted: v0..v_fit.
    pub v0: usize,
    pub v_fit: usize,
    pub blocks: usize,
    pub wall_s: f64,
    /// Time spent generating Y.
    pub generation_s: f64,
    pub cpu_s: f64,
    pub flops: f64,
    pub peak_rss: Option<u64>,
    pub mean_r: f64,
    /// Mean of the generator's noise-ceiling r over the fitted voxels.
    pub expected_r: f64,
    /// The per-voxel results file written, with `out`.
    pub written: Option<PathBuf>,
}

impl WholeBrainReport {
    /// Seconds of fitting (wall time less generation).
    pub fn fit_s(&self) -> f64 {
        self.wall_s - self.generation_s
    }
}

impl WholeBrain {
    /// The voxel blocks this run fits: all, the first `--max-blocks`, or the shard's share.
    /// Errors: more shards than blocks.
    fn blocks(&self) -> Result<(usize, usize)> {
        let nb = self.v.div_ceil(self.block_voxels.max(1));
        match self.shard {
            Some(sh) => sh
                .blocks(nb)
                .with_context(|| format!("{} voxels in blocks of {}", self.v, self.block_voxels)),
            None => Ok((0, self.max_blocks.unwrap_or(nb).clamp(1, nb))),
        }
    }

    /// What the per-voxel results depend on (the generated data and the fit), recorded as
    /// each output's `inputs` metadata so that parts of other arguments are not merged.
    /// (The key keeps its `precision` field name for the dtype, so that parts written
    /// before the rename still merge; `partial_fractions` appears only when turned off.)
    fn inputs_key(&self) -> String {
        let mut key = serde_json::json!({
            "n": self.n, "p": self.p, "v": self.v, "seed": self.seed,
            "test_fraction": self.test_fraction, "folds": self.folds, "alphas": self.alphas,
            "block_voxels": self.block_voxels, "backend": self.backend.to_string(),
            "precision": self.dtype.to_string(), "tf32": self.tf32,
        });
        if !self.partial_fractions {
            key["partial_fractions"] = false.into();
        }
        key.to_string()
    }
}

/// The merged (or single-run) output of `bench-whole-brain --out DIR`.
pub fn output_path(dir: &Path) -> PathBuf {
    dir.join("whole-brain.safetensors")
}

/// Part `k` of `n` in `dir`.
pub fn part_path(dir: &Path, k: usize, n: usize) -> PathBuf {
    shards::part_path(&dir.join("parts"), k, n)
}

/// The shards whose part in `--out` is missing or was made with other arguments: what
/// `--slurm-shards n` submits.
pub fn missing_parts(a: &WholeBrain, dir: &Path, n: usize) -> Result<Vec<usize>> {
    if n == 0 {
        bail!("--slurm-shards must be at least 1");
    }
    // Each task's share must be non-empty: checked here rather than in every task.
    WholeBrain {
        shard: Some(Shard { k: 0, n }),
        ..a.clone()
    }
    .blocks()?;
    let key = a.inputs_key();
    Ok((0..n)
        .filter(|&k| {
            TensorFile::open(&part_path(dir, k, n))
                .map(|f| f.metadata().get("inputs") != Some(&key))
                .unwrap_or(true)
        })
        .collect())
}

/// Joins the `n` parts in `dir` into `whole-brain.safetensors`; returns its path. Errors
/// name a missing part, or parts made with other arguments than part 0 or than `a` (the
/// fields that differ).
pub fn merge_parts(a: &WholeBrain, dir: &Path, n: usize) -> Result<PathBuf> {
    let paths: Vec<PathBuf> = (0..n).map(|k| part_path(dir, k, n)).collect();
    let layout = shards::Layout {
        per_voxel: &[
            ("test_r", 0),
            ("test_r2", 0),
            ("best_alpha", 0),
            ("cv_scores", 1),
        ],
        shared: &["alphas"],
        same: &["inputs"],
    };
    let m = shards::merge(&paths, &layout, &|k| {
        format!(
            "run `bench-whole-brain ... --out {} --voxel-shard {k}/{n}`",
            dir.display()
        )
    })?;
    let key = a.inputs_key();
    if m.metadata.get("inputs") != Some(&key) {
        bail!(
            "{}: the parts were fitted with other arguments than this command's{}: give the \
             merge the arguments of the shards, or refit them",
            paths[0].display(),
            shards::differing_fields(m.metadata.get("inputs"), Some(&key))
        );
    }
    let out = output_path(dir);
    crate::core::io::write_tensors(&out, m.tensors, m.metadata)?;
    Ok(out)
}

/// A standard normal-ish value for (seed, i, j): the sum of four 16-bit uniforms of one
/// SplitMix64 hash, centred and scaled to unit variance (Irwin–Hall, n = 4). Counter-based:
/// any block of any size gives the same values.
fn noise(seed: u64, i: u64, j: u64) -> f32 {
    let mut z = seed
        .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(j.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = |k: u32| ((z >> (16 * k)) & 0xFFFF) as f32 + 0.5;
    // Each uniform on (0, 65536): mean 32768, variance 65536²/12; four of them: variance 65536²/3.
    (u(0) + u(1) + u(2) + u(3) - 4.0 * 32768.0) * (3.0f32.sqrt() / 65536.0)
}

/// Signal amplitude s_j of voxel j (s_j² log-spaced 0.01..1 by a low-discrepancy sequence).
fn amplitude(j: usize) -> f32 {
    let frac = (j as f64 * 0.618_033_988_749_895).fract();
    10f64.powf(-1.0 + frac) as f32
}

struct Generated<'a> {
    x: &'a Array2<f32>,
    n_train: usize,
    v: usize,
    seed: u64,
    seconds: f64,
}

impl VoxelBlocks for Generated<'_> {
    fn n_voxels(&self) -> usize {
        self.v
    }
    fn read(&mut self, j0: usize, j1: usize) -> Result<(Array2<f32>, Array2<f32>)> {
        let t = Instant::now();
        let p = self.x.ncols();
        let c = j1 - j0;
        let cols: Vec<(usize, usize, f32)> = (j0..j1)
            .map(|j| (j % p, (7 * j + 3) % p, amplitude(j)))
            .collect();
        let fill = |rows: std::ops::Range<usize>| {
            let mut y = Array2::<f32>::zeros((rows.len(), c));
            y.axis_iter_mut(Axis(0))
                .into_par_iter()
                .zip(rows.into_par_iter())
                .for_each(|(mut row, i)| {
                    let xi = self.x.row(i);
                    for (k, (t, &(a, b, s))) in row.iter_mut().zip(&cols).enumerate() {
                        let z = (xi[a] + xi[b]) * std::f32::consts::FRAC_1_SQRT_2;
                        *t = s * z + noise(self.seed, i as u64, (j0 + k) as u64);
                    }
                });
            y
        };
        let out = (fill(0..self.n_train), fill(self.n_train..self.x.nrows()));
        self.seconds += t.elapsed().as_secs_f64();
        Ok(out)
    }
}

/// Fits the generated problem `a` block by block. Errors: sizes that leave no training
/// rows or folds, a budget too small for one block (naming what uses it), invalid options,
/// more shards than blocks.
pub fn run(a: &WholeBrain) -> Result<WholeBrainReport> {
    if a.folds < 2 || a.p == 0 || a.v == 0 || a.block_voxels == 0 {
        bail!("need p, v, --block-voxels >= 1 and at least 2 folds");
    }
    if !(a.test_fraction > 0.0 && a.test_fraction < 0.5) {
        bail!("--test-fraction must be in (0, 0.5)");
    }
    let n_test = ((a.n as f64 * a.test_fraction).round() as usize).max(2);
    let n_train = a.n - n_test;
    if n_train < 2 * a.folds {
        bail!(
            "n = {} leaves {n_train} training rows for {} folds",
            a.n,
            a.folds
        );
    }
    let (b0, b1) = a.blocks()?;
    let budget = a.process_memory;
    let mut o = RidgeOptions {
        alphas: bench_alphas(a.alphas),
        backend: a.backend,
        device: a.device,
        dtype: a.dtype,
        tf32: a.tf32,
        partial_fractions: a.partial_fractions,
        folds: Folds::LeaveOneRunOut,
        progress: false,
        max_memory: Some(budget),
        keep_cv_scores: a.out.is_some(),
        ..RidgeOptions::default()
    };
    crate::ridge::check_options(&o)?;
    let machine = machine(&o)?;

    // X: standard normal features (the same counter-based generator, another stream).
    let mut x = Array2::<f32>::zeros((a.n, a.p));
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            for (k, t) in row.iter_mut().enumerate() {
                *t = noise(!a.seed, i as u64, k as u64);
            }
        });
    let x_train = x.slice(ndarray::s![..n_train, ..]);
    let x_test = x.slice(ndarray::s![n_train.., ..]);
    let groups: Vec<usize> = (0..n_train).map(|i| i * a.folds / n_train).collect();
    let design = Design {
        x_train,
        groups: &groups,
        x_test,
    };

    // Budget: what is resident now and the prepared X side are fixed; of the rest, the Y
    // block (training + test rows, and the fit's test predictions) and the ridge's chunks.
    let resident = crate::core::memory::current_rss().unwrap_or(0);
    let prep = prepared_bytes(&design, &o).unwrap_or(0);
    let outputs = a.v as u64 * 8 * (4 + a.alphas as u64);
    let block_bytes = 4 * (a.n + n_test) as u64 * a.block_voxels as u64;
    let used = resident + prep + outputs + block_bytes;
    if budget < used + block_bytes {
        bail!(
            "--process-memory {} is too small: resident {}, prepared features {}, outputs {}, one block of {} voxels {} (and as much again for the ridge's chunks)",
            human_bytes(budget),
            human_bytes(resident),
            human_bytes(prep),
            human_bytes(outputs),
            a.block_voxels,
            human_bytes(block_bytes)
        );
    }
    let left = prep + (budget - used);
    o.max_memory = Some(a.chunk_memory.map_or(left, |c| c.min(left)));
    let ranges: Vec<(usize, usize)> = (b0..b1)
        .map(|b| (b * a.block_voxels, ((b + 1) * a.block_voxels).min(a.v)))
        .collect();
    let (v0, v_fit) = (ranges[0].0, ranges.last().map_or(0, |r| r.1));
    let nv = v_fit - v0;
    let mut outs = Outputs {
        test_r: Array1::zeros(nv),
        test_r2: Array1::zeros(nv),
        best_alpha: Array1::zeros(nv),
        cv_scores: None,
    };
    let mut src = Generated {
        x: &x,
        n_train,
        v: a.v,
        seed: a.seed,
        seconds: 0.0,
    };
    let (mut r_sum, mut r_n) = (0.0f64, 0usize);
    let (mut exp_sum, mut blocks_done) = (0.0f64, 0usize);
    let t = Instant::now();
    let c0 = process_cpu_seconds();
    let bar = crate::core::progress::progress(ranges.len() as u64, "whole-brain blocks");
    let summary = fit_cv_blocks(&design, &mut src, &ranges, &o, &mut |j0, fit, _| {
        r_sum += fit.test_r.sum();
        r_n += fit.test_r.len();
        let (i0, i1) = (j0 - v0, j0 - v0 + fit.test_r.len());
        outs.test_r.slice_mut(s![i0..i1]).assign(&fit.test_r);
        outs.test_r2.slice_mut(s![i0..i1]).assign(&fit.test_r2);
        outs.best_alpha
            .slice_mut(s![i0..i1])
            .assign(&fit.best_alpha);
        if let Some(cv) = &fit.cv_scores {
            let all = outs
                .cv_scores
                .get_or_insert_with(|| Array2::zeros((cv.nrows(), nv)));
            all.slice_mut(s![.., i0..i1]).assign(cv);
        }
        for j in j0..j0 + fit.test_r.len() {
            let s = amplitude(j) as f64;
            exp_sum += s / (1.0 + s * s).sqrt();
        }
        blocks_done += 1;
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    let wall = t.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - c0;
    let mut written = None;
    if let Some(dir) = &a.out {
        let path = match a.shard {
            Some(sh) => part_path(dir, sh.k, sh.n),
            None => output_path(dir),
        };
        let mut meta = HashMap::from([("inputs".to_string(), a.inputs_key())]);
        if let Some(sh) = a.shard {
            meta.extend(sh.metadata(v0, v_fit, a.v));
        }
        let mut tensors = vec![
            ("test_r", Tensor::F64(outs.test_r.into_dyn())),
            ("test_r2", Tensor::F64(outs.test_r2.into_dyn())),
            ("best_alpha", Tensor::F64(outs.best_alpha.into_dyn())),
            (
                "alphas",
                Tensor::F64(Array1::from_vec(summary.alphas.clone()).into_dyn()),
            ),
        ];
        if let Some(cv) = outs.cv_scores {
            tensors.push(("cv_scores", Tensor::F64(cv.into_dyn())));
        }
        crate::core::io::write_tensors(&path, tensors, meta)?;
        written = Some(path);
    }
    Ok(WholeBrainReport {
        machine,
        n_train,
        n_test,
        y_bytes: 4 * a.n as u64 * a.v as u64,
        v0,
        v_fit,
        blocks: blocks_done,
        wall_s: wall,
        generation_s: src.seconds,
        cpu_s: cpu,
        flops: summary.flops,
        peak_rss: crate::core::memory::peak_rss(),
        mean_r: r_sum / r_n.max(1) as f64,
        expected_r: exp_sum / r_n.max(1) as f64,
        written,
    })
}

/// The per-voxel results of the voxels fitted (kept only with `--out`: CV scores).
struct Outputs {
    test_r: Array1<f64>,
    test_r2: Array1<f64>,
    best_alpha: Array1<f64>,
    /// alphas × voxels.
    cv_scores: Option<Array2<f64>>,
}
