//! CPU backend: ndarray + OpenBLAS (matrix products) + LAPACK (eigendecompositions, f64).
//! The algorithm is described in `mod.rs`, its scalar rules in `plan.rs`; this file holds
//! the array operations, step for step as `torch.rs` (`prepare`, `fit_chunks`, `basis`,
//! `choose_quad`, `direct_factor`, `Quad::q`, `fractions_q`, `direct_q`). The voxel-sized
//! work runs in f32 or f64.
use crate::ridge::blas::{gemm, Real};
use crate::ridge::plan::{
    self, best_alpha_index, chunk_voxels, eigh_flops, fold_score, fractions_error, gemm_flops,
    keep_indices, memory_budget, ChunkShape, QuadRule, CHECK_VOXELS, FRACTIONS_TOL,
};
use crate::ridge::{progress, Dtype, Plan, RawFit, RidgeOptions, RidgeProblem};
use anyhow::{Context, Result};
use ndarray::{s, Array1, Array2, ArrayView2, Axis, Zip};

/// Columns of the validation product handled at once, so it stays in cache.
const BLOCK: usize = 1024;
/// Largest voxel chunk (the memory budget may ask for less).
const CHUNK_MAX: usize = 4096;

/// Wall time per phase, printed when BRAINSCALE_RIDGE_TRACE is set (for tuning only).
struct Trace {
    on: bool,
    last: std::time::Instant,
    acc: Vec<(&'static str, f64)>,
}

impl Trace {
    fn new() -> Self {
        Self {
            on: std::env::var_os("BRAINSCALE_RIDGE_TRACE").is_some(),
            last: std::time::Instant::now(),
            acc: Vec::new(),
        }
    }
    fn lap(&mut self, name: &'static str) {
        if !self.on {
            return;
        }
        let t = self.last.elapsed().as_secs_f64();
        self.last = std::time::Instant::now();
        match self.acc.iter_mut().find(|(n, _)| *n == name) {
            Some((_, a)) => *a += t,
            None => self.acc.push((name, t)),
        }
    }
    fn report(&self) {
        if self.on {
            let parts: Vec<String> = self
                .acc
                .iter()
                .map(|(n, t)| format!("{n} {t:.3}s"))
                .collect();
            eprintln!("ridge trace: {}", parts.join(", "));
        }
    }
}

pub(crate) fn fit(p: &RidgeProblem, o: &RidgeOptions, plan: &Plan) -> Result<RawFit> {
    let mut prep = Prepared::new(p.x_train, p.x_test, o, plan)?;
    let mut raw = prep.fit_voxels(p.y_train, o, plan)?;
    raw.flops += prep.setup_flops();
    Ok(raw)
}

/// The X side of a fit, computed once (Grams, fold bases, refit basis), to which any number
/// of voxel blocks can then be fitted: a streamed fit of Y block by block gives, per voxel,
/// what one [`fit`] over all voxels gives.
pub(crate) enum Prepared {
    F32(Setup<f32>),
    F64(Setup<f64>),
}

impl Prepared {
    pub(crate) fn new(
        x: ArrayView2<f32>,
        x_test: ArrayView2<f32>,
        o: &RidgeOptions,
        plan: &Plan,
    ) -> Result<Self> {
        one_omp_thread(|| match o.dtype {
            Dtype::F32 => Ok(Prepared::F32(Setup::prepare(x, x_test, o, plan)?)),
            Dtype::F64 => Ok(Prepared::F64(Setup::prepare(x, x_test, o, plan)?)),
        })
    }

    /// Fits the voxels of `y` (training rows × voxels, rows as the X given to `new`).
    pub(crate) fn fit_voxels(
        &mut self,
        y: ArrayView2<f32>,
        o: &RidgeOptions,
        plan: &Plan,
    ) -> Result<RawFit> {
        one_omp_thread(|| match self {
            Prepared::F32(s) => s.fit_chunks(y, o, plan),
            Prepared::F64(s) => s.fit_chunks(y, o, plan),
        })
    }

