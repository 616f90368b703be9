#!/usr/bin/env bash
# Installs what brainscale needs on a fresh Debian machine: system libraries (ffmpeg, OpenBLAS,
# LAPACKE, clang for bindgen, HDF5) and a project venv holding PyPI's torch 2.11.0 (libtorch for tch).
# Idempotent: does nothing when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
      libavfilter-dev libavdevice-dev libswresample-dev libopenblas-dev liblapacke-dev ffmpeg
      libhdf5-dev
      slurmctld slurmd slurm-client munge fonts-dejavu-core)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

TORCH_VERSION=2.11.0
if ! .venv/bin/python -c "import torch,sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  echo "installing torch==$TORCH_VERSION into .venv (about 1 minute, 4.6 GB)"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
fi
# Python tools the tests use as independent references (tests/fixtures/*.py, interop tests,
# banded-ridge parity against himalaya): every package and its dependencies pinned in one lock file,
# so a new machine gets exactly the versions CI was green with (an unpinned `packaging` once broke
# nilearn's import).
if ! .venv/bin/python - scripts/python-requirements.txt 2>/dev/null <<'PY'
import sys, importlib.metadata as md
pins = [l.split("#")[0].strip() for l in open(sys.argv[1])]
pins = [p.split("==") for p in pins if p]
def ok(n, v):
    try:
        return md.version(n) == v
    except md.PackageNotFoundError:
        return False
sys.exit(not all(ok(n, v) for n, v in pins))
PY
then
  echo "installing the pinned Python references (scripts/python-requirements.txt) into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/python-requirements.txt
fi
