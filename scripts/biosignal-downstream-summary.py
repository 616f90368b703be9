#!/usr/bin/env python3
"""Downstream transfer of a biosignal scaling grid, controlled for model size (issue 19, item 7):
the numbers quoted in results/biosignal-scaling.md ("Downstream, controlled for model size").

Reads a results.csv written by `grid downstream` (columns downstream_balanced_accuracy and
downstream_scratch_balanced_accuracy per row) and prints: how many cells score below the same
model trained from scratch, the Spearman correlation of the scratch score with N (the confound),
the error ratio (1 - BA) / (1 - BA from scratch) (median, IQR, per seed, Spearman with N), and,
within each model with >= 3 budgets, the Spearman correlation of its seed-mean ratio with D.
Spearman with average ranks for ties (scipy.stats.spearmanr's convention).

Usage: scripts/biosignal-downstream-summary.py RESULTS.csv"""
import collections, csv, statistics as st, sys


def rank(v):
    """Ranks from 0 with ties averaged."""
    o = sorted(range(len(v)), key=lambda i: v[i])
    r, i = [0.0] * len(v), 0
    while i < len(o):
        j = i
        while j + 1 < len(o) and v[o[j + 1]] == v[o[i]]:
            j += 1
        for k in range(i, j + 1):
            r[o[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = rank(a), rank(b)
    ma, mb = st.mean(ra), st.mean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else float("nan")


def main(path):
    rows = [r for r in csv.DictReader(open(path)) if r.get("downstream_balanced_accuracy")]
    if not rows:
        sys.exit(f"{path}: no row has downstream_balanced_accuracy (run `grid downstream` first)")
    ba = [float(r["downstream_balanced_accuracy"]) for r in rows]
    sc = [float(r["downstream_scratch_balanced_accuracy"]) for r in rows]
    n = [float(r["n_params"]) for r in rows]
    ratio = [(1 - a) / (1 - s) for a, s in zip(ba, sc)]
    q = st.quantiles(ratio, n=4)
    worse = sum(a < s for a, s in zip(ba, sc))
    print(f"{len(rows)} cells; pretrained worse than scratch in {worse}; mean BA {st.mean(ba):.3f} vs scratch {st.mean(sc):.3f}")
    print(f"scratch BA vs N: Spearman {spearman(n, sc):+.2f}")
    print(f"error ratio (1 - BA)/(1 - BA scratch): median {st.median(ratio):.2f}, IQR {q[0]:.2f}-{q[2]:.2f}, Spearman with N {spearman(n, ratio):+.2f}")
    by_seed = collections.defaultdict(list)
    for r, x in zip(rows, ratio):
        by_seed[r["seed"]].append(x)
    print("seed means:", ", ".join(f"{k}: {st.mean(v):.3f}" for k, v in sorted(by_seed.items())))
    cells = collections.defaultdict(list)
    for r, x in zip(rows, ratio):
        cells[(r["model"], float(r["tokens"]))].append(x)
    by_model = collections.defaultdict(list)
    for (m, d), v in cells.items():
        by_model[m].append((d, st.mean(v)))
    rho = [spearman([d for d, _ in v], [x for _, x in v]) for v in by_model.values() if len(v) >= 3]
    if rho:
        print(f"within a model (>= 3 budgets: {len(rho)} models), Spearman(D, seed-mean ratio): +1 in "
              f"{sum(abs(s - 1) < 1e-9 for s in rho)}, > 0 in {sum(s > 0 for s in rho)}, median {st.median(rho):+.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
