//! A small L-BFGS minimiser (Nocedal & Wright, algorithms 7.4 and 3.5/3.6) for the scaling fits.
//!
//! Written here rather than pulled from a crate because the problems are tiny (5 parameters, a
//! few hundred points), run thousands of times (grid of starts, bootstraps) and must be exactly
//! reproducible: a 150-line deterministic solver with no allocation in the inner loop is simpler
//! to audit than adapting a generic framework (argmin's executor/observer machinery and its
//! dependency tree) to that use.

/// Stopping rules and memory size.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Number of correction pairs kept.
    pub memory: usize,
    pub max_iter: usize,
    /// Stop when the largest gradient component falls below this.
    pub gtol: f64,
    /// Stop when an iteration lowers f by less than `ftol · max(|f|, tiny)`.
    pub ftol: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            memory: 10,
            max_iter: 2000,
            gtol: 1e-12,
            ftol: 1e-13,
        }
    }
}

/// Result of a minimisation.
#[derive(Debug, Clone)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub f: f64,
    pub iterations: usize,
    pub converged: bool,
}

/// Minimises `f` from `x0`; `fg(x, grad)` returns f(x) and writes the gradient into `grad`.
/// Non-finite objective values are treated as +inf by the line search (it backs off).
pub fn minimize<F>(mut fg: F, x0: &[f64], opt: Options) -> Minimum
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut g = vec![0.0; n];
    let mut f = fg(&x, &mut g);
    if !f.is_finite() {
        return Minimum {
            x,
            f: f64::INFINITY,
            iterations: 0,
            converged: false,
        };
    }
    let m = opt.memory.max(1);
    let (mut s_hist, mut y_hist, mut rho_hist): (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>) = (
        Vec::with_capacity(m),
        Vec::with_capacity(m),
        Vec::with_capacity(m),
    );
    let mut alpha_buf = vec![0.0; m];
    let mut d = vec![0.0; n];
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    for iter in 0..opt.max_iter {
        if inf_norm(&g) <= opt.gtol {
            return Minimum {
                x,
                f,
                iterations: iter,
                converged: true,
            };
        }
        // Two-loop recursion: d = -H g.
        d.iter_mut().zip(&g).for_each(|(di, gi)| *di = -gi);
        let k = s_hist.len();
        for i in (0..k).rev() {
            let a = rho_hist[i] * dot(&s_hist[i], &d);
            alpha_buf[i] = a;
            axpy(-a, &y_hist[i], &mut d);
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            // First step: unit length in the steepest direction.
            1.0 / inf_norm(&g).max(1e-300)
        };
        d.iter_mut().for_each(|v| *v *= gamma);
        for i in 0..k {
            let b = rho_hist[i] * dot(&y_hist[i], &d);
            axpy(alpha_buf[i] - b, &s_hist[i], &mut d);
        }
        let mut dg = dot(&d, &g);
        if dg >= 0.0 || !dg.is_finite() {
            // Not a descent direction (curvature went bad): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho_hist.clear();
            let scale = 1.0 / inf_norm(&g).max(1e-300);
            d.iter_mut().zip(&g).for_each(|(di, gi)| *di = -gi * scale);
            dg = dot(&d, &g);
        }
        let Some((step, f_new)) = wolfe_search(&mut fg, &x, f, &d, dg, &mut x_new, &mut g_new)
        else {
            // No acceptable step: we are at the floor of what f64 can resolve.
            return Minimum {
                x,
                f,
                iterations: iter,
                converged: true,
            };
        };
        let mut s = vec![0.0; n];
        let mut y = vec![0.0; n];
        for i in 0..n {
            s[i] = step * d[i];
            y[i] = g_new[i] - g[i];
        }
        let sy = dot(&s, &y);
        let f_old = f;
        x.copy_from_slice(&x_new);
        g.copy_from_slice(&g_new);
        f = f_new;
        if sy > 1e-300 {
            if s_hist.len() == m {
                s_hist.remove(0);
                y_hist.remove(0);
                rho_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
            rho_hist.push(1.0 / sy);
        }
        if (f_old - f) <= opt.ftol * f_old.abs().max(1e-300) {
            return Minimum {
                x,
                f,
                iterations: iter + 1,
                converged: true,
            };
        }
    }
    Minimum {
        x,
        f,
        iterations: opt.max_iter,
        converged: false,
    }
}

