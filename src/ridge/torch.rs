//! torch backend (tch): the algorithm of `mod.rs` on libtorch tensors, on the CPU or a CUDA
//! GPU, with the scalar rules of `plan.rs`; step for step as `cpu.rs` (`prepare`,
//! `fit_chunks`, `basis`, `choose_quad`, `direct_factor`, `Quad::q`, `fractions_q`,
//! `direct_q`). Grams and eigendecompositions in f64 (cuSOLVER / LAPACK), the voxel-sized
//! work in f32 (optionally TF32 matrix products) or f64.
use crate::ridge::plan::{
    self, best_alpha_index, chunk_voxels, eigh_flops, fractions_error, gemm_flops, keep_indices,
    memory_budget, ChunkShape, QuadRule, CHECK_VOXELS, FRACTIONS_TOL,
};
use crate::ridge::{
    progress, CvScore, Dtype, Plan, RawFit, RidgeDevice, RidgeOptions, RidgeProblem,
};
use anyhow::{bail, Context, Result};
use ndarray::{s, Array2, ArrayView2};
use tch::{Device, Kind, Tensor};

/// The libtorch device for `d`, checked to exist.
pub(crate) fn device(d: RidgeDevice) -> Result<Device> {
    match d {
        RidgeDevice::Cpu => Ok(Device::Cpu),
        RidgeDevice::Cuda(i) => {
            let count = tch::Cuda::device_count();
            if !tch::Cuda::is_available() || i as i64 >= count {
                bail!("CUDA device {i} is not available (libtorch sees {count} CUDA device(s)); use --device cpu");
            }
            Ok(Device::Cuda(i))
        }
    }
}

// libtorch's global switch for TF32 in cuBLAS products, which tch does not wrap:
// at::globalContext().setAllowTF32CuBLAS(bool) (Itanium C++ ABI: `this` first), exported by
// libtorch_cpu, which every build links through tch.
extern "C" {
    #[link_name = "_ZN2at13globalContextEv"]
    fn at_global_context() -> *mut std::ffi::c_void;
    #[link_name = "_ZN2at7Context18setAllowTF32CuBLASEb"]
    fn at_context_set_allow_tf32_cublas(ctx: *mut std::ffi::c_void, allow: bool);
    #[link_name = "_ZNK2at7Context15allowTF32CuBLASEv"]
    fn at_context_allow_tf32_cublas(ctx: *const std::ffi::c_void) -> bool;
}

/// Turns TF32 for cuBLAS f32 matrix products on or off (process-wide, as in PyTorch's
/// `torch.backends.cuda.matmul.allow_tf32`).
pub(crate) fn set_tf32(on: bool) {
    // SAFETY: plain setter on libtorch's global context, which lives for the process.
    unsafe { at_context_set_allow_tf32_cublas(at_global_context(), on) }
}

/// Whether cuBLAS may use TF32 for f32 products.
pub(crate) fn tf32_enabled() -> bool {
    // SAFETY: plain getter on libtorch's global context.
    unsafe { at_context_allow_tf32_cublas(at_global_context()) }
}

fn kind(d: Dtype) -> Kind {
    match d {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
    }
}

/// A host f32 matrix to a device tensor of `k`. Row-major views (including column slices of
/// a larger matrix) are read in place: no host copy before the transfer.
fn upload(a: ArrayView2<f32>, k: Kind, dev: Device) -> Tensor {
    let (r, c) = a.dim();
    let st = a.strides();
    if r > 0 && c > 0 && (c == 1 || st[1] == 1) && st[0] >= c as isize {
        let strides = [st[0] as i64, 1];
        // SAFETY: the blob covers exactly the view's elements (shape and positive strides
        // checked above) and lives only until the copy below, while `a` is borrowed.
        let blob = unsafe {
            Tensor::from_blob(
                a.as_ptr() as *const u8,
                &[r as i64, c as i64],
                &strides,
                Kind::Float,
                Device::Cpu,
            )
        };
        return if dev == Device::Cpu && k == Kind::Float {
            blob.copy()
        } else if dev == Device::Cpu {
            blob.to_kind(k)
        } else {
            blob.to_device(dev).to_kind(k)
        };
    }
    let std = a.as_standard_layout();
    let t = Tensor::from_slice(std.as_slice().expect("standard layout"));
    t.view([r as i64, c as i64]).to_device(dev).to_kind(k)
}

