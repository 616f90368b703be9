#!/usr/bin/env bash
# The redone CPU BIOT scaling studies (issue 19, item 7): both v2 grids, then the fits, the 5x
# validations against the trivial baselines and the downstream scores. Resumable: rerunning
# skips every finished cell (grid run keeps one row file per cell), so it can be killed and
# restarted at any point. Wall time goes to results/biosignal-scaling-$DESIGN/wall.txt. Each grid
# runs in one process (2 cells at a time) whose cells share their rendered batches (cache_mib in
# the grid file: 4 GiB v2, 10 GiB lean; the numbers are the same without it). A finished run's
# committed results.csv marks its cells done: to time a run from nothing, move its folder away. The cost estimate of this design is
# scripts/biosignal-scaling-v2-cost.py (results/biosignal-scaling.md, "Cost").
# DESIGN=lean runs the lean grids instead (bench/biosignal-cpu-{eeg,accel}-lean.toml: every other
# rung of the v2 ladders, scripts/biosignal-scaling-lean-grids.py) into results/biosignal-scaling-lean.
#   [DESIGN=v2|lean] scripts/biosignal-scaling-v2.sh [path/to/brainscale]
set -euo pipefail
bin=${1:-target/release/brainscale}
design=${DESIGN:-v2}
case $design in v2|lean) ;; *) echo "DESIGN must be v2 or lean, got '$design'" >&2; exit 2;; esac
res=results/biosignal-scaling-$design
mkdir -p "$res"
t_all=$(date +%s)
# Budgets of the grids (fitted: all but the last; validation: the last = 5x the largest fitted).
budgets() { python3 -c "import tomllib,sys; b=tomllib.load(open(sys.argv[1],'rb'))['axes']['budgets']; print(' '.join(map(str,b)))" "$1"; }
# One modality at a time, each finished (grid, downstream, fits) before the next, so a stopped
# run leaves whole modalities behind; `grid run` skips finished cells (results.csv in the grid's
# out folder is committed, the cells' checkpoints are not).
for m in ${MODALITIES:-eeg accel}; do
  start=$(date +%s)
  nice -n 10 "$bin" grid run "bench/biosignal-cpu-$m-$design.toml"
  echo "$m grid: $(( $(date +%s) - start )) s wall ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))" >> "$res/wall.txt"
  out=$res/$m/grid
  mkdir -p "$res/$m"
  cp "$out/results.csv" "$res/$m/results.csv"
  read -r -a b <<< "$(budgets "bench/biosignal-cpu-$m-$design.toml")"
  upto=${b[-2]}; at=${b[-1]}
  "$bin" scaling fit "$res/$m/results.csv" --holdout-above "$upto" --out "$res/$m/fit" > "$res/$m/fit.txt"
  "$bin" scaling validate "$res/$m/results.csv" --fit-upto "$upto" --at "$at" --out "$res/$m/validate" > "$res/$m/validate.txt"
  # Downstream, controlled for model size: the gain over scratch is fitted, not the raw score.
  start=$(date +%s)
  # Two fine-tuning runs at a time (--jobs: the same scores, measured 432 -> 344 s an EEG seed).
  nice -n 10 "$bin" grid downstream "bench/biosignal-cpu-$m-$design.toml" --jobs 2
  echo "$m downstream: $(( $(date +%s) - start )) s wall ($(date -u +%FT%TZ))" >> "$res/wall.txt"
  # The gain over scratch, as a positive loss-like ratio: (1 - BA) / (1 - BA from scratch), below 1
  # when pretraining helps; fitted like a loss, so the law is not confounded by scratch BA rising
  # with N.
  python3 - "$out/results.csv" "$res/$m/results.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = list(rows[0].keys()) + ["downstream_error_vs_scratch"]
for r in rows:
    ba, sc = r.get("downstream_balanced_accuracy", ""), r.get("downstream_scratch_balanced_accuracy", "")
    r["downstream_error_vs_scratch"] = (1 - float(ba)) / (1 - float(sc)) if ba and sc and float(sc) < 1 else ""
w = csv.DictWriter(open(sys.argv[2], "w", newline=""), fieldnames=cols, lineterminator="\n")
w.writeheader()
w.writerows(rows)
PY
  "$bin" scaling fit "$res/$m/results.csv" --target downstream_error --out "$res/$m/downstream-fit" > "$res/$m/downstream-fit.txt"
  "$bin" scaling fit "$res/$m/results.csv" --target downstream_error --target-col downstream_error_vs_scratch \
    --out "$res/$m/gain-fit" > "$res/$m/gain-fit.txt"
done
echo "both grids, fits, validations and downstream: $(( $(date +%s) - t_all )) s wall this run ($(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))" >> "$res/wall.txt"
