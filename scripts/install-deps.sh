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
# Independent references for the bio-signal tests (tests/fixtures/biosignal_reference.py).
BIO_PY=(numpy==2.4.6 scipy==1.17.1 scikit-learn==1.9.1 pyedflib==0.1.42 safetensors==0.8.0)
if ! .venv/bin/python -c "import numpy, scipy, sklearn, pyedflib, safetensors" 2>/dev/null; then
  echo "installing ${BIO_PY[*]} into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "${BIO_PY[@]}"
fi

# Python tools the interop tests read brainscale's outputs with (tests/interop_python.rs).
PYPKGS=(nibabel==5.3.2 nilearn==0.14.1 h5py==3.16.0 safetensors==0.8.0)
if ! .venv/bin/python - "${PYPKGS[@]}" 2>/dev/null <<'PY'
import sys, importlib.metadata as md
sys.exit(any(md.version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
PY
then
  echo "installing ${PYPKGS[*]} into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "${PYPKGS[@]}"
fi

# himalaya: the independent reference of the banded-ridge parity tests and `bench-ridge --bands --himalaya`.
if ! .venv/bin/python -c "import himalaya, sys; sys.exit(himalaya.__version__ != '0.4.11')" 2>/dev/null; then
  echo "installing himalaya==0.4.11 into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "himalaya==0.4.11" "packaging==25.0"
fi