fn to_vec_f64(t: &Tensor) -> Vec<f64> {
    let t = t
        .to_kind(Kind::Double)
        .to_device(Device::Cpu)
        .contiguous()
        .view(-1);
    let numel = t.numel();
    let mut out = vec![0.0f64; numel];
    t.copy_data(&mut out, numel);
    out
}

fn to_array_f32(t: &Tensor) -> Result<Array2<f32>> {
    let (r, c) = t.size2()?;
    let t = t
        .to_kind(Kind::Float)
        .to_device(Device::Cpu)
        .contiguous()
        .view(-1);
    let numel = t.numel();
    let mut out = vec![0.0f32; numel];
    t.copy_data(&mut out, numel);
    Ok(Array2::from_shape_vec((r as usize, c as usize), out)?)
}

fn index(rows: &[usize], dev: Device) -> Tensor {
    Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>()).to_device(dev)
}

/// Counts FLOPs as in the cpu backend.
#[derive(Default)]
struct Flops(f64);

impl Flops {
    fn mm(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        let (m, k) = a.size2().expect("2-d");
        let n = b.size2().expect("2-d").1;
        self.0 += gemm_flops(m as usize, n as usize, k as usize);
        a.mm(b)
    }
    fn eigh(&mut self, a: &Tensor, what: &str) -> Result<(Tensor, Tensor)> {
        self.0 += eigh_flops(a.size()[0] as usize);
        a.f_linalg_eigh("L")
            .with_context(|| format!("eigendecomposition of {what}"))
    }
}

/// Indices of eigenvalues above the numerical-rank tolerance (as in the cpu backend).
fn keep_index(s: &Tensor, dim: usize, dev: Device) -> (Tensor, usize) {
    let keep = keep_indices(&to_vec_f64(s), dim);
    (index(&keep, dev), keep.len())
}

/// Orthonormal basis M (p × k, f64) of the centred training rows and the eigenvalues s.
fn basis(
    x64: &Tensor,
    train: &Tensor,
    n_t: usize,
    gram: &Tensor,
    mu: &Tensor,
    dev: Device,
    fl: &mut Flops,
) -> Result<(Tensor, Tensor)> {
    let p = x64.size()[1] as usize;
    if p <= n_t {
        let k = gram - mu.outer(mu) * n_t as f64;
        let (s, u) = fl.eigh(&k, "the training Gram matrix X'X")?;
        let (keep, _) = keep_index(&s, p, dev);
        Ok((u.index_select(1, &keep), s.index_select(0, &keep)))
    } else {
        let xc = x64.index_select(0, train) - mu.unsqueeze(0);
        let k = fl.mm(&xc, &xc.tr());
        let (s, v) = fl.eigh(&k, "the training kernel XX'")?;
        let (keep, _) = keep_index(&s, n_t, dev);
        let s = s.index_select(0, &keep);
        let m = fl.mm(&xc.tr(), &v.index_select(1, &keep)) / s.sqrt().unsqueeze(0);
        Ok((m, s))
    }
}

struct Fold {
    idx: Tensor,
    n_val: usize,
    x_val: Tensor,
    mu: Tensor,
    xbar: Tensor,
    mt: Tensor,
    s: Tensor,
    quad: Quad,
    delta: Tensor,
}

pub(crate) fn fit(p: &RidgeProblem, o: &RidgeOptions, plan: &Plan) -> Result<RawFit> {
    let mut prep = Prepared::new(p.x_train, p.x_test, o, plan)?;
    let mut raw = prep.fit_voxels(p.y_train, o, plan)?;
    raw.flops += prep.setup_flops;
    Ok(raw)
}

