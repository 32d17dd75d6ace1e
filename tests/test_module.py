"""The ECA module: adaptive kernel size, init, state-dict compatibility, repr."""

import math

import pytest
import torch
from authors_eca import eca_layer
from torch import nn

import eca_cuda
from helpers import DEVICES


class EcaModule(nn.Module):
    """timm's EcaModule (timm/layers/eca.py) with its default sigmoid gate, no MLP."""

    def __init__(self, channels=None, kernel_size=3, gamma=2, beta=1):
        super().__init__()
        if channels is not None:
            t = int(abs(math.log(channels, 2) + beta) / gamma)
            kernel_size = max(t if t % 2 else t + 1, 3)
        self.conv = nn.Conv1d(
            1, 1, kernel_size=kernel_size, padding=(kernel_size - 1) // 2, bias=False
        )

    def forward(self, x):
        y = x.mean((2, 3)).view(x.shape[0], 1, -1)
        y = torch.sigmoid(self.conv(y)).view(x.shape[0], -1, 1, 1)
        return x * y.expand_as(x)


@pytest.mark.parametrize(
    "channels, expected_k",
    # Design doc table (ECA-ResNet-50 stages with gamma=2, beta=1) and small widths.
    [(256, 5), (512, 5), (1024, 5), (2048, 7), (64, 3), (16, 3), (1, 3), (100000, 9)],
)
def test_adaptive_kernel_size(channels, expected_k):
    assert eca_cuda.adaptive_kernel_size(channels) == expected_k
    assert eca_cuda.ECA(channels).kernel_size == expected_k
    assert EcaModule(channels).conv.weight.shape[-1] == expected_k


def test_only_parameter_is_conv_weight_initialised_like_conv1d():
    torch.manual_seed(3)
    layer = eca_cuda.ECA(kernel_size=5)
    torch.manual_seed(3)
    conv = nn.Conv1d(1, 1, 5, padding=2, bias=False)
    assert [name for name, _ in layer.named_parameters()] == ["conv.weight"]
    assert list(layer.state_dict()) == ["conv.weight"]
    torch.testing.assert_close(layer.conv.weight, conv.weight, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("source", ["eca_layer", "EcaModule"])
def test_state_dict_round_trip_with_authors_and_timm_layers(source, device):
    torch.manual_seed(0)
    theirs = (eca_layer(64, k_size=3) if source == "eca_layer" else EcaModule(channels=64)).to(
        device
    )
    ours = eca_cuda.ECA(channels=64).to(device)
    ours.load_state_dict(theirs.state_dict())  # strict: same keys and shapes
    x = torch.randn(2, 64, 7, 7, device=device)
    torch.testing.assert_close(ours(x), theirs(x))
    theirs.load_state_dict(ours.state_dict())


def test_reference_module_shares_parameters_and_init():
    torch.manual_seed(1)
    ours = eca_cuda.ECA(channels=256, padding_mode="circular")
    torch.manual_seed(1)
    ref = eca_cuda.reference.ECA(channels=256, padding_mode="circular")
    torch.testing.assert_close(ours.conv.weight, ref.conv.weight, rtol=0, atol=0)
    x = torch.randn(2, 256, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(ours.double()(x), ref.double()(x))


def test_repr():
    assert repr(eca_cuda.ECA(kernel_size=5)) == (
        "ECA(\n  kernel_size=5, padding_mode='zeros'\n"
        "  (conv): Conv1d(1, 1, kernel_size=(5,), stride=(1,), padding=(2,), bias=False)\n)"
    )
    assert "channels=2048, kernel_size=7, padding_mode='circular'" in repr(
        eca_cuda.ECA(2048, padding_mode="circular")
    )


@pytest.mark.parametrize(
    "device, dtype",
    [("cpu", torch.bfloat16), pytest.param("cuda", torch.float16, marks=pytest.mark.needs_cuda)],
)
def test_autocast_keeps_weight_float32(device, dtype):
    """Under autocast x arrives in half precision while the weight stays float32."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 32, 3, padding=1).to(device)
    ours = eca_cuda.ECA(channels=32).to(device)
    ref = eca_cuda.reference.ECA(channels=32).to(device)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 8, 6, 6, device=device)
    with torch.autocast(device, dtype=dtype):
        h = conv(x)
        y, y_ref = ours(h), ref(h)
    assert h.dtype == y.dtype == y_ref.dtype == dtype
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)
    y.float().square().sum().backward(retain_graph=True)  # conv's graph is shared
    y_ref.float().square().sum().backward()
    assert ours.conv.weight.dtype == ours.conv.weight.grad.dtype == torch.float32
    torch.testing.assert_close(ours.conv.weight.grad, ref.conv.weight.grad, rtol=5e-2, atol=5e-2)