/// Strong-Wolfe line search (c1 = 1e-4, c2 = 0.9): bracketing then zoom with a safeguarded
/// quadratic step (Nocedal & Wright, algorithms 3.5 and 3.6). Returns the step and f at it, with
/// the point and its gradient left in `xn`, `gn`; None when no step lowers f.
fn wolfe_search<F>(
    fg: &mut F,
    x: &[f64],
    f0: f64,
    d: &[f64],
    dg0: f64,
    xn: &mut [f64],
    gn: &mut [f64],
) -> Option<(f64, f64)>
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    let mut eval = |t: f64, xn: &mut [f64], gn: &mut [f64]| -> (f64, f64) {
        for i in 0..x.len() {
            xn[i] = x[i] + t * d[i];
        }
        let f = fg(xn, gn);
        let f = if f.is_finite() { f } else { f64::INFINITY };
        (f, dot(gn, d))
    };
    // Bracketing phase: (lo, hi) ends up holding an interval with an acceptable step.
    let (mut t_prev, mut f_prev, mut dg_prev) = (0.0, f0, dg0);
    let mut t = 1.0;
    let (mut lo, mut f_lo, mut dg_lo, mut hi, mut f_hi);
    let mut first = true;
    loop {
        let (ft, dgt) = eval(t, xn, gn);
        if ft > f0 + C1 * t * dg0 || (!first && ft >= f_prev) {
            (lo, f_lo, dg_lo, hi, f_hi) = (t_prev, f_prev, dg_prev, t, ft);
            break;
        }
        if dgt.abs() <= -C2 * dg0 {
            return Some((t, ft));
        }
        if dgt >= 0.0 {
            (lo, f_lo, dg_lo, hi, f_hi) = (t, ft, dgt, t_prev, f_prev);
            break;
        }
        (t_prev, f_prev, dg_prev) = (t, ft, dgt);
        t *= 2.0;
        first = false;
        if t > 1e20 {
            // Unbounded below along d: hand back the furthest point tried.
            eval(t_prev, xn, gn);
            return Some((t_prev, f_prev));
        }
    }
    // Zoom phase.
    for _ in 0..60 {
        let width = hi - lo;
        if width.abs() <= 1e-15 * lo.abs().max(hi.abs()) {
            break;
        }
        // Minimiser of the quadratic through (lo, f_lo, dg_lo) and (hi, f_hi), kept within the
        // middle 80% of the bracket; bisection otherwise.
        let c = (f_hi - f_lo - dg_lo * width) / (width * width);
        let q = if c > 0.0 && c.is_finite() {
            lo - dg_lo / (2.0 * c)
        } else {
            f64::NAN
        };
        let frac = (q - lo) / width;
        t = if frac > 0.1 && frac < 0.9 {
            q
        } else {
            lo + 0.5 * width
        };
        let (ft, dgt) = eval(t, xn, gn);
        if ft > f0 + C1 * t * dg0 || ft >= f_lo {
            (hi, f_hi) = (t, ft);
        } else {
            if dgt.abs() <= -C2 * dg0 {
                return Some((t, ft));
            }
            if dgt * (hi - lo) >= 0.0 {
                (hi, f_hi) = (lo, f_lo);
            }
            (lo, f_lo, dg_lo) = (t, ft, dgt);
        }
    }
    // The bracket collapsed: take its best end if it lowered f at all.
    if lo > 0.0 && f_lo < f0 {
        eval(lo, xn, gn);
        return Some((lo, f_lo));
    }
    None
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += a * xi);
}

fn inf_norm(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rosenbrock_minimum() {
        let fg = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let m = minimize(fg, &[-1.2, 1.0], Options::default());
        assert!(
            (m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 1.0).abs() < 1e-6,
            "{m:?}"
        );
    }

    #[test]
    fn ill_conditioned_quadratic() {
        // f = Σ k·(x_k - k)², condition number 100.
        let fg = |x: &[f64], g: &mut [f64]| {
            let mut f = 0.0;
            for (k, xk) in x.iter().enumerate() {
                let w = (k + 1) as f64 * 10.0;
                f += w * (xk - k as f64).powi(2);
                g[k] = 2.0 * w * (xk - k as f64);
            }
            f
        };
        let m = minimize(fg, &[5.0; 10], Options::default());
        for (k, xk) in m.x.iter().enumerate() {
            assert!((xk - k as f64).abs() < 1e-7, "x[{k}] = {xk}");
        }
    }
}
