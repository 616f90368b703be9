//! fMRIPrep confounds (`*_desc-confounds_timeseries.tsv`): reading a named subset of columns
//! and regressing them (with an intercept) out of a run's time series.
use anyhow::{bail, Context, Result};
use ndarray::Array2;
use std::path::Path;

/// The column names of a TSV file (its header line).
pub fn columns(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading confounds {}", path.display()))?;
    let header = text
        .lines()
        .next()
        .with_context(|| format!("{}: empty confounds file", path.display()))?;
    Ok(header.split('\t').map(|s| s.trim().to_string()).collect())
}

/// Names of `wanted` that the TSV lacks.
pub fn missing_columns(path: &Path, wanted: &[String]) -> Result<Vec<String>> {
    let have = columns(path)?;
    Ok(wanted
        .iter()
        .filter(|w| !have.contains(w))
        .cloned()
        .collect())
}

/// A clear message for missing columns, listing a few that exist.
pub fn missing_message(path: &Path, missing: &[String]) -> String {
    let have = columns(path).unwrap_or_default();
    let shown: Vec<&str> = have.iter().take(12).map(String::as_str).collect();
    format!(
        "{}: no confound column {} (it has {} columns: {}{})",
        path.display(),
        missing
            .iter()
            .map(|m| format!("'{m}'"))
            .collect::<Vec<_>>()
            .join(", "),
        have.len(),
        shown.join(", "),
        if have.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    )
}

/// Number of data rows (lines after the header, ignoring a trailing empty line).
pub fn n_rows(path: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading confounds {}", path.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count())
}

/// Reads `wanted` columns as [rows, columns]. fMRIPrep writes `n/a` in the first rows of
/// derivative-type columns (framewise_displacement, *_derivative1): leading `n/a` values are
/// replaced by the mean of the column's other values, so they carry no signal once the
/// intercept is regressed; an `n/a` after the first number is an error.
pub fn read(path: &Path, wanted: &[String]) -> Result<Array2<f64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading confounds {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .with_context(|| format!("{}: empty confounds file", path.display()))?
        .split('\t')
        .map(str::trim)
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|w| !header.contains(&w.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        bail!("{}", missing_message(path, &missing));
    }
    let idx: Vec<usize> = wanted
        .iter()
        .map(|w| header.iter().position(|h| h == w).unwrap())
        .collect();
    let rows: Vec<Vec<&str>> = lines
        .map(|l| l.split('\t').map(str::trim).collect())
        .collect();
    let mut out = Array2::<f64>::zeros((rows.len(), wanted.len()));
    for (j, (&c, name)) in idx.iter().zip(wanted).enumerate() {
        let mut leading = 0;
        let mut seen_number = false;
        for (i, row) in rows.iter().enumerate() {
            let cell = row.get(c).with_context(|| {
                format!(
                    "{}: row {} has {} fields, the header {}",
                    path.display(),
                    i + 2,
                    row.len(),
                    header.len()
                )
            })?;
            if *cell == "n/a" || cell.is_empty() {
                if seen_number {
                    bail!("{}: column '{name}' is n/a at data row {} (only leading n/a values are accepted)", path.display(), i + 1);
                }
                leading += 1;
                continue;
            }
            seen_number = true;
            out[[i, j]] = cell
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| {
                    format!(
                        "{}: column '{name}', data row {}: '{cell}' is not a number",
                        path.display(),
                        i + 1
                    )
                })?;
        }
        if !seen_number {
            bail!("{}: column '{name}' has no numeric value", path.display());
        }
        let n = rows.len() - leading;
        let mean = out.column(j).iter().skip(leading).sum::<f64>() / n as f64;
        for i in 0..leading {
            out[[i, j]] = mean;
        }
    }
    Ok(out)
}

