#!/usr/bin/env bash
# Every GPU figure brainscale owes, in one call of at most 9 minutes on a CUDA machine.
#
#   scripts/device-bench.sh prepare   # here (no GPU needed): build without ffmpeg/OpenBLAS/HDF5,
#                                     # put the binary and its inputs (pre-decoded frames) in
#                                     # .carry/ and refuse (naming it) any library the binary
#                                     # loads from outside torch's folder and the C/C++ runtime
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
#   tokenize.txt    tokenize throughput at VideoGPT's published size (16×128×128 clips, widths
#                   240/4/256/2048, random weights written by the reference modules and imported
#                   with `tokenizer import`) on CUDA: brainscale's `tokenizer encode` beside the
#                   reference PyTorch encoder (tests/fixtures/videogpt_reference.py bench)
# Each step has its own time limit, so one slow step cannot eat the others' time; a step that
# fails is logged and the next one runs. Before any of them, within seconds, `run` checks that
# every library of the carried binary resolves (ldd; torch's lib folder from the machine's own
# PyTorch, then .carry/lib, go on the library path), that torch.cuda.is_available() and that the
# binary prints its --version; if not it names the missing piece and exits 2.
#   scripts/device-bench.sh check-libs BINARY   # the ldd check alone (exit 0 when clean)
set -uo pipefail
CALLER_PWD=$PWD
cd "$(dirname "$0")/.."
CARRY=.carry
BIN=$CARRY/brainscale

# The C/C++ runtime every Linux machine has (glibc's parts, the GCC runtime, the loader); any
# other library must come from torch's own folder (libtorch, its CUDA wheels under
# site-packages/nvidia) or travel in $CARRY/lib.
RUNTIME='^(linux-vdso|linux-gate|ld-linux(-x86-64|-aarch64)?|libc|libm|libdl|libpthread|librt|libutil|libresolv|libgcc_s|libstdc\+\+|libgomp)\.so'

# torch_lib: torch's lib folder, from the machine's own PyTorch ($PYTHON, else python3).
torch_lib() {
  timeout 60 "${PYTHON:-python3}" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null
}

