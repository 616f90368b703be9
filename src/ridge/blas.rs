//! Matrix products through the system BLAS (the system OpenBLAS, linked by openblas-src), for f32 and
//! f64, on ndarray views in row- or column-major layout. ndarray's own `dot` would use
//! matrixmultiply (no AVX-512, no beta accumulation), several times slower on this work.
// Links the system OpenBLAS (cblas + LAPACK symbols) even when nothing else names the crate.
extern crate openblas_src as _;
use cblas_sys::{CBLAS_LAYOUT, CBLAS_TRANSPOSE};
use ndarray::{linalg::general_mat_mul, ArrayView2, ArrayViewMut2, LinalgScalar};
use std::os::raw::c_int;

/// The floating-point types of the voxel-sized work.
pub trait Real: LinalgScalar + Send + Sync + std::fmt::Debug + PartialOrd {
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    /// C = alpha·op(A)·op(B) + beta·C in row-major storage (BLAS arguments already checked).
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        ta: CBLAS_TRANSPOSE,
        tb: CBLAS_TRANSPOSE,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: Self,
        a: *const Self,
        lda: c_int,
        b: *const Self,
        ldb: c_int,
        beta: Self,
        c: *mut Self,
        ldc: c_int,
    );
}

macro_rules! impl_real {
    ($t:ty, $f:ident) => {
        impl Real for $t {
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            unsafe fn gemm_raw(
                ta: CBLAS_TRANSPOSE,
                tb: CBLAS_TRANSPOSE,
                m: c_int,
                n: c_int,
                k: c_int,
                alpha: Self,
                a: *const Self,
                lda: c_int,
                b: *const Self,
                ldb: c_int,
                beta: Self,
                c: *mut Self,
                ldc: c_int,
            ) {
                cblas_sys::$f(
                    CBLAS_LAYOUT::CblasRowMajor,
                    ta,
                    tb,
                    m,
                    n,
                    k,
                    alpha,
                    a,
                    lda,
                    b,
                    ldb,
                    beta,
                    c,
                    ldc,
                )
            }
        }
    };
}
impl_real!(f32, cblas_sgemm);
impl_real!(f64, cblas_dgemm);

/// How a view maps onto a row-major BLAS operand: (transpose flag, leading dimension).
fn operand<T>(a: &ArrayView2<T>) -> Option<(CBLAS_TRANSPOSE, c_int)> {
    let (r, c) = a.dim();
    let s = a.strides();
    let ld = |x: usize| (x <= c_int::MAX as usize).then_some(x as c_int);
    if (c <= 1 || s[1] == 1) && (r <= 1 || s[0] >= c.max(1) as isize) {
        ld(if r <= 1 { c.max(1) } else { s[0] as usize })
            .map(|l| (CBLAS_TRANSPOSE::CblasNoTrans, l))
    } else if (r <= 1 || s[0] == 1) && (c <= 1 || s[1] >= r.max(1) as isize) {
        ld(if c <= 1 { r.max(1) } else { s[1] as usize }).map(|l| (CBLAS_TRANSPOSE::CblasTrans, l))
    } else {
        None
    }
}

/// C = alpha·A·B + beta·C. Uses BLAS when the layouts allow (C row-major, A and B row- or
/// column-major), else ndarray's portable product.
pub fn gemm<T: Real>(
    alpha: T,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: T,
    mut c: ArrayViewMut2<T>,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(k, k2, "gemm: inner dimensions differ");
    assert_eq!(c.dim(), (m, n), "gemm: output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.mapv_inplace(|x| x * beta);
        return;
    }
    let cs = c.strides().to_vec();
    let c_ok =
        (n <= 1 || cs[1] == 1) && (m <= 1 || (cs[0] >= n as isize && cs[0] <= c_int::MAX as isize));
    let too_big = m.max(n).max(k) > c_int::MAX as usize;
    match (operand(&a), operand(&b), c_ok && !too_big) {
        (Some((ta, lda)), Some((tb, ldb)), true) => {
            let ldc = if m <= 1 { n as c_int } else { cs[0] as c_int };
            // SAFETY: the shapes and leading dimensions were checked against the views,
            // which stay borrowed for the duration of the call.
            unsafe {
                T::gemm_raw(
                    ta,
                    tb,
                    m as c_int,
                    n as c_int,
                    k as c_int,
                    alpha,
                    a.as_ptr(),
                    lda,
                    b.as_ptr(),
                    ldb,
                    beta,
                    c.as_mut_ptr(),
                    ldc,
                )
            }
        }
        _ => general_mat_mul(alpha, &a, &b, beta, &mut c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    #[test]
    fn gemm_matches_ndarray_for_all_layouts() {
        let a = Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f64 * 0.5 - 2.0);
        let b = Array2::from_shape_fn((3, 4), |(i, j)| (i as f64 - j as f64) * 0.25 + 1.0);
        let want = a.dot(&b) * 2.0 + 1.0;
        let af = {
            let mut t = Array2::zeros((5, 3).f());
            t.assign(&a);
            t
        };
        let bt = b.t().to_owned();
        for (av, bv) in [
            (a.view(), b.view()),
            (af.view(), b.view()),
            (a.view(), bt.t()),
            (af.view(), bt.t()),
        ] {
            let mut c = Array2::<f64>::ones((5, 4));
            gemm(2.0, av, bv, 1.0, c.view_mut());
            assert!((&c - &want).iter().all(|d| d.abs() < 1e-12));
        }
        // A slice with a row stride larger than its width.
        let big = Array2::from_shape_fn((5, 6), |(i, j)| (i + j) as f32);
        let sub = big.slice(ndarray::s![.., 1..4]);
        let bb = Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f32);
        let mut c = Array2::<f32>::zeros((5, 2));
        gemm(1.0, sub, bb.view(), 0.0, c.view_mut());
        assert_eq!(c, sub.dot(&bb));
    }
}