/// Replaces `y` [T, V] by its residuals after least squares on [1, confounds] (an orthonormal
/// basis by modified Gram-Schmidt in f64; columns that are linear combinations of earlier
/// ones are dropped).
pub fn regress_out(y: &mut Array2<f32>, confounds: &Array2<f64>) -> Result<()> {
    let t = y.nrows();
    if confounds.nrows() != t {
        bail!("{} confound rows for {t} volumes", confounds.nrows());
    }
    let mut basis: Vec<Vec<f64>> = Vec::new();
    let cols =
        std::iter::once(vec![1.0; t]).chain(confounds.columns().into_iter().map(|c| c.to_vec()));
    for mut v in cols {
        let norm0 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for q in &basis {
            let d: f64 = v.iter().zip(q).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(q).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-10 * norm0.max(1e-300) && norm > 0.0 {
            v.iter_mut().for_each(|a| *a /= norm);
            basis.push(v);
        }
    }
    if basis.len() >= t {
        bail!(
            "{} independent confounds (with the intercept) for only {t} volumes",
            basis.len()
        );
    }
    for mut col in y.columns_mut() {
        let mut r: Vec<f64> = col.iter().map(|&x| x as f64).collect();
        for q in &basis {
            let d: f64 = r.iter().zip(q).map(|(a, b)| a * b).sum();
            r.iter_mut().zip(q).for_each(|(a, b)| *a -= d * b);
        }
        col.iter_mut().zip(&r).for_each(|(o, &v)| *o = v as f32);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_na_and_missing_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.tsv");
        std::fs::write(
            &p,
            "trans_x\tframewise_displacement\tcsf\n0.1\tn/a\t5\n0.2\t0.3\t6\n0.3\t0.5\t7\n",
        )
        .unwrap();
        let c = read(&p, &["framewise_displacement".into(), "trans_x".into()]).unwrap();
        assert_eq!(c.column(0).to_vec(), vec![0.4, 0.3, 0.5]);
        assert_eq!(c.column(1).to_vec(), vec![0.1, 0.2, 0.3]);
        let e = read(&p, &["rot_z".into()]).unwrap_err().to_string();
        assert!(
            e.contains("c.tsv") && e.contains("'rot_z'") && e.contains("trans_x"),
            "{e}"
        );
        std::fs::write(&p, "a\n1\nn/a\n").unwrap();
        assert!(read(&p, &["a".into()])
            .unwrap_err()
            .to_string()
            .contains("n/a at data row 2"));
    }

    #[test]
    fn regression_is_the_orthogonal_projection() {
        // The residual r of y on [1, c1, c2] is characterised by: r ⟂ 1, c1, c2 and y − r lies
        // in their span (so regressing y − r leaves nothing).
        let t = 9;
        let c = Array2::from_shape_fn((t, 2), |(i, j)| {
            if j == 0 {
                i as f64
            } else {
                ((i * i) % 5) as f64
            }
        });
        let y0 = Array2::from_shape_fn((t, 2), |(i, j)| {
            (2.0 + 3.0 * c[[i, 0]] - c[[i, 1]] + (((i * 7 + 3 * j) % 4) as f64 - 1.5)) as f32
        });
        let mut r = y0.clone();
        regress_out(&mut r, &c).unwrap();
        for j in 0..2 {
            for col in [vec![1.0; t], c.column(0).to_vec(), c.column(1).to_vec()] {
                let d: f64 = r
                    .column(j)
                    .iter()
                    .zip(&col)
                    .map(|(&a, b)| a as f64 * b)
                    .sum();
                assert!(d.abs() < 1e-3, "residual not orthogonal: {d}");
            }
        }
        let mut fitted = &y0 - &r;
        regress_out(&mut fitted, &c).unwrap();
        assert!(fitted.iter().all(|v| v.abs() < 1e-3), "{fitted:?}");
        // A confound that is a copy of another is dropped, not a failure.
        let dup = Array2::from_shape_fn((t, 2), |(i, _)| i as f64);
        let mut y = y0.clone();
        regress_out(&mut y, &dup).unwrap();
    }
}
