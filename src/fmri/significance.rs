//! Per-voxel significance of the held-out r by block permutation, without refitting.
//!
//! The ridge's test predictions are fixed, so the null distribution of a voxel's test r is
//! that of the Pearson r between its prediction, re-ordered, and its measured BOLD. The
//! re-ordering must keep the BOLD's (and the prediction's) autocorrelation, or the null is
//! too narrow and the p-values too small (shuffling single TRs of AR(1) noise inflates the
//! false-positive rate several-fold; `tests/significance.rs` shows both). We use **block
//! shuffles**: each test run is cut into consecutive blocks of `block` TRs, the blocks of all
//! test runs are put in a random order, and the prediction's blocks are laid against the
//! BOLD's in that order (the last `n mod block` TRs of each run stay in place). Block shuffles
//! rather than circular shifts because a 200-TR run has fewer than 200 distinct shifts, too
//! few for 1,000 permutations and for a family-wise (max-statistic) null, while 20 blocks
//! give 20! orders; within a block the lags up to `block - 1` are exact.
//!
//! The default block of 10 TRs follows the blockwise permutation test of Huth et al. 2016
//! (Nature 532:453, "Natural speech reveals the semantic maps that tile human cerebral
//! cortex", methods: blocks of 10 TRs) and de Heer et al. 2017 (J. Neurosci. 37:6539), whose
//! BOLD autocorrelation is negligible beyond ~10 TRs (15-20 s).
//!
//! The same permutations are used for every voxel (drawn once from `seed`, independent of
//! which voxels a block or shard holds), so that the maximum of the null r over voxels gives
//! the family-wise null of Westfall & Young (1993) / Nichols & Holmes (2002): FWE p of a voxel
//! = share of permutations whose maximum null r (over all voxels) reaches its r. p-values are
//! one-sided (r > 0 is what an encoding model claims): p = (1 + #{null r ≥ r}) / (1 + P)
//! (Phipson & Smyth 2010), never 0. q-values: Benjamini & Hochberg (1995) step-up,
//! monotone, over all voxels of the subject.
//!
//! Cost: per voxel, the block cross-products B[i, j] = Σ_s p[block i + s] y[block j + s]
//! (n_b² · block multiply-adds), then n_b adds per permutation; memory per thread is
//! O(n_b² + P) beyond the inputs, so the null fits within any `--max-memory` that holds the
//! predictions. Long series with many blocks (n_b > 512) use the direct sum (T per
//! permutation and voxel) instead.
use anyhow::{bail, Result};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

/// How the null is drawn (`encode --permutations P --perm-block L --perm-seed S`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PermOptions {
    /// Number of permutations (0: no significance is computed).
    pub n_perm: usize,
    /// Block length in TRs (1 = i.i.d. shuffles of single TRs, which ignore autocorrelation).
    pub block: usize,
    pub seed: u64,
    /// Whether the user asked for the null (`--permutations`/`--perm-block` given): then test
    /// runs too short for it are an error. Otherwise (the default) such runs skip the
    /// statistics with a warning, so a study on short test runs is not stopped by a default.
    #[serde(skip)]
    pub required: bool,
}

impl Default for PermOptions {
    /// 1,000 permutations of 10-TR blocks, seed 0, not required.
    fn default() -> Self {
        Self {
            n_perm: 1000,
            block: 10,
            seed: 0,
            required: false,
        }
    }
}

/// Minimum number of full blocks in the test runs for a permutation null (fewer give too few
/// distinct orders: 3 blocks have 6).
pub const MIN_BLOCKS: usize = 4;

/// Whether the test runs of `run_lengths` TRs hold at least [`MIN_BLOCKS`] full blocks of
/// `o.block` TRs, i.e. whether [`Permutations::new`] (and the block bootstrap) can run.
pub fn applicable(run_lengths: &[usize], o: &PermOptions) -> bool {
    o.block > 0 && run_lengths.iter().map(|&n| n / o.block).sum::<usize>() >= MIN_BLOCKS
}

/// The permutations of one subject's test rows: the blocks (start row, all `block` long) and,
/// per permutation, the source block laid at each block position.
#[derive(Debug, Clone)]
pub struct Permutations {
    pub block: usize,
    /// Start row of each full block, over the concatenated test runs.
    pub starts: Vec<usize>,
    /// Rows that stay in place (each run's last `n mod block` rows).
    pub fixed: Vec<usize>,
    /// [permutation][position] = source block.
    pub orders: Vec<Vec<u32>>,
    pub n_rows: usize,
}