    /// FLOPs of the X-side setup (counted once per fit).
    pub(crate) fn setup_flops(&self) -> f64 {
        match self {
            Prepared::F32(s) => s.setup_flops,
            Prepared::F64(s) => s.setup_flops,
        }
    }
}

/// libtorch_cpu (always linked, through tch) exports its bundled MKL's BLAS/LAPACK symbols
/// ahead of OpenBLAS, so LAPACK calls may land in MKL, whose OpenMP threads then spin
/// against OpenBLAS's threads (fits ran ~3x slower). One OpenMP thread during the fit
/// avoids that; the setting is restored afterwards.
fn one_omp_thread<R>(f: impl FnOnce() -> R) -> R {
    let omp_threads = tch::get_num_threads();
    keep_freed_memory();
    tch::set_num_threads(1);
    let out = f();
    tch::set_num_threads(omp_threads);
    out
}

/// The fit allocates and frees many matrices of tens of MB; glibc would map and unmap each,
/// and the kernel zero every page again (~20% of the fit's time in page faults). Raising the
/// mmap and trim thresholds keeps freed blocks in the heap for reuse (process-wide, once).
fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only tunes glibc's allocator; called once, before the big allocations.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // glibc's maximum
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    });
}

/// Counts the floating-point work as it is issued.
#[derive(Default)]
struct Flops(f64);

impl Flops {
    fn gemm<T: Real>(
        &mut self,
        alpha: T,
        a: ArrayView2<T>,
        b: ArrayView2<T>,
        beta: T,
        c: ndarray::ArrayViewMut2<T>,
    ) {
        self.0 += gemm_flops(a.nrows(), b.ncols(), a.ncols());
        gemm(alpha, a, b, beta, c);
    }
    fn dot<T: Real>(&mut self, a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        self.gemm(T::one(), a, b, T::zero(), c.view_mut());
        c
    }
    fn eigh(&mut self, a: &Array2<f64>, what: &str) -> Result<(Array1<f64>, Array2<f64>)> {
        self.0 += eigh_flops(a.nrows());
        crate::ridge::blas::eigh(a).with_context(|| format!("eigendecomposition of {what}"))
    }
}

/// Eigenvalues kept (see [`plan::keep_indices`]).
fn keep_mask(s: &Array1<f64>, dim: usize) -> Vec<usize> {
    keep_indices(s.as_slice().expect("contiguous eigenvalues"), dim)
}

/// Orthonormal basis M (p × k) of the centred training rows' span, and the eigenvalues s of
/// X_c'X_c on it: from the p × p Gram (primal) or the n × n kernel when p > n.
fn basis(
    x: ArrayView2<f32>,
    xs: &Array1<f64>,
    train_rows: &[usize],
    gram: &Array2<f64>,
    mu: &Array1<f64>,
    flops: &mut Flops,
) -> Result<(Array2<f64>, Array1<f64>)> {
    let (n_t, p) = (train_rows.len(), x.ncols());
    if p <= n_t {
        // X_c'X_c = X'X - n μμ' (μ = 0 without intercept).
        let mut k = gram.clone();
        let nm = n_t as f64;
        Zip::indexed(&mut k).for_each(|(i, j), v| *v -= nm * mu[i] * mu[j]);
        let (s, u) = flops.eigh(&k, "the training Gram matrix X'X")?;
        let keep = keep_mask(&s, p);
        Ok((u.select(Axis(1), &keep), s.select(Axis(0), &keep)))
    } else {
        let xc = gather(x, train_rows, 0..p, |t, j| t as f64 - xs[j] - mu[j]);
        let k = flops.dot(xc.view(), xc.t());
        let (s, v) = flops.eigh(&k, "the training kernel XX'")?;
        let keep = keep_mask(&s, n_t);
        let s = s.select(Axis(0), &keep);
        // M = X_c' V S^-1/2 has orthonormal columns and spans the same space as U.
        let mut m = flops.dot(xc.t(), v.select(Axis(1), &keep).view());
        for (mut col, &sv) in m.axis_iter_mut(Axis(1)).zip(s.iter()) {
            col.mapv_inplace(|t| t / sv.sqrt());
        }
        Ok((m, s))
    }
}

/// What one fold needs for the voxel-sized work.
struct Fold<T> {
    rows: Vec<usize>,
    /// Validation rows of X, in T (for X_f'Y_f).
    x_val: Array2<T>,
    mu: Array1<f64>,
    xbar: Array1<f64>,
    /// M' (k × p).
    mt: Array2<T>,
    s: Array1<f64>,
    /// How ||P_c||² is computed for this fold.
    quad: Quad<T>,
    /// M'(x̄_val - μ): offset of the validation mean from the training mean, in the basis.
    delta: Array1<f64>,
}

