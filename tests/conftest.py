"""Device parametrization: CUDA cases skip without a GPU and fail if a GPU is present but
the CUDA kernels were not compiled in (pytorch/vision's test/conftest.py does the same)."""

import pytest
import torch

import eca_cuda


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_cuda: needs a CUDA GPU and the CUDA kernels")
    config.addinivalue_line("markers", "slow: compiles with torch.compile or runs long")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("needs_cuda") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU on this machine"))


@pytest.fixture(autouse=True)
def _cuda_kernels_present(request):
    if request.node.get_closest_marker("needs_cuda") and not eca_cuda.has_cuda_kernels():
        pytest.fail("a GPU is present but eca_cuda was built without its CUDA kernels")