/// Runs `f` without autograd and with TF32 exactly as asked; the process-wide TF32 setting
/// is restored after.
fn on_device<R>(tf32: bool, f: impl FnOnce() -> R) -> R {
    let before = tf32_enabled();
    set_tf32(tf32);
    let out = tch::no_grad(f);
    set_tf32(before);
    out
}

/// The X side of a fit on the device, computed once (Grams, fold bases and their quadratic
/// forms, refit basis, test projection), to which any number of voxel blocks can then be
/// fitted: as the cpu backend's `Prepared`, so a streamed fit (`ridge::blocks`) does not
/// redo the setup per block.
pub(crate) struct Prepared {
    dev: Device,
    kd: Kind,
    n: usize,
    alphas: Tensor,
    folds: Vec<Fold>,
    mu_all: Tensor,
    s_all: Tensor,
    mt_all: Tensor,
    a_test: Tensor,
    m_all_k: Option<Tensor>,
    shape: ChunkShape,
    /// FLOPs of the X-side setup (counted once per fit).
    pub(crate) setup_flops: f64,
}

impl Prepared {
    /// Prepares the X side of `x` (training rows × features) and `x_test` for `plan`.
    /// Errors: an unavailable device, a failed eigendecomposition (naming the fold).
    pub(crate) fn new(
        x: ArrayView2<f32>,
        x_test: ArrayView2<f32>,
        o: &RidgeOptions,
        plan: &Plan,
    ) -> Result<Self> {
        let dev = device(o.device)?;
        on_device(o.tf32, || prepare(x, x_test, o, plan, dev))
    }

    /// Fits the voxels of `y` (training rows × voxels, rows as the X given to `new`).
    pub(crate) fn fit_voxels(
        &mut self,
        y: ArrayView2<f32>,
        o: &RidgeOptions,
        plan: &Plan,
    ) -> Result<RawFit> {
        on_device(o.tf32, || self.fit_chunks(y, o, plan))
    }
}