fn to_t<T: Real>(a: &Array2<f64>) -> Array2<T> {
    a.mapv(T::from_f64)
}

/// The X-side state of a fit (see [`Prepared`]), in the work precision `T`.
pub(crate) struct Setup<T> {
    n: usize,
    nf: usize,
    folds: Vec<Fold<T>>,
    mu_all: Array1<f64>,
    s_all: Array1<f64>,
    mt_all: Array2<T>,
    a_test: Array2<T>,
    m_all_t: Option<Array2<T>>,
    shape: ChunkShape,
    setup_flops: f64,
}

impl<T: Real> Setup<T> {
    fn prepare(
        x: ArrayView2<f32>,
        x_test: ArrayView2<f32>,
        o: &RidgeOptions,
        plan: &Plan,
    ) -> Result<Self> {
        let (n, nf) = x.dim();
        let na = plan.alphas.len();
        let nfold = plan.folds.len();
        let mut flops = Flops::default();
        let mut tr = Trace::new();

        // With an intercept, X and Y are first shifted by their training means (the fit does
        // not change), so that f32 products of data with large means (raw BOLD) keep their
        // precision.
        let xs = if o.intercept {
            column_means(x)
        } else {
            Array1::zeros(nf)
        };
        // Per-fold Grams and sums, in f64; training Grams are the total minus the fold's.
        let mut grams = Vec::with_capacity(nfold);
        let mut sums = Vec::with_capacity(nfold);
        for rows in &plan.folds {
            let xf = gather(x, rows, 0..nf, |t, j| t as f64 - xs[j]);
            grams.push(flops.dot(xf.t(), xf.view()));
            sums.push(xf.sum_axis(Axis(0)));
        }
        tr.lap("grams");
        let gram_all = grams
            .iter()
            .fold(Array2::<f64>::zeros((nf, nf)), |a, g| a + g);
        let sum_all = sums.iter().fold(Array1::<f64>::zeros(nf), |a, s| a + s);

        let mut folds: Vec<Fold<T>> = Vec::with_capacity(nfold);
        for (fi, rows) in plan.folds.iter().enumerate() {
            let n_f = rows.len();
            let n_t = n - n_f;
            let mu = if o.intercept {
                (&sum_all - &sums[fi]) / n_t as f64
            } else {
                Array1::zeros(nf)
            };
            let xbar = &sums[fi] / n_f as f64;
            let train_rows = plan.train_rows(fi, n);
            let (m, s) = basis(
                x,
                &xs,
                &train_rows,
                &(&gram_all - &grams[fi]),
                &mu,
                &mut flops,
            )
            .with_context(|| format!("CV fold {} of {nfold}", fi + 1))?;
            let xvc = gather(x, rows, 0..nf, |t, j| t as f64 - xs[j] - xbar[j]);
            let a_c = flops.dot(xvc.view(), m.view());
            let quad = choose_quad::<T>(
                a_c,
                &s,
                &plan.alphas,
                o.dtype,
                o.partial_fractions,
                &mut flops,
            )?;
            let delta = m.t().dot(&(&xbar - &mu));
            folds.push(Fold {
                rows: rows.clone(),
                x_val: gather(x, rows, 0..nf, |t, j| T::from_f64(t as f64 - xs[j])),
                mu,
                xbar,
                mt: to_t(&m.t().as_standard_layout().to_owned()),
                s,
                quad,
                delta,
            });
        }

        tr.lap("fold bases");
        // Refit basis on all training rows.
        let mu_all = if o.intercept {
            &sum_all / n as f64
        } else {
            Array1::zeros(nf)
        };
        let all_rows: Vec<usize> = (0..n).collect();
        let (m_all, s_all) = basis(x, &xs, &all_rows, &gram_all, &mu_all, &mut flops)
            .context("refit on all training runs")?;
        let k_all = s_all.len();
        let n_test = x_test.nrows();
        let xtc = gather(x_test, &(0..n_test).collect::<Vec<_>>(), 0..nf, |t, j| {
            t as f64 - xs[j] - mu_all[j]
        });
        let a_test: Array2<T> = to_t(&flops.dot(xtc.view(), m_all.view()));
        let mt_all: Array2<T> = to_t(&m_all.t().as_standard_layout().to_owned());
        let m_all_t: Option<Array2<T>> = o.keep_weights.then(|| to_t(&m_all));

        // What the voxel chunks are sized from (see `fit_voxels`).
        let e = std::mem::size_of::<T>();
        let k_max = folds
            .iter()
            .map(|f| f.s.len())
            .chain([k_all])
            .max()
            .unwrap_or(0);
        let r_max = folds
            .iter()
            .map(|f| f.quad.rows())
            .max()
            .unwrap_or(0)
            .min(BLOCK.max(1));
        let shape = ChunkShape {
            n,
            p: nf,
            k: k_max,
            k_all,
            r: r_max,
            n_test,
            n_folds: nfold,
            n_alphas: na,
            elem: e,
        };
        tr.lap("refit basis");
        tr.report();
        Ok(Self {
            n,
            nf,
            folds,
            mu_all,
            s_all,
            mt_all,
            a_test,
            m_all_t,
            shape,
            setup_flops: flops.0,
        })
    }

