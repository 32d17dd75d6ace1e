"""TorchScript: eca() and ECA script with torch.jit.script and give the eager bits; scripted
models save, load and run; every timm model with ECA layers, converted, scripts as timm's own
model tests script it."""

import io

import pytest
import torch

import eca_cuda
from helpers import DEVICES, PADDING_MODES, forward_backward, make_inputs

# Deprecated in favour of torch.export, still how libtorch and mobile deployments load models.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.(script|save|load)`:FutureWarning")


def save_and_load(scripted):
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_scripted_eca_gives_the_eager_bits(padding_mode, memory_format, device):
    scripted = torch.jit.script(eca_cuda.eca)
    x, weight, grad_y = make_inputs((2, 24, 5, 6), 5, torch.float32, device, memory_format)
    # Several calls: the profiling executor optimizes the graph after its first runs.
    for _ in range(3):
        ours = forward_backward(scripted, x, weight, grad_y, padding_mode)
        eager = forward_backward(eca_cuda.eca, x, weight, grad_y, padding_mode)
        for a, b in zip(ours, eager):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert ours[0].stride() == x.stride()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_scripted_module_saves_loads_and_gives_the_eager_bits(padding_mode, device):
    layer = eca_cuda.ECA(channels=64, padding_mode=padding_mode).to(device)
    loaded = save_and_load(torch.jit.script(layer))
    x, _, grad_y = make_inputs((2, 64, 7, 7), 3, torch.float32, device, "channels_last")
    for _ in range(3):
        results = []
        for module in (loaded, layer):
            xi = x.detach().requires_grad_()
            module.zero_grad()
            y = module(xi)
            y.backward(grad_y)
            results.append((y, xi.grad, module.conv.weight.grad))
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_scripted_eca_refuses_bad_input_with_the_same_message():
    """The operator's own check; TorchScript's interpreter reraises it as a RuntimeError."""
    scripted = torch.jit.script(eca_cuda.eca)
    x, even = torch.randn(2, 8, 3, 3), torch.randn(4)
    with pytest.raises(ValueError, match="odd number of taps k, got k = 4"):
        eca_cuda.eca(x, even)
    with pytest.raises(RuntimeError, match="odd number of taps k, got k = 4"):
        scripted(x, even)


try:
    import timm
except ImportError:  # the timm models' tests skip; the ones above need no timm
    timm = None
needs_timm = pytest.mark.skipif(timm is None, reason="timm is not installed")


@needs_timm
def test_scripted_converted_timm_model_saves_loads_and_matches(tmp_path):
    torch.manual_seed(0)
    model = eca_cuda.convert_eca(timm.create_model("ecaresnet26t", num_classes=10)).eval()
    path = tmp_path / "ecaresnet26t.pt"
    torch.jit.script(model).save(str(path))
    loaded = torch.jit.load(str(path))
    assert "eca_cuda::eca_forward" in str(loaded.inlined_graph)
    x = torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last)
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(loaded(x), model(x))


@needs_timm
@pytest.mark.slow
@pytest.mark.parametrize("name", timm.list_models("*eca*") if timm else ["timm"])
def test_every_timm_eca_model_scripts_after_conversion(name):
    """As timm's own test_model_forward_torchscript, with the model converted first."""
    torch.manual_seed(0)
    with timm.layers.set_layer_config(scriptable=True):
        model = timm.create_model(name, pretrained=False)
    model = eca_cuda.convert_eca(model).eval()
    assert any(isinstance(m, eca_cuda.ECA) for m in model.modules())
    scripted = torch.jit.script(model)
    x = torch.randn(1, *model.pretrained_cfg["input_size"])  # attention blocks fix some sizes
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))