fn prepare(
    x: ArrayView2<f32>,
    x_test: ArrayView2<f32>,
    o: &RidgeOptions,
    plan: &Plan,
    dev: Device,
) -> Result<Prepared> {
    let kd = kind(o.dtype);
    let (n, nf) = x.dim();
    let na = plan.alphas.len();
    let nfold = plan.folds.len();
    let mut fl = Flops::default();
    // With an intercept, X and Y are shifted by their training means first (the fit does not
    // change), so that f32 products of data with large means (raw BOLD) keep their precision.
    let mut x64 = upload(x, Kind::Double, dev);
    let xs = if o.intercept {
        x64.mean_dim([0i64].as_slice(), true, Kind::Double)
    } else {
        Tensor::zeros([1, nf as i64], (Kind::Double, dev))
    };
    x64 -= &xs;
    let alphas = Tensor::from_slice(&plan.alphas).to_device(dev);

    let mut grams = Vec::with_capacity(nfold);
    let mut sums = Vec::with_capacity(nfold);
    let mut idxs = Vec::with_capacity(nfold);
    for rows in &plan.folds {
        let idx = index(rows, dev);
        let xf = x64.index_select(0, &idx);
        grams.push(fl.mm(&xf.tr(), &xf));
        sums.push(xf.sum_dim_intlist([0i64].as_slice(), false, Kind::Double));
        idxs.push(idx);
    }
    let gram_all = grams.iter().fold(
        Tensor::zeros([nf as i64, nf as i64], (Kind::Double, dev)),
        |a, g| a + g,
    );
    let sum_all = sums
        .iter()
        .fold(Tensor::zeros([nf as i64], (Kind::Double, dev)), |a, s| {
            a + s
        });
    let zeros_p = Tensor::zeros([nf as i64], (Kind::Double, dev));

    let mut folds = Vec::with_capacity(nfold);
    for (fi, rows) in plan.folds.iter().enumerate() {
        let n_f = rows.len();
        let n_t = n - n_f;
        let mu = if o.intercept {
            (&sum_all - &sums[fi]) / n_t as f64
        } else {
            zeros_p.shallow_clone()
        };
        let xbar = &sums[fi] / n_f as f64;
        let train = plan.train_rows(fi, n);
        let (m, s) = basis(
            &x64,
            &index(&train, dev),
            n_t,
            &(&gram_all - &grams[fi]),
            &mu,
            dev,
            &mut fl,
        )
        .with_context(|| format!("CV fold {} of {nfold}", fi + 1))?;
        let xf = x64.index_select(0, &idxs[fi]);
        let a_c = fl.mm(&(&xf - xbar.unsqueeze(0)), &m);
        let quad = choose_quad(
            a_c,
            &s,
            &plan.alphas,
            o.dtype,
            o.partial_fractions,
            kd,
            dev,
            &mut fl,
        )?;
        let delta = m.tr().mv(&(&xbar - &mu));
        folds.push(Fold {
            idx: idxs[fi].shallow_clone(),
            n_val: n_f,
            x_val: xf.to_kind(kd),
            mu,
            xbar,
            mt: m.tr().contiguous().to_kind(kd),
            s,
            quad,
            delta,
        });
    }

    let mu_all = if o.intercept {
        &sum_all / n as f64
    } else {
        zeros_p.shallow_clone()
    };
    let all = index(&(0..n).collect::<Vec<_>>(), dev);
    let (m_all, s_all) = basis(&x64, &all, n, &gram_all, &mu_all, dev, &mut fl)
        .context("refit on all training runs")?;
    let k_all = s_all.size()[0] as usize;
    let n_test = x_test.nrows();
    let xt64 = upload(x_test, Kind::Double, dev) - &xs;
    let a_test = fl.mm(&(xt64 - mu_all.unsqueeze(0)), &m_all).to_kind(kd);
    let mt_all = m_all.tr().contiguous().to_kind(kd);
    let m_all_k = o.keep_weights.then(|| m_all.to_kind(kd));

    let e = o.dtype.bytes();
    let k_max = folds
        .iter()
        .map(|f| f.s.size()[0] as usize)
        .chain([k_all])
        .max()
        .unwrap_or(0);
    let r_max = folds.iter().map(|f| f.quad.rows()).max().unwrap_or(0);
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
    Ok(Prepared {
        dev,
        kd,
        n,
        alphas,
        folds,
        mu_all,
        s_all,
        mt_all,
        a_test,
        m_all_k,
        shape,
        setup_flops: fl.0,
    })
}