    fn fit_chunks(
        &mut self,
        y_train: ArrayView2<f32>,
        o: &RidgeOptions,
        plan: &Plan,
    ) -> Result<RawFit> {
        let (n, nf) = (self.n, self.nf);
        let (na, nfold) = (plan.alphas.len(), plan.folds.len());
        let v = y_train.ncols();
        let n_test = self.a_test.nrows();
        let mut flops = Flops::default();
        let mut tr = Trace::new();
        // Voxel chunks sized from the memory budget; chunks of at most CHUNK_MAX voxels keep
        // the per-fold buffers cache-friendly.
        let chunk = chunk_voxels(&self.shape, memory_budget(o), v)?.min(CHUNK_MAX);
        let (mu_all, s_all) = (&self.mu_all, &self.s_all);
        let (mt_all, a_test, m_all_t) = (&self.mt_all, &self.a_test, &self.m_all_t);
        let folds = &mut self.folds;

        let mut cv_scores = Array2::<f64>::zeros((na, v));
        let mut best = vec![0usize; v];
        let mut test_pred = Array2::<f32>::zeros((n_test, v));
        let mut weights = o.keep_weights.then(|| Array2::<f32>::zeros((nf, v)));
        let n_chunks = v.div_ceil(chunk);
        let bar = progress(o.progress, (n_chunks * (nfold + 1)) as u64);

        for j0 in (0..v).step_by(chunk) {
            let j1 = (j0 + chunk).min(v);
            let c = j1 - j0;
            let ys = if o.intercept {
                column_means(y_train.slice(s![.., j0..j1]))
            } else {
                Array1::zeros(c)
            };
            // Per fold: Y rows, their sums and centred sums of squares, and X_f'Y_f.
            let mut ysum: Vec<Array1<f64>> = Vec::with_capacity(nfold);
            let mut yss: Vec<Array1<f64>> = Vec::with_capacity(nfold);
            let mut z: Vec<Array2<T>> = Vec::with_capacity(nfold);
            for fd in folds.iter() {
                let y = gather(y_train, &fd.rows, j0..j1, |t, j| {
                    T::from_f64(t as f64 - ys[j])
                });
                let (sm, ss) = column_moments(y.view());
                let mut zf = Array2::<T>::zeros((nf, c));
                flops.gemm(T::one(), fd.x_val.t(), y.view(), T::zero(), zf.view_mut());
                ysum.push(sm);
                yss.push(ss);
                z.push(zf);
            }
            tr.lap("X'Y per fold");
            let mut xty = Array2::<T>::zeros((nf, c));
            z.iter().for_each(|zf| {
                Zip::from(&mut xty)
                    .and(zf)
                    .par_for_each(|a, &b| *a = *a + b)
            });
            let ysum_all = ysum.iter().fold(Array1::<f64>::zeros(c), |a, s| a + s);

            let mut scores = Array2::<f64>::zeros((na, c));
            for (fi, fd) in folds.iter_mut().enumerate() {
                let n_f = fd.rows.len() as f64;
                let n_t = n as f64 - n_f;
                let k = fd.s.len();
                // ν·n_t = Σ_train y; R = X_t'Y_t - n_t μν' (centred training product),
                // Zc = X_f'Y_f - n_f x̄ȳ' (validation product centred on the validation mean).
                let ytr: Array1<f64> = &ysum_all - &ysum[fi];
                let nu: Array1<f64> = if o.intercept {
                    &ytr / n_t
                } else {
                    Array1::zeros(c)
                };
                let mut rz = Array2::<T>::zeros((nf, 2 * c));
                Zip::indexed(rz.slice_mut(s![.., ..c]))
                    .and(&xty)
                    .and(&z[fi])
                    .par_for_each(|(i, j), r, &a, &b| {
                        let corr = if o.intercept { fd.mu[i] * ytr[j] } else { 0.0 };
                        *r = a - b - T::from_f64(corr);
                    });
                Zip::indexed(rz.slice_mut(s![.., c..]))
                    .and(&z[fi])
                    .par_for_each(|(i, j), r, &b| {
                        *r = b - T::from_f64(fd.xbar[i] * ysum[fi][j]);
                    });
                let bc = flops.dot(fd.mt.view(), rz.view());
                let (b, cmat) = (bc.slice(s![.., ..c]), bc.slice(s![.., c..]));
                // d(alpha) for every alpha, and the alpha-stacked linear statistics.
                let d = Array2::from_shape_fn((na, k), |(a, i)| 1.0 / (fd.s[i] + plan.alphas[a]));
                let dt: Array2<T> = to_t(&d);
                let ddelta: Array2<T> = to_t(&(&d * &fd.delta));
                let mut e_cb = Array2::<T>::zeros((k, c));
                Zip::from(&mut e_cb)
                    .and(&b)
                    .and(&cmat)
                    .par_for_each(|e, &bb, &cc| *e = bb * cc);
                let lin = flops.dot(dt.view(), e_cb.view());
                let mm = flops.dot(ddelta.view(), b);
                tr.lap("B, C, linear stats");
                let q = fd.quad.q(&d, &fd.s, &plan.alphas, b, &mut flops);
                tr.lap("q");
                let inv = 1.0 / plan.folds.len() as f64;
                Zip::indexed(&mut scores).par_for_each(|(a, j), sc| {
                    let mean_y = ysum[fi][j] / n_f;
                    let sv = fold_score(
                        o.score,
                        lin[[a, j]].to_f64(),
                        q[[a, j]],
                        yss[fi][j],
                        mm[[a, j]].to_f64(),
                        mean_y - nu[j],
                        n_f,
                    );
                    *sc += sv * inv;
                });
                bar.inc(1);
            }

            tr.lap("scores");
            // Refit with each voxel's best alpha, predict the test rows.
            let best_c = best_alpha_index(scores.view());
            let mut r_all = xty;
            if o.intercept {
                Zip::indexed(&mut r_all)
                    .par_for_each(|(i, j), r| *r = *r - T::from_f64(mu_all[i] * ysum_all[j]));
            }
            let mut bs = flops.dot(mt_all.view(), r_all.view());
            Zip::indexed(&mut bs).par_for_each(|(i, j), b| {
                *b = *b * T::from_f64(1.0 / (s_all[i] + plan.alphas[best_c[j]]))
            });
            let mut pred = flops.dot(a_test.view(), bs.view());
            let nu_all: Array1<f64> = if o.intercept {
                &ysum_all / n as f64 + &ys
            } else {
                Array1::zeros(c)
            };
            Zip::from(test_pred.slice_mut(s![.., j0..j1]))
                .and(&mut pred)
                .and_broadcast(&nu_all)
                .for_each(|t, &mut pv, &nu| {
                    *t = (pv.to_f64() + nu) as f32;
                });
            if let (Some(w), Some(m)) = (weights.as_mut(), m_all_t.as_ref()) {
                let wc = flops.dot(m.view(), bs.view());
                Zip::from(w.slice_mut(s![.., j0..j1]))
                    .and(&wc)
                    .for_each(|t, &x| *t = x.to_f64() as f32);
            }
            cv_scores.slice_mut(s![.., j0..j1]).assign(&scores);
            best[j0..j1].copy_from_slice(&best_c);
            bar.inc(1);
        }
        bar.finish_and_clear();
        tr.lap("refit");
        tr.report();
        Ok(RawFit {
            cv_scores,
            best,
            test_pred,
            weights,
            flops: flops.0,
        })
    }
}

