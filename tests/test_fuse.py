"""convert_eca's fused block tails: each supported block against its unfused original (float64,
forward and every gradient, eval and train, both layouts), whole converted models against the
originals, and what conversion keeps (names, parameters, state dicts) or reports."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from authors_eca import ECABasicBlock, ECABottleneck, SmallECAResNet, eca_layer
from torch import nn

import eca_cuda

timm = pytest.importorskip("timm")
from timm.layers import EcaModule  # noqa: E402
from timm.models import byobnet, nfnet, resnet  # noqa: E402


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Redraws every parameter initialised to a constant (BatchNorm's, zero-init last gains)
    and BatchNorm's running statistics, so that no branch starts as zero, every gradient
    carries signal and eval mode's normalization (folded into the convolution when fused) is
    not the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() and (p == p.flatten()[0]).all():
                low, high = (-0.2, 0.2) if name.endswith("bias") else (0.5, 1.5)
                p.copy_(torch.empty(p.shape).uniform_(low, high, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                low, high = (-0.2, 0.2) if name.endswith("mean") else (0.5, 1.5)
                b.copy_(torch.empty(b.shape).uniform_(low, high, generator=gen))
    return model


def timm_downsample(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))


BLOCKS = {
    "timm resnet Bottleneck": lambda: resnet.Bottleneck(
        32, 8, downsample=timm_downsample(32, 32), attn_layer=EcaModule
    ),
    "timm resnet Bottleneck (identity shortcut)": lambda: resnet.Bottleneck(
        32, 8, attn_layer=EcaModule
    ),
    "timm resnet BasicBlock": lambda: resnet.BasicBlock(16, 16, attn_layer=EcaModule),
    "timm byobnet BottleneckBlock": lambda: byobnet.BottleneckBlock(
        16, 32, attn_last=True, layers=byobnet.LayerFn(attn=EcaModule)
    ),
    "timm byobnet BasicBlock": lambda: byobnet.BasicBlock(
        16, 16, attn_last=True, layers=byobnet.LayerFn(attn=EcaModule)
    ),
    "timm NormFreeBlock": lambda: nfnet.NormFreeBlock(
        16, 32, alpha=0.2, beta=0.9, reg=False, attn_layer=EcaModule, act_layer=nn.ReLU
    ),
    "timm NormFreeBlock (skipinit gain)": lambda: nfnet.NormFreeBlock(
        16, 16, alpha=0.2, reg=False, skipinit=True, attn_layer=EcaModule, act_layer=nn.ReLU
    ),
    "authors ECABottleneck": lambda: ECABottleneck(
        16, 8, downsample=timm_downsample(16, 32), k_size=5
    ),
    "authors ECABasicBlock": lambda: ECABasicBlock(16, 16, k_size=3),
}


def fused_blocks(model):
    return [m for m in model.modules() if getattr(type(m), "eca_tail_fused", False)]


def outputs_and_grads(model, x):
    xi = x.clone().requires_grad_()
    out = model(xi)
    out.square().sum().backward()
    return out, xi.grad, {n: p.grad for n, p in model.named_parameters()}


def assert_same_model_results(original, converted, x):
    (out_a, dx_a, dp_a), (out_b, dx_b, dp_b) = (
        outputs_and_grads(m, x) for m in (original, converted)
    )
    torch.testing.assert_close(out_b, out_a, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dx_b, dx_a, rtol=1e-9, atol=1e-10)
    assert dp_a.keys() == dp_b.keys()
    for n in dp_a:
        assert dp_a[n] is not None and dp_b[n] is not None, n
        torch.testing.assert_close(dp_b[n], dp_a[n], rtol=1e-9, atol=1e-10, msg=n)


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("block", BLOCKS)
def test_fused_block_matches_unfused(block, train, memory_format):
    torch.manual_seed(0)
    original = randomize(BLOCKS[block]()).double().train(train)
    converted = eca_cuda.convert_eca(copy.deepcopy(original))
    assert fused_blocks(converted) == [converted]
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    cin = next(m for m in original.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.randn(2, cin, 8, 8, dtype=torch.float64).to(memory_format=fmt)
    assert_same_model_results(original.to(memory_format=fmt), converted.to(memory_format=fmt), x)


MODELS = ["ecaresnet26t", "ecaresnet50d", "nf_ecaresnet26", "eca_resnet33ts", "authors"]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", MODELS)
def test_converted_model_matches_original(name, train):
    torch.manual_seed(0)
    original = SmallECAResNet() if name == "authors" else timm.create_model(name, num_classes=10)
    original = randomize(original).double().train(train).to(memory_format=torch.channels_last)
    converted = eca_cuda.convert_eca(copy.deepcopy(original))
    eca_layers = [m for m in converted.modules() if isinstance(m, eca_cuda.ECA)]
    # eca_resnet33ts has ECA mid-block (attn), before conv3: no tail to fuse there.
    assert len(fused_blocks(converted)) == (0 if name == "eca_resnet33ts" else len(eca_layers))
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64).to(memory_format=torch.channels_last)
    assert_same_model_results(original, converted, x)


def test_conversion_keeps_names_parameters_and_state_dict():
    model = timm.create_model("ecaresnet26t", num_classes=10)
    before = dict(model.named_parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    eca_cuda.convert_eca(model)
    assert isinstance(model.layer1[0].se, eca_cuda.ECA)
    assert isinstance(model.layer1[0], resnet.Bottleneck)
    assert type(model.layer1[0]).__name__ == "Bottleneck"
    after = dict(model.named_parameters())
    assert after.keys() == before.keys()
    assert all(after[n] is before[n] for n in before)
    assert model.state_dict().keys() == state.keys()
    model.load_state_dict(state)  # strict: a checkpoint of the original loads
    assert len(fused_blocks(copy.deepcopy(model))) == 8


def test_fuse_false_swaps_layers_only():
    model = eca_cuda.convert_eca(timm.create_model("ecaresnet26t"), fuse=False)
    assert not fused_blocks(model)
    assert isinstance(model.layer1[0].se, eca_cuda.ECA)


def test_active_drop_path_runs_unfused_in_training_only():
    """A drop_path rate > 0: training takes the unfused path (the same random mask as the
    original, given the same seed); eval fuses."""
    original = randomize(timm.create_model("ecaresnet26t", drop_path_rate=0.3)).double()
    converted = eca_cuda.convert_eca(copy.deepcopy(original))
    assert len(fused_blocks(converted)) == 8
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    for train in (True, False):
        outs = []
        for model in (original, converted):
            torch.manual_seed(1)
            outs.append(model.train(train)(x))
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-10)


def test_unfusable_blocks_are_named_in_one_warning():
    model = nn.Sequential(
        resnet.Bottleneck(32, 8, attn_layer=EcaModule, act_layer=nn.SiLU),
        ECABottleneck(32, 8),
        nn.Sequential(eca_layer(32)),  # a layer outside any block: converted, nothing to fuse
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eca_cuda.convert_eca(model)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "0 (Bottleneck: activation SiLU" in message and "1 (" not in message
    assert fused_blocks(model) == [model[1]]


def batchnorm_calls(model: nn.Module, x: torch.Tensor) -> int:
    calls = []
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(lambda *_: calls.append(1))
    model(x)
    return len(calls)


@pytest.mark.parametrize("block", [b for b in BLOCKS if "resnet" in b or "authors" in b])
def test_eval_folds_the_batchnorm_before_the_tail(block):
    """In eval mode the BatchNorm before ECA runs folded into its convolution (its module is
    not called; the results equal the original's, above); in training it runs as it is."""
    torch.manual_seed(0)
    original = randomize(BLOCKS[block]())
    converted = eca_cuda.convert_eca(copy.deepcopy(original))
    assert converted.eca_tail_folds_bn
    cin = next(m for m in original.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.randn(2, cin, 8, 8)
    for train in (True, False):
        assert batchnorm_calls(converted.train(train), x) == batchnorm_calls(
            original.train(train), x
        ) - (not train)


def test_batchnorm_without_running_stats_is_not_folded():
    """Such a BatchNorm normalizes by the batch's statistics in eval mode too: not foldable."""
    torch.manual_seed(0)
    original = resnet.Bottleneck(32, 8, attn_layer=EcaModule)
    original.bn3 = nn.BatchNorm2d(32, track_running_stats=False)
    original = randomize(original).double().eval()
    converted = eca_cuda.convert_eca(copy.deepcopy(original))
    assert fused_blocks(converted) == [converted] and not converted.eca_tail_folds_bn
    assert_same_model_results(original, converted, torch.randn(2, 32, 8, 8, dtype=torch.float64))


def test_folded_batchnorm_under_autocast():
    """bfloat16 autocast: the folded weights are computed in float32 and cast by the
    convolution, as the original's BatchNorm computes in float32 on the bfloat16 output."""
    torch.manual_seed(0)
    original = randomize(timm.create_model("ecaresnet26t", num_classes=10)).eval()
    converted = eca_cuda.convert_eca(copy.deepcopy(original))
    x = torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected, actual = original(x), converted(x)
    assert actual.dtype == expected.dtype
    torch.testing.assert_close(actual.float(), expected.float(), rtol=0.05, atol=0.05)


def test_scripted_fused_model_matches():
    model = eca_cuda.convert_eca(randomize(timm.create_model("ecaresnet26t", num_classes=10)))
    model = model.eval()
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize("block", BLOCKS)
def test_every_fused_block_scripts(block):
    torch.manual_seed(0)
    converted = eca_cuda.convert_eca(randomize(BLOCKS[block]())).eval()
    scripted = torch.jit.script(converted)
    cin = next(m for m in converted.modules() if isinstance(m, nn.Conv2d)).in_channels
    x = torch.randn(2, cin, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), converted(x))
