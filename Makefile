# The two commands of the README:   make demo   (install + the main job)   make test   (install + tests)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP  := $(VENV)/.installed
# Datasets the library does not search by itself (CIFAR-10 JPEGs beside the checkout): the
# commands below and the tests find them through $CNNEDGE_DATA.
export CNNEDGE_DATA ?= $(wildcard $(abspath ../shared/datasets))
# The TFLite Micro tree firmware builds against (cnnedge firmware --tflm-dir), beside the checkout.
export CNNEDGE_TFLM ?= $(wildcard $(abspath ../shared/tflm))
# Cores whose TFLM library the install step builds (minutes each, once; cached in
# ~/.cache/cnnedge/tflm, rebuilt when the TFLM commit or flags change): those the tests use.
FIRMWARE_TARGETS ?= host,cortex-m4,cortex-m55
ARM_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib \
                qemu-system-arm

.PHONY: setup data firmware-tools firmware-libs test test-fast test-full demo lint format clean

setup: $(STAMP) data firmware-libs

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

# Fashion-MNIST's original files from Debian (no internet needed); skipped where apt is missing.
data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST: /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  $(SUDO) apt-get install -y -q dataset-fashion-mnist || \
	  ( $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist ); \
	else echo "apt-get not found: put the Fashion-MNIST *-ubyte.gz files in \$$CNNEDGE_DATA"; fi

# The Arm cross compiler, newlib and QEMU's Cortex-M board models, from Debian.
firmware-tools:
	@if command -v arm-none-eabi-gcc >/dev/null 2>&1 && command -v qemu-system-arm >/dev/null 2>&1 \
	  && [ -f "$$(arm-none-eabi-gcc -print-file-name=rdimon.specs)" ]; then \
	  echo "Arm toolchain and QEMU: $$(command -v arm-none-eabi-gcc), $$(command -v qemu-system-arm)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  $(SUDO) apt-get install -y -q --no-install-recommends $(ARM_PACKAGES) || \
	  ( $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $(ARM_PACKAGES) ); \
	else echo "apt-get not found: install $(ARM_PACKAGES) for cnnedge firmware"; fi

# TFLM's library for each of FIRMWARE_TARGETS, so the firmware tests and commands take seconds.
firmware-libs: $(STAMP) firmware-tools
	@if [ -n "$(CNNEDGE_TFLM)" ]; then \
	  $(BIN)/cnnedge firmware --prepare --target $(FIRMWARE_TARGETS); \
	else echo "no TFLite Micro tree (../shared/tflm or CNNEDGE_TFLM): firmware tests skipped"; fi

# test (what CI runs): all but the heavy real-data runs marked `full`; its budget is 8 minutes on
# 2 cores (past that it prints a warning line, never a failure) and it lists the 15 slowest tests.
# test-fast: also without the real-data tests marked `slow`. test-full: every test, the `full`
# runs included (run it before closing a change to training, export or verify). The test files are
# spread over TEST_WORKERS pytest-xdist processes (a file's fixtures built once, in one process;
# each process builds the session's shared runs it needs; TEST_WORKERS=0: one process). A worker
# that crashes ends the run with its test named, as a crash does in one process, instead of being
# replaced: pytest-xdist 3.8's loadfile scheduler can wait forever after replacing a crashed
# worker (pytest-xdist issues 784 and 1378).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --max-worker-restart 0
test: setup
	$(PYTEST) --durations=15 -m "not full" tests

test-fast: setup
	$(PYTEST) -m "not slow and not full" tests

test-full: setup
	$(PYTEST) --durations=15 tests

# The main job on real data, end to end: inspect Fashion-MNIST, train the quick recipe (+QAT),
# export every format and precision, verify parity on the test set, benchmark at 1 thread.
RUN := runs/fashion_mnist_quick/demo
demo: setup
	$(BIN)/cnnedge data info fashion-mnist
	$(BIN)/cnnedge train --recipe fashion_mnist_quick --name demo --overwrite
	$(BIN)/cnnedge export $(RUN) --verify 0
	$(BIN)/cnnedge verify $(RUN)
	$(BIN)/cnnedge bench $(RUN) --threads 1

STYLED := toolkit tests recipes edge_demo docs
lint: setup
	$(BIN)/ruff format --check $(STYLED)
	$(BIN)/ruff check $(STYLED)

format: setup
	$(BIN)/ruff format $(STYLED)
	$(BIN)/ruff check --fix $(STYLED)

clean:
	rm -rf $(VENV) runs .pytest_cache
