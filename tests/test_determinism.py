"""Bitwise reproducibility: repeated runs, torch.use_deterministic_algorithms(True), and
concurrent calls from several Python threads (CPU) all give the bits of one serial call.
(Equality across CPU thread counts is in test_ops.py.)"""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import eca_cuda
from helpers import DEVICES, forward_backward, make_inputs


def assert_bitwise_equal(a, b):
    for name, u, v in zip(("y", "grad_x", "grad_weight"), a, b):
        assert torch.equal(u, v), name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("shape", [(8, 96, 14, 14), (2, 40, 96, 96)], ids=str)
def test_repeated_runs_are_bitwise_identical(shape, memory_format, dtype, device):
    x, weight, grad_y = make_inputs(shape, 5, dtype, device, memory_format)
    first = forward_backward(eca_cuda.eca, x, weight, grad_y, "zeros")
    for _ in range(4):
        assert_bitwise_equal(forward_backward(eca_cuda.eca, x, weight, grad_y, "zeros"), first)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_works_under_use_deterministic_algorithms(padding_mode, device):
    """No op of ours is flagged nondeterministic (it would raise), and the results are
    the bits of a run without the flag."""
    x, weight, grad_y = make_inputs(
        (4, 64, 9, 9), 5, torch.float32, device, "channels_last", seed=1
    )
    free = forward_backward(eca_cuda.eca, x, weight, grad_y, padding_mode)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        strict = forward_backward(eca_cuda.eca, x, weight, grad_y, padding_mode)
        layer = eca_cuda.ECA(kernel_size=5, padding_mode=padding_mode).to(device)
        layer(x.detach().requires_grad_()).sum().backward()
    finally:
        torch.use_deterministic_algorithms(previous)
    assert_bitwise_equal(strict, free)


def test_concurrent_calls_from_python_threads_match_serial_calls():
    """Several Python threads calling the CPU kernels at once (each kernel also parallel
    inside) get exactly what serial calls give."""
    jobs = [
        make_inputs(shape, 5, dtype, "cpu", memory_format, seed=seed)
        for seed, (shape, dtype, memory_format) in enumerate(
            [
                ((4, 64, 20, 20), torch.float32, "contiguous"),
                ((4, 64, 20, 20), torch.float32, "channels_last"),
                ((2, 300, 7, 7), torch.bfloat16, "contiguous"),
                ((2, 300, 7, 7), torch.bfloat16, "channels_last"),
                ((3, 17, 33), torch.float64, "contiguous"),
                ((1, 512, 14, 14), torch.float16, "channels_last"),
            ]
            * 4
        )
    ]

    def run(job):
        x, weight, grad_y = job
        return forward_backward(eca_cuda.eca, x, weight, grad_y, "circular")

    serial = [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(3):
            for got, want in zip(pool.map(run, jobs), serial):
                assert_bitwise_equal(got, want)
