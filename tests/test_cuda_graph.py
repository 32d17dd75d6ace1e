"""On a GPU: small tensors (N = 1, the ECA-MobileNetV2 layers of 7x7 and 14x14) captured in a
CUDA graph, forward and backward through autograd, replayed on new inputs copied into the
captured ones, give the bits of a direct run; the op synchronises with nothing, so capture
does not fail. The CPU harness makes the same check of the launch plan without a GPU
(test_cuda_emulated.py, test_small_tensors_replay_from_a_capture)."""

from __future__ import annotations

import pytest
import torch

import eca_cuda
from helpers import make_inputs, to_memory_format

pytestmark = pytest.mark.needs_cuda

# (C, H, W, k): ECA-MobileNetV2's 14x14 and 7x7 layers (benchmarks/eca_layer_shapes.csv).
LAYERS = [(64, 14, 14, 1), (96, 14, 14, 3), (160, 7, 7, 3), (320, 7, 7, 3)]


def step(x, weight, residual, grad):
    """The converted ResNet block's tail, forward and backward: (out, grad_x, grad_weight,
    grad_residual)."""
    out = eca_cuda.eca_tail(x, weight, residual, 1.0, "relu")
    return (out, *torch.autograd.grad(out, (x, weight, residual), grad))


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layer", LAYERS, ids=str)
def test_small_tensors_replay_in_a_cuda_graph(layer, dtype, memory_format):
    C, H, W, k = layer

    def inputs(seed):
        x, weight, grad = make_inputs(
            (1, C, H, W), k, dtype, "cuda", memory_format, torch.float32, seed=seed
        )
        residual = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        residual = to_memory_format(residual.to("cuda", dtype), memory_format)
        return x.requires_grad_(), weight.requires_grad_(), residual.requires_grad_(), grad

    static = inputs(0)
    # Warm-up on a side stream, as torch.cuda.graph's documentation asks.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step(*static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step(*static)
    for seed in (1, 2):
        new = inputs(seed)
        with torch.no_grad():
            for s, n in zip(static, new):
                s.copy_(n)
        graph.replay()
        direct = step(*new)
        for name, u, v in zip(("out", "grad_x", "grad_weight", "grad_residual"), captured, direct):
            assert torch.equal(u, v), f"{name}: replay {seed} vs a direct run"