/// Rows `rows` and columns `cols` of `a`, mapped elementwise by `f(value, column)`.
fn gather<O, F>(a: ArrayView2<f32>, rows: &[usize], cols: std::ops::Range<usize>, f: F) -> Array2<O>
where
    O: Clone + Send + Sync,
    F: Fn(f32, usize) -> O + Sync,
{
    use rayon::prelude::*;
    let w = cols.len();
    if rows.is_empty() || w == 0 {
        return Array2::from_shape_vec((rows.len(), w), Vec::new()).expect("empty shape");
    }
    let mut out = vec![f(0.0, 0); rows.len() * w];
    out.par_chunks_mut(w)
        .zip(rows.par_iter())
        .for_each(|(dst, &r)| {
            let src = a.row(r);
            let src = src.slice(s![cols.clone()]);
            for (j, (d, &t)) in dst.iter_mut().zip(src.iter()).enumerate() {
                *d = f(t, j);
            }
        });
    Array2::from_shape_vec((rows.len(), w), out).expect("gather shape")
}

/// Column means in f64.
fn column_means(a: ArrayView2<f32>) -> Array1<f64> {
    let mut sum = Array1::<f64>::zeros(a.ncols());
    for row in a.rows() {
        Zip::from(&mut sum)
            .and(&row)
            .for_each(|s, &t| *s += t as f64);
    }
    sum / a.nrows().max(1) as f64
}