impl Permutations {
    /// Draws `o.n_perm` block orders for test runs of `run_lengths` rows (in the order the
    /// test rows are concatenated). Errors when the runs hold fewer than 4 full blocks (too
    /// few orders for a null; use a shorter `--perm-block`).
    pub fn new(run_lengths: &[usize], o: &PermOptions) -> Result<Self> {
        if o.block == 0 {
            bail!("--perm-block must be at least 1 TR");
        }
        let (mut starts, mut fixed, mut off) = (vec![], vec![], 0usize);
        for &n in run_lengths {
            let k = n / o.block;
            starts.extend((0..k).map(|i| off + i * o.block));
            fixed.extend(off + k * o.block..off + n);
            off += n;
        }
        if starts.len() < MIN_BLOCKS {
            bail!(
                "significance: the test runs ({} TRs in runs of {:?}) hold {} block(s) of {} TRs; \
                 a permutation null needs at least 4 (use a shorter --perm-block)",
                off,
                run_lengths,
                starts.len(),
                o.block
            );
        }
        let nb = starts.len();
        if let Some(w) = few_orders_warning(nb, o.n_perm) {
            eprintln!("warning: {w}");
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed);
        let orders = (0..o.n_perm)
            .map(|_| {
                let mut v: Vec<u32> = (0..nb as u32).collect();
                v.shuffle(&mut rng);
                v
            })
            .collect();
        Ok(Self {
            block: o.block,
            starts,
            fixed,
            orders,
            n_rows: off,
        })
    }

    pub fn n_perm(&self) -> usize {
        self.orders.len()
    }
}

/// Number of distinct orders of `n_blocks` blocks (n_blocks!), None above u64.
pub fn distinct_orders(n_blocks: usize) -> Option<u64> {
    (1..=n_blocks as u64).try_fold(1u64, |a, k| a.checked_mul(k))
}

/// A warning when `n_perm` permutations exceed the distinct block orders: orders then repeat,
/// and no p can fall much below 1 / orders whatever `--permutations` says.
pub fn few_orders_warning(n_blocks: usize, n_perm: usize) -> Option<String> {
    match distinct_orders(n_blocks) {
        Some(k) if k < n_perm as u64 => Some(format!(
            "significance: {n_blocks} blocks have only {k} distinct orders, fewer than the \
             {n_perm} permutations; orders repeat and the smallest attainable p is about 1/{k} \
             (use a shorter --perm-block or longer test runs)"
        )),
        _ => None,
    }
}

/// The null of a set of voxels: observed r, per voxel the count of permutations whose r
/// reaches it, per permutation the largest null r over these voxels, and per voxel its
/// [`top_k`] largest null r, [k, voxels] in descending order (what [`q05_thresholds`] reads).
#[derive(Debug, Clone)]
pub struct NullCounts {
    pub r: Array1<f64>,
    pub exceed: Array1<u32>,
    pub max_null: Array1<f64>,
    pub top_null: Array2<f32>,
}

/// How many of a voxel's largest null r are kept: ⌊0.05 (P + 1)⌋ (at least 1), enough to
/// know the r at which its p reaches any BH cut-off p* ≤ 0.05.
pub fn top_k(n_perm: usize) -> usize {
    ((0.05 * (n_perm + 1) as f64 + 1e-9).floor() as usize).max(1)
}

/// Per voxel, the r it needs to reach BH q < 0.05 given the other voxels' p: with p* the
/// largest p among the voxels at q < 0.05 (the BH cut-off), p = (1 + #{null ≥ r}) / (1 + P)
/// ≤ p* needs #{null ≥ r} ≤ c = (1 + P) p* − 1, i.e. r above the voxel's (c + 1)-th largest
/// null r; a voxel is significant iff its r exceeds the returned value. +∞ for every voxel
/// when none is at q < 0.05. Used by the block bootstrap to count the voxels significant in
/// each resample with the thresholds of the original null (`fmri::bootstrap`).
pub fn q05_thresholds(c: &NullCounts, q: &Array1<f64>, n_perm: usize) -> Array1<f64> {
    q05_thresholds_from(&p_values(&c.exceed, n_perm), q, c.top_null.view(), n_perm)
}