/// Symmetric eigendecomposition (f64, divide and conquer: LAPACK dsyevd, several times faster
/// than the QR-iteration dsyev behind ndarray-linalg's `eigh`). Eigenvalues ascending,
/// eigenvectors in the columns. Reads the lower triangle.
pub fn eigh(
    a: &ndarray::Array2<f64>,
) -> anyhow::Result<(ndarray::Array1<f64>, ndarray::Array2<f64>)> {
    let n = a.nrows();
    anyhow::ensure!(a.ncols() == n, "eigh: matrix is not square");
    if n == 0 {
        return Ok((ndarray::Array1::zeros(0), ndarray::Array2::zeros((0, 0))));
    }
    // Row-major storage of a symmetric matrix is its column-major storage: lower <-> upper.
    let mut data: Vec<f64> = a.as_standard_layout().iter().cloned().collect();
    let mut w = vec![0.0f64; n];
    let (jobz, uplo) = (b'V' as std::os::raw::c_char, b'U' as std::os::raw::c_char);
    let ni = n as c_int;
    let mut info: c_int = 0;
    let (mut wq, mut iwq) = (0.0f64, 0 as c_int);
    // SAFETY: buffers are sized as LAPACK requires (workspace from the query call).
    let dsyevd = dsyevd_fn();
    unsafe {
        dsyevd(
            &jobz,
            &uplo,
            &ni,
            data.as_mut_ptr(),
            &ni,
            w.as_mut_ptr(),
            &mut wq,
            &-1,
            &mut iwq,
            &-1,
            &mut info,
        );
    }
    anyhow::ensure!(info == 0, "dsyevd workspace query failed (info {info})");
    let (lwork, liwork) = (wq as c_int, iwq);
    let mut work = vec![0.0f64; lwork.max(1) as usize];
    let mut iwork = vec![0 as c_int; liwork.max(1) as usize];
    unsafe {
        dsyevd(
            &jobz,
            &uplo,
            &ni,
            data.as_mut_ptr(),
            &ni,
            w.as_mut_ptr(),
            work.as_mut_ptr(),
            &lwork,
            iwork.as_mut_ptr(),
            &liwork,
            &mut info,
        );
    }
    anyhow::ensure!(info == 0, "dsyevd did not converge (info {info})");
    // Column-major eigenvectors read row-major are V'; transpose back.
    let vt = ndarray::Array2::from_shape_vec((n, n), data)?;
    Ok((
        ndarray::Array1::from_vec(w),
        vt.reversed_axes().as_standard_layout().to_owned(),
    ))
}

type Dsyevd = unsafe extern "C" fn(
    *const std::os::raw::c_char,
    *const std::os::raw::c_char,
    *const c_int,
    *mut f64,
    *const c_int,
    *mut f64,
    *mut f64,
    *const c_int,
    *mut c_int,
    *const c_int,
    *mut c_int,
);

/// OpenBLAS's own dsyevd. libtorch_cpu also exports LAPACK symbols (its bundled MKL) and comes
/// first in link order; MKL's OpenMP threads then spin against OpenBLAS's threads, which made
/// whole fits ~3x slower. Looking the symbol up in the already loaded OpenBLAS avoids that.
fn dsyevd_fn() -> Dsyevd {
    static F: std::sync::OnceLock<Dsyevd> = std::sync::OnceLock::new();
    *F.get_or_init(|| {
        for lib in [c"libopenblas.so.0", c"libopenblas.so"] {
            // SAFETY: RTLD_NOLOAD only returns a handle to an already loaded library; the
            // symbol has the LAPACK dsyevd signature.
            unsafe {
                let h = libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
                if !h.is_null() {
                    let sym = libc::dlsym(h, c"dsyevd_".as_ptr());
                    if !sym.is_null() {
                        return std::mem::transmute::<*mut libc::c_void, Dsyevd>(sym);
                    }
                }
            }
        }
        lapack_sys::dsyevd_ as Dsyevd
    })
}
