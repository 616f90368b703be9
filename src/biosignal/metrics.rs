//! Classification metrics of the bio-signal track, computed in one place, with scikit-learn's
//! definitions (checked against scikit-learn 1.x in tests/biosignal_data.rs):
//!
//! - balanced accuracy: mean recall over the classes present in `y_true`
//!   (`balanced_accuracy_score`);
//! - AUROC: binary, the Mann-Whitney statistic with tied scores at their average rank, which
//!   equals the trapezoidal area under the ROC curve (`roc_auc_score`); multi-class, the
//!   unweighted mean of one-vs-rest AUROCs (`multi_class="ovr", average="macro"`);
//! - AUC-PR: average precision, Σₙ (Rₙ − Rₙ₋₁) Pₙ over distinct thresholds
//!   (`average_precision_score`), reported by BIOT for binary tasks;
//! - macro-F1 and weighted-F1 over the union of true and predicted labels (`f1_score`);
//! - Cohen's κ = (p_o − p_e) / (1 − p_e) (`cohen_kappa_score`), NaN when p_e = 1.
use anyhow::{bail, Result};
use ndarray::{Array2, ArrayView2};
use std::collections::BTreeSet;

/// Confusion matrix [K, K]: rows true class, columns predicted class.
pub fn confusion(y_true: &[i64], y_pred: &[i64], k: usize) -> Array2<u64> {
    let mut c = Array2::zeros((k, k));
    for (&t, &p) in y_true.iter().zip(y_pred) {
        c[[t as usize, p as usize]] += 1;
    }
    c
}

/// Sorted union of the labels in both vectors, as indices into a compact confusion matrix.
fn compact(y_true: &[i64], y_pred: &[i64]) -> (Vec<usize>, Vec<usize>, usize) {
    let labels: Vec<i64> = y_true
        .iter()
        .chain(y_pred)
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let idx =
        |v: &[i64]| -> Vec<usize> { v.iter().map(|y| labels.binary_search(y).unwrap()).collect() };
    (idx(y_true), idx(y_pred), labels.len())
}

fn compact_confusion(y_true: &[i64], y_pred: &[i64]) -> Array2<f64> {
    let (t, p, k) = compact(y_true, y_pred);
    let mut c = Array2::zeros((k, k));
    for (&a, &b) in t.iter().zip(&p) {
        c[[a, b]] += 1.0;
    }
    c
}

/// Mean over classes present in `y_true` of recall = TP / (TP + FN).
pub fn balanced_accuracy(y_true: &[i64], y_pred: &[i64]) -> f64 {
    let c = compact_confusion(y_true, y_pred);
    let recalls: Vec<f64> = (0..c.nrows())
        .filter_map(|i| {
            let s = c.row(i).sum();
            (s > 0.0).then(|| c[[i, i]] / s)
        })
        .collect();
    recalls.iter().sum::<f64>() / recalls.len().max(1) as f64
}

/// Per-label F1 = 2TP / (2TP + FP + FN) and support (true count), over the label union.
fn f1_per_label(y_true: &[i64], y_pred: &[i64]) -> Vec<(f64, f64)> {
    let c = compact_confusion(y_true, y_pred);
    (0..c.nrows())
        .map(|i| {
            let tp = c[[i, i]];
            let fp = c.column(i).sum() - tp;
            let fnn = c.row(i).sum() - tp;
            let d = 2.0 * tp + fp + fnn;
            (if d > 0.0 { 2.0 * tp / d } else { 0.0 }, c.row(i).sum())
        })
        .collect()
}

/// Unweighted mean of per-label F1 over the union of true and predicted labels.
pub fn macro_f1(y_true: &[i64], y_pred: &[i64]) -> f64 {
    let f = f1_per_label(y_true, y_pred);
    f.iter().map(|(v, _)| v).sum::<f64>() / f.len().max(1) as f64
}