/// [`q05_thresholds`] from the voxels' p, q and largest null r [k, voxels] (what a shard
/// merge holds: the parts' p and `null_top_r`, the q recomputed over all voxels).
pub fn q05_thresholds_from(
    p: &Array1<f64>,
    q: &Array1<f64>,
    top_null: ndarray::ArrayView2<f32>,
    n_perm: usize,
) -> Array1<f64> {
    let p_star = p
        .iter()
        .zip(q)
        .filter(|(_, &q)| q < 0.05)
        .map(|(&p, _)| p)
        .fold(f64::NEG_INFINITY, f64::max);
    if !p_star.is_finite() {
        return Array1::from_elem(p.len(), f64::INFINITY);
    }
    let cnt = ((1 + n_perm) as f64 * p_star - 1.0).round().max(0.0) as usize;
    let row = cnt.min(top_null.nrows() - 1);
    top_null.row(row).mapv(|x| x as f64 + 1e-12)
}

/// Observed and permuted r of each voxel (column) of `pred` and `y` [test rows, voxels].
/// Errors when shapes differ from each other or from the permutations' rows.
pub fn block_null(
    pred: ArrayView2<f32>,
    y: ArrayView2<f32>,
    perms: &Permutations,
) -> Result<NullCounts> {
    if pred.dim() != y.dim() {
        bail!(
            "significance: predictions {:?} and BOLD {:?} differ in shape",
            pred.dim(),
            y.dim()
        );
    }
    if pred.nrows() != perms.n_rows {
        bail!(
            "significance: {} test rows, the permutations were drawn for {}",
            pred.nrows(),
            perms.n_rows
        );
    }
    let np = perms.n_perm();
    let v = pred.ncols();
    let cols: Vec<usize> = (0..v).collect();
    // Chunks of voxels in parallel, each with its own per-permutation maxima.
    let k = top_k(np);
    let chunks: Vec<(Vec<(f64, u32, Vec<f32>)>, Vec<f64>)> = cols
        .par_chunks(64.max(v / 64 + 1))
        .map(|chunk| {
            let mut maxes = vec![f64::NEG_INFINITY; np];
            let mut scratch = Scratch::default();
            let out = chunk
                .iter()
                .map(|&j| {
                    voxel_null(
                        pred.index_axis(Axis(1), j),
                        y.index_axis(Axis(1), j),
                        perms,
                        &mut maxes,
                        &mut scratch,
                        k,
                    )
                })
                .collect();
            (out, maxes)
        })
        .collect();
    let mut max_null = Array1::from_elem(np, f64::NEG_INFINITY);
    let (mut r, mut exceed) = (Array1::zeros(v), Array1::zeros(v));
    let mut top_null = Array2::<f32>::zeros((k, v));
    let mut j = 0;
    for (out, m) in chunks {
        for (rj, cj, tj) in out {
            r[j] = rj;
            exceed[j] = cj;
            top_null.column_mut(j).assign(&Array1::from(tj));
            j += 1;
        }
        for (a, b) in max_null.iter_mut().zip(m) {
            *a = a.max(b);
        }
    }
    Ok(NullCounts {
        r,
        exceed,
        max_null,
        top_null,
    })
}

#[derive(Default)]
struct Scratch {
    p: Vec<f64>,
    y: Vec<f64>,
    b: Vec<f64>,
    top: Vec<f64>,
}

/// Keeps `r` among the `k` largest of `top` (descending).
#[inline]
fn push_top(top: &mut Vec<f64>, k: usize, r: f64) {
    if top.len() == k && r <= top[k - 1] {
        return;
    }
    let at = top.partition_point(|&x| x >= r);
    top.insert(at, r);
    top.truncate(k);
}