/// Column sums and centred sums of squares (f64 accumulation). Rows are summed in fixed
/// chunks of `MOMENT_ROWS` across threads and the chunk sums added in order, so the result
/// does not depend on the thread count or on work stealing (rayon's fold/reduce tree does:
/// it made shard runs differ from the single run in the last bit).
fn column_moments<T: Real>(y: ArrayView2<T>) -> (Array1<f64>, Array1<f64>) {
    use rayon::prelude::*;
    const MOMENT_ROWS: usize = 64;
    let (n, c) = y.dim();
    let sum_rows = |f: &(dyn Fn(f64, usize) -> f64 + Sync)| -> Array1<f64> {
        let parts: Vec<Array1<f64>> = (0..n.div_ceil(MOMENT_ROWS))
            .into_par_iter()
            .map(|b| {
                let mut acc = Array1::<f64>::zeros(c);
                for i in b * MOMENT_ROWS..((b + 1) * MOMENT_ROWS).min(n) {
                    Zip::indexed(&mut acc)
                        .and(&y.row(i))
                        .for_each(|j, a, &t| *a += f(t.to_f64(), j));
                }
                acc
            })
            .collect();
        parts
            .into_iter()
            .fold(Array1::<f64>::zeros(c), |a, b| a + b)
    };
    let sum = sum_rows(&|t, _| t);
    let mean = &sum / n.max(1) as f64;
    let ss = sum_rows(&|t, j| (t - mean[j]) * (t - mean[j]));
    (sum, ss)
}

/// How a fold computes q = ||P_c||² = ||A_c D b||² for every alpha and voxel.
enum Quad<T> {
    /// With a factor F (F'F = A_c'A_c, min(n_val, k) rows): one product F·D·B per alpha.
    Direct { f: Array2<T> },
    /// By partial fractions over the eigenvalues (d_k d_l = (d_k - d_l)/(s_l - s_k)): one
    /// product T·B per fold (T_kl = G_kl/(s_l - s_k), G = A_c'A_c) serves every alpha:
    /// q(α) = Σ_k d_k² G_kk b_k² + 2 Σ_k (d_k - d_ref) b_k (T b)_k, the d_ref term being
    /// exactly zero (T is antisymmetric) and subtracted to avoid cancellation at large alpha.
    /// f64 arithmetic; checked against `Direct` on the first voxels, else replaced by it.
    Fractions {
        t: Array2<f64>,
        gdiag: Array1<f64>,
        s_ref: f64,
        a_c: Array2<f64>,
        checked: bool,
    },
}

fn direct_factor<T: Real>(a_c: Array2<f64>, k: usize, flops: &mut Flops) -> Result<Quad<T>> {
    let n_f = a_c.nrows();
    if n_f <= k {
        return Ok(Quad::Direct { f: to_t(&a_c) });
    }
    let g = flops.dot(a_c.t(), a_c.view());
    let (lam, q) = flops.eigh(&g, "the validation Gram matrix")?;
    let keep = keep_mask(&lam, k);
    let mut f = q
        .select(Axis(1), &keep)
        .reversed_axes()
        .as_standard_layout()
        .to_owned();
    for (mut row, l) in f.axis_iter_mut(Axis(0)).zip(keep.iter().map(|&i| lam[i])) {
        row.mapv_inplace(|t| t * l.sqrt());
    }
    Ok(Quad::Direct { f: to_t(&f) })
}

