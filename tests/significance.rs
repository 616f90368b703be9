//! Ground truth for the block-permutation significance of held-out r
//! (`brainscale::fmri::significance`): the fast block null against an explicit one (every
//! permuted series built and correlated), and on simulated encoding results whose no-signal
//! voxels are known (BOLD noise AR(1), predictions from autocorrelated features): the FDR of
//! BH q < 0.05 and the FWE rate of the max-statistic stay within their bounds across seeds
//! with 10-TR blocks, while i.i.d. shuffles of single TRs visibly exceed them.
use brainscale::fmri::significance::{block_null, PermOptions, Permutations, Significance};
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

type Rng = rand_chacha::ChaCha8Rng;

/// Pearson r of two f64 series (an independent implementation).
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

/// Unit-variance AR(1) series of length `n` with coefficient `phi`.
fn ar1(rng: &mut Rng, n: usize, phi: f64) -> Vec<f64> {
    let s = (1.0 - phi * phi).sqrt();
    let mut x = vec![0.0; n];
    let mut prev: f64 = StandardNormal.sample(rng);
    for v in x.iter_mut() {
        let e: f64 = StandardNormal.sample(rng);
        prev = phi * prev + s * e;
        *v = prev;
    }
    x
}

fn random(n: usize, v: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::seed_from_u64(seed);
    Array2::from_shape_fn((n, v), |_| {
        let x: f64 = StandardNormal.sample(&mut rng);
        x as f32
    })
}

/// The null built the slow way: each permuted prediction series assembled from its blocks
/// (fixed rows in place) and correlated with the BOLD.
fn explicit_null(p: &[f64], y: &[f64], perms: &Permutations) -> (f64, Vec<f64>) {
    let r0 = pearson(p, y);
    let nulls = perms
        .orders
        .iter()
        .map(|ord| {
            let mut q = p.to_vec();
            for (j, &i) in ord.iter().enumerate() {
                let (src, dst) = (perms.starts[i as usize], perms.starts[j]);
                q[dst..dst + perms.block].copy_from_slice(&p[src..src + perms.block]);
            }
            pearson(&q, y)
        })
        .collect();
    (r0, nulls)
}

fn check_against_explicit(runs: &[usize], block: usize, v: usize) {
    let n: usize = runs.iter().sum();
    let (pred, y) = (random(n, v, 1), random(n, v, 2));
    let o = PermOptions {
        n_perm: 60,
        block,
        seed: 7,
        required: true,
    };
    let perms = Permutations::new(runs, &o).unwrap();
    let c = block_null(pred.view(), y.view(), &perms).unwrap();
    let mut max_null = vec![f64::NEG_INFINITY; o.n_perm];
    for j in 0..v {
        let col = |a: &Array2<f32>| a.column(j).iter().map(|&x| x as f64).collect::<Vec<_>>();
        let (r0, nulls) = explicit_null(&col(&pred), &col(&y), &perms);
        assert!(
            (c.r[j] - r0).abs() < 1e-9,
            "voxel {j}: r {} vs {r0}",
            c.r[j]
        );
        let count = nulls.iter().filter(|&&r| r >= r0 - 1e-12).count() as u32;
        assert_eq!(c.exceed[j], count, "voxel {j}");
        // The k largest null r, descending (what the q < 0.05 thresholds read).
        let mut sorted = nulls.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let k = brainscale::fmri::significance::top_k(o.n_perm);
        assert_eq!(c.top_null.nrows(), k);
        for (i, want) in sorted.iter().take(k).enumerate() {
            let got = c.top_null[[i, j]] as f64;
            assert!(
                (got - want).abs() < 1e-6,
                "voxel {j} rank {i}: {got} vs {want}"
            );
        }
        for (m, r) in max_null.iter_mut().zip(&nulls) {
            *m = m.max(*r);
        }
    }
    for (a, b) in c.max_null.iter().zip(&max_null) {
        assert!((a - b).abs() < 1e-9);
    }
}

#[test]
fn block_null_equals_explicit_permutations() {
    // Two test runs with tails that stay in place (the block cross-product path) ...
    check_against_explicit(&[57, 43], 10, 12);
    // ... and many blocks (the direct path, > 512 blocks).
    check_against_explicit(&[1100, 30], 2, 3);
}

