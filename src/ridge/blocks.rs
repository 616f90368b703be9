//! The ridge fit with Y given block by block: the features side (X, small) is prepared once
//! (Grams, fold eigendecompositions, refit basis) and each voxel block is then fitted and
//! handed to the caller, so Y never needs to be in memory whole (streamed from a voxel-major
//! store, `dataset::voxcache`, or generated on the fly by `bench-whole-brain`).
//!
//! Voxels are independent in the fit (see `mod.rs`), so the per-voxel results of a blocked
//! fit are those of [`crate::ridge::fit_cv`] on all voxels at once (the cpu backend runs the very
//! same arithmetic on the same voxel chunks when blocks are multiples of its chunk size, and
//! agrees to rounding otherwise). Both backends prepare the X side once (on the torch
//! backend it stays on the device).
use crate::ridge::{
    fold_rows, validate, Backend, Plan, RawFit, RidgeFit, RidgeOptions, RidgeProblem,
};
use anyhow::{Context, Result};
use ndarray::{Array2, ArrayView2};

/// The features side of a ridge problem (see [`RidgeProblem`], whose Y is given by blocks).
pub struct Design<'a> {
    /// Training rows × features.
    pub x_train: ArrayView2<'a, f32>,
    /// Run id of each training row (CV leaves one run, or one group of runs, out).
    pub groups: &'a [usize],
    /// Test rows × features.
    pub x_test: ArrayView2<'a, f32>,
}

/// Where the voxel data come from, one contiguous block of voxels at a time.
pub trait VoxelBlocks {
    /// Total number of voxels (columns of Y).
    fn n_voxels(&self) -> usize;
    /// Y of voxels `j0..j1`: (training rows × (j1 - j0), test rows × (j1 - j0)), rows in the
    /// order of the design's `x_train` and `x_test`.
    fn read(&mut self, j0: usize, j1: usize) -> Result<(Array2<f32>, Array2<f32>)>;
}

/// What a blocked fit did overall (the per-voxel results go to the caller's sink).
#[derive(Debug, Clone)]
pub struct BlocksSummary {
    /// The candidate alphas, sorted ascending and deduplicated.
    pub alphas: Vec<f64>,
    pub n_folds: usize,
    /// FLOPs of the whole fit (X-side setup counted once).
    pub flops: f64,
    pub n_blocks: usize,
}

/// Cross-validated ridge (one alpha per voxel, as [`crate::ridge::fit_cv`]) over the voxel blocks
/// `ranges` (half-open voxel ranges, in any order) of `src`. For each block, `sink` receives
/// the block's first voxel, its fit (per-voxel vectors indexed from 0 within the block;
/// `weights` are features × block voxels when `o.keep_weights`) and the block's test Y.
/// Memory: the prepared X side, one block of Y and the ridge's voxel chunks (sized from
/// `o.max_memory` as in `fit_cv`).
///
/// Errors: those of [`crate::ridge::validate`] for the design and each block (naming the block's
/// voxel range), and whatever `src.read` or `sink` return.
pub fn fit_cv_blocks(
    d: &Design,
    src: &mut dyn VoxelBlocks,
    ranges: &[(usize, usize)],
    o: &RidgeOptions,
    sink: &mut dyn FnMut(usize, RidgeFit, ArrayView2<f32>) -> Result<()>,
) -> Result<BlocksSummary> {
    let plan = || Plan::new(d.groups, o);
    let mut prepared: Option<Prepared> = None;
    let mut flops = 0.0;
    let mut n_folds = 0;
    for &(j0, j1) in ranges {
        let what = || format!("voxels {j0}..{j1}");
        let (y_train, y_test) = src.read(j0, j1).with_context(what)?;
        let p = RidgeProblem {
            x_train: d.x_train.view(),
            y_train: y_train.view(),
            groups: d.groups,
            x_test: d.x_test.view(),
            y_test: y_test.view(),
        };
        validate(&p, o).with_context(what)?;
        if prepared.is_none() {
            let prep = Prepared::new(d, o, &plan())?;
            flops += prep.setup_flops();
            prepared = Some(prep);
        }
        let prep = prepared.as_mut().expect("prepared above");
        let raw = prep
            .fit_voxels(y_train.view(), o, &plan())
            .with_context(what)?;
        let fit = crate::ridge::finish(&p, raw, plan(), o);
        flops += fit.flops;
        n_folds = fit.n_folds;
        sink(j0, fit, y_test.view())?;
    }
    Ok(BlocksSummary {
        alphas: plan().alphas,
        n_folds,
        flops,
        n_blocks: ranges.len(),
    })
}

/// The X side prepared once by either backend.
enum Prepared {
    #[cfg(feature = "cpu-linalg")]
    Cpu(crate::ridge::cpu::Prepared),
    Torch(crate::ridge::torch::Prepared),
}

impl Prepared {
    fn new(d: &Design, o: &RidgeOptions, plan: &Plan) -> Result<Self> {
        Ok(match o.backend {
            #[cfg(feature = "cpu-linalg")]
            Backend::Cpu => Prepared::Cpu(crate::ridge::cpu::Prepared::new(
                d.x_train, d.x_test, o, plan,
            )?),
            #[cfg(not(feature = "cpu-linalg"))]
            Backend::Cpu => unreachable!("rejected by check_options"),
            Backend::Torch => Prepared::Torch(crate::ridge::torch::Prepared::new(
                d.x_train, d.x_test, o, plan,
            )?),
        })
    }

    fn fit_voxels(&mut self, y: ArrayView2<f32>, o: &RidgeOptions, plan: &Plan) -> Result<RawFit> {
        match self {
            #[cfg(feature = "cpu-linalg")]
            Prepared::Cpu(p) => p.fit_voxels(y, o, plan),
            Prepared::Torch(p) => p.fit_voxels(y, o, plan),
        }
    }

    fn setup_flops(&self) -> f64 {
        match self {
            #[cfg(feature = "cpu-linalg")]
            Prepared::Cpu(p) => p.setup_flops(),
            Prepared::Torch(p) => p.setup_flops,
        }
    }
}

/// Bytes held by the cpu backend's prepared X side for this design (None for the torch
/// backend, or before any work): lets callers size Y blocks from what is left of a budget.
pub fn prepared_bytes(d: &Design, o: &RidgeOptions) -> Option<u64> {
    let n = d.x_train.nrows() as u64;
    let p = d.x_train.ncols() as u64;
    let folds = fold_rows(d.groups, o.folds).len() as u64;
    let e = o.dtype.bytes() as u64;
    // X copies per fold (n·p), bases and factors (folds·p·2p), refit basis and test
    // projection, f64 Grams (folds + 2)·p² (as `cpu::Setup` counts its fixed bytes).
    (o.backend == Backend::Cpu).then(|| {
        e * (n * p + folds * p * 2 * p + p * (p + d.x_test.nrows() as u64))
            + 8 * p * p * (folds + 2)
    })
}
