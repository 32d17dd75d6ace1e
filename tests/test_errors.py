"""Every bad input raises an error that names the argument; none crashes or returns."""

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
]


@pytest.mark.parametrize(
    "call, exception, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_raises(call, exception, message):
    with pytest.raises(
        exception, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")
    ):
        call()


@pytest.mark.needs_cuda
def test_weight_on_other_device_cuda():
    with pytest.raises(RuntimeError, match="weight must be on x's device"):
        eca_cuda.eca(X.cuda(), W)
    with pytest.raises(RuntimeError, match="weight must be on x's device"):
        eca_cuda.eca(X, W.cuda())
