#!/usr/bin/env bash
# Everything a lent GPU is for, in one call of at most 8 minutes on a 16-core H100/H200 host
# whose Python already has torch, pytest, hypothesis, timm, pandas and tqdm, and no package
# registry:
#   build     the extension for sm_90 only, against that machine's torch (no downloads)
#   test      the CUDA tests (marked needs_cuda), less the 2^31-element ones (marked slow)
#   sanitize  compute-sanitizer memcheck and racecheck over tests/gpu_sanitize_cases.py
#   bench     the GPU benchmark's short preset (bench_eca.py), CSV and tables
# Logs and results go to $OUT (default build/gpu), with summary.txt saying how each stage
# ended. Each stage has its own time limit, so one that hangs leaves time for the rest.
# Without a GPU the script rehearses: it builds, runs what needs no GPU, and says what it
# skipped. Usage: bash benchmarks/run_on_gpu.sh; LIMIT_SCALE=3 stretches every stage's limit
# (a rehearsal on a 2-core machine). The build is in place (build_ext --inplace), so nothing
# is installed into the machine's Python.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ECA_CUDA_WITH_CUDA=1 MAX_JOBS=${MAX_JOBS:-16}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}  # the lent GPUs are sm_90
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
status=0

# stage NAME SECONDS COMMAND...: runs COMMAND with its output in $OUT/NAME.log.
stage() {
  local name=$1 limit=$(($2 * ${LIMIT_SCALE:-1}))
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local line="$name: exit $rc in $((SECONDS - start)) s (limit $limit s)"
  [ "$rc" -eq 124 ] && line="$line, TIMED OUT"
  echo "$line" | tee -a "$OUT/summary.txt"
  tail -n 15 "$OUT/$name.log"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

: >"$OUT/summary.txt"
{
  date -u +"%Y-%m-%d %H:%M UTC"
  git rev-parse --short HEAD 2>/dev/null
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
} | tee "$OUT/machine.txt"
GPU=$($PY -c "import torch; print(int(torch.cuda.is_available()))")

stage build 150 $PY setup.py build_ext --inplace || exit 1
grep -E "\[eca_cuda setup\]" "$OUT/build.log" | awk '!seen[$0]++'
$PY -m eca_cuda | tee -a "$OUT/machine.txt"

if [ "$GPU" = 1 ]; then
  stage test 110 $PY -m pytest tests -q -p no:cacheprovider -m "needs_cuda and not slow" --maxfail=20
  for tool in memcheck racecheck; do
    # No caching allocator, so a step past a tensor inside a cached block is seen.
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 stage "sanitizer_$tool" 75 \
      compute-sanitizer --tool "$tool" --error-exitcode 99 $PY tests/gpu_sanitize_cases.py
  done
  stage bench 120 $PY benchmarks/bench_eca.py --out-dir "$OUT" --rounds 2
else
  echo "no GPU: test, sanitize and bench need one; rehearsing what runs on the CPU" |
    tee -a "$OUT/summary.txt"
  stage sanitize_cases_on_cpu 60 $PY tests/gpu_sanitize_cases.py --device cpu
  stage test_collect 60 $PY -m pytest tests -q -p no:cacheprovider --collect-only \
    -m "needs_cuda and not slow"
  stage bench_on_cpu 240 $PY benchmarks/bench_eca.py --out-dir "$OUT" --rounds 1
fi
exit "$status"
