# Fresh machine, two commands:  `make demo` (layer and model benchmarks + digits training)
# and  `make test`.
# Both create .venv, install the build requirements (torch included), then the package from
# source with its extras (pyproject.toml), built against that torch; later runs rebuild only
# when csrc/, setup.py or pyproject.toml change.
#   make demo FULL=1            full benchmark sweep and longer training
#   make test PYTEST_ARGS=-x    extra pytest arguments
#   ECA_CUDA_WITH_CUDA=1|0      require / skip the CUDA kernels (default: build when possible)
# Also: `make wheel` (a binary wheel in dist/), `make wheel-test` (it installs and passes the
# CPU tests in a fresh venv with no compiler), `make matrix` (the tests against the lowest
# torch supported, MATRIX_TORCH, at every CPU build; tests/version_matrix.py). CI runs all.
# The CUDA kernels in a cycle-level GPU simulator, no GPU needed (benchmarks/gpusim/, not in
# CI): `make gpusim GPUSIM_SOURCE=<GPGPU-Sim source .tar.gz or folder>` builds it and runs its
# micro-tests (without GPUSIM_SOURCE it is cloned from GitHub), then `make gpusim-quick`
# (about 20 minutes) or `make gpusim-full` (hours) writes the simulated ratios to
# benchmarks/results/.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEPS_STAMP := $(VENV)/.build-requirements-installed
# pyproject.toml's [build-system] requires (tests/test_build.py checks they agree): with
# --no-build-isolation pip builds against what is installed, so they go in first.
BUILD_REQUIRES := "setuptools>=64" wheel ninja "torch>=2.4"
BUILD_STAMP := $(VENV)/.eca_cuda-built
CXX_SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h')
LINT_CXX := $(CXX_SOURCES) $(wildcard tests/cuda_emulation/*) \
	$(wildcard benchmarks/gpusim/*.cu benchmarks/gpusim/*/*.cu benchmarks/gpusim/*/*.cpp)
# Keep freed buffers mapped, so that CPU timings measure the op, not page faults
# (benchmarks/README.md); background compile workers would take both cores.
BENCH_ENV := GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184 TORCHINDUCTOR_COMPILE_THREADS=1

MATRIX_TORCH ?= 2.4.1

.PHONY: install test wheel wheel-test matrix demo bench bench-models digits gpusim gpusim-quick \
	gpusim-full lint format clean

install: $(BUILD_STAMP)

$(DEPS_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(BUILD_REQUIRES)
	touch $@

# The extras: test (pytest, timm, ONNX), demo (benchmark tables and plot, digits), dev (both,
# and the linters).
$(BUILD_STAMP): $(DEPS_STAMP) setup.py pyproject.toml $(CXX_SOURCES)
	@mkdir -p build
	@echo "Building eca_cuda and installing its extras (log: build/install.log) ..."
	@$(PIP) install --no-build-isolation -v -e ".[dev]" > build/install.log 2>&1 || { tail -n 80 build/install.log; exit 1; }
	@# The decisions, each compile step and the link line, as proof of what was built.
	@grep -E '\[eca_cuda setup\]|\[[0-9]+/[0-9]+\]|-shared' build/install.log | awk '!seen[$$0]++' | cut -c1-240
	@# ptxas' report (-Xptxas=-v), a line per CUDA kernel and architecture: stack frame, spill
	@# stores/loads, registers.
	@grep -E "ptxas info +: (Compiling entry|Used)|bytes stack frame" build/install.log \
		| sed -E "s/.*Compiling entry function '([^']+)' for '([^']+)'.*/\2 \1/; s/.*Used ([0-9]+) registers.*/\1 registers/; s/ *([0-9]+) bytes stack frame, ([0-9]+) bytes spill stores, ([0-9]+) bytes spill loads/stack \1 B, spills \2\/\3 B,/" \
		| paste -d' ' - - - | c++filt | sed -E 's/\(.*\)//; s/ void / /' | sort | awk '!seen[$$0]++'
	$(PY) -m eca_cuda
	touch $@

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

# CPU kernels for every instruction set, CUDA kernels for the common architectures whatever GPU
# is visible (ECA_CUDA_PORTABLE); the objects of `make install` are reused where they match.
wheel: install
	rm -rf dist
	ECA_CUDA_PORTABLE=1 $(PIP) wheel -v --no-build-isolation --no-deps --wheel-dir dist . \
		> build/wheel.log 2>&1 || { tail -n 80 build/wheel.log; exit 1; }
	@grep -E '\[eca_cuda setup\]' build/wheel.log | awk '!seen[$$0]++'
	@ls -l dist

wheel-test: wheel
	ECA_CUDA_WHEEL="$$(ls dist/eca_cuda-*.whl)" $(PY) -m pytest tests/test_wheel.py $(PYTEST_ARGS)

matrix: $(DEPS_STAMP)
	$(PY) tests/version_matrix.py --torch $(MATRIX_TORCH)

demo: bench bench-models digits

bench: install
	$(BENCH_ENV) $(PY) benchmarks/bench_eca.py $(if $(FULL),--full)

bench-models: install
	$(BENCH_ENV) $(PY) benchmarks/bench_models.py $(if $(FULL),--preset cpu)

digits: install
	$(PY) examples/train_digits.py $(if $(FULL),--epochs 30)

gpusim: $(DEPS_STAMP)
	GPUSIM_SOURCE="$(GPUSIM_SOURCE)" PYTHON=$(PY) bash benchmarks/gpusim/build.sh

gpusim-quick: install gpusim
	$(PY) benchmarks/gpusim/run.py --preset quick

gpusim-full: install gpusim
	$(PY) benchmarks/gpusim/run.py --preset full

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror $(LINT_CXX)

format: install
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(LINT_CXX)

clean:
	rm -rf build dist *.egg-info eca_cuda/_C*.so eca_cuda/_build_record.py $(BUILD_STAMP)