/// One voxel: (observed r, #permutations with null r ≥ r, its `k` largest null r in
/// descending order); updates the per-permutation maxima.
fn voxel_null(
    p: ndarray::ArrayView1<f32>,
    y: ndarray::ArrayView1<f32>,
    perms: &Permutations,
    maxes: &mut [f64],
    s: &mut Scratch,
    k: usize,
) -> (f64, u32, Vec<f32>) {
    let n = p.len() as f64;
    let mp = p.iter().map(|&v| v as f64).sum::<f64>() / n;
    let my = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    s.p.clear();
    s.p.extend(p.iter().map(|&v| v as f64 - mp));
    s.y.clear();
    s.y.extend(y.iter().map(|&v| v as f64 - my));
    let (sxx, syy): (f64, f64) = (
        s.p.iter().map(|v| v * v).sum(),
        s.y.iter().map(|v| v * v).sum(),
    );
    // Constant on either side: r = 0 and every null r is 0 (p = 1), as `pearson_columns`.
    if sxx <= f64::EPSILON * n || syy <= f64::EPSILON * n {
        for m in maxes.iter_mut() {
            *m = m.max(0.0);
        }
        return (0.0, maxes.len() as u32, vec![0.0; k]);
    }
    let norm = 1.0 / (sxx * syy).sqrt();
    let dot = |a: usize, b: usize, len: usize| -> f64 {
        s.p[a..a + len]
            .iter()
            .zip(&s.y[b..b + len])
            .map(|(x, z)| x * z)
            .sum()
    };
    let l = perms.block;
    let nb = perms.starts.len();
    let fixed: f64 = perms.fixed.iter().map(|&t| s.p[t] * s.y[t]).sum();
    let r_obs = (fixed + perms.starts.iter().map(|&a| dot(a, a, l)).sum::<f64>()) * norm;
    // Ties with the observed r (the identity order, or equal sums) count as reaching it.
    let thr = r_obs - 1e-12;
    let mut count = 0u32;
    let mut top = std::mem::take(&mut s.top);
    top.clear();
    if nb <= 512 {
        // B[i * nb + j]: prediction block i against BOLD block j.
        let mut b = std::mem::take(&mut s.b);
        b.clear();
        for &si in &perms.starts {
            for &sj in &perms.starts {
                b.push(dot(si, sj, l));
            }
        }
        for (i_perm, ord) in perms.orders.iter().enumerate() {
            let mut acc = fixed;
            for (j, &i) in ord.iter().enumerate() {
                acc += b[i as usize * nb + j];
            }
            let r = acc * norm;
            count += (r >= thr) as u32;
            maxes[i_perm] = maxes[i_perm].max(r);
            push_top(&mut top, k, r);
        }
        s.b = b;
    } else {
        for (i_perm, ord) in perms.orders.iter().enumerate() {
            let mut acc = fixed;
            for (j, &i) in ord.iter().enumerate() {
                acc += dot(perms.starts[i as usize], perms.starts[j], l);
            }
            let r = acc * norm;
            count += (r >= thr) as u32;
            maxes[i_perm] = maxes[i_perm].max(r);
            push_top(&mut top, k, r);
        }
    }
    let mut out: Vec<f32> = top.iter().map(|&x| x as f32).collect();
    // Fewer permutations than k (P < 20): the missing ranks are below every null r.
    out.resize(k, f32::NEG_INFINITY);
    s.top = top;
    (r_obs, count, out)
}

/// p = (1 + exceed) / (1 + P) per voxel.
pub fn p_values(exceed: &Array1<u32>, n_perm: usize) -> Array1<f64> {
    exceed.mapv(|c| (1.0 + c as f64) / (1.0 + n_perm as f64))
}

/// Benjamini–Hochberg q-values (step-up, made monotone, capped at 1) of `p`.
pub fn bh_q(p: &Array1<f64>) -> Array1<f64> {
    let m = p.len();
    let mut idx: Vec<usize> = (0..m).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = Array1::zeros(m);
    let mut run = 1.0f64;
    for (rank, &i) in idx.iter().enumerate().rev() {
        run = run.min(p[i] * m as f64 / (rank + 1) as f64);
        q[i] = run.min(1.0);
    }
    q
}

/// FWE-corrected p per voxel: (1 + #{permutations whose max null r ≥ r}) / (1 + P).
pub fn fwe_p(r: &Array1<f64>, max_null: &Array1<f64>) -> Array1<f64> {
    let mut sorted = max_null.to_vec();
    sorted.sort_by(f64::total_cmp);
    let np = sorted.len();
    r.mapv(|x| {
        // Count of maxima ≥ x - 1e-12 by binary search on the sorted maxima.
        let below = sorted.partition_point(|&m| m < x - 1e-12);
        (1.0 + (np - below) as f64) / (1.0 + np as f64)
    })
}