/// Support-weighted mean of per-label F1 (BIOT's "weighted F1").
pub fn weighted_f1(y_true: &[i64], y_pred: &[i64]) -> f64 {
    let f = f1_per_label(y_true, y_pred);
    let total: f64 = f.iter().map(|(_, s)| s).sum();
    f.iter().map(|(v, s)| v * s).sum::<f64>() / total.max(1.0)
}

/// Cohen's κ = (p_o − p_e)/(1 − p_e), p_o observed agreement, p_e chance agreement from the
/// marginals; NaN when p_e = 1 (one label everywhere), as scikit-learn.
pub fn cohen_kappa(y_true: &[i64], y_pred: &[i64]) -> f64 {
    let c = compact_confusion(y_true, y_pred);
    let n = c.sum();
    let po = c.diag().sum() / n;
    let pe: f64 = (0..c.nrows())
        .map(|i| c.row(i).sum() * c.column(i).sum())
        .sum::<f64>()
        / (n * n);
    (po - pe) / (1.0 - pe)
}

/// Average (1-based) ranks of `v`, ties sharing the mean of their ranks.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Binary AUROC of `score` for `positive` (Mann-Whitney U / (P·N), ties at average rank).
/// Errors when either class is absent (undefined).
pub fn auroc(positive: &[bool], score: &[f64]) -> Result<f64> {
    let p = positive.iter().filter(|&&b| b).count();
    let n = positive.len() - p;
    if p == 0 || n == 0 {
        bail!("AUROC is undefined with {p} positive and {n} negative samples");
    }
    let r = average_ranks(score);
    let sum_pos: f64 = r
        .iter()
        .zip(positive)
        .filter(|(_, &b)| b)
        .map(|(v, _)| v)
        .sum();
    Ok((sum_pos - (p * (p + 1)) as f64 / 2.0) / (p as f64 * n as f64))
}

/// Macro one-vs-rest AUROC of class scores `scores` [N, K] (column k = score of class k);
/// every class 0..K must occur in `y_true`.
pub fn auroc_ovr_macro(y_true: &[i64], scores: ArrayView2<f64>) -> Result<f64> {
    let k = scores.ncols();
    let mut total = 0.0;
    for c in 0..k {
        let pos: Vec<bool> = y_true.iter().map(|&y| y == c as i64).collect();
        let s: Vec<f64> = scores.column(c).to_vec();
        total += auroc(&pos, &s).map_err(|e| anyhow::anyhow!("class {c}: {e}"))?;
    }
    Ok(total / k as f64)
}