/// The fold's quad by [`plan::choose_quad`]: the factor of the direct products, or the
/// partial-fraction matrices.
fn choose_quad<T: Real>(
    a_c: Array2<f64>,
    s: &Array1<f64>,
    alphas: &[f64],
    dtype: Dtype,
    allowed: bool,
    flops: &mut Flops,
) -> Result<Quad<T>> {
    let (n_f, k) = a_c.dim();
    let rule = plan::choose_quad(
        n_f,
        s.as_slice().expect("contiguous eigenvalues"),
        alphas,
        dtype,
        allowed,
    );
    let s_ref = match rule {
        QuadRule::Direct => return direct_factor(a_c, k, flops),
        QuadRule::Fractions { s_ref } => s_ref,
    };
    let g = flops.dot(a_c.t(), a_c.view());
    let t = Array2::from_shape_fn((k, k), |(i, j)| {
        if i == j {
            0.0
        } else {
            0.5 * (g[[i, j]] + g[[j, i]]) / (s[j] - s[i])
        }
    });
    Ok(Quad::Fractions {
        t,
        gdiag: g.diag().to_owned(),
        s_ref,
        a_c,
        checked: false,
    })
}

impl<T: Real> Quad<T> {
    fn rows(&self) -> usize {
        match self {
            Quad::Direct { f } => f.nrows(),
            Quad::Fractions { t, .. } => t.nrows(),
        }
    }

    /// q (alphas × voxels) for the projected targets `b` (k × voxels); `d` = 1/(s + α).
    fn q(
        &mut self,
        d: &Array2<f64>,
        s: &Array1<f64>,
        alphas: &[f64],
        b: ArrayView2<T>,
        flops: &mut Flops,
    ) -> Array2<f64> {
        if let Quad::Fractions {
            t,
            gdiag,
            s_ref,
            a_c,
            checked,
        } = self
        {
            let b64 = b.mapv(|x| x.to_f64());
            let q = fractions_q(t, gdiag, *s_ref, s, alphas, b64.view(), flops);
            if *checked {
                return q;
            }
            // Check on the first voxels against the exact products; fall back if off.
            let nc = b.ncols().min(CHECK_VOXELS);
            let exact = direct_q(a_c, d, b64.slice(s![.., ..nc]), flops);
            let worst = fractions_error(q.slice(s![.., ..nc]), exact.view());
            if worst <= FRACTIONS_TOL {
                *checked = true;
                return q;
            }
            let k = a_c.ncols();
            *self = direct_factor(std::mem::take(a_c), k, flops).expect("validation Gram factor");
        }
        match self {
            Quad::Direct { f } => direct_q(f, d, b, flops),
            Quad::Fractions { .. } => unreachable!("replaced above"),
        }
    }
}

fn fractions_q(
    t: &Array2<f64>,
    gdiag: &Array1<f64>,
    s_ref: f64,
    s: &Array1<f64>,
    alphas: &[f64],
    b: ArrayView2<f64>,
    flops: &mut Flops,
) -> Array2<f64> {
    let (k, c) = b.dim();
    let tb = flops.dot(t.view(), b);
    // u1 = G_kk b², u2 = 2 b (T b), row by row (contiguous inner loops).
    let mut u1 = Array2::<f64>::zeros((k, c));
    let mut u2 = Array2::<f64>::zeros((k, c));
    Zip::from(u1.rows_mut())
        .and(u2.rows_mut())
        .and(b.rows())
        .and(tb.rows())
        .and(gdiag)
        .par_for_each(|mut x1, mut x2, bb, vv, &g| {
            let (x1, x2) = (
                x1.as_slice_mut().expect("row"),
                x2.as_slice_mut().expect("row"),
            );
            for j in 0..bb.len() {
                let t = bb[j];
                x1[j] = g * t * t;
                x2[j] = 2.0 * t * vv[j];
            }
        });
    let na = alphas.len();
    let dsq = Array2::from_shape_fn((na, k), |(a, i)| (s[i] + alphas[a]).powi(-2));
    // d_k - d_ref = (s_ref - s_k) d_k d_ref, without cancellation.
    let ddiff = Array2::from_shape_fn((na, k), |(a, i)| {
        (s_ref - s[i]) / ((s[i] + alphas[a]) * (s_ref + alphas[a]))
    });
    let mut q = flops.dot(dsq.view(), u1.view());
    flops.gemm(1.0, ddiff.view(), u2.view(), 1.0, q.view_mut());
    q
}

