#!/usr/bin/env python3
"""Effect sizes of results/cpu-study.md's claims in units of the seed sd (issue 19, item 10).

Reads results/cpu-study/results.csv (72 cells: 6 priors x 3 D x fp32/bf16 x seeds 0, 1). The
seed sd at each D is pooled over that D's fp32 cells from the two seeds' difference:
sigma_D^2 = mean((r_s0 - r_s1)^2) / 2. A claim compares two seed-means, so its difference has sd
sigma_D (sigma_D / sqrt(2) each); it is reported as delta / sigma_D and marked "within noise"
when |delta| < 2 sigma_D. bf16's cost: the in-loop token rate and the whole pretraining stage
(pretrain_s: data, model build, loop, checkpoint), bf16 over fp32 per pair."""
import csv, math, os, statistics as st, sys

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "results", "cpu-study", "results.csv")
rows = list(csv.DictReader(open(path)))
r = {(x["model"], int(x["tokens"]), x["precision"], int(x["seed"])): x for x in rows}
models = sorted({k[0] for k in r})
Ds = sorted({k[1] for k in r})


def val(m, d, p, s, col="encoding_r"):
    return float(r[(m, d, p, s)][col])


sigma = {}
for d in Ds:
    diffs = [val(m, d, "fp32", 0) - val(m, d, "fp32", 1) for m in models]
    sigma[d] = math.sqrt(sum(x * x for x in diffs) / len(diffs) / 2)


def mean_r(m, d, p="fp32"):
    return (val(m, d, p, 0) + val(m, d, p, 1)) / 2


def claim(label, a, b, d_a, d_b=None):
    d_b = d_a if d_b is None else d_b
    delta = mean_r(a, d_a) - mean_r(b, d_b)
    s = math.sqrt((sigma[d_a] ** 2 + sigma[d_b] ** 2) / 2)
    tag = "within noise" if abs(delta) < 2 * s else "beyond noise"
    print(f"| {label} | {delta:+.4f} | {s:.4f} | {delta / s:+.1f} | {tag} |")


print("seed sd of a cell's encoding r (pooled over the 6 fp32 priors):")
for d in Ds:
    print(f"  D = {d:.0e}: {sigma[d]:.4f}")
print()
print("| claim (fp32, seed means) | delta r | seed sd | delta / sd | |")
print("|---|---|---|---|---|")
for d in Ds:
    claim(f"width d32 -> d64, D={d:.0e}", "d64-L2-H2", "d32-L2-H2", d)
    claim(f"width d64 -> d128, D={d:.0e}", "d128-L2-H2", "d64-L2-H2", d)
    claim(f"depth L1 -> L2, D={d:.0e}", "d64-L2-H2", "d64-L1-H2", d)
    claim(f"depth L2 -> L4, D={d:.0e}", "d64-L4-H2", "d64-L2-H2", d)
    claim(f"heads H2 -> H4, D={d:.0e}", "d64-L2-H4", "d64-L2-H2", d)
for m in models:
    claim(f"data 5e4 -> 2e5, {m}", m, m, Ds[1], Ds[0])
    claim(f"data 2e5 -> 8e5, {m}", m, m, Ds[2], Ds[1])
for (a, da, b, db) in [("d64-L2-H2", 800000, "d128-L2-H2", 200000), ("d64-L1-H2", 800000, "d64-L4-H2", 200000),
                       ("d32-L2-H2", 800000, "d64-L2-H2", 200000), ("d64-L2-H2", 200000, "d128-L2-H2", 50000)]:
    claim(f"more data {a} D={da:.0e} vs bigger {b} D={db:.0e}", a, b, da, db)
lower = sum(1 for m in models for s in (0, 1) if val(m, Ds[1], "fp32", s) < val(m, Ds[0], "fp32", s))
print(f"\n5e4 -> 2e5 lowers r in {lower} of {2 * len(models)} fp32 runs")
dr = [abs(val(m, d, "bf16", s) - val(m, d, "fp32", s)) for m in models for d in Ds for s in (0, 1)]
print(f"bf16 vs fp32 |delta r|: max {max(dr):.4f} = {max(dr) / min(sigma.values()):.2f} x the smallest seed sd")
rate = [float(r[(m, d, 'bf16', s)]["tokens_per_s"]) / float(r[(m, d, 'fp32', s)]["tokens_per_s"]) for m in models for d in Ds for s in (0, 1)]
pre = [float(r[(m, d, 'bf16', s)]["pretrain_s"]) / float(r[(m, d, 'fp32', s)]["pretrain_s"]) for m in models for d in Ds for s in (0, 1)]
tot_b = sum(float(r[(m, d, 'bf16', s)]["pretrain_s"]) for m in models for d in Ds for s in (0, 1))
tot_f = sum(float(r[(m, d, 'fp32', s)]["pretrain_s"]) for m in models for d in Ds for s in (0, 1))
print(f"bf16 / fp32 in-loop token rate: median {st.median(rate):.2f} (range {min(rate):.2f}-{max(rate):.2f})")
print(f"bf16 / fp32 pretraining stage time (pretrain_s): median {st.median(pre):.2f} (range {min(pre):.2f}-{max(pre):.2f}); "
      f"total {tot_b:.0f} s vs {tot_f:.0f} s = {tot_b / tot_f:.2f}x")