impl Prepared {
    fn fit_chunks(
        &mut self,
        y_train: ArrayView2<f32>,
        o: &RidgeOptions,
        plan: &Plan,
    ) -> Result<RawFit> {
        let (dev, kd, n) = (self.dev, self.kd, self.n);
        let nf = self.shape.p;
        let v = y_train.ncols();
        let (na, nfold) = (plan.alphas.len(), plan.folds.len());
        let n_test = self.a_test.size()[0] as usize;
        let (alphas, mu_all, s_all) = (&self.alphas, &self.mu_all, &self.s_all);
        let (mt_all, a_test, m_all_k) = (&self.mt_all, &self.a_test, &self.m_all_k);
        let folds = &mut self.folds;
        let mut fl = Flops::default();
        let chunk = chunk_voxels(&self.shape, memory_budget(o), v)?;

        let mut cv_scores = Array2::<f64>::zeros((na, v));
        let mut best = vec![0usize; v];
        let mut test_pred = Array2::<f32>::zeros((n_test, v));
        let mut weights = o.keep_weights.then(|| Array2::<f32>::zeros((nf, v)));
        let bar = progress(o.progress, (v.div_ceil(chunk) * (nfold + 1)) as u64);
        let dims0 = [0i64];
        let dim0 = dims0.as_slice();

        for j0 in (0..v).step_by(chunk) {
            let j1 = (j0 + chunk).min(v);
            let c = (j1 - j0) as i64;
            let mut y = upload(y_train.slice(s![.., j0..j1]), kd, dev);
            // The shift is rounded to the working precision and added back exactly as used.
            let ys = if o.intercept {
                (y.sum_dim_intlist(dim0, false, Kind::Double) / n as f64).to_kind(kd)
            } else {
                Tensor::zeros([c], (kd, dev))
            };
            y -= ys.unsqueeze(0);
            let mut ysum = Vec::with_capacity(nfold);
            let mut yss = Vec::with_capacity(nfold);
            let mut z = Vec::with_capacity(nfold);
            for fd in folds.iter() {
                let yf = y.index_select(0, &fd.idx);
                let sm = yf.sum_dim_intlist(dim0, false, Kind::Double);
                let mean = (&sm / fd.n_val as f64).to_kind(kd).unsqueeze(0);
                yss.push(
                    (&yf - mean)
                        .square()
                        .sum_dim_intlist(dim0, false, Kind::Double),
                );
                ysum.push(sm);
                z.push(fl.mm(&fd.x_val.tr(), &yf));
            }
            drop(y);
            let xty = z.iter().skip(1).fold(z[0].shallow_clone(), |a, b| a + b);
            let ysum_all = ysum
                .iter()
                .skip(1)
                .fold(ysum[0].shallow_clone(), |a, b| a + b);

            let mut scores = Tensor::zeros([na as i64, c], (Kind::Double, dev));
            for (fi, fd) in folds.iter_mut().enumerate() {
                let n_f = fd.n_val as f64;
                let n_t = n as f64 - n_f;
                let ytr = &ysum_all - &ysum[fi];
                let nu = if o.intercept {
                    &ytr / n_t
                } else {
                    ytr.zeros_like()
                };
                let mut r = &xty - &z[fi];
                if o.intercept {
                    r -= fd.mu.outer(&ytr).to_kind(kd);
                }
                let zc = &z[fi] - fd.xbar.outer(&ysum[fi]).to_kind(kd);
                let b = fl.mm(&fd.mt, &r);
                let cm = fl.mm(&fd.mt, &zc);
                let d = (fd.s.unsqueeze(0) + alphas.unsqueeze(1)).reciprocal();
                let lin = fl.mm(&d.to_kind(kd), &(&cm * &b)).to_kind(Kind::Double);
                let mm = fl
                    .mm(&(&d * fd.delta.unsqueeze(0)).to_kind(kd), &b)
                    .to_kind(Kind::Double);
                let q = fd.quad.q(&d, &fd.s, &alphas, &b, kd, &mut fl)?;
                let yy = yss[fi].unsqueeze(0);
                let sc = match o.score {
                    CvScore::R => {
                        let ok = q.gt(0.0).logical_and(&yy.gt(f64::EPSILON * n_f));
                        (&lin / (&q * &yy).sqrt()).where_scalarother(&ok, 0.0)
                    }
                    CvScore::R2 => {
                        let dy = (&ysum[fi] / n_f - &nu).unsqueeze(0);
                        let ee = &yy + dy.square() * n_f;
                        let sse = ee - (&lin + &mm * &dy * n_f) * 2.0 + &q + mm.square() * n_f;
                        (-(sse / &yy) + 1.0).where_scalarother(&yy.gt(f64::EPSILON), 0.0)
                    }
                };
                scores += sc / nfold as f64;
                bar.inc(1);
            }

            // Same tie rule as the cpu backend: scores come back to the host (alphas × chunk).
            let sc_host = Array2::from_shape_vec((na, c as usize), to_vec_f64(&scores))?;
            let best_c = best_alpha_index(sc_host.view());
            let mut r_all = xty;
            if o.intercept {
                r_all -= mu_all.outer(&ysum_all).to_kind(kd);
            }
            let b = fl.mm(&mt_all, &r_all);
            let a_best = alphas.index_select(0, &index(&best_c, dev));
            let bs = &b
                * (s_all.unsqueeze(1) + a_best.unsqueeze(0))
                    .reciprocal()
                    .to_kind(kd);
            let nu_all = if o.intercept {
                &ysum_all / n as f64
            } else {
                ysum_all.zeros_like()
            };
            let pred = fl.mm(&a_test, &bs).to_kind(Kind::Double)
                + (nu_all + ys.to_kind(Kind::Double)).unsqueeze(0);
            test_pred
                .slice_mut(s![.., j0..j1])
                .assign(&to_array_f32(&pred)?);
            if let (Some(w), Some(m)) = (weights.as_mut(), m_all_k.as_ref()) {
                w.slice_mut(s![.., j0..j1])
                    .assign(&to_array_f32(&fl.mm(m, &bs))?);
            }
            cv_scores.slice_mut(s![.., j0..j1]).assign(&sc_host);
            best[j0..j1].copy_from_slice(&best_c);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(RawFit {
            cv_scores,
            best,
            test_pred,
            weights,
            flops: fl.0,
        })
    }
}

/// Best GFLOP/s of square matrix products on the device and precision of `o`.
pub(crate) fn matmul_peak(o: &RidgeOptions) -> Result<f64> {
    let dev = device(o.device)?;
    let before = tf32_enabled();
    set_tf32(o.tf32);
    let out = matmul_peak_on(o, dev);
    set_tf32(before);
    out
}

fn matmul_peak_on(o: &RidgeOptions, dev: Device) -> Result<f64> {
    let m = if dev == Device::Cpu { 2048 } else { 8192 };
    tch::no_grad(|| {
        // Constant operands: no draw from libtorch's global RNG (see nn::measure_peak_matmul).
        let a = Tensor::full([m, m], 0.5, (kind(o.dtype), dev));
        let b = Tensor::full([m, m], 0.25, (kind(o.dtype), dev));
        let mut best = 0.0f64;
        for _ in 0..5 {
            sync(dev);
            let t = std::time::Instant::now();
            let c = a.mm(&b);
            sync(dev);
            let secs = t.elapsed().as_secs_f64();
            drop(c);
            best = best.max(gemm_flops(m as usize, m as usize, m as usize) / secs / 1e9);
        }
        Ok(best)
    })
}

pub(crate) fn sync(dev: Device) {
    if let Device::Cuda(i) = dev {
        tch::Cuda::synchronize(i as i64);
    }
}

/// ||P_c||² per alpha and voxel, as in the cpu backend (see `cpu::Quad`): direct products with
/// a factor F of the validation Gram, or partial fractions over the eigenvalues (the rule and
/// its check in `plan.rs`).
enum Quad {
    Direct {
        f: Tensor,
    },
    Fractions {
        t: Tensor,
        gdiag: Tensor,
        s_ref: f64,
        a_c: Tensor,
        checked: bool,
    },
}

fn direct_factor(a_c: Tensor, kd: Kind, dev: Device, fl: &mut Flops) -> Result<Quad> {
    let (n_f, k) = a_c.size2()?;
    if n_f <= k {
        return Ok(Quad::Direct { f: a_c.to_kind(kd) });
    }
    let g = fl.mm(&a_c.tr(), &a_c);
    let (lam, q) = fl.eigh(&g, "the validation Gram matrix")?;
    let (keep, _) = keep_index(&lam, k as usize, dev);
    let f = (q.index_select(1, &keep) * lam.index_select(0, &keep).sqrt().unsqueeze(0))
        .tr()
        .contiguous();
    Ok(Quad::Direct { f: f.to_kind(kd) })
}

/// The fold's quad by [`plan::choose_quad`]: the factor of the direct products, or the
/// partial-fraction matrices.
#[allow(clippy::too_many_arguments)]
fn choose_quad(
    a_c: Tensor,
    s: &Tensor,
    alphas: &[f64],
    dtype: Dtype,
    allowed: bool,
    kd: Kind,
    dev: Device,
    fl: &mut Flops,
) -> Result<Quad> {
    let n_f = a_c.size2()?.0 as usize;
    let s_ref = match plan::choose_quad(n_f, &to_vec_f64(s), alphas, dtype, allowed) {
        QuadRule::Direct => return direct_factor(a_c, kd, dev, fl),
        QuadRule::Fractions { s_ref } => s_ref,
    };
    let g = fl.mm(&a_c.tr(), &a_c);
    let mut t = (&g + g.tr()) * 0.5 / (s.unsqueeze(0) - s.unsqueeze(1));
    let _ = t.fill_diagonal_(0.0, false);
    Ok(Quad::Fractions {
        t,
        gdiag: g.diagonal(0, 0, 1),
        s_ref,
        a_c,
        checked: false,
    })
}

impl Quad {
    fn rows(&self) -> usize {
        match self {
            Quad::Direct { f } => f.size()[0] as usize,
            Quad::Fractions { t, .. } => t.size()[0] as usize,
        }
    }

