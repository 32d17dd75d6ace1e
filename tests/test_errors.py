"""Every bad input raises an error that names the argument; none crashes or returns."""

import re

import pytest
import torch

import eca_cuda

X = torch.randn(2, 8, 4, 4)
W = torch.randn(3)

CASES = [
    # (id, call, exception, message fragment)
    (
        "rank 2 x",
        lambda: eca_cuda.eca(torch.randn(4, 8), W),
        ValueError,
        "x must be (N, C, *spatial)",
    ),
    ("rank 1 x", lambda: eca_cuda.eca(torch.randn(8), W), ValueError, "x must be (N, C, *spatial)"),
    (
        "rank 0 x",
        lambda: eca_cuda.eca(torch.tensor(1.0), W),
        ValueError,
        "x must be (N, C, *spatial)",
    ),
    (
        "module given rank 2 x",
        lambda: eca_cuda.ECA(kernel_size=3)(torch.randn(4, 8)),
        ValueError,
        "x must be (N, C, *spatial)",
    ),
    (
        "complex x",
        lambda: eca_cuda.eca(X.to(torch.complex64), W),
        ValueError,
        "x must be float16",
    ),
    ("uint8 x", lambda: eca_cuda.eca(X.to(torch.uint8), W), ValueError, "x must be float16"),
    (
        "sparse x",  # rejected by the dispatcher: no kernel for sparse layouts
        lambda: eca_cuda.eca(X.to_sparse(), W),
        NotImplementedError,
        "eca_cuda::eca_forward' with arguments from the 'SparseCPU' backend",
    ),
    (
        "integer x",
        lambda: eca_cuda.eca(torch.ones(2, 8, 4, dtype=torch.int64), W),
        ValueError,
        "x must be float16",
    ),
    (
        "bool x",
        lambda: eca_cuda.eca(torch.ones(2, 8, 4, dtype=torch.bool), W),
        ValueError,
        "x must be float16",
    ),
    (
        "even k",
        lambda: eca_cuda.eca(X, torch.randn(4)),
        ValueError,
        "odd number of taps k, got k = 4",
    ),
    (
        "zero k",
        lambda: eca_cuda.eca(X, torch.randn(0)),
        ValueError,
        "odd number of taps k, got k = 0",
    ),
    (
        "weight (2, 3)",
        lambda: eca_cuda.eca(X, torch.randn(2, 3)),
        ValueError,
        "weight must be (k,) or (1, 1, k)",
    ),
    (
        "weight (1, 2, 3)",
        lambda: eca_cuda.eca(X, torch.randn(1, 2, 3)),
        ValueError,
        "weight must be (k,) or (1, 1, k)",
    ),
    (
        "scalar weight",
        lambda: eca_cuda.eca(X, torch.tensor(1.0)),
        ValueError,
        "weight must be (k,) or (1, 1, k)",
    ),
    (
        "weight (1, 1, 1, 3)",
        lambda: eca_cuda.eca(X, torch.randn(1, 1, 1, 3)),
        ValueError,
        "weight must be (k,) or (1, 1, k)",
    ),
    (
        "integer weight",
        lambda: eca_cuda.eca(X, torch.ones(3, dtype=torch.int64)),
        ValueError,
        "weight must have x's dtype",
    ),
    (
        "x requiring grad, integer weight",
        lambda: eca_cuda.eca(X.clone().requires_grad_(), torch.ones(3, dtype=torch.int64)),
        ValueError,
        "weight must have x's dtype",
    ),
    (
        "float16 weight, float32 x",
        lambda: eca_cuda.eca(X, W.half()),
        ValueError,
        "weight must have x's dtype",
    ),
    (
        "float16 weight, bfloat16 x",
        lambda: eca_cuda.eca(X.bfloat16(), W.half()),
        ValueError,
        "weight must have x's dtype (BFloat16) or float32",
    ),
    (
        "float64 weight, float32 x",
        lambda: eca_cuda.eca(X, W.double()),
        ValueError,
        "weight must have x's dtype",
    ),
    (
        "weight on meta",
        lambda: eca_cuda.eca(X, W.to("meta")),
        RuntimeError,
        "weight must be on x's device",
    ),
    (
        "unknown padding_mode",
        lambda: eca_cuda.eca(X, W, "reflect"),
        ValueError,
        "padding_mode must be 'zeros' or 'circular'",
    ),
    (
        "padding_mode of the wrong case",
        lambda: eca_cuda.eca(X, W, "Zeros"),
        ValueError,
        "padding_mode must be 'zeros' or 'circular', got 'Zeros'",
    ),
    (
        "padding_mode None",  # the operator schema names the argument
        lambda: eca_cuda.eca(X, W, None),
        RuntimeError,
        "Expected a value of type 'str' for argument 'padding_mode'",
    ),
    (
        "x on meta, weight on cpu",
        lambda: eca_cuda.eca(X.to("meta"), W),
        RuntimeError,
        "weight must be on x's device",
    ),
    (
        "module even kernel_size",
        lambda: eca_cuda.ECA(kernel_size=4),
        ValueError,
        "kernel_size must be a positive odd int",
    ),
    (
        "module zero kernel_size",
        lambda: eca_cuda.ECA(kernel_size=0),
        ValueError,
        "kernel_size must be a positive odd int",
    ),
    (
        "module negative kernel_size",
        lambda: eca_cuda.ECA(kernel_size=-3),
        ValueError,
        "kernel_size must be a positive odd int",
    ),
    (
        "module float kernel_size",
        lambda: eca_cuda.ECA(kernel_size=3.0),
        ValueError,
        "kernel_size must be a positive odd int",
    ),
    (
        "module gamma 0",
        lambda: eca_cuda.ECA(channels=64, gamma=0),
        ValueError,
        "gamma must be > 0",
    ),
    (
        "module negative channels",
        lambda: eca_cuda.ECA(channels=-4),
        ValueError,
        "channels must be a positive int",
    ),
    (
        "module padding_mode",
        lambda: eca_cuda.ECA(padding_mode="same"),
        ValueError,
        "padding_mode must be one of",
    ),
    (
        "module channels 0",
        lambda: eca_cuda.ECA(channels=0),
        ValueError,
        "channels must be a positive int",
    ),
    (
        "backward grad_y shape",
        lambda: eca_cuda.ops.eca_backward(
            torch.randn(2, 8, 4), X, W, torch.zeros(2, 8), torch.zeros(2, 8)
        ),
        ValueError,
        "grad_y must match x",
    ),
    (
        "backward pooled shape",
        lambda: eca_cuda.ops.eca_backward(X, X, W, torch.zeros(2, 7), torch.zeros(2, 8)),
        ValueError,
        "pooled and gate must be (N, C)",
    ),
    (
        "backward gate dtype",
        lambda: eca_cuda.ops.eca_backward(
            X, X, W, torch.zeros(2, 8), torch.zeros(2, 8, dtype=torch.float64)
        ),
        ValueError,
        "pooled and gate must be (N, C) = (2, 8) of Float",
    ),
    (
        "backward grad_y dtype",
        lambda: eca_cuda.ops.eca_backward(X.double(), X, W, torch.zeros(2, 8), torch.zeros(2, 8)),
        ValueError,
        "grad_y must match x",
    ),
    (
        "backward pooled on meta",  # dispatches to the fake kernel, which checks devices too
        lambda: eca_cuda.ops.eca_backward(
            X, X, W, torch.zeros(2, 8, device="meta"), torch.zeros(2, 8)
        ),
        RuntimeError,
        "all tensors must be on x's device",
    ),
    (
        "convert_eca of a non-module",
        lambda: eca_cuda.convert_eca(3),
        TypeError,
        "module must be an nn.Module",
    ),
]


@pytest.mark.parametrize(
    "call, exception, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_raises(call, exception, message):
    with pytest.raises(exception, match=re.escape(message)):
        call()


def test_table_is_large():
    """The README's reliability section quotes this count."""
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.needs_cuda
def test_weight_on_other_device_cuda():
    with pytest.raises(RuntimeError, match="weight must be on x's device"):
        eca_cuda.eca(X.cuda(), W)
    with pytest.raises(RuntimeError, match="weight must be on x's device"):
        eca_cuda.eca(X, W.cuda())
