"""convert_eca on single layers and on real models: timm's ECA-ResNets (random init) and a
model built from the authors' ECABottleneck, compared with the unconverted model."""

import copy

import pytest
import torch
from authors_eca import SmallECAResNet, eca_layer
from torch import nn

import eca_cuda
from helpers import DEVICES

timm = pytest.importorskip("timm")
from timm.layers import CecaModule, EcaModule  # noqa: E402

TIMM_MODELS = ["ecaresnet26t", "ecaresnet50d", "ecaresnetlight"]


def eca_layers(model):
    return [m for m in model.modules() if isinstance(m, eca_cuda.ECA)]


@pytest.mark.parametrize(
    "layer, padding_mode",
    [
        (EcaModule(channels=64), "zeros"),
        (CecaModule(channels=64), "circular"),
        (eca_layer(64, k_size=5), "zeros"),
    ],
    ids=["timm-EcaModule", "timm-CecaModule", "authors-eca_layer"],
)
def test_converts_a_layer_keeping_its_parameter(layer, padding_mode):
    layer.eval()
    weight = layer.conv.weight
    x = torch.randn(2, 64, 5, 5)
    converted = eca_cuda.convert_eca(layer)
    assert isinstance(converted, eca_cuda.ECA) and converted is not layer
    assert converted.conv.weight is weight  # the very Parameter, so optimizers keep it
    assert converted.padding_mode == padding_mode and not converted.training
    torch.testing.assert_close(converted(x), layer(x))


def test_unservable_variants_stay_and_are_named_in_one_warning():
    class GatedByTanh(eca_layer):
        def __init__(self):
            super().__init__(64)
            self.sigmoid = nn.Tanh()

    biased = eca_layer(64)
    biased.conv = nn.Conv1d(1, 1, 3, padding=1, bias=True)
    model = nn.Sequential(
        EcaModule(channels=64, use_mlp=True),
        CecaModule(channels=64, act_layer=nn.ReLU),  # a conv bias
        biased,
        GatedByTanh(),
        eca_layer(64),  # the one that is served
    )
    with pytest.warns(UserWarning) as record:
        out = eca_cuda.convert_eca(model)
    assert out is model
    assert [type(m).__name__ for m in model] == [
        "EcaModule",
        "CecaModule",
        "eca_layer",
        "GatedByTanh",
        "ECA",
    ]
    (message,) = [str(w.message) for w in record]
    for name in ("0 (timm EcaModule", "1 (timm CecaModule", "2 (authors'", "3 (authors'"):
        assert name in message
    assert "4 (" not in message


def test_report_only_changes_nothing():
    model = nn.Sequential(nn.Conv2d(3, 64, 1), eca_layer(64))
    with pytest.warns(UserWarning, match=r"would convert: 1 \(authors' eca_layer"):
        eca_cuda.convert_eca(model, report_only=True)
    assert isinstance(model[1], eca_layer)


def test_keeps_device_dtype_requires_grad_and_mode():
    model = nn.Sequential(EcaModule(kernel_size=5), CecaModule(kernel_size=3)).double()
    model[0].conv.weight.requires_grad_(False)
    model[1].eval()
    eca_cuda.convert_eca(model)
    first, second = model
    assert first.conv.weight.dtype == torch.float64 and not first.conv.weight.requires_grad
    assert first.training and not second.training
    assert second.conv.weight.requires_grad


def build(name):
    torch.manual_seed(0)
    if name == "authors-ECABottleneck":
        return SmallECAResNet()
    return timm.create_model(name, pretrained=False, num_classes=10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", [*TIMM_MODELS, "authors-ECABottleneck"])
def test_converted_model_matches_original(name, train, memory_format, device):
    """Logits and the gradients of the input and of every parameter, in float64 so that the
    only differences are summation order."""
    original = build(name).double().to(device).train(train)
    converted = eca_cuda.convert_eca(copy.deepcopy(original))
    assert len(eca_layers(converted)) > 0
    assert not any(isinstance(m, (EcaModule, CecaModule, eca_layer)) for m in converted.modules())
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, device=device).to(memory_format=fmt)
    grads = []
    for model in (original, converted):
        model.to(memory_format=fmt)
        xi = x.clone().requires_grad_()
        logits = model(xi)
        logits.square().sum().backward()
        grads.append((logits, xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    (logits_a, dx_a, dp_a), (logits_b, dx_b, dp_b) = grads
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dx_b, dx_a, rtol=1e-9, atol=1e-10)
    assert dp_a.keys() == dp_b.keys()  # same parameter names: state dicts interchange
    for n in dp_a:
        torch.testing.assert_close(dp_b[n], dp_a[n], rtol=1e-9, atol=1e-10, msg=n)


@pytest.mark.parametrize("device", DEVICES)
def test_exported_converted_model_runs_and_matches(device):
    """torch.export of a converted timm model keeps our operator as one node (its fake kernel
    gives the shapes), and the exported program matches the module."""
    torch.manual_seed(0)
    model = eca_cuda.convert_eca(timm.create_model("ecaresnetlight", num_classes=10))
    model = model.to(device).eval()
    x = torch.randn(2, 3, 32, 32, device=device)
    program = torch.export.export(model, (x,))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert targets.count("eca_cuda.eca_tail_forward.default") == 16  # one per fused block
    torch.testing.assert_close(program.module()(x), model(x))


def autocast_dtypes():
    return [
        pytest.param("cpu", torch.bfloat16, id="cpu-bfloat16"),
        pytest.param("cuda", torch.float16, id="cuda-float16", marks=pytest.mark.needs_cuda),
        pytest.param("cuda", torch.bfloat16, id="cuda-bfloat16", marks=pytest.mark.needs_cuda),
    ]


@pytest.mark.parametrize("device, dtype", autocast_dtypes())
def test_converted_model_under_autocast(device, dtype):
    """Under autocast the converted model gives the output dtype the original gives, keeps
    the ECA weights (and their grads) float32, and is no further from the float32 model than
    the original under autocast is (2x its error, plus one eps of scale)."""
    torch.manual_seed(0)
    fp32 = timm.create_model("ecaresnetlight", num_classes=10).to(device)
    original = copy.deepcopy(fp32)
    converted = eca_cuda.convert_eca(copy.deepcopy(fp32))
    x = torch.randn(2, 3, 64, 64, device=device)
    results = {}
    for name, model in (("fp32", fp32), ("original", original), ("converted", converted)):
        with torch.autocast(device, dtype=dtype, enabled=name != "fp32"):
            logits = model(x)
        logits.float().square().mean().backward()
        eca_grads = [
            m.conv.weight.grad.flatten()
            for m in model.modules()
            if isinstance(m, (EcaModule, eca_cuda.ECA))
        ]
        results[name] = (logits, torch.cat(eca_grads))
    assert results["converted"][0].dtype == results["original"][0].dtype
    for layer in eca_layers(converted):
        assert layer.conv.weight.dtype == layer.conv.weight.grad.dtype == torch.float32
    for i, what in enumerate(("logits", "ECA weight grads")):
        truth = results["fp32"][i].double()
        ours = (results["converted"][i].double() - truth).abs().max().item()
        theirs = (results["original"][i].double() - truth).abs().max().item()
        floor = torch.finfo(dtype).eps * truth.abs().max().item()
        assert ours <= 2 * theirs + floor, f"{what}: {ours:.3g} vs original's {theirs:.3g}"
