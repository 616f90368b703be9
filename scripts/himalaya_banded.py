"""Reference banded ridge with himalaya (Dupré la Tour et al. 2022), for brainscale's parity
tests and `bench-ridge --bands --himalaya`.

Usage: python himalaya_banded.py DIR
DIR holds x_train.npy, y_train.npy, x_test.npy, y_test.npy (float32 or float64), groups.npy
(run id of each training row), candidates.npy (candidates x bands), alphas.npy and
config.json {"widths": [p1, p2, ...], "score": "r" | "r2", "dtype": "float64" | "float32"}.
Folds leave one run (group) out, in sorted run order, as brainscale's leave-one-run-out CV.
Prints one JSON object: wall and CPU seconds of GroupRidgeCV.fit, and per voxel the best candidate index
(replaying himalaya's selection rule on cv_scores_), the best alpha, the test r and R² of the
prediction, and the product-measure R² split (himalaya.scoring.r2_score_split) of the band
predictions (X_b,test - training mean of X_b) @ coef_b.
"""
import json
import sys
import time

import numpy as np
from himalaya.backend import set_backend
from himalaya.ridge import GroupRidgeCV
from himalaya.scoring import correlation_score, r2_score, r2_score_split


def main(d):
    cfg = json.load(open(f"{d}/config.json"))
    dtype = cfg.get("dtype", "float64")
    load = lambda n: np.load(f"{d}/{n}.npy").astype(dtype)
    xtr, ytr, xte, yte = load("x_train"), load("y_train"), load("x_test"), load("y_test")
    groups = np.load(f"{d}/groups.npy").reshape(-1).astype(np.int64)
    cands = np.load(f"{d}/candidates.npy").astype(dtype)
    alphas = np.load(f"{d}/alphas.npy").astype(dtype).reshape(-1)
    widths = cfg["widths"]
    edges = np.concatenate([[0], np.cumsum(widths)])
    set_backend("numpy", on_error="raise")
    runs = sorted(set(groups.tolist()))
    cv = [(np.flatnonzero(groups != r), np.flatnonzero(groups == r)) for r in runs]
    score_func = correlation_score if cfg["score"] == "r" else r2_score
    xs = [xtr[:, a:b] for a, b in zip(edges[:-1], edges[1:])]
    model = GroupRidgeCV(
        groups="input",
        solver_params=dict(
            n_iter=cands,
            alphas=alphas,
            score_func=score_func,
            progress_bar=False,
            warn=False,
        ),
        fit_intercept=True,
        cv=cv,
    )
    t, c = time.perf_counter(), time.process_time()
    model.fit(xs, ytr)
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - c

    # himalaya's selection: a later candidate wins only if better by more than eps.
    cvs = np.asarray(model.cv_scores_)
    eps = np.finfo(dtype).eps
    best = np.zeros(cvs.shape[1], dtype=int)
    cur = np.full(cvs.shape[1], -np.inf)
    for i in range(cvs.shape[0]):
        m = cvs[i] > cur + eps
        cur[m] = cvs[i][m]
        best[m] = i
    gam = cands[best].T  # bands x voxels
    scal = np.exp(np.asarray(model.deltas_))  # gamma / alpha
    # alpha from the band with the largest weight (gamma_b > 0 there)
    top = np.argmax(gam, axis=0)
    cols = np.arange(gam.shape[1])
    best_alpha = gam[top, cols] / scal[top, cols]

    coef = np.asarray(model.coef_)
    pred = np.asarray(model.predict([xte[:, a:b] for a, b in zip(edges[:-1], edges[1:])]))
    mean = xtr.mean(0)
    preds = np.stack(
        [(xte[:, a:b] - mean[a:b]) @ coef[a:b] for a, b in zip(edges[:-1], edges[1:])]
    )
    split = np.asarray(r2_score_split(yte, preds))
    test_r = np.asarray(correlation_score(yte, pred))
    test_r2 = np.asarray(r2_score(yte, pred))
    out = dict(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        best_candidate=best.tolist(),
        best_alpha=best_alpha.tolist(),
        test_r=np.nan_to_num(test_r).tolist(),
        test_r2=test_r2.tolist(),
        r2_split=split.tolist(),
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
