"""On a GPU: the single-pass kernels and the multi-launch plans (ECA_CUDA_TILE_BUDGET=0) give
the same bits, forward, backward and the ReLU tail's backward, for ECA-ResNet-50's layer
shapes, MobileNetV2's small ones and shapes off every tile and pack, in each dtype and layout.
The CPU harness checks the same of the kernels' source (test_cuda_emulated.py); this checks the
code nvcc made of it."""

from __future__ import annotations

import pytest
import torch

from helpers import make_inputs, to_memory_format

pytestmark = pytest.mark.needs_cuda

# (shape, k): ECA-ResNet-50's four stages at N = 2, MobileNetV2's 7x7 at N = 1, and shapes off
# every tile and pack, with k > C.
SHAPES = [
    ((2, 256, 56, 56), 3),
    ((2, 512, 28, 28), 5),
    ((2, 1024, 14, 14), 5),
    ((2, 2048, 7, 7), 7),
    ((1, 320, 7, 7), 3),
    ((3, 37, 5, 7), 3),
    ((2, 3, 4, 4), 9),
]


def run(x, weight, grad, residual, padding_mode):
    ops = torch.ops.eca_cuda
    y, pooled, gate = ops.eca_forward(x, weight, padding_mode)
    grads = ops.eca_backward(grad, x, weight, pooled, gate, padding_mode)
    out, *_ = ops.eca_tail_forward(x, weight, residual, 1.0, None, "relu", padding_mode)
    tail_grads = ops.eca_tail_backward(grad, x, weight, pooled, gate, out, padding_mode)
    return y, pooled, gate, *grads, out, *tail_grads


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape, k", SHAPES, ids=str)
def test_single_pass_gives_the_multi_launch_bits(
    shape, k, dtype, memory_format, padding_mode, monkeypatch
):
    x, weight, grad = make_inputs(shape, k, dtype, "cuda", memory_format, torch.float32)
    residual = to_memory_format(torch.randn(shape).to("cuda", dtype), memory_format)
    args = (x, weight, grad, residual, padding_mode)
    single = run(*args)
    monkeypatch.setenv("ECA_CUDA_TILE_BUDGET", "0")
    multi = run(*args)
    names = ("y", "pooled", "gate", "grad_x", "grad_weight", "out", "tail grad_x")
    names += ("tail grad_weight", "grad_pre")
    for name, u, v in zip(names, single, multi):
        assert torch.equal(u, v), name


def test_host_threads_launch_tiles_of_different_sizes_together():
    """Two host threads, each on its own stream, run the single-pass forward on tiles that need
    different amounts of dynamic shared memory above 48 KiB (the opt-in is per kernel and
    device, not per launch): every launch succeeds and gives the bits of a launch alone."""
    import threading

    shapes = [(32, 1024, 14, 14), (32, 1024, 15, 15)]  # tiles of 64 channels: 49 and 56 KiB
    inputs = [
        make_inputs(shape, 5, torch.float32, "cuda", "contiguous", torch.float32)[:2]
        for shape in shapes
    ]
    alone = [torch.ops.eca_cuda.eca_forward(x, weight, "zeros")[0] for x, weight in inputs]
    torch.cuda.synchronize()
    failures = []

    def launch(x, weight, expected):
        stream = torch.cuda.Stream()
        try:
            with torch.cuda.stream(stream):
                for _ in range(200):
                    y = torch.ops.eca_cuda.eca_forward(x, weight, "zeros")[0]
                    if not torch.equal(y, expected):
                        failures.append("different bits")
        except RuntimeError as error:
            failures.append(str(error))

    threads = [threading.Thread(target=launch, args=(*xw, y)) for xw, y in zip(inputs, alone)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