/// Average precision Σₙ (Rₙ − Rₙ₋₁) Pₙ, thresholds at the distinct scores, descending.
pub fn average_precision(positive: &[bool], score: &[f64]) -> Result<f64> {
    let p = positive.iter().filter(|&&b| b).count();
    if p == 0 {
        bail!("average precision is undefined without positive samples");
    }
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let (mut tp, mut fp, mut prev_r, mut ap) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = score[idx[i]];
        while i < idx.len() && score[idx[i]] == s {
            if positive[idx[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        let r = tp / p as f64;
        ap += (r - prev_r) * tp / (tp + fp);
        prev_r = r;
    }
    Ok(ap)
}

/// Index of the largest value (the first on ties, as `np.argmax`).
pub fn argmax(row: impl IntoIterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in row.into_iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Every score of one evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scores {
    pub n: usize,
    pub classes: usize,
    pub balanced_accuracy: f64,
    /// Binary: AUROC of class 1's score; multi-class: macro one-vs-rest AUROC.
    pub auroc: f64,
    /// Binary only: average precision of class 1's score.
    pub auc_pr: Option<f64>,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub kappa: f64,
}

/// Scores class probabilities (or any per-class scores) `scores` [N, K] against labels
/// `y_true` [N] in 0..K; predictions are the argmax. Errors on length mismatch, labels outside
/// 0..K, non-finite scores, K < 2, or a class missing from `y_true` (AUROC undefined).
pub fn evaluate(y_true: &[i64], scores: ArrayView2<f64>) -> Result<Scores> {
    let (n, k) = scores.dim();
    if y_true.len() != n {
        bail!("{} labels for {n} score rows", y_true.len());
    }
    if k < 2 {
        bail!("need scores for at least 2 classes, got {k}");
    }
    if let Some(&y) = y_true.iter().find(|&&y| y < 0 || y as usize >= k) {
        bail!("label {y} is outside the class set 0..{}", k - 1);
    }
    if scores.iter().any(|v| !v.is_finite()) {
        bail!("scores contain NaN or infinity");
    }
    let y_pred: Vec<i64> = scores
        .rows()
        .into_iter()
        .map(|r| argmax(r.iter().copied()) as i64)
        .collect();
    let (auroc_v, auc_pr) = if k == 2 {
        let pos: Vec<bool> = y_true.iter().map(|&y| y == 1).collect();
        let s = scores.column(1).to_vec();
        (auroc(&pos, &s)?, Some(average_precision(&pos, &s)?))
    } else {
        (auroc_ovr_macro(y_true, scores)?, None)
    };
    Ok(Scores {
        n,
        classes: k,
        balanced_accuracy: balanced_accuracy(y_true, &y_pred),
        auroc: auroc_v,
        auc_pr,
        macro_f1: macro_f1(y_true, &y_pred),
        weighted_f1: weighted_f1(y_true, &y_pred),
        kappa: cohen_kappa(y_true, &y_pred),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn hand_computed() {
        // Confusion (rows true 0,1,2): [[2,1,0],[0,1,1],[1,0,2]], n = 8.
        let t = [0, 0, 0, 1, 1, 2, 2, 2];
        let p = [0, 0, 1, 1, 2, 2, 2, 0];
        // Recalls 2/3, 1/2, 2/3.
        assert!((balanced_accuracy(&t, &p) - (2.0 / 3.0 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // F1: class 0: 2·2/(4+1+1)=2/3; class 1: 2/(2+1+1)=1/2; class 2: 4/(4+1+1)=2/3.
        assert!((macro_f1(&t, &p) - (2.0 / 3.0 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!(
            (weighted_f1(&t, &p) - (3.0 * 2.0 / 3.0 + 2.0 * 0.5 + 3.0 * 2.0 / 3.0) / 8.0).abs()
                < 1e-12
        );
        // p_o = 5/8; marginals true (3,2,3), pred (3,2,3): p_e = (9+4+9)/64.
        let pe = 22.0 / 64.0;
        assert!((cohen_kappa(&t, &p) - (5.0 / 8.0 - pe) / (1.0 - pe)).abs() < 1e-12);
    }

    #[test]
    fn auroc_with_ties() {
        // Positives scores {0.8, 0.5}, negatives {0.5, 0.2}: pairs (0.8>0.5, 0.8>0.2, 0.5=0.5
        // counts 1/2, 0.5>0.2) → (1 + 1 + 0.5 + 1)/4 = 0.875.
        let pos = [true, true, false, false];
        let s = [0.8, 0.5, 0.5, 0.2];
        assert!((auroc(&pos, &s).unwrap() - 0.875).abs() < 1e-12);
        assert!(auroc(&[true, true], &[0.1, 0.2]).is_err());
        // AP: thresholds 0.8 (R=1/2, P=1), 0.5 (R=1, P=2/3), 0.2: 0.5·1 + 0.5·2/3.
        assert!((average_precision(&pos, &s).unwrap() - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn evaluate_perfect_and_errors() {
        let s = array![[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]];
        let r = evaluate(&[0, 1, 0, 1], s.view()).unwrap();
        assert_eq!(
            (r.balanced_accuracy, r.auroc, r.macro_f1, r.kappa),
            (1.0, 1.0, 1.0, 1.0)
        );
        assert!(evaluate(&[0, 2, 0, 1], s.view()).is_err());
        assert!(evaluate(&[0, 1], s.view()).is_err());
    }
}
