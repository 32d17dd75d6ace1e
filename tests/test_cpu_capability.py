"""The other instruction-set builds of the CPU kernels (DEFAULT, AVX2, and AVX512 where the
CPU runs AVX512_BF16) pass what the best build passes: each reruns the CPU cases of the
operator, autograd, tail, layout, torch.compile and TorchScript tests in a subprocess with
ATEN_CPU_CAPABILITY pinned, since the build is chosen once per process (with this torch, the
newest end of the version matrix; tests/version_matrix.py runs the same at the oldest). The
two whole-model sweeps (compiling a converted timm model, scripting every timm ECA model) run
at the best build only: the per-layer tests make the same kernel calls. AVX512_BF16 differs
from AVX512 only in how it rounds to bfloat16, so their bfloat16 results are compared bit for
bit."""

import os
import subprocess
import sys
import tempfile

import pytest
import torch

import eca_cuda
from helpers import to_memory_format

ORDER = ["DEFAULT", "AVX2", "AVX512", "AVX512_BF16"]
TESTS = os.path.dirname(os.path.abspath(__file__))
SUITE = ["test_ops.py", "test_autograd.py", "test_tail.py", "test_layouts.py"]
SUITE += ["test_compile.py", "test_torchscript.py"]
WHOLE_MODELS = "converted_timm_model or every_timm_eca_model"


def cpu_has_avx512_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512_bf16" in line for line in f)
    except OSError:
        return False


def test_capability_is_torch_capability_or_lower():
    ours = eca_cuda.build_info.cpu_capability()
    assert ours in ORDER
    torch_capability = torch.backends.cpu.get_cpu_capability()
    if torch_capability in ORDER:
        expected = torch_capability
        if torch_capability == "AVX512" and cpu_has_avx512_bf16():
            expected = "AVX512_BF16"
        assert ours == expected


def inductor_cache(capability: str) -> str:
    """A torch.compile cache folder of the capability's own. Inductor's on-disk cache does not
    tell one ATEN_CPU_CAPABILITY from another (torch 2.14.1): kernels compiled under one pin and
    reused under another failed to compile (default) or corrupted the heap (avx512)."""
    return os.path.join(tempfile.gettempdir(), f"torchinductor_eca_{capability.lower()}")


@pytest.mark.parametrize("capability", ["DEFAULT", "AVX2", "AVX512"])
def test_lower_builds_match_reference(capability):
    if ORDER.index(capability) >= ORDER.index(eca_cuda.build_info.cpu_capability()):
        pytest.skip(f"this CPU runs {eca_cuda.build_info.cpu_capability()} already")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability.lower())
    check = subprocess.run(
        [sys.executable, "-c", "import eca_cuda; print(eca_cuda.build_info.cpu_capability())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == capability
    env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # no compile workers outliving the run
    env["TORCHINDUCTOR_CACHE_DIR"] = inductor_cache(capability)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
        + [os.path.join(TESTS, name) for name in SUITE]
        + ["-m", "not needs_cuda", "-k", f"not ({WHOLE_MODELS})"],
        env=env,
        cwd=os.path.dirname(TESTS),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def bfloat16_results() -> dict[str, torch.Tensor]:
    """y, grad_x and grad_weight of bfloat16 layers in both layouts, on values that give
    denormal products (the instruction AVX512_BF16 rounds with flushes them), NaN and Inf
    (it keeps NaN payloads), besides ordinary ones; the same inputs in every process."""
    gen = torch.Generator().manual_seed(0)
    results = {}
    for shape, k in [((2, 40, 9, 7), 3), ((1, 300, 7, 7), 5), ((3, 24, 33), 3)]:
        for special in ("denormal", "nonfinite"):
            x = torch.randn(shape, generator=gen)
            g = torch.randn(shape, generator=gen)
            pick = torch.rand(shape, generator=gen)
            if special == "denormal":
                # 1e-38 and 2e-38: bfloat16 denormal and normal; both give denormal products
                x = torch.where(pick < 0.2, x * 1e-38, x)
                g = torch.where(pick > 0.8, g * 2e-38, g)
            else:
                x = torch.where(pick < 0.01, torch.nan, torch.where(pick > 0.99, torch.inf, x))
                g = torch.where((pick > 0.5) & (pick < 0.51), torch.nan, g)
            weight = torch.randn(k, generator=gen).to(torch.bfloat16)
            for memory_format in ("contiguous", "channels_last"):
                xm = to_memory_format(x.to(torch.bfloat16), memory_format).requires_grad_()
                w = weight.clone().requires_grad_()
                y = eca_cuda.eca(xm, w)
                y.backward(g.to(torch.bfloat16))
                name = f"{tuple(shape)} {special} {memory_format}"
                results[f"{name} y"] = y.detach()
                results[f"{name} grad_x"] = xm.grad
                results[f"{name} grad_weight"] = w.grad
    return results


def test_avx512_bf16_build_gives_avx512_bits(tmp_path):
    if eca_cuda.build_info.cpu_capability() != "AVX512_BF16":
        pytest.skip(f"this CPU runs {eca_cuda.build_info.cpu_capability()}")
    saved = tmp_path / "avx512.pt"
    script = (
        f"import sys; sys.path.insert(0, {TESTS!r}); import torch, eca_cuda, test_cpu_capability as t;"
        "assert eca_cuda.build_info.cpu_capability() == 'AVX512';"
        f"torch.save(t.bfloat16_results(), {str(saved)!r})"
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx512")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    theirs = torch.load(saved)
    ours = bfloat16_results()
    assert ours.keys() == theirs.keys()
    special = 0
    for name, a in ours.items():
        b = theirs[name]
        special += int((~a.isfinite()).sum() + ((a != 0) & (a.abs() < 1.1754944e-38)).sum())
        assert torch.equal(a.view(torch.int16), b.view(torch.int16)), name
    assert special > 0  # the fallback's values did occur
