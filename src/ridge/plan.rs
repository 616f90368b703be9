//! The pure, scalar decisions of a fit, made once for both backends (`cpu.rs`, `torch.rs`):
//! folds and the training rows of each, the sorted alphas, the best alpha of each voxel, the
//! fold score from sufficient statistics, the numerical rank of an eigenvalue set, the quad
//! rule (partial fractions or direct products, and how the former is checked), the memory
//! model that sizes voxel chunks, and the FLOP counts.
use crate::core::memory::{available_ram, human_bytes};
use crate::ridge::{CvScore, Dtype, Folds, RidgeDevice, RidgeOptions};
use anyhow::{bail, Result};
use ndarray::ArrayView2;

/// Everything a backend needs besides the data: the candidate alphas (ascending, distinct)
/// and the validation rows of each fold.
pub(crate) struct Plan {
    pub alphas: Vec<f64>,
    pub folds: Vec<Vec<usize>>,
}

impl Plan {
    /// The plan of a problem whose training rows have run ids `groups`.
    pub(crate) fn new(groups: &[usize], o: &RidgeOptions) -> Self {
        Plan {
            alphas: sorted_alphas(&o.alphas),
            folds: fold_rows(groups, o.folds),
        }
    }

    /// Training rows of fold `fi` (all of `0..n` but its validation rows), ascending.
    pub(crate) fn train_rows(&self, fi: usize, n: usize) -> Vec<usize> {
        let mut in_fold = vec![false; n];
        self.folds[fi].iter().for_each(|&r| in_fold[r] = true);
        (0..n).filter(|&r| !in_fold[r]).collect()
    }
}

/// Distinct run ids, ascending.
pub(crate) fn sorted_runs(groups: &[usize]) -> Vec<usize> {
    let mut runs = groups.to_vec();
    runs.sort_unstable();
    runs.dedup();
    runs
}

/// The validation rows of each fold (every training row is in exactly one fold).
pub fn fold_rows(groups: &[usize], folds: Folds) -> Vec<Vec<usize>> {
    let runs = sorted_runs(groups);
    let k = match folds {
        Folds::LeaveOneRunOut => runs.len(),
        Folds::RunGroups(k) => k.min(runs.len()),
    };
    // Run i (in sorted order) goes to fold floor(i·k / n_runs): consecutive, balanced groups.
    let fold_of = |run: usize| -> usize {
        let i = runs.binary_search(&run).expect("run id listed");
        i * k / runs.len()
    };
    let mut out = vec![Vec::new(); k];
    for (row, &g) in groups.iter().enumerate() {
        out[fold_of(g)].push(row);
    }
    out
}

/// Sorted, deduplicated alphas.
pub(crate) fn sorted_alphas(alphas: &[f64]) -> Vec<f64> {
    let mut a = alphas.to_vec();
    a.sort_by(f64::total_cmp);
    a.dedup();
    a
}

/// Index of the best alpha of each voxel (columns of `scores`, alphas ascending). Scanning
/// from the largest alpha down with a strict comparison sends exact ties to the larger alpha.
pub fn best_alpha_index(scores: ArrayView2<f64>) -> Vec<usize> {
    let na = scores.nrows();
    (0..scores.ncols())
        .map(|j| {
            let mut best = na - 1;
            for k in (0..na).rev() {
                if scores[[k, j]] > scores[[best, j]] {
                    best = k;
                }
            }
            best
        })
        .collect()
}

/// Score of a voxel from the sufficient statistics of its validation prediction.
/// `lin` = <P_c, Y> (P centred on the validation mean), `q` = ||P_c||², `yy` = ||Y_c||²,
/// `m` = mean offset of P from the training target mean ν, `dy` = ȳ_val - ν, `n` rows.
#[inline]
pub(crate) fn fold_score(kind: CvScore, lin: f64, q: f64, yy: f64, m: f64, dy: f64, n: f64) -> f64 {
    match kind {
        CvScore::R => {
            // A constant prediction or a constant voxel scores 0 (as in stats::pearson_columns).
            if q <= 0.0 || yy <= f64::EPSILON * n {
                0.0
            } else {
                lin / (q * yy).sqrt()
            }
        }
        CvScore::R2 => {
            if yy <= f64::EPSILON {
                return 0.0;
            }
            // SSE = ||Y - ν - P||² with P = P_c + m: expands into the statistics above.
            let ee = yy + n * dy * dy;
            let sse = ee - 2.0 * (lin + n * m * dy) + q + n * m * m;
            1.0 - sse / yy
        }
    }
}

/// Eigenvalues kept (indices into `s`, in order): above the usual numerical-rank tolerance
/// `max(s) · dim · 10ε`, and positive.
pub(crate) fn keep_indices(s: &[f64], dim: usize) -> Vec<usize> {
    let smax = s.iter().cloned().fold(0.0, f64::max);
    let tol = smax * dim as f64 * f64::EPSILON * 10.0;
    (0..s.len()).filter(|&i| s[i] > tol && s[i] > 0.0).collect()
}

