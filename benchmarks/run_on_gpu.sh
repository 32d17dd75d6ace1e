#!/usr/bin/env bash
# For a lent H100/H200 (device tool): build against that machine's torch, then run the
# stages asked for, writing logs and results to $OUT (default build/gpu). One device call
# is capped at 10 minutes, and `test` includes the 2^31-row tests (host and GPU), so run
# each stage in its own call:
#   bash benchmarks/run_on_gpu.sh test
#   bash benchmarks/run_on_gpu.sh sanitize
#   bash benchmarks/run_on_gpu.sh bench
# Stages: test (full pytest suite, CUDA cases included), sanitize (compute-sanitizer
# memcheck/racecheck/initcheck/synccheck on the float32 CUDA op tests), bench (full sweep).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ECA_CUDA_WITH_CUDA=1 MAX_JOBS=${MAX_JOBS:-16}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}  # the lent GPUs are sm_90
status=0

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -m pip install --no-build-isolation --no-deps -e . >"$OUT/install.log" 2>&1 ||
    { tail -n 60 "$OUT/install.log"; exit 1; }
  grep -E '\[eca_cuda setup\]' "$OUT/install.log" | awk '!seen[$0]++'
  python3 -m eca_cuda
} 2>&1 | tee "$OUT/build.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1

for stage in "$@"; do
  case "$stage" in
    test)
      python3 -m pytest tests -q -p no:cacheprovider 2>&1 | tail -n 40 | tee "$OUT/tests.log"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      ;;
    sanitize)
      # No caching allocator, so out-of-bounds accesses inside pooled blocks are seen.
      for tool in memcheck racecheck initcheck synccheck; do
        PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" --error-exitcode 99 \
          python3 -m pytest tests/test_ops.py -q -p no:cacheprovider -k "cuda and float32" \
          >"$OUT/sanitizer_$tool.log" 2>&1
        rc=$?
        echo "compute-sanitizer $tool: exit $rc; $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer_$tool.log" | tail -n 1)" |
          tee -a "$OUT/sanitizer_summary.txt"
        [ "$rc" -eq 0 ] || status=1
      done
      ;;
    bench)
      python3 benchmarks/bench_eca.py --full --out-dir "$OUT" 2>&1 | tail -n 80 | tee "$OUT/bench.log"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      ;;
    *)
      echo "unknown stage: $stage (test, sanitize, bench)"
      status=2
      ;;
  esac
done
exit "$status"
