#!/usr/bin/env bash
# Every GPU figure brainscale owes, in one call of at most 9 minutes on a CUDA machine.
#
#   scripts/device-bench.sh prepare   # here (no GPU needed): build without ffmpeg/OpenBLAS and put
#                                     # the binary and its inputs (pre-decoded frames) in .carry/
#   scripts/device-bench.sh run       # on the GPU machine, from the repo root, with .carry carried:
#                                     # device tool: run(command="bash scripts/device-bench.sh run",
#                                     #                  carry=[".carry"], timeout_s=600)
#
# `run` writes one CSV per benchmark and a log under $OUT (results/device/ when OUT is unset):
#   ridge.txt       bench-ridge --preset gpu (the GPU sizes, torch backend on CUDA)
#   ridge-banded.txt bench-ridge --bands --preset gpu, when this build has it
#   whole-brain.txt bench-whole-brain n=100k TRs x v=250k voxels x p=1000 (100 GB of Y, generated
#                   block by block, streamed through the torch ridge on CUDA), when this build has it
#   train.csv       bench-train: GPT-2 d768 bf16, the VideoGPT prior in fp32 / tf32 / bf16 / fp16
#   pipeline/       one pipeline cell (tokenizer → prior → features → ridge) on CUDA
# Each step has its own time limit, so one slow step cannot eat the others' time; a step that
# fails is logged and the next one runs. Without a CUDA device it says so and exits 2.
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=.carry
BIN=$CARRY/brainscale

prepare() {
  set -e
  export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$HOME/.cargo/bin:$PATH"
  cargo build --release --no-default-features
  mkdir -p "$CARRY"
  cp target/release/brainscale "$BIN"
  # The pipeline cell needs decoded frames: a build without the `video` feature reads them
  # from the frame cache, so decode here with the full build.
  cargo build --release
  local full=target/release/brainscale
  [ -d datasets/synth-tiny ] || "$full" dataset synth --size tiny
  rm -rf "$CARRY/synth-tiny" && cp -r datasets/synth-tiny "$CARRY/synth-tiny"
  # The cell's frame cache: native rate, 32×32 (the grid's VQ-VAE resolution).
  rm -rf "$CARRY/work" && "$full" decode --dataset "$CARRY/synth-tiny" --size 32 --work "$CARRY/work" >/dev/null
  du -sh "$CARRY"
  echo "prepared $CARRY; now run: bash scripts/device-bench.sh run (carry .carry)"
}

run() {
  OUT=${OUT:-results/device}
  mkdir -p "$OUT"
  local log="$OUT/device-bench.log"
  [ -x "$BIN" ] || { echo "no $BIN: run 'scripts/device-bench.sh prepare' first and carry .carry" | tee "$log"; exit 2; }
  local torchlib
  torchlib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) || true
  export LD_LIBRARY_PATH="${torchlib}:${LD_LIBRARY_PATH:-}"
  if ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "device-bench: no CUDA device visible to PyTorch on this machine; nothing measured." | tee "$log"
    echo "Run it on a GPU machine (see the header of scripts/device-bench.sh)." | tee -a "$log"
    exit 2
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$log"
  step() { # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s): $*" | tee -a "$log"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$log"
  }
  step ridge 150 bash -c "'$BIN' bench-ridge --preset gpu --backend torch --device cuda | tee '$OUT/ridge.txt'"
  if "$BIN" bench-ridge --help | grep -q -- '--bands'; then
    step ridge-banded 120 bash -c "'$BIN' bench-ridge --bands --preset gpu --backend torch --device cuda | tee '$OUT/ridge-banded.txt'"
  fi
  if "$BIN" bench-whole-brain --help >/dev/null 2>&1; then
    step whole-brain 240 bash -c "'$BIN' bench-whole-brain --n 100000 --v 250000 --p 1000 --backend torch --device cuda --max-memory 48GB | tee '$OUT/whole-brain.txt'"
  fi
  step gpt2-bf16 60 "$BIN" bench-train --preset gpt2-bf16 --device cuda --steps 20 --csv "$OUT/train.csv"
  for p in fp32 tf32 bf16 fp16; do
    step "videogpt-$p" 45 "$BIN" bench-train --preset "videogpt-$p" --device cuda --steps 20 --csv "$OUT/train.csv"
  done
  if "$BIN" bench-train --help | grep -q -- 'biot'; then
    step biot-bf16 45 "$BIN" bench-train --preset biot-bf16 --device cuda --steps 20 --csv "$OUT/train.csv"
  fi
  local grid="$OUT/device-pipeline.toml"
  sed -e "s#datasets/synth-tiny#$CARRY/synth-tiny#" -e 's#device = "cpu"#device = "cuda"#' \
      -e "s#results/bench/smoke-pipeline#$OUT/pipeline#" -e 's#threads = 1#threads = 8#' \
      bench/smoke-pipeline.toml > "$grid"
  mkdir -p "$OUT/pipeline/shared/frames" && cp "$CARRY"/work/frames/*.safetensors "$OUT/pipeline/shared/frames/"
  step pipeline-cell 120 "$BIN" bench run "$grid"
  rm -rf "$OUT/pipeline/shared" # large; the rows are in $OUT/pipeline/results.csv
  echo "rows: $(ls "$OUT")" | tee -a "$log"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: scripts/device-bench.sh prepare|run" >&2; exit 64 ;;
esac
