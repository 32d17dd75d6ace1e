#!/usr/bin/env bash
# Builds the cycle-level GPU simulator the kernels are measured in, into $GPUSIM_DIR (default
# build/gpusim): GPGPU-Sim 4.2 (accel-sim/gpgpu-sim_distribution, dev branch, commit 667834cf)
# in PTX mode with patches/, the CUDA 11.8 runtime headers and library it emulates (PyPI
# wheels), CUDA 13's ptxas and a cuobjdump wrapped for its older parsers (toolchain/), and the
# SM86_RTX3070 configuration. Then runs the simulator's micro-tests (micro/, run_micro.py).
#
#   GPUSIM_SOURCE=<the simulator's source: a .tar.gz or a folder of commit 667834cf>; without
#   it the repository is cloned from GitHub (needs the network).
#   Needs: bison, flex, makedepend (Debian: apt-get install bison flex xutils-dev), gcc, make,
#   nvcc 13 ($CUDA13_HOME, default: the nvcc on PATH), pip access to PyPI for the wheels.
# About 10 minutes on 2 cores; done steps are skipped on a rerun (stamp files).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${GPUSIM_DIR:-$ROOT/build/gpusim}"
COMMIT=667834cfe5214523edd7769aeab77f91b7137686
PYTHON="${PYTHON:-python3}"
if [ -z "${CUDA13_HOME:-}" ]; then
  command -v nvcc > /dev/null || { echo "gpusim: no nvcc on PATH; set CUDA13_HOME" >&2; exit 1; }
  CUDA13_HOME="$(cd "$(dirname "$(readlink -f "$(command -v nvcc)")")/.." && pwd)"
fi
for tool in bison flex makedepend gcc g++ make; do
  command -v $tool > /dev/null || {
    echo "gpusim: $tool is missing (Debian: apt-get install bison flex xutils-dev build-essential)" >&2
    exit 1
  }
done
mkdir -p "$OUT"
SIM="$OUT/gpgpu-sim"
CUDA118="$OUT/cuda118"  # what the simulator takes for a CUDA 11.8 installation

# 1. The simulator's source, patched.
if [ ! -f "$SIM/.patched" ]; then
  rm -rf "$SIM" "$OUT/src.tmp" && mkdir -p "$OUT/src.tmp"
  if [ -n "${GPUSIM_SOURCE:-}" ] && [ -f "$GPUSIM_SOURCE" ]; then
    tar xzf "$GPUSIM_SOURCE" -C "$OUT/src.tmp"
    mv "$OUT/src.tmp"/*/ "$SIM"
  elif [ -n "${GPUSIM_SOURCE:-}" ] && [ -d "$GPUSIM_SOURCE" ]; then
    cp -r "$GPUSIM_SOURCE" "$SIM"
  else
    git clone https://github.com/accel-sim/gpgpu-sim_distribution "$SIM"
    git -C "$SIM" checkout --quiet "$COMMIT"
  fi
  rm -rf "$OUT/src.tmp"
  if [ -d "$SIM/.git" ] && [ "$(git -C "$SIM" rev-parse HEAD)" != "$COMMIT" ]; then
    echo "gpusim: $SIM is not commit $COMMIT; the patches are for that commit" >&2
    exit 1
  fi
  patch -d "$SIM" -p1 --quiet < "$HERE/patches/gpgpu-sim-667834cf.patch"
  patch -d "$SIM" -p1 --quiet < "$HERE/patches/SM86_RTX3070-config.patch"
  touch "$SIM/.patched"
fi

# 2. The CUDA 11.8 the simulator builds against and emulates (headers, libcudart's symbol
# versions), with CUDA 13's tools behind wrappers.
if [ ! -f "$CUDA118/.done" ]; then
  rm -rf "$CUDA118" "$OUT/wheels" && mkdir -p "$CUDA118/bin" "$CUDA118/include" "$CUDA118/lib64"
  "$PYTHON" -m pip download --quiet --no-deps --dest "$OUT/wheels" \
    nvidia-cuda-runtime-cu11==11.8.89 nvidia-cuda-nvcc-cu11==11.8.89 \
    nvidia-cuda-profiler-api-cu11==11.8.86 nvidia-cuda-cuobjdump==13.2.51
  for wheel in "$OUT"/wheels/*.whl; do "$PYTHON" -m zipfile -e "$wheel" "$OUT/wheels/x"; done
  cp -r "$OUT"/wheels/x/nvidia/cuda_runtime/include/. "$CUDA118/include/"
  cp -r "$OUT"/wheels/x/nvidia/cuda_nvcc/include/. "$CUDA118/include/"
  cp -r "$OUT"/wheels/x/nvidia/cuda_profiler_api/include/. "$CUDA118/include/"
  cp "$OUT"/wheels/x/nvidia/cuda_runtime/lib/libcudart.so.11.0 "$CUDA118/lib64/"
  ln -sf libcudart.so.11.0 "$CUDA118/lib64/libcudart.so"
  cp "$OUT"/wheels/x/nvidia/cu13/bin/cuobjdump "$CUDA118/bin/cuobjdump.real"
  chmod +x "$CUDA118/bin/cuobjdump.real"
  rm -rf "$OUT/wheels/x"
  touch "$CUDA118/.done"
fi
# The wrappers and the PTX rewrites, on every build: they change with the kernels' PTX.
cp "$HERE/toolchain/fix_ptx.py" "$CUDA118/bin/"
for tool in nvcc ptxas cuobjdump; do
  cp "$HERE/toolchain/$tool.sh" "$CUDA118/bin/$tool" && chmod +x "$CUDA118/bin/$tool"
done

# The environment of the build and of every run: the simulator's own setup script, then the
# variables the wrappers read.
# (It reads a git checkout's commit where there is one; a tarball's tree has none.)
cat > "$OUT/env.sh" << EOF
export CUDA_INSTALL_PATH="$CUDA118" CUDA13_HOME="$CUDA13_HOME" LD_LIBRARY_PATH="\${LD_LIBRARY_PATH:-}"
set +u
source "$SIM/setup_environment" > "$OUT/env.log" 2>&1 || { cat "$OUT/env.log" >&2; return 1; }
export GPUSIM_CONFIG_DIR="$OUT/config"
EOF

# 3. The simulator (its libcudart.so, which applications load in place of CUDA's).
if [ ! -f "$OUT/.built" ]; then
  (source "$OUT/env.sh" && make -C "$SIM" -j"$(nproc)" > "$OUT/make.log" 2>&1) \
    || { tail -n 40 "$OUT/make.log"; exit 1; }
  touch "$OUT/.built"
fi

# 4. The configuration every run uses: the patched SM86_RTX3070, with no kernel launch latency
# and the L2 invalidated after each kernel, so that each kernel starts cold.
mkdir -p "$OUT/config"
cp "$SIM/configs/tested-cfgs/SM86_RTX3070/"* "$OUT/config/"
cat >> "$OUT/config/gpgpusim.config" << EOF

# eca_cuda: cold caches and no launch latency for every kernel (benchmarks/gpusim/build.sh)
-gpgpu_kernel_launch_latency 0
-gpgpu_flush_l2_cache 1
EOF

# 5. The launch shim (CUDA 13's host stubs call entry points the simulator lacks).
"$CUDA13_HOME/bin/nvcc" -O2 -c "$HERE/toolchain/cuda13_launch_shim.cpp" \
  -o "$OUT/cuda13_launch_shim.o"

echo "gpusim: simulator built in $OUT; micro-tests:"
"$PYTHON" "$HERE/run_micro.py" --gpusim-dir "$OUT"
