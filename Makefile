# brainscale: `make demo` and `make test` work on a fresh Debian machine (they install what is missing).
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export LIBTORCH_USE_PYTORCH := 1
export PYTHON := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(HOME)/.cargo/bin:$(PATH)
# torch/lib is also embedded as an rpath by build.rs; this covers test binaries run by other tools.
export LD_LIBRARY_PATH := $(wildcard $(VENV)/lib/python3*/site-packages/torch/lib):$(LD_LIBRARY_PATH)
CARGO ?= cargo
BIN := target/release/brainscale

.PHONY: deps build demo test bench clean-demo

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --release

demo: build
	$(BIN) demo

test: deps
	$(CARGO) test --release --no-fail-fast

bench: build
	$(BIN) bench-ridge --preset cpu

clean-demo:
	rm -rf datasets/synth-medium results/demo