    fn q(
        &mut self,
        d: &Tensor,
        s: &Tensor,
        alphas: &Tensor,
        b: &Tensor,
        kd: Kind,
        fl: &mut Flops,
    ) -> Result<Tensor> {
        if let Quad::Fractions {
            t,
            gdiag,
            s_ref,
            a_c,
            checked,
        } = self
        {
            let b64 = b.to_kind(Kind::Double);
            let q = fractions_q(t, gdiag, *s_ref, s, alphas, &b64, fl);
            if *checked {
                return Ok(q);
            }
            // Check on the first voxels against the exact products; fall back if off.
            let nc = b.size()[1].min(CHECK_VOXELS as i64);
            let exact = direct_q(a_c, d, &b64.narrow(1, 0, nc), Kind::Double, fl);
            let host = |t: &Tensor| -> Result<Array2<f64>> {
                let (r, c) = t.size2()?;
                Ok(Array2::from_shape_vec(
                    (r as usize, c as usize),
                    to_vec_f64(t),
                )?)
            };
            let worst = fractions_error(host(&q.narrow(1, 0, nc))?.view(), host(&exact)?.view());
            if worst <= FRACTIONS_TOL {
                *checked = true;
                return Ok(q);
            }
            let dev = a_c.device();
            *self = direct_factor(a_c.shallow_clone(), kd, dev, fl)?;
        }
        match self {
            Quad::Direct { f } => Ok(direct_q(f, d, b, kd, fl)),
            Quad::Fractions { .. } => unreachable!("replaced above"),
        }
    }
}

/// q by partial fractions (see `cpu::Quad`): u1 = G_kk b², u2 = 2 b (T b), then one product
/// per term over all alphas, in f64.
fn fractions_q(
    t: &Tensor,
    gdiag: &Tensor,
    s_ref: f64,
    s: &Tensor,
    alphas: &Tensor,
    b64: &Tensor,
    fl: &mut Flops,
) -> Tensor {
    let tb = fl.mm(t, b64);
    let u1 = gdiag.unsqueeze(1) * b64.square();
    let u2 = b64 * tb * 2.0;
    let den = s.unsqueeze(0) + alphas.unsqueeze(1);
    let dsq = den.square().reciprocal();
    // d_k - d_ref = (s_ref - s_k) d_k d_ref, without cancellation.
    let ddiff = (-s.unsqueeze(0) + s_ref) / (&den * (alphas.unsqueeze(1) + s_ref));
    fl.mm(&dsq, &u1) + fl.mm(&ddiff, &u2)
}

fn direct_q(f: &Tensor, d: &Tensor, b: &Tensor, kd: Kind, fl: &mut Flops) -> Tensor {
    let na = d.size()[0];
    let dims0 = [0i64];
    Tensor::stack(
        &(0..na)
            .map(|a| {
                let fda = f * d.get(a).to_kind(kd).unsqueeze(0);
                fl.mm(&fda, b)
                    .square()
                    .sum_dim_intlist(dims0.as_slice(), false, Kind::Double)
            })
            .collect::<Vec<_>>(),
        0,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn tf32_switch_round_trips() {
        let before = super::tf32_enabled();
        super::set_tf32(true);
        assert!(super::tf32_enabled());
        super::set_tf32(false);
        assert!(!super::tf32_enabled());
        super::set_tf32(before);
    }
}
