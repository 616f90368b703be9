#!/usr/bin/env python3
"""A small recorded learning-rate sweep per model size that feeds a biosignal grid (issue 19,
item 4): runs every model of GRID at one small BUDGET for each learning rate (one grid per lr,
written beside the output, results in OUT/lr-<lr>/), records every row in OUT/sweep.csv
(model, lr, seed, eval_loss) and prints the `lr_by_model` table (the lr with the lowest mean
held-out loss per model) to paste into the grid's [cell] table. Resumable (grid run skips
finished cells).

  scripts/lr-sweep.py GRID.toml --budget 5e10 --lrs 5e-4,1e-3,2e-3,4e-3 --out results/lr-sweep/eeg \
      [--bin target/release/brainscale] [--seeds 0]

--budget first-ladder (grids with [[axes.ladders]]): each model runs at the smallest budget whose
ladder holds it, so every size is swept near its own compute-optimal scale with at least the
grid's min_steps, and no large model is forced under min_steps at a small budget. The largest
budget (the grid's held-out validation budget) is never trained: models laddered only there run
at the largest fitted budget.
"""
import argparse, csv, glob, os, re, subprocess, sys, tomllib
from collections import defaultdict

ap = argparse.ArgumentParser()
ap.add_argument("grid")
ap.add_argument("--budget", required=True, help="a FLOP budget, or first-ladder")
ap.add_argument("--lrs", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--bin", default="target/release/brainscale")
ap.add_argument("--seeds", default="0")
ap.add_argument("--models", default="",
                help="comma-separated model names (e.g. biot-d8-l1): run only these at the given lrs (to extend the sweep "
                     "where the best lr sat at the edge); sweep.csv and the table still cover every lr recorded under OUT")
a = ap.parse_args()

g = tomllib.load(open(a.grid, "rb"))
if g["cell"].get("kind") != "biosignal":
    sys.exit(f"{a.grid}: [cell] kind must be biosignal")
text = open(a.grid).read()
gdir = os.path.dirname(os.path.abspath(a.grid))
models = [os.path.join(gdir, m) for m in g["axes"]["models"]]
only = [x for x in a.models.split(",") if x]
unknown = [x for x in only if not any(os.path.basename(m)[:-5] == x for m in models)]
if unknown:
    sys.exit(f"{a.grid}: --models names {unknown}, not in axes.models")
first = {}
if a.budget == "first-ladder":
    ladders = g["axes"].get("ladders")
    if not ladders:
        sys.exit(f"{a.grid}: --budget first-ladder needs [[axes.ladders]]")
    # The last (largest) budget is the held-out validation budget: the sweep never trains there;
    # models first laddered at it are swept at the largest fitted budget.
    ladders = sorted(ladders, key=lambda l: l["budget"])
    for l in ladders[:-1]:
        for m in l["models"]:
            first.setdefault(m, l["budget"])
    for m in ladders[-1]["models"]:
        first.setdefault(m, ladders[-2]["budget"])
    missing = [m for m in g["axes"]["models"] if m not in first]
    if missing:
        sys.exit(f"{a.grid}: models in no ladder: {missing}")
else:
    a.budget = float(a.budget)
os.makedirs(a.out, exist_ok=True)
rows = []
for lr in [float(x) for x in a.lrs.split(",")]:
    t = text
    t = re.sub(r'(?m)^name\s*=.*$', f'name = "{g["name"]}-lr{lr:g}"', t)
    t = re.sub(r'(?m)^out\s*=.*$', "", t)
    t = re.sub(r'(?m)^lr\s*=.*$', f"lr = {lr:g}", t)
    t = re.sub(r'(?m)^lr_by_model\s*=.*$', "", t)
    # One budget (or each model at its first ladder's), every model, the sweep's seeds.
    t = re.sub(r'(?ms)^\[\[axes\.ladders\]\].*?(?=^\[)', "", t)
    if first:
        sel = lambda m: not only or os.path.basename(m)[:-5] in only
        bs = sorted(set(b for m, b in first.items() if sel(m)))
        t = re.sub(r'(?m)^budgets\s*=.*$', "budgets = [" + ", ".join(f"{b:g}" for b in bs) + "]", t)
        lad = "".join(
            f"[[axes.ladders]]\nbudget = {b:g}\nmodels = ["
            + ", ".join(f'"{os.path.join(gdir, m)}"' for m in g["axes"]["models"]
                        if first[m] == b and sel(m))
            + "]\n\n" for b in bs)
        t = t.replace("[cell]", lad + "[cell]", 1)
    else:
        t = re.sub(r'(?m)^budgets\s*=.*$', f"budgets = [{a.budget:g}]", t)
    run = [m for m in models if not only or os.path.basename(m)[:-5] in only]
    t = re.sub(r'(?ms)^models\s*=\s*\[.*?\]', "models = [" + ", ".join(f'"{m}"' for m in run) + "]", t, count=1)
    t = re.sub(r'(?m)^seeds\s*=.*$', f"seeds = [{a.seeds}]", t)
    if not re.search(r'(?m)^seeds\s*=', t):
        t = t.replace("[axes]\n", f"[axes]\nseeds = [{a.seeds}]\n", 1)
    p = os.path.join(a.out, f"grid-lr{lr:g}.toml")
    open(p, "w").write(t)
    out = os.path.join(a.out, f"lr-{lr:g}")
    subprocess.run([a.bin, "grid", "run", p, "--out", out], check=True)
# Every lr recorded under OUT (earlier invocations included).
for out in sorted(glob.glob(os.path.join(a.out, "lr-*"))):
    lr = float(os.path.basename(out)[3:])
    for r in csv.DictReader(open(os.path.join(out, "results.csv"))):
        rows.append({"model": r["model"], "n_params": r["n_params"], "flops": r["flops"], "lr": lr, "seed": r["seed"], "eval_loss": r["eval_loss"]})
with open(os.path.join(a.out, "sweep.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["model", "n_params", "flops", "lr", "seed", "eval_loss"])
    w.writeheader()
    w.writerows(rows)
loss = defaultdict(list)
for r in rows:
    loss[(r["model"], r["lr"])].append(float(r["eval_loss"]))
best = {}
for (m, lr), v in loss.items():
    mean = sum(v) / len(v)
    if m not in best or mean < best[m][1]:
        best[m] = (lr, mean)
# A best lr at the edge of the lrs swept for that model is not bracketed: say so.
swept = defaultdict(list)
for (m, lr) in loss:
    swept[m].append(lr)
edge = sorted(os.path.basename(m)[:-5] for m, (lr, _) in best.items() if lr in (min(swept[m]), max(swept[m])))
if edge:
    print(f"# not bracketed (best lr at the edge of the lrs swept): {', '.join(edge)}")
# Keys as the grid writes them in axes.models (the sweep grids hold absolute paths).
entry = dict(zip(models, g["axes"]["models"]))
print(f"# best lr per model at C = {a.budget if first else format(a.budget, 'g')} (mean held-out loss over seeds {a.seeds}); {a.out}/sweep.csv")
print("lr_by_model = { " + ", ".join(f'"{entry.get(m, m)}" = {lr:g}' for m, (lr, _) in sorted(best.items())) + " }")