# check_libs BINARY TORCH_LIB: lists every library BINARY loads (ldd) and where it resolves.
# Exit 1 when one is not found or not a dynamic executable; exit 3 when one resolves outside
# TORCH_LIB's site-packages (torch/, nvidia/), $CARRY/lib and the runtime set. The offenders
# are named on stderr, one a line.
check_libs() {
  local bin=$1 torchlib=$2 site out name path real rc=0
  site=$(realpath -m "$torchlib/../..")
  if ! out=$(ldd "$bin" 2>&1) || grep -q 'not a dynamic executable' <<<"$out"; then
    echo "$bin: ldd failed: $out" >&2
    return 1
  fi
  echo "ldd $bin:"
  while read -r line; do
    [ -z "$line" ] && continue
    if [[ $line == *" => "* ]]; then
      name=${line%% => *}; path=${line#* => }; path=${path%% (*}
    else
      name=${line%% (*}; path=$name
    fi
    name=$(basename "$name")
    if [ "$path" = "not found" ]; then
      echo "  $name => NOT FOUND"
      echo "missing library: $name (needed by $bin; not on the library path)" >&2
      rc=1
      continue
    fi
    real=$(realpath -m "$path")
    if [[ $real == "$site/torch/"* || $real == "$site/nvidia/"* ]]; then
      echo "  $name  (torch: $real)"
    elif [ -d "$CARRY/lib" ] && [[ $real == "$(realpath -m "$CARRY/lib")/"* ]]; then
      echo "  $name  (carried: $real)"
    elif [[ $name =~ $RUNTIME ]]; then
      echo "  $name  (runtime: $path)"
    else
      echo "  $name  (OUTSIDE torch and the C/C++ runtime: $real)"
      [ $rc -eq 0 ] && rc=3
      echo "library outside torch and the C/C++ runtime: $name ($real)" >&2
    fi
  done <<<"$out"
  return $rc
}

prepare() {
  set -e
  local t0=$SECONDS
  export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$HOME/.cargo/bin:$PATH"
  # The GPU build: no ffmpeg (video), no OpenBLAS/LAPACK (cpu-linalg), no libhdf5 (hdf5).
  cargo build --release --no-default-features
  rm -rf "$CARRY/brainscale" "$CARRY/lib"
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
  # The tokenize step's movie: the real 720p clip looped 3× (396 frames, 19 MB of frames), decoded at 128 px
  # into the frame cache that the GPU build reads (`tokenizer encode --cache`).
  local movie=$CARRY/movie/bbb3.mp4
  mkdir -p "$CARRY/movie" && rm -rf "$CARRY/movie-frames"
  ffmpeg -v error -y -stream_loop 2 -i ../shared/data/video/bigbuckbunny.mp4 -an -c copy "$movie"
  "$full" decode --movie "$movie" --size 128 --work "$CARRY/movie-frames" >/dev/null
  rm -f "$movie" && touch "$movie" # the cache is keyed by the movie's name; keep 64 MiB free
  set +e
  local torchlib
  torchlib=$(torch_lib) || { echo "prepare: no PyTorch in ${PYTHON:-python3} (make deps installs .venv)" >&2; exit 1; }
  # What the GPU machine must provide: only torch (its own venv) and the C/C++ runtime.
  if ! check_libs "$BIN" "$torchlib"; then
    echo "prepare: $BIN needs a library the GPU machine does not promise (named above); refused." >&2
    exit 1
  fi
  local kib
  kib=$(du -sk "$CARRY" | cut -f1)
  echo "$CARRY: $((kib / 1024)) MiB"
  if [ "$kib" -ge $((64 * 1024)) ]; then
    echo "prepare: $CARRY is $((kib / 1024)) MiB; the device tool carries at most 64 MiB." >&2
    exit 1
  fi
  echo "prepared $CARRY in $((SECONDS - t0)) s; now run: bash scripts/device-bench.sh run (carry .carry)"
}

# preflight LOG: the GPU machine can run the carried binary (every library resolves, PyTorch
# sees a CUDA device, the binary prints its version), in seconds; else names the missing piece
# and exits 2 before any benchmark.
preflight() {
  local log=$1 torchlib cuda info
  fail() { echo "device-bench: $*; nothing measured." | tee -a "$log" >&2; exit 2; }
  [ -x "$BIN" ] || fail "no $BIN: run 'scripts/device-bench.sh prepare' first and carry .carry"
  # One python start (importing torch takes seconds): its lib folder and whether CUDA is there.
  info=$(timeout 90 "${PYTHON:-python3}" -c 'import os, torch
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
print(int(torch.cuda.is_available()))' 2>>"$log") ||
    fail "no PyTorch importable by ${PYTHON:-python3} on this machine (its libtorch is what $BIN loads)"
  torchlib=$(sed -n 1p <<<"$info")
  cuda=$(sed -n 2p <<<"$info")
  [ -d "$torchlib" ] || fail "torch's lib folder $torchlib does not exist"
  export LD_LIBRARY_PATH="${CARRY_LIB:+$CARRY_LIB:}${torchlib}:${LD_LIBRARY_PATH:-}"
  local libs rc
  libs=$(check_libs "$BIN" "$torchlib" 2>&1)
  rc=$?
  echo "$libs" >>"$log"
  if [ $rc -eq 1 ]; then
    fail "$BIN cannot start: $(grep -E '^(missing library|.*ldd failed)' <<<"$libs" | tr '\n' ' ')"
  elif [ $rc -ne 0 ]; then
    # It resolves, so it starts; prepare is where that set is refused.
    echo "device-bench: note: $(grep '^library outside' <<<"$libs" | tr '\n' ' ')" | tee -a "$log" >&2
  fi
  [ "$cuda" = 1 ] ||
    fail "no CUDA device visible to PyTorch on this machine (torch.cuda.is_available() is false). Run it on a GPU machine (see the header of scripts/device-bench.sh)"
  local version
  version=$(timeout 60 "$BIN" --version 2>&1) || fail "$BIN --version failed: $version"
  echo "device-bench: $version; torch $torchlib; CUDA available" | tee -a "$log"
}

run() {
  OUT=${OUT:-results/device}
  mkdir -p "$OUT"
  local log="$OUT/device-bench.log"
  : >"$log"
  # Libraries prepare had to carry are found first.
  [ -d "$CARRY/lib" ] && CARRY_LIB=$(realpath "$CARRY/lib")
  preflight "$log"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"
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
    step whole-brain 240 bash -c "'$BIN' bench-whole-brain --n 100000 --v 250000 --p 1000 --backend torch --device cuda --process-memory 48GB | tee '$OUT/whole-brain.txt'"
  fi
  step gpt2-bf16 60 "$BIN" bench-train --preset gpt2-bf16 --device cuda --steps 20 --csv "$OUT/train.csv"
  for p in fp32 tf32 bf16 fp16; do
    step "videogpt-$p" 45 "$BIN" bench-train --preset "videogpt-$p" --device cuda --steps 20 --csv "$OUT/train.csv"
  done
  if "$BIN" bench-train --help | grep -q -- 'biot'; then
    step biot-bf16 45 "$BIN" bench-train --preset biot-gpu --precision bf16 --device cuda --steps 20 --csv "$OUT/train.csv"
  fi
  local grid="$OUT/device-pipeline.toml"
  sed -e "s#datasets/synth-tiny#$CARRY/synth-tiny#" -e 's#device = "cpu"#device = "cuda"#' \
      -e "s#results/bench/smoke-pipeline#$OUT/pipeline#" -e 's#threads = 1#threads = 8#' \
      bench/smoke-pipeline.toml > "$grid"
  mkdir -p "$OUT/pipeline/shared/frames" && cp "$CARRY"/work/frames/*.safetensors "$OUT/pipeline/shared/frames/"
  step pipeline-cell 120 "$BIN" bench run "$grid"
  rm -rf "$OUT/pipeline/shared" # large; the rows are in $OUT/pipeline/results.csv
  if "$BIN" tokenizer --help | grep -q import && [ -d "$CARRY/movie-frames" ]; then
    local py=${PYTHON:-python3} tok="$OUT/tok-kinetics444"
    mkdir -p "$tok.src"
    # A checkpoint at the published widths (random weights), saved as Lightning saves.
    step tokenize-ckpt 120 "$py" tests/fixtures/videogpt_reference.py ckpt "$tok.src/model.ckpt" "$tok.src" 4 4 4 128 16 240 4 256 2048 0
    step tokenize-import 60 "$BIN" tokenizer import "$tok.src/model.ckpt" --out "$tok"
    step tokenize 120 bash -c "TIMEFORMAT='brainscale tokenizer encode (cuda, batch 8): %R s wall for 396 frames (24 clips), start and frame loading included'; { time '$BIN' tokenizer encode --movies '$CARRY/movie/bbb3.mp4' --tokenizer '$tok' --out '$OUT/codes' --cache '$CARRY/movie-frames/frames' --device cuda; } 2>&1 | tee '$OUT/tokenize.txt'"
    step tokenize-reference 120 bash -c "'$py' tests/fixtures/videogpt_reference.py bench 128 256 8 8 cuda | tee -a '$OUT/tokenize.txt'"
    rm -rf "$tok.src" "$tok" "$OUT/codes"
  fi
  echo "rows: $(ls "$OUT")" | tee -a "$log"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  check-libs) [ $# -eq 2 ] || { echo "usage: scripts/device-bench.sh check-libs BINARY" >&2; exit 64; }
    export PATH="$PWD/.venv/bin:$PATH"   # the project's PyTorch, as prepare uses
    tl=$(torch_lib) || { echo "no PyTorch in ${PYTHON:-python3}" >&2; exit 1; }
    b=$2; [[ $b == /* ]] || b=$CALLER_PWD/$b
    check_libs "$b" "$tl" ;;
  *) echo "usage: scripts/device-bench.sh prepare|run|check-libs BINARY" >&2; exit 64 ;;
esac
