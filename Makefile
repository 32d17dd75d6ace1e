# Fresh machine, two commands:  `make demo` (benchmark + digits training)  and  `make test`.
# Both create .venv, install requirements.txt (torch included), and build the extension
# from source against that torch; later runs rebuild only when csrc/ or setup.py change.
#   make demo FULL=1            full benchmark sweep and longer training
#   make test PYTEST_ARGS=-x    extra pytest arguments
#   ECA_CUDA_WITH_CUDA=1|0      require / skip the CUDA kernels (default: build when possible)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEPS_STAMP := $(VENV)/.requirements-installed
BUILD_STAMP := $(VENV)/.eca_cuda-built
CXX_SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h')
LINT_CXX := $(CXX_SOURCES) tests/cuda_reduce_emulation.cpp
# Keep freed buffers mapped so CPU timings measure the op, not page faults (ENVIRONMENT.md).
BENCH_ENV := GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184 TORCHINDUCTOR_COMPILE_THREADS=1

.PHONY: install test demo bench floor digits lint format clean

install: $(BUILD_STAMP)

$(DEPS_STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) setup.py $(CXX_SOURCES)
	@mkdir -p build
	@echo "Building eca_cuda (log: build/install.log) ..."
	@$(PIP) install --no-build-isolation -v -e . > build/install.log 2>&1 || { tail -n 80 build/install.log; exit 1; }
	@# The decisions, each compile step and the link line, as proof of what was built.
	@grep -E '\[eca_cuda setup\]|\[[0-9]+/[0-9]+\]|-shared' build/install.log | awk '!seen[$$0]++' | cut -c1-240
	$(PY) -m eca_cuda
	touch $@

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: bench digits

bench: install
	$(BENCH_ENV) $(PY) benchmarks/bench_eca.py $(if $(FULL),--full)

# The least time any op timed as bench_eca.py times eca_cuda can take (CPU, N = 8 layers).
floor: install
	$(BENCH_ENV) $(PY) benchmarks/bench_floor.py

digits: install
	$(PY) examples/train_digits.py $(if $(FULL),--epochs 30)

lint: $(DEPS_STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror $(LINT_CXX)

format: $(DEPS_STAMP)
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(LINT_CXX)

clean:
	rm -rf build *.egg-info eca_cuda/_C*.so $(BUILD_STAMP)
