"""The lower instruction-set builds of the CPU kernels (DEFAULT, AVX2) also match the
reference and give the same bits in every layout: each runs the CPU cases of test_ops.py and
test_layouts.py in a subprocess with ATEN_CPU_CAPABILITY lowered, since the build is
chosen once per process."""

import os
import subprocess
import sys

import pytest
import torch

import eca_cuda

ORDER = ["DEFAULT", "AVX2", "AVX512"]


def test_capability_is_torch_capability_or_lower():
    ours = eca_cuda.build_info.cpu_capability()
    assert ours in ORDER
    torch_capability = torch.backends.cpu.get_cpu_capability()
    if torch_capability in ORDER:
        assert ours == torch_capability


@pytest.mark.parametrize("capability", ["DEFAULT", "AVX2"])
def test_lower_builds_match_reference(capability):
    if ORDER.index(capability) >= ORDER.index(eca_cuda.build_info.cpu_capability()):
        pytest.skip(f"this CPU runs {eca_cuda.build_info.cpu_capability()} already")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability.lower())
    tests = os.path.dirname(os.path.abspath(__file__))
    check = subprocess.run(
        [sys.executable, "-c", "import eca_cuda; print(eca_cuda.build_info.cpu_capability())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == capability
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            os.path.join(tests, "test_ops.py"),
            os.path.join(tests, "test_layouts.py"),  # every layout gives the same bits
            "-k",
            "cpu or tiled or bitwise or layouts",
        ],
        env=env,
        cwd=os.path.dirname(tests),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
