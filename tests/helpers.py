"""Shared test helpers: devices, memory formats, and the honest tolerance rule."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

import eca_cuda
from eca_cuda import compatibility

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]


def requires_torch(version: str, what: str):
    """Skips, with the reason, where the installed torch is older than ``version`` (what a
    feature of this package needs from torch; README's table of torch versions lists them)."""
    too_old = compatibility.release(torch.__version__) < compatibility.release(version)
    return pytest.mark.skipif(too_old, reason=f"{what} needs torch >= {version}")


# Inductor compiles the C++ it writes for the CPU at run time ($CXX, else g++): an installed
# wheel's environment may have no compiler (tests/test_wheel.py runs there without one).
needs_cpp_compiler = pytest.mark.skipif(
    not any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "g++", "c++")),
    reason="torch.compile's CPU code needs a C++ compiler, and none is on PATH",
)
MEMORY_FORMATS = ["contiguous", "channels_last", "strided"]
PADDING_MODES = ["zeros", "circular"]


def to_memory_format(x: torch.Tensor, memory_format: str) -> torch.Tensor:
    """``x`` with the same values in the given layout (any rank >= 3)."""
    if memory_format == "contiguous":
        return x.contiguous()
    if memory_format == "channels_last":  # (N, *spatial, C) dense, as channels_last(_3d)
        return x.movedim(1, -1).contiguous().movedim(-1, 1)
    if memory_format == "strided":  # a non-dense view: every other element of a wider last dim
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
        wide[..., ::2] = x
        return wide[..., ::2]
    raise ValueError(memory_format)


def make_inputs(shape, k, dtype, device, memory_format, weight_dtype=None, seed=0):
    """(x, weight of shape (1, 1, k), grad_y), seeded, x and grad_y in ``memory_format``."""
    gen = torch.Generator().manual_seed(seed)
    # Means far from zero and weights of O(1) keep the gate away from saturation.
    x = torch.randn(shape, generator=gen) + torch.randn(shape[1], generator=gen).view(
        1, -1, *([1] * (len(shape) - 2))
    )
    weight = torch.randn(1, 1, k, generator=gen)
    grad_y = torch.randn(shape, generator=gen)
    x = to_memory_format(x.to(device, dtype), memory_format)
    grad_y = to_memory_format(grad_y.to(device, dtype), memory_format)
    return x, weight.to(device, weight_dtype or dtype), grad_y


def forward_backward(fn, x, weight, grad_y, padding_mode, **grad_kwargs):
    """(y, grad_x, grad_weight) of ``fn(x, weight, padding_mode)`` for upstream ``grad_y``;
    ``grad_kwargs`` (e.g. ``create_graph``) go to ``torch.autograd.grad``."""
    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    y = fn(x, weight, padding_mode)
    grad_x, grad_weight = torch.autograd.grad(y, (x, weight), grad_y, **grad_kwargs)
    return y, grad_x, grad_weight


def reference_float64(x, weight, grad_y, padding_mode):
    """The reference evaluated in float64 on the upcast inputs."""
    return forward_backward(
        eca_cuda.reference.eca, x.double(), weight.double(), grad_y.double(), padding_mode
    )


def assert_close_to_reference(ours, ref64, ref_lowp, dtype, name):
    """Our error vs the float64 reference must be small for float32/64; for half types at most
    2x the error of the reference itself evaluated in that dtype (plus one eps of scale)."""
    ours, ref64 = ours.double(), ref64.double()
    if dtype == torch.float64:
        torch.testing.assert_close(ours, ref64, atol=1e-12, rtol=1e-10, msg=name)
        return
    if dtype == torch.float32:
        scale = ref64.abs().max().item() if ref64.numel() else 0.0
        torch.testing.assert_close(ours, ref64, atol=1e-5 * max(scale, 1.0), rtol=1e-5, msg=name)
        return
    if ref64.numel() == 0:
        assert ours.numel() == 0
        return
    err = (ours - ref64).abs().max().item()
    ref_err = (ref_lowp.double() - ref64).abs().max().item()
    floor = torch.finfo(dtype).eps * ref64.abs().max().item()
    assert err <= 2 * ref_err + floor, f"{name}: error {err:.3g} vs reference's own {ref_err:.3g}"


def assert_close_to_cpu(ours, cpu, name):
    """Within rounding of the CPU operator's value: a few units in the last place of the
    output dtype (y, grad_x), or of the accumulation dtype over sums of thousands of terms
    (pooled, gate, grad_weight), relative to the tensor's largest value."""
    finite = cpu[cpu.isfinite()]
    scale = finite.abs().max().item() if finite.numel() else 0.0
    rtol = torch.finfo(cpu.dtype).eps * (
        2 if cpu.element_size() == 2 or name in ("y", "grad_x") else 64
    )
    torch.testing.assert_close(
        ours, cpu, rtol=rtol, atol=rtol * scale, equal_nan=True, msg=lambda m: f"{name}: {m}"
    )


def check_against_reference(x, weight, grad_y, padding_mode):
    """Runs eca_cuda.eca forward+backward, checks y, grad_x and grad_weight against the
    float64 reference with :func:`assert_close_to_reference`, and returns them."""
    ours = forward_backward(eca_cuda.eca, x, weight, grad_y, padding_mode)
    ref64 = reference_float64(x, weight, grad_y, padding_mode)
    ref_lowp = forward_backward(eca_cuda.reference.eca, x, weight, grad_y, padding_mode)
    for name, *values in zip(("y", "grad_x", "grad_weight"), ours, ref64, ref_lowp):
        assert_close_to_reference(*values, x.dtype, name)
    return ours
