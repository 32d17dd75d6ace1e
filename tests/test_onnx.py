"""ONNX export (torch.onnx.export(dynamo=True) with eca_cuda.onnx_translation_table()): the
ECA layers become standard ONNX operators and the model runs in onnxruntime, matching
PyTorch."""

import pytest
import torch
from torch import nn

import eca_cuda
from helpers import requires_torch, to_memory_format

pytestmark = requires_torch(
    "2.7", "torch.onnx.export(custom_translation_table=...) of eca_cuda's multi-output operators"
)
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

STANDARD_DOMAINS = {"", "ai.onnx"}


def export(model, x, **kwargs):
    return torch.onnx.export(
        model,
        (x,),
        dynamo=True,
        verbose=False,
        custom_translation_table=eca_cuda.onnx_translation_table(),
        **kwargs,
    )


def run_onnxruntime(program, *inputs):
    """First output of the exported model run by onnxruntime's CPU provider."""
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feeds = {arg.name: x.numpy() for arg, x in zip(session.get_inputs(), inputs)}
    return torch.from_numpy(session.run(None, feeds)[0])


def op_types(program):
    graph = program.model_proto.graph
    assert {node.domain for node in graph.node} <= STANDARD_DOMAINS, "non-standard ONNX op"
    assert not program.model_proto.functions  # nothing hidden in a local function
    return [node.op_type for node in graph.node]


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize(
    "shape, kernel_size",
    [((2, 24, 7, 5), 3), ((3, 10, 17), 5), ((1, 6, 2, 3, 4), 9)],  # k > C: wraps twice
    ids=["2d", "1d", "3d-k-gt-C"],
)
def test_layer_exports_to_standard_ops_and_matches(
    shape, kernel_size, memory_format, dtype, padding_mode
):
    torch.manual_seed(0)
    layer = eca_cuda.ECA(kernel_size=kernel_size, padding_mode=padding_mode).to(dtype).eval()
    x = to_memory_format(torch.randn(shape, dtype=dtype), memory_format)
    program = export(layer, x)
    types = op_types(program)
    for expected in ("ReduceMean", "Conv", "Sigmoid", "Mul"):
        assert expected in types
    onnx.checker.check_model(program.model_proto, full_check=True)
    with torch.no_grad():
        ours = layer(x)
    # float16: the graph and our kernel both pool and gate in float32 and round y once.
    torch.testing.assert_close(run_onnxruntime(program, x.contiguous()), ours)


def test_exported_layer_takes_any_batch_size():
    layer = eca_cuda.ECA(channels=32).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = export(layer, torch.randn(2, 32, 6, 6), dynamic_shapes=({0: batch},))
    x = torch.randn(5, 32, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(run_onnxruntime(program, x), layer(x))


def test_converted_timm_model_exports_and_runs_in_onnxruntime():
    """A converted timm ECA-ResNet exports with one ReduceMean/Sigmoid per ECA layer (plus the
    head's pooling) and onnxruntime reproduces the logits of the PyTorch model."""
    timm = pytest.importorskip("timm")
    from timm.layers import CecaModule

    torch.manual_seed(0)
    model = timm.create_model("ecaresnetlight", num_classes=10).eval()
    model.layer1[0].se = CecaModule(kernel_size=5)  # one circular layer too
    model = eca_cuda.convert_eca(model)
    layers = [m for m in model.modules() if isinstance(m, eca_cuda.ECA)]
    assert {m.padding_mode for m in layers} == {"zeros", "circular"}
    x = torch.randn(2, 3, 64, 64)
    program = export(model, x)
    types = op_types(program)
    assert types.count("Sigmoid") == len(layers)
    assert types.count("Relu") >= 2 * len(layers)  # each fused tail's, and conv1's or conv2's
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(run_onnxruntime(program, x), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "scale, gain, activation, with_residual",
    [(1.0, None, "relu", True), (0.4, None, "none", True), (2.0, 0.5, "relu", False)],
    ids=["resnet tail", "normfree tail", "gain, no residual"],
)
def test_tail_exports_to_standard_ops_and_matches(scale, gain, activation, with_residual):
    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.eca = eca_cuda.ECA(kernel_size=5)
            self.gain = None if gain is None else nn.Parameter(torch.tensor(gain))

        def forward(self, x, residual):
            return self.eca.tail(
                x, residual if with_residual else None, scale, self.gain, activation
            )

    torch.manual_seed(0)
    model = Tail().eval()
    x, residual = torch.randn(2, 16, 5, 5), torch.randn(2, 16, 5, 5)
    program = torch.onnx.export(
        model,
        (x, residual),
        dynamo=True,
        verbose=False,
        custom_translation_table=eca_cuda.onnx_translation_table(),
    )
    types = op_types(program)
    assert ("Add" in types) == with_residual and ("Relu" in types) == (activation == "relu")
    with torch.no_grad():
        ours = model(x, residual)
    torch.testing.assert_close(run_onnxruntime(program, x, residual), ours)


def test_translation_rejects_unknown_padding_mode():
    """The exporter sees what the operator would reject; the error names the argument."""

    class Odd(nn.Module):
        def forward(self, x):
            return torch.ops.eca_cuda.eca_forward(x, torch.ones(3), "reflect")[0]

    with pytest.raises(Exception, match="padding_mode"):
        export(Odd(), torch.randn(1, 4, 3, 3))