/// q = ||F D B||² per alpha, block by block so B's block stays in cache across alphas.
fn direct_q<T: Real>(
    f: &Array2<T>,
    d: &Array2<f64>,
    b: ArrayView2<T>,
    flops: &mut Flops,
) -> Array2<f64> {
    let (na, c) = (d.nrows(), b.ncols());
    let fds: Vec<Array2<T>> = (0..na)
        .map(|a| {
            let mut fd_a = f.clone();
            for (mut col, &dd) in fd_a.axis_iter_mut(Axis(1)).zip(d.row(a).iter()) {
                col.mapv_inplace(|t| t * T::from_f64(dd));
            }
            fd_a
        })
        .collect();
    let r = f.nrows();
    let mut h = Array2::<T>::zeros((r, BLOCK.min(c)));
    let mut q = Array2::<f64>::zeros((na, c));
    for b0 in (0..c).step_by(BLOCK) {
        let b1 = (b0 + BLOCK).min(c);
        let mut hb = h.slice_mut(s![.., ..b1 - b0]);
        for a in 0..na {
            flops.gemm(
                T::one(),
                fds[a].view(),
                b.slice(s![.., b0..b1]),
                T::zero(),
                hb.view_mut(),
            );
            let mut qa = q.slice_mut(s![a, b0..b1]);
            for row in hb.rows() {
                Zip::from(&mut qa).and(&row).for_each(|acc, &t| {
                    let t = t.to_f64();
                    *acc += t * t;
                });
            }
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn randn(r: usize, c: usize, seed: u64) -> Array2<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_simple_fn((r, c), || StandardNormal.sample(&mut rng))
    }

    #[test]
    fn partial_fractions_equal_direct_products() {
        let (n_f, k, c) = (40, 12, 9);
        let a_c = randn(n_f, k, 1);
        let s = Array1::from_shape_fn(k, |i| 5.0 + 3.0 * i as f64 + (i as f64).sin());
        let alphas = [0.01, 1.0, 30.0, 1e3, 1e6];
        let b = randn(k, c, 2);
        let d = Array2::from_shape_fn((alphas.len(), k), |(a, i)| 1.0 / (s[i] + alphas[a]));
        let mut fl = Flops::default();
        let exact = direct_q(&a_c, &d, b.view(), &mut fl);
        let mut quad =
            choose_quad::<f32>(a_c.clone(), &s, &alphas, Dtype::F32, true, &mut fl).unwrap();
        assert!(
            matches!(quad, Quad::Fractions { .. }),
            "well separated eigenvalues use partial fractions"
        );
        let b32 = b.mapv(|t| t as f32);
        let q = quad.q(&d, &s, &alphas, b32.view(), &mut fl);
        let exact32 = direct_q(&a_c, &d, b32.mapv(|t| t as f64).view(), &mut fl);
        for ((x, y), z) in q.iter().zip(exact32.iter()).zip(exact.iter()) {
            assert!((x - y).abs() <= 1e-9 * y.abs(), "{x} vs {y}");
            assert!((x - z).abs() <= 1e-5 * z.abs());
        }
        assert!(matches!(quad, Quad::Fractions { checked: true, .. }));
    }

    #[test]
    fn repeated_eigenvalues_and_f64_use_direct_products() {
        let a_c = randn(30, 6, 3);
        let s = Array1::from_vec(vec![1.0, 2.0, 2.0, 3.0, 4.0, 5.0]);
        let alphas = [1.0, 10.0, 100.0];
        let mut fl = Flops::default();
        let q = choose_quad::<f32>(a_c.clone(), &s, &alphas, Dtype::F32, true, &mut fl).unwrap();
        assert!(matches!(q, Quad::Direct { .. }));
        let s2 = Array1::from_shape_fn(6, |i| 1.0 + i as f64);
        let q = choose_quad::<f64>(a_c, &s2, &alphas, Dtype::F64, true, &mut fl).unwrap();
        assert!(matches!(q, Quad::Direct { .. }));
    }
}
