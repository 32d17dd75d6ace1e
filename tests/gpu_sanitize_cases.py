"""A small set of eca_forward / eca_backward / ReLU-tail calls for compute-sanitizer on a GPU
(benchmarks/run_on_gpu.sh): the shapes of tests/cuda_emulation/sanitize_cases.cpp (a channel
count off every tile, k > C, several blocks, two spatial chunks), each dtype, layout and
padding mode, forward and backward, on the single-pass kernels and on the multi-launch plans
(ECA_CUDA_TILE_BUDGET=0), every kernel of csrc/cuda/ launched. Exits 1 when an output is not
finite, or the layouts or the plans disagree; the sanitizer reports the rest.

    compute-sanitizer --tool memcheck python3 tests/gpu_sanitize_cases.py
    python3 tests/gpu_sanitize_cases.py --device cpu    # the same calls, to try the script
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import eca_cuda  # noqa: F401  (registers the operators)

SHAPES = [((2, 37, 5, 7), 3), ((3, 100, 3, 3), 5), ((1, 3, 4, 4), 9), ((1, 4, 50, 90), 3)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def run(x, weight, grad_y, padding_mode):
    ops = torch.ops.eca_cuda
    y, pooled, gate = ops.eca_forward(x, weight, padding_mode)
    grad_x, grad_w = ops.eca_backward(grad_y, x, weight, pooled, gate, padding_mode)
    out, *_ = ops.eca_tail_forward(x, weight, grad_y, 1.0, None, "relu", padding_mode)
    tail_grads = ops.eca_tail_backward(grad_y, x, weight, pooled, gate, out, padding_mode)
    return y, pooled, gate, grad_x, grad_w, out, *tail_grads


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    device = parser.parse_args(argv).device
    failures = 0
    gen = torch.Generator().manual_seed(0)
    for (shape, k), dtype, padding_mode in [
        (s, d, p) for s in SHAPES for d in DTYPES for p in ("zeros", "circular")
    ]:
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        x = (torch.rand(shape, generator=gen) * 3 - 1).to(device, dtype)
        grad_y = torch.randn(shape, generator=gen).to(device, dtype)
        weight = torch.randn(k, generator=gen).to(device, acc)
        runs = []
        for budget in (None, "0"):  # the single-pass kernels, then the multi-launch plans
            if budget is None:
                os.environ.pop("ECA_CUDA_TILE_BUDGET", None)
            else:
                os.environ["ECA_CUDA_TILE_BUDGET"] = budget
            for f in (torch.contiguous_format, torch.channels_last):
                xf, gf = x.contiguous(memory_format=f), grad_y.contiguous(memory_format=f)
                runs.append(run(xf, weight, gf, padding_mode))
        os.environ.pop("ECA_CUDA_TILE_BUDGET", None)
        finite = all(t.isfinite().all() for run_ in runs for t in run_)
        same = all(torch.equal(a, b) for other in runs[1:] for a, b in zip(runs[0], other))
        if not (finite and same):
            failures += 1
            print(
                f"FAIL {shape} k={k} {dtype} {padding_mode}: finite={finite}, "
                f"layouts and plans agree={same}"
            )
    if device == "cuda":
        torch.cuda.synchronize()
    print(f"{'FAILED' if failures else 'passed'}: {failures} failure(s) on {device}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
