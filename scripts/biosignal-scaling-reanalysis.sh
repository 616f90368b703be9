#!/usr/bin/env bash
# Issue 19, item 5: `scaling fit` (with its diagnostics) and `scaling validate` (with the trivial
# baselines) on the recorded CPU BIOT grids, printouts into results/biosignal-scaling/*/
# {fit,validate}-diagnostics.txt. K of C = K·N·D as in results/biosignal-scaling.md.
# Usage: scripts/biosignal-scaling-reanalysis.sh [path/to/brainscale]
set -euo pipefail
bin=${1:-target/release/brainscale}
r=results/biosignal-scaling
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # modality K fit-upto at
  local m=$1 k=$2 upto=$3 at=$4
  "$bin" scaling fit "$r/$m/results.csv" --c-per-nd "$k" --bootstrap 200 --seed 0 \
    --out "$tmp/$m-fit" --no-plots | sed "/^wrote:/,\$d" > "$r/$m/fit-diagnostics.txt"
  "$bin" scaling validate "$r/$m/results.csv" --fit-upto "$upto" --at "$at" --bootstrap 200 \
    --seed 0 --out "$tmp/$m-val" --no-plots > "$r/$m/validate-baselines.txt"
  cp "$tmp/$m-fit/fit.json" "$r/$m/fit-diagnostics.json"
  cp "$tmp/$m-val/validate.json" "$r/$m/validate-baselines.json"
}
run eeg 11.1639 1e10 5e10
run accel 10.7754 2.5e9 1.25e10