/// Largest accepted relative error of q by partial fractions (f32 products are ~1e-6).
pub(crate) const FRACTIONS_TOL: f64 = 1e-7;

/// Voxels on which partial fractions are checked against the direct products (the first of
/// the first chunk of each fold). 32, the cpu backend's number: the torch backend checked 64,
/// but moving the cpu to 64 could send a fold to the direct products that passed before and
/// so change cpu results, which must stay bit-identical.
pub(crate) const CHECK_VOXELS: usize = 32;

/// How a fold computes q = ||P_c||² for every alpha and voxel (see `cpu::Quad`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum QuadRule {
    /// One product F·D·B per alpha (F a factor of the validation Gram).
    Direct,
    /// One f64 product for all alphas by partial fractions, about the reference eigenvalue
    /// `s_ref` (the middle of the spectrum).
    Fractions { s_ref: f64 },
}

/// The quad rule of a fold with `n_f` validation rows and eigenvalues `s` (ascending, k of
/// them): partial fractions only for f32 work, when allowed, when cheaper than one product
/// per alpha (k + 4·n_alphas < n_alphas·min(n_f, k)) and when the eigenvalues are separated
/// enough that their rounding stays under [`FRACTIONS_TOL`].
pub(crate) fn choose_quad(
    n_f: usize,
    s: &[f64],
    alphas: &[f64],
    dtype: Dtype,
    allowed: bool,
) -> QuadRule {
    let k = s.len();
    let na = alphas.len();
    let cheaper = k + 4 * na < na * n_f.min(k);
    if !allowed || dtype == Dtype::F64 || !cheaper || k < 2 {
        return QuadRule::Direct;
    }
    let gap = s
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min);
    let (smin, smax) = (s[0], s[k - 1]);
    let amin = alphas.iter().cloned().fold(f64::INFINITY, f64::min);
    // Rounding in T·B, relative to q, grows like spread/gap · (s_max+α)/(s_min+α).
    let est = 1e-15 * (smax - smin) / gap * (smax + amin) / (smin + amin);
    if !(gap > 0.0 && est <= FRACTIONS_TOL) {
        return QuadRule::Direct;
    }
    QuadRule::Fractions {
        s_ref: 0.5 * (smin + smax),
    }
}

/// Worst error of q by partial fractions against the exact q (both alphas × voxels),
/// relative to each voxel's largest exact q; voxels whose exact q is all ~0 are skipped.
pub(crate) fn fractions_error(q: ArrayView2<f64>, exact: ArrayView2<f64>) -> f64 {
    let mut worst = 0.0f64;
    for j in 0..exact.ncols() {
        let scale = exact.column(j).iter().cloned().fold(0.0, f64::max);
        if scale > 1e-300 {
            for a in 0..exact.nrows() {
                worst = worst.max((q[[a, j]] - exact[[a, j]]).abs() / scale);
            }
        }
    }
    worst
}

/// Bytes of memory the voxel chunks may use: `max_memory`, else 16 GiB on a GPU or half the
/// available RAM (4 GiB when /proc/meminfo cannot be read).
pub(crate) fn memory_budget(o: &RidgeOptions) -> u64 {
    if let Some(m) = o.max_memory {
        return m;
    }
    match o.device {
        RidgeDevice::Cuda(_) => 16 << 30,
        RidgeDevice::Cpu => available_ram().map(|a| a / 2).unwrap_or(4 << 30),
    }
}

/// Shapes that decide the voxel chunk size; shared by both backends so they chunk alike.
pub(crate) struct ChunkShape {
    pub n: usize,
    pub p: usize,
    /// Largest basis size over folds and the refit.
    pub k: usize,
    /// Basis size of the refit.
    pub k_all: usize,
    /// Largest validation-factor row count over folds.
    pub r: usize,
    pub n_test: usize,
    pub n_folds: usize,
    pub n_alphas: usize,
    /// Bytes per element of the work dtype.
    pub elem: usize,
}

/// Smallest voxel chunk a budget must allow (or all voxels when fewer).
const MIN_CHUNK: usize = 64;

