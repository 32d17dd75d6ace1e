"""torch.compile(fullgraph=True) traces the ops (fake kernels) with no graph break."""

import pytest
import torch
from torch import nn

import eca_cuda
from helpers import DEVICES, needs_cpp_compiler


class TinyECANet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.eca1 = eca_cuda.ECA(channels=16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.eca2 = eca_cuda.ECA(kernel_size=5, padding_mode="circular")
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.eca1(torch.relu(self.conv1(x)))
        x = self.eca2(torch.relu(self.conv2(x)))
        return self.head(x.mean((2, 3)))


@needs_cpp_compiler
@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_forward_backward(device):
    torch.manual_seed(0)
    model = TinyECANet().to(device)
    x = torch.randn(4, 3, 16, 16, device=device).to(memory_format=torch.channels_last)
    compiled = torch.compile(model, fullgraph=True)
    out_c = compiled(x)
    out_c.square().mean().backward()
    grads_c = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out_e = model(x)
    out_e.square().mean().backward()
    torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-5)
    for g_c, p in zip(grads_c, model.parameters()):
        torch.testing.assert_close(g_c, p.grad, rtol=1e-4, atol=1e-5)


@needs_cpp_compiler
@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_compile_converted_timm_model(dynamic, device):
    """A converted timm ECA-ResNet compiles with fullgraph=True (no graph break), forward and
    backward, and matches eager; also with dynamic shapes (two batch sizes), there through
    the aot_eager backend: the same tracing of our ops without inductor's minutes of C++
    codegen for the rest of the net."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    # float64, so that inductor's reordered sums in the rest of the net stay far below the
    # tolerance and any real mismatch shows.
    model = eca_cuda.convert_eca(timm.create_model("ecaresnetlight", num_classes=10))
    model = model.to(device, torch.float64)
    assert any(isinstance(m, eca_cuda.ECA) for m in model.modules())
    torch._dynamo.reset()
    backend = "aot_eager" if dynamic else "inductor"
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic, backend=backend)
    for batch in (2, 3) if dynamic else (2,):
        x = torch.randn(batch, 3, 32, 32, device=device, dtype=torch.float64)
        outs = []
        for fn in (compiled, model):
            model.zero_grad()
            out = fn(x)
            out.square().mean().backward()
            outs.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
        (out_c, grads_c), (out_e, grads_e) = outs
        torch.testing.assert_close(out_c, out_e, rtol=1e-9, atol=1e-9)
        for g_c, g_e in zip(grads_c, grads_e):
            torch.testing.assert_close(g_c, g_e, rtol=1e-8, atol=1e-9)


@pytest.mark.slow
@pytest.mark.needs_cuda
def test_compile_reduce_overhead_captures_cuda_graphs():
    """mode="reduce-overhead" (CUDA graphs) on a converted timm ECA-ResNet: our kernels run on
    torch's current stream and allocate through its caching allocator, so inductor records
    and replays them (no cudagraph skip) and forward and backward match eager at every step."""
    timm = pytest.importorskip("timm")
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = eca_cuda.convert_eca(timm.create_model("ecaresnetlight", num_classes=10))
    model = model.to("cuda", torch.float64)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True, mode="reduce-overhead")
    for _ in range(3):  # warm-up, record, replay
        x = torch.randn(2, 3, 32, 32, device="cuda", dtype=torch.float64)
        outs = []
        for fn in (compiled, model):
            torch.compiler.cudagraph_mark_step_begin()
            model.zero_grad()
            out = fn(x)
            out.square().mean().backward()
            outs.append((out.detach().clone(), [p.grad.clone() for p in model.parameters()]))
        (out_c, grads_c), (out_e, grads_e) = outs
        torch.testing.assert_close(out_c, out_e, rtol=1e-9, atol=1e-9)
        for g_c, g_e in zip(grads_c, grads_e):
            torch.testing.assert_close(g_c, g_e, rtol=1e-8, atol=1e-9)
    assert counters["inductor"]["cudagraph_skips"] == 0
