//! `bench-significance`: the cost of the per-voxel statistics of `encode` on a generated
//! problem (predictions and BOLD of `voxels` columns × `trs` test TRs, AR(1) 0.5 series from a
//! seed): the block-permutation null (p, BH q, FWE p; `fmri::significance`) and the block
//! bootstrap of the summaries (`fmri::bootstrap`), wall time and the memory they add, and the
//! anchor they are measured against in the same run: one Pearson r pass over the same data
//! (`core::stats::pearson_columns`, what the held-out r itself costs), so a naive null that
//! recomputes r for every permutation would take `permutations` anchors.
use crate::fmri::significance::{PermOptions, Significance};
use anyhow::Result;
use ndarray::Array2;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;

/// The problem and the statistics' settings.
#[derive(Debug, Clone)]
pub struct SigBenchOptions {
    pub voxels: usize,
    pub trs: usize,
    pub perm: PermOptions,
    /// Bootstrap resamples (0: not timed).
    pub n_boot: usize,
}

/// What was measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SigBenchResult {
    pub voxels: usize,
    pub trs: usize,
    pub permutations: usize,
    pub block: usize,
    pub resamples: usize,
    pub threads: usize,
    /// Seconds for the permutation null (p, q, FWE p) and for the bootstrap.
    pub null_s: f64,
    pub bootstrap_s: f64,
    /// Anchor: seconds of one r pass over the same predictions and BOLD (median of 5), and
    /// the null's and the bootstrap's time in such passes.
    pub anchor_s: f64,
    pub null_in_anchors: f64,
    pub bootstrap_in_anchors: f64,
    /// Bytes of the inputs (predictions + BOLD, f32) and the resident memory added by the
    /// statistics beyond them (peak RSS after minus resident before; None off Linux).
    pub input_bytes: u64,
    pub added_rss_bytes: Option<u64>,
    /// Share of voxels at q < 0.05 (a check: the generated data carry no signal, ~0).
    pub frac_q_below_0_05: f64,
}

/// Generates the problem and times the statistics. Errors: those of the statistics (too few
/// blocks for `trs`).
pub fn run(o: &SigBenchOptions) -> Result<SigBenchResult> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.perm.seed);
    let mut gen = || {
        let mut a = Array2::<f32>::zeros((o.trs, o.voxels));
        for mut col in a.columns_mut() {
            let mut x: f64 = StandardNormal.sample(&mut rng);
            for v in col.iter_mut() {
                let e: f64 = StandardNormal.sample(&mut rng);
                x = 0.5 * x + 0.75f64.sqrt() * e;
                *v = x as f32;
            }
        }
        a
    };
    let (pred, y) = (gen(), gen());
    let before = crate::core::memory::current_rss();
    let mut anchors: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(crate::core::stats::pearson_columns(pred.view(), y.view()));
            t.elapsed().as_secs_f64()
        })
        .collect();
    anchors.sort_by(f64::total_cmp);
    let anchor_s = anchors[2];
    let t = Instant::now();
    let s = Significance::compute(pred.view(), y.view(), &[o.trs], &o.perm)?;
    let null_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    if o.n_boot > 0 {
        let r = crate::fmri::bootstrap::resampled_r(
            pred.view(),
            y.view(),
            &[o.trs],
            o.n_boot,
            &o.perm,
        )?;
        std::hint::black_box(crate::fmri::bootstrap::summaries(&r, None));
    }
    let bootstrap_s = t.elapsed().as_secs_f64();
    let added = match (before, crate::core::memory::peak_rss()) {
        (Some(b), Some(p)) => Some(p.saturating_sub(b)),
        _ => None,
    };
    Ok(SigBenchResult {
        voxels: o.voxels,
        trs: o.trs,
        permutations: o.perm.n_perm,
        block: o.perm.block,
        resamples: o.n_boot,
        threads: rayon::current_num_threads(),
        null_s,
        bootstrap_s,
        anchor_s,
        null_in_anchors: null_s / anchor_s,
        bootstrap_in_anchors: bootstrap_s / anchor_s,
        input_bytes: 8 * (o.voxels * o.trs) as u64,
        added_rss_bytes: added,
        frac_q_below_0_05: s.q.iter().filter(|&&q| q < 0.05).count() as f64 / o.voxels as f64,
    })
}