/// The statistics written beside `test_r`: `test_p`, `test_q`, `test_fwe_p` per voxel and
/// `null_max_r` per permutation (what a shard merge needs to recompute the FWE p).
#[derive(Debug, Clone)]
pub struct Significance {
    pub p: Array1<f64>,
    pub q: Array1<f64>,
    pub fwe_p: Array1<f64>,
    pub null_max_r: Array1<f64>,
}

impl Significance {
    /// From the counts of all the subject's voxels (or a shard's: its q and FWE p are then
    /// over the shard until the merge recomputes them).
    pub fn from_counts(c: &NullCounts, n_perm: usize) -> Self {
        let p = p_values(&c.exceed, n_perm);
        Self {
            q: bh_q(&p),
            fwe_p: fwe_p(&c.r, &c.max_null),
            p,
            null_max_r: c.max_null.clone(),
        }
    }

    /// The whole null in one call: draws the permutations for `run_lengths` and tests every
    /// column of `pred` against `y` [test rows, voxels].
    pub fn compute(
        pred: ArrayView2<f32>,
        y: ArrayView2<f32>,
        run_lengths: &[usize],
        o: &PermOptions,
    ) -> Result<Self> {
        let perms = Permutations::new(run_lengths, o)?;
        Ok(Self::from_counts(&block_null(pred, y, &perms)?, o.n_perm))
    }

    /// The tensors of ridge.safetensors.
    pub fn tensors(self) -> Vec<(&'static str, crate::core::io::Tensor)> {
        use crate::core::io::Tensor;
        vec![
            ("test_p", Tensor::F64(self.p.into_dyn())),
            ("test_q", Tensor::F64(self.q.into_dyn())),
            ("test_fwe_p", Tensor::F64(self.fwe_p.into_dyn())),
            ("null_max_r", Tensor::F64(self.null_max_r.into_dyn())),
        ]
    }
}

/// The metadata that records how the null was drawn: `permutations`, `perm_block`, `perm_seed`.
pub fn metadata(o: &PermOptions) -> [(String, String); 3] {
    [
        ("permutations".to_string(), o.n_perm.to_string()),
        ("perm_block".to_string(), o.block.to_string()),
        ("perm_seed".to_string(), o.seed.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_applies_only_with_four_full_blocks() {
        let o = PermOptions::default();
        assert!(!applicable(&[20], &o), "2 blocks of 10 TRs");
        assert!(!applicable(&[39], &o), "3 full blocks");
        assert!(applicable(&[40], &o));
        assert!(applicable(&[20, 20], &o), "blocks of every test run count");
        assert!(!applicable(&[19, 19], &o), "partial blocks do not");
        assert!(Permutations::new(
            &[20],
            &PermOptions {
                required: true,
                ..o
            }
        )
        .is_err());
    }

    #[test]
    fn few_block_orders_are_warned_about() {
        assert_eq!(distinct_orders(4), Some(24));
        assert_eq!(distinct_orders(20), Some(2_432_902_008_176_640_000));
        assert_eq!(distinct_orders(21), None);
        let w = few_orders_warning(5, 1000).unwrap();
        assert!(
            w.contains("120 distinct orders") && w.contains("1/120"),
            "{w}"
        );
        assert!(few_orders_warning(7, 1000).is_none(), "7! = 5040 orders");
        assert!(few_orders_warning(30, 1000).is_none());
    }

    #[test]
    fn bh_matches_hand_computation() {
        // Sorted p 0.01, 0.03, 0.04, 0.5 (m = 4): p m / k = 0.04, 0.06, 0.0533, 0.5; made
        // monotone from the top: 0.04, 0.0533, 0.0533, 0.5.
        let q = bh_q(&Array1::from(vec![0.01, 0.04, 0.03, 0.5]));
        let want = [0.04, 0.16 / 3.0, 0.16 / 3.0, 0.5];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn fwe_counts_maxima() {
        let max = Array1::from(vec![0.1, 0.2, 0.3, 0.4]);
        let f = fwe_p(&Array1::from(vec![0.35, 0.05, 0.5]), &max);
        assert_eq!(f.to_vec(), vec![2.0 / 5.0, 5.0 / 5.0, 1.0 / 5.0]);
    }
}