impl ChunkShape {
    /// Bytes held by the prepared X side whatever the chunk: in the work dtype, the
    /// validation rows of X (n·p), per fold the basis and its factor (k(p + k)), the refit
    /// basis and test projection (k_all(p + n_test)) and the alpha scalings (2·n_alphas·k);
    /// in f64 the Grams ((folds + 2)·p²). One formula for both backends, the cpu backend's:
    /// the torch backend's also counted f64 copies of X and test X (p(n + n_test)), but
    /// those live only while the X side is prepared, before any chunk is allocated, and
    /// it left out the alpha scalings that both backends hold per fold. Keeping the cpu
    /// formula also keeps the cpu chunks, hence its results, bit-identical.
    pub(crate) fn fixed_bytes(&self) -> u64 {
        let (e, n, p, k) = (self.elem, self.n, self.p, self.k);
        (e * (n * p
            + self.n_folds * k * (p + k)
            + self.k_all * (p + self.n_test)
            + 2 * self.n_alphas * k)
            + 8 * p * p * (self.n_folds + 2)) as u64
    }

    /// Bytes per voxel of a chunk: Y rows and their per-fold copies (2n), per-fold X'Y
    /// (folds·p), their sum and two centred copies (3p), B, C, C∘B (3k), the per-alpha
    /// validation product (r), weights (p), test predictions (n_test), plus f64 score
    /// accumulators.
    pub(crate) fn per_voxel_bytes(&self) -> u64 {
        let e = self.elem as u64;
        e * (2 * self.n + (self.n_folds + 4) * self.p + 3 * self.k + self.r + self.n_test) as u64
            + 8 * (3 * self.n_alphas + 4 * self.n_folds) as u64
    }
}

/// Voxels per chunk such that the chunk's buffers fit `budget` beside the fixed bytes.
/// Errors: a budget too small for [`MIN_CHUNK`] voxels, naming what it needs.
pub(crate) fn chunk_voxels(s: &ChunkShape, budget: u64, v: usize) -> Result<usize> {
    let fixed = s.fixed_bytes();
    let per_voxel = s.per_voxel_bytes();
    let min_chunk = v.min(MIN_CHUNK) as u64;
    if budget < fixed + min_chunk * per_voxel {
        bail!(
            "memory budget {} is too small: this problem needs at least {} (raise --max-memory)",
            human_bytes(budget),
            human_bytes(fixed + min_chunk * per_voxel)
        );
    }
    Ok((((budget - fixed) / per_voxel) as usize).clamp(1, v))
}

/// Eigendecomposition FLOP estimate (tridiagonal reduction 4/3·p³ plus eigenvector
/// back-transformation ~2·p³, rounded up), used for reporting only.
pub(crate) fn eigh_flops(p: usize) -> f64 {
    4.0 * (p as f64).powi(3)
}

/// FLOPs of an (m × k)·(k × n) matrix product.
pub(crate) fn gemm_flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quad_rule_needs_separated_eigenvalues_f32_and_savings() {
        let s: Vec<f64> = (0..12).map(|i| 5.0 + 3.0 * i as f64).collect();
        let alphas = [0.01, 1.0, 30.0, 1e3, 1e6];
        assert!(matches!(
            choose_quad(40, &s, &alphas, Dtype::F32, true),
            QuadRule::Fractions { .. }
        ));
        assert_eq!(
            choose_quad(40, &s, &alphas, Dtype::F64, true),
            QuadRule::Direct
        );
        assert_eq!(
            choose_quad(40, &s, &alphas, Dtype::F32, false),
            QuadRule::Direct
        );
        // Fewer validation rows than alphas make the direct products cheaper.
        assert_eq!(
            choose_quad(2, &s, &alphas, Dtype::F32, true),
            QuadRule::Direct
        );
        let repeated = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(
            choose_quad(30, &repeated, &alphas, Dtype::F32, true),
            QuadRule::Direct
        );
    }

    #[test]
    fn chunks_fit_the_budget_or_say_what_they_need() {
        let s = ChunkShape {
            n: 1000,
            p: 64,
            k: 64,
            k_all: 64,
            r: 64,
            n_test: 100,
            n_folds: 5,
            n_alphas: 10,
            elem: 4,
        };
        let budget = s.fixed_bytes() + 100 * s.per_voxel_bytes();
        assert_eq!(chunk_voxels(&s, budget, 10_000).unwrap(), 100);
        assert_eq!(chunk_voxels(&s, budget, 50).unwrap(), 50);
        let e = chunk_voxels(&s, s.fixed_bytes(), 10_000).unwrap_err();
        assert!(format!("{e}").contains("--max-memory"));
    }

    #[test]
    fn folds_group_consecutive_runs_and_train_rows_complete_them() {
        let groups = [3, 3, 1, 1, 2, 2, 4, 4];
        let f = fold_rows(&groups, Folds::RunGroups(2));
        assert_eq!(f, vec![vec![2, 3, 4, 5], vec![0, 1, 6, 7]]);
        let plan = Plan {
            alphas: sorted_alphas(&[10.0, 1.0, 10.0]),
            folds: f,
        };
        assert_eq!(plan.alphas, vec![1.0, 10.0]);
        assert_eq!(plan.train_rows(0, 8), vec![0, 1, 6, 7]);
    }
}
