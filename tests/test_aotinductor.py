"""AOTInductor: a converted timm model goes through torch.export and
torch._inductor.aoti_compile_and_package, loads with aoti_load_package (as a C++ deployment
would load the same .pt2), calls the fused operator and matches eager."""

import zipfile

import pytest
import torch

import eca_cuda
from helpers import DEVICES, needs_cpp_compiler, requires_torch

pytestmark = [
    requires_torch("2.6", "torch._inductor.aoti_compile_and_package"),
    needs_cpp_compiler,
]
timm = pytest.importorskip("timm")


@pytest.mark.slow  # inductor compiles the model's C++ (about 40 s on two cores)
@pytest.mark.parametrize("device", DEVICES)
def test_converted_timm_model_round_trips_through_aotinductor(device, tmp_path):
    torch.manual_seed(0)
    model = eca_cuda.convert_eca(timm.create_model("ecaresnetlight", num_classes=10))
    model = model.eval().to(device)
    x = torch.randn(2, 3, 64, 64, device=device)
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        package = torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp_path / "ecaresnetlight.pt2")
        )
    with zipfile.ZipFile(package) as archive:  # each fused block tail stays one call of our op
        calls = sum(
            archive.read(name).decode().count('"eca_cuda::eca_tail_forward"')
            for name in archive.namelist()
            # the proxy executor's calls: <hash>.wrapper.json (torch 2.14), <hash>.json (2.6)
            if name.endswith(".json") and not name.endswith("metadata.json")
        )
    assert calls == len([m for m in model.modules() if isinstance(m, eca_cuda.ECA)]) == 16
    loaded = torch._inductor.aoti_load_package(package)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        x2 = torch.randn_like(x)
        torch.testing.assert_close(loaded(x2), model(x2))