#[test]
fn too_few_blocks_is_an_error() {
    let e = Permutations::new(
        &[35],
        &PermOptions {
            n_perm: 10,
            block: 10,
            seed: 0,
            required: true,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("3 block(s) of 10 TRs") && e.contains("--perm-block"),
        "{e}"
    );
}

/// One simulated subject: `v` voxels × `t` test TRs; the first `n_null` voxels carry no
/// signal. Features: 3 AR(1) series (phi 0.7); each voxel's prediction is a random mix of
/// them. BOLD = s · (its true response) + AR(1) noise (phi `phi`), s = 0 for no-signal
/// voxels and 0.2–0.7 otherwise; the prediction is the true response plus estimation noise.
fn simulate(seed: u64, v: usize, n_null: usize, t: usize, phi: f64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng::seed_from_u64(seed);
    let f: Vec<Vec<f64>> = (0..3).map(|_| ar1(&mut rng, t, 0.7)).collect();
    let mut pred = Array2::<f32>::zeros((t, v));
    let mut y = Array2::<f32>::zeros((t, v));
    for j in 0..v {
        let w: Vec<f64> = (0..3).map(|_| StandardNormal.sample(&mut rng)).collect();
        let truth: Vec<f64> = (0..t)
            .map(|i| (0..3).map(|k| w[k] * f[k][i]).sum::<f64>())
            .collect();
        let sd = (truth.iter().map(|x| x * x).sum::<f64>() / t as f64).sqrt();
        let s = if j < n_null {
            0.0
        } else {
            0.2 + 0.5 * (j - n_null) as f64 / (v - n_null) as f64
        };
        let noise = ar1(&mut rng, t, phi);
        let est = ar1(&mut rng, t, 0.7);
        for i in 0..t {
            let tr = truth[i] / sd;
            y[[i, j]] = (s * tr + noise[i]) as f32;
            pred[[i, j]] = (tr + 0.5 * est[i]) as f32;
        }
    }
    (pred, y)
}

/// Rates over `seeds` datasets: (mean FDP of q < 0.05, share of datasets with a no-signal
/// voxel at FWE p < 0.05, uncorrected p < 0.05 rate on no-signal voxels, power of q < 0.05
/// on signal voxels).
fn rates(block: usize, seeds: u64, v: usize, n_null: usize, phi: f64) -> (f64, f64, f64, f64) {
    let (mut fdp, mut fwe, mut fpr, mut power) = (0.0, 0.0, 0.0, 0.0);
    for seed in 0..seeds {
        let (pred, y) = simulate(100 + seed, v, n_null, 200, phi);
        let o = PermOptions {
            n_perm: 1000,
            block,
            seed,
            required: true,
        };
        let s = Significance::compute(pred.view(), y.view(), &[200], &o).unwrap();
        let disc = s.q.iter().filter(|&&q| q < 0.05).count();
        let false_disc = s.q.iter().take(n_null).filter(|&&q| q < 0.05).count();
        fdp += false_disc as f64 / disc.max(1) as f64;
        fwe += s.fwe_p.iter().take(n_null).any(|&p| p < 0.05) as u8 as f64;
        fpr += s.p.iter().take(n_null).filter(|&&p| p < 0.05).count() as f64 / n_null as f64;
        if v > n_null {
            power +=
                s.q.iter().skip(n_null).filter(|&&q| q < 0.05).count() as f64 / (v - n_null) as f64;
        }
    }
    let k = seeds as f64;
    (fdp / k, fwe / k, fpr / k, power / k)
}

#[test]
fn fdr_and_fwe_hold_with_blocks_on_autocorrelated_noise() {
    // 30% no-signal voxels, as the synthetic datasets.
    let (fdp, fwe, fpr, power) = rates(10, 20, 1000, 300, 0.7);
    eprintln!(
        "10-TR blocks, AR(1) 0.7, 20 datasets: FDR {fdp:.4}, FWE {fwe:.3}, uncorrected FPR {fpr:.4}, power (q<0.05) {power:.3}"
    );
    assert!(fdp <= 0.05, "FDR {fdp}");
    assert!(fwe <= 0.05, "FWE rate {fwe}");
    assert!((0.02..=0.08).contains(&fpr), "uncorrected FPR {fpr}");
    assert!(power > 0.5, "power {power}");
    // The same datasets with i.i.d. shuffles: false positives well above the bounds.
    let (fdp_i, fwe_i, fpr_i, power_i) = rates(1, 20, 1000, 300, 0.7);
    eprintln!(
        "i.i.d. TRs, same datasets: FDR {fdp_i:.4}, FWE {fwe_i:.3}, uncorrected FPR {fpr_i:.4}, power {power_i:.3}"
    );
    assert!(fdp_i > 2.0 * fdp && fdp_i > 0.05, "i.i.d. FDR {fdp_i}");
    assert!(
        fwe_i > 0.5 && fpr_i > 0.12,
        "i.i.d. FWE {fwe_i}, FPR {fpr_i}"
    );
}

#[test]
fn iid_shuffles_exceed_the_bounds_that_blocks_keep() {
    // Global null (no voxel has signal): every discovery is false, so the FDR of BH is the
    // share of datasets with any discovery, bounded by 5%; BOLD noise AR(1) 0.5 (typical of
    // residual BOLD at TR 1.5 s), predictions from AR(1) 0.7 features.
    let (fdp_b, fwe_b, fpr_b, _) = rates(10, 40, 300, 300, 0.5);
    let (fdp_i, fwe_i, fpr_i, _) = rates(1, 40, 300, 300, 0.5);
    eprintln!(
        "global null, 40 datasets: blocks of 10 TRs: FDR {fdp_b:.3} FWE {fwe_b:.3} FPR {fpr_b:.4}; \
         i.i.d. TRs: FDR {fdp_i:.3} FWE {fwe_i:.3} FPR {fpr_i:.4}"
    );
    assert!(fdp_b <= 0.05, "blocks: FDR {fdp_b}");
    assert!(fwe_b <= 0.05, "blocks: FWE {fwe_b}");
    assert!((0.03..=0.075).contains(&fpr_b), "blocks: FPR {fpr_b}");
    assert!(fpr_i > 0.10, "i.i.d. FPR {fpr_i}");
    // (With 1,000 permutations p ≥ 1/1001, so BH at q < 0.05 over 300 voxels can reject
    // only when many voxels reach that floor: a null that ignores autocorrelation does.)
    assert!(
        fwe_i > 0.25 && fdp_i > 0.10,
        "i.i.d. FWE {fwe_i}, FDR {fdp_i}"
    );
}

#[test]
fn significance_is_the_same_in_voxel_shards() {
    // The FWE null of the whole = the max of the shards' nulls (same permutations).
    let (pred, y) = simulate(5, 200, 60, 200, 0.5);
    let o = PermOptions::default();
    let perms = Permutations::new(&[200], &o).unwrap();
    let all = block_null(pred.view(), y.view(), &perms).unwrap();
    let a = block_null(
        pred.slice(ndarray::s![.., ..77]),
        y.slice(ndarray::s![.., ..77]),
        &perms,
    )
    .unwrap();
    let b = block_null(
        pred.slice(ndarray::s![.., 77..]),
        y.slice(ndarray::s![.., 77..]),
        &perms,
    )
    .unwrap();
    let joined: Array1<f64> = a
        .max_null
        .iter()
        .zip(&b.max_null)
        .map(|(x, z)| x.max(*z))
        .collect();
    assert_eq!(joined, all.max_null);
    assert_eq!(&all.exceed.slice(ndarray::s![..77]), &a.exceed);
}

/// Block-bootstrap 95% intervals of the mean r over voxels cover the noise-free mean r (the
/// mean of the voxels' population correlations) at about their nominal rate: autocorrelated
/// predictions and noise, 60 datasets.
#[test]
fn bootstrap_intervals_cover_the_true_mean_r() {
    use brainscale::fmri::bootstrap::{interval95, resampled_r, summaries};
    let (t, v, n_sets) = (200, 100, 60);
    let mut covered = 0;
    let mut widths = 0.0;
    for seed in 0..n_sets {
        let mut rng = Rng::seed_from_u64(1000 + seed);
        let f: Vec<Vec<f64>> = (0..3).map(|_| ar1(&mut rng, t, 0.7)).collect();
        let mut pred = Array2::<f32>::zeros((t, v));
        let mut y = Array2::<f32>::zeros((t, v));
        let mut rho_sum = 0.0;
        for j in 0..v {
            // Population correlation rho between prediction and BOLD: y = rho z + sqrt(1-rho²) e.
            let rho = 0.1 + 0.5 * j as f64 / v as f64;
            rho_sum += rho;
            let w: Vec<f64> = (0..3).map(|_| StandardNormal.sample(&mut rng)).collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            let e = ar1(&mut rng, t, 0.5);
            for i in 0..t {
                let z = (0..3).map(|k| w[k] * f[k][i]).sum::<f64>() / norm;
                pred[[i, j]] = z as f32;
                y[[i, j]] = (rho * z + (1.0 - rho * rho).sqrt() * e[i]) as f32;
            }
        }
        let truth = rho_sum / v as f64;
        let o = PermOptions {
            n_perm: 1,
            block: 10,
            seed,
            required: true,
        };
        let r = resampled_r(pred.view(), y.view(), &[t], 200, &o).unwrap();
        let (lo, hi) = interval95(&summaries(&r, None).mean_r);
        covered += (lo <= truth && truth <= hi) as usize;
        widths += hi - lo;
    }
    let rate = covered as f64 / n_sets as f64;
    eprintln!(
        "block bootstrap (10-TR blocks, 200 resamples): 95% interval of mean r covers the true mean in {covered}/{n_sets} = {rate:.3}, mean width {:.3}",
        widths / n_sets as f64
    );
    assert!((0.85..=1.0).contains(&rate), "coverage {rate}");
}

/// The block-bootstrap interval of the fraction of voxels at q < 0.05 (each voxel against the
/// r that put it at q < 0.05 in the original null): on the original rows the thresholds give
/// exactly the BH discoveries; the (normal) interval is not degenerate, stays below the
/// share of signal voxels plus what FDR control allows on the 30% no-signal voxels, and
/// covers the expected fraction (the mean over datasets) at a reasonable rate.
#[test]
fn bootstrap_interval_of_the_fraction_significant() {
    use brainscale::fmri::bootstrap::{interval95, normal_interval95, resampled_r, summaries};
    use brainscale::fmri::significance::q05_thresholds;
    let (v, n_null, seeds) = (1000, 300, 12u64);
    let mut rows = vec![];
    for seed in 0..seeds {
        let (pred, y) = simulate(300 + seed, v, n_null, 200, 0.5);
        let o = PermOptions {
            n_perm: 1000,
            block: 10,
            seed,
            required: true,
        };
        let perms = Permutations::new(&[200], &o).unwrap();
        let c = block_null(pred.view(), y.view(), &perms).unwrap();
        let s = Significance::from_counts(&c, o.n_perm);
        let thr = q05_thresholds(&c, &s.q, o.n_perm);
        let frac = s.q.iter().filter(|&&q| q < 0.05).count() as f64 / v as f64;
        let by_thr = c.r.iter().zip(&thr).filter(|(r, t)| r > t).count() as f64 / v as f64;
        assert_eq!(by_thr, frac, "seed {seed}: thresholds vs BH discoveries");
        let r = resampled_r(pred.view(), y.view(), &[200], 200, &o).unwrap();
        let b = summaries(&r, Some(&thr));
        let f = b.frac_q05.as_ref().unwrap();
        let (lo, hi) = normal_interval95(frac, f);
        let (plo, phi) = interval95(f);
        eprintln!(
            "seed {seed}: fraction q < 0.05 {frac:.3} [{lo:.3}, {hi:.3}] (percentile [{plo:.3}, {phi:.3}])"
        );
        assert!(
            lo < frac && frac < hi,
            "seed {seed}: {frac} outside [{lo}, {hi}]"
        );
        assert!(
            lo > 0.3 && hi < 0.7 + 0.05 * 0.3,
            "seed {seed}: [{lo}, {hi}]"
        );
        assert!(
            hi - lo > 0.005 && hi - lo < 0.2,
            "seed {seed}: width {}",
            hi - lo
        );
        rows.push((frac, lo, hi));
    }
    let mean = rows.iter().map(|r| r.0).sum::<f64>() / rows.len() as f64;
    let covered = rows.iter().filter(|r| r.1 <= mean && mean <= r.2).count();
    eprintln!("fraction q < 0.05: mean over {seeds} datasets {mean:.3}, covered by {covered}");
    assert!(
        covered * 3 >= rows.len() * 2,
        "covered {covered}/{}",
        rows.len()
    );
}
