"""The torch version matrix: this package's tests against other torch releases than the one
`make test` uses, at every CPU build this machine runs.

For each torch release given (default: the lowest this package supports, MIN_TORCH's newest
patch release below): a clean clone of this repository's HEAD, a virtual environment holding
that torch (and the torchvision timm needs with it), a CPU-only build of the package (nvcc 13
cannot build for the CUDA 12 of older torch wheels), then the operator, autograd, tail, layout,
compile and TorchScript tests, once per CPU build (ATEN_CPU_CAPABILITY pins the lower ones),
and at the best build also the two whole-model sweeps (as test_cpu_capability.py does) and the
deployment tests, which skip what that torch lacks with a reason. Prints a table (torch x CPU build: passed, failed, skipped, minutes) and exits nonzero
if any run failed.

    python tests/version_matrix.py                     # the floor: torch 2.4.1
    python tests/version_matrix.py --torch 2.6.0 2.8.0 --work /tmp/matrix

It needs the network or a local package index for torch (about 2.5 GB of downloads and 5 GB
of disk per release, CUDA wheels being what PyPI has for Linux), and takes 10-15 minutes per
release on a 2-core machine. No library runs a test suite across package versions here (tox
and nox would, but neither pins ATEN_CPU_CAPABILITY per run nor fits one step of CI), so this
is the smallest script that does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The newest patch release of the lowest supported minor (eca_cuda/compatibility.py MIN_TORCH).
FLOOR = "2.4.1"
SUITE = ["test_ops.py", "test_autograd.py", "test_tail.py", "test_layouts.py"]
SUITE += ["test_compile.py", "test_torchscript.py"]
# At the best CPU build only: what needs a given torch skips, with its reason, below it.
DEPLOY = ["test_aotinductor.py", "test_onnx.py", "test_entry.py", "test_compatibility.py"]
# At the lower builds, the suite less its whole-model sweeps (test_cpu_capability.py's rule).
LOWER_ONLY = ["-k", "not (converted_timm_model or every_timm_eca_model)"]
ORDER = ["DEFAULT", "AVX2", "AVX512", "AVX512_BF16"]
PINS = {"DEFAULT": "default", "AVX2": "avx2", "AVX512": "avx512", "AVX512_BF16": None}


def torchvision_for(torch_version: str) -> str:
    """The torchvision release paired with a torch release (2.4.x -> 0.19.x, 2.14.x -> 0.29.x)."""
    major, minor, patch = (int(v) for v in re.match(r"(\d+)\.(\d+)\.(\d+)", torch_version).groups())
    assert major == 2, torch_version
    return f"0.{minor + 15}.{patch}"


def run(cmd, log: Path, **kwargs) -> int:
    """Runs cmd with its output appended to log; returns the exit status."""
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n")
        out.flush()
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs).returncode


def set_up(torch_version: str, work: Path, log: Path) -> Path:
    """A clean clone of HEAD with a CPU-only build against torch_version; returns its python."""
    src, venv = work / "src", work / "venv"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log.unlink(missing_ok=True)
    steps = [
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(src)],
        [sys.executable, "-m", "venv", str(venv)],
    ]
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    steps += [
        pip + [f"torch=={torch_version}", f"torchvision=={torchvision_for(torch_version)}"],
        pip
        + ["setuptools>=64", "wheel", "ninja", "pytest", "hypothesis", "numpy", "timm"]
        + ["onnx", "onnxscript", "onnxruntime"],  # so that test_onnx reaches its version skip
        pip + ["--no-build-isolation", "--no-deps", "-v", "-e", str(src)],
    ]
    env = dict(os.environ, ECA_CUDA_WITH_CUDA="0")
    for step in steps:
        if run(step, log, env=env) != 0:
            raise RuntimeError(f"set-up step failed: {' '.join(map(str, step))} (see {log})")
    # timm may not pull in another torch: the venv must hold the release under test.
    check = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
    )
    if not check.stdout.startswith(torch_version):
        raise RuntimeError(f"the venv holds torch {check.stdout.strip()}, not {torch_version}")
    return python


def capabilities(python: Path, src: Path) -> list[str]:
    """The CPU builds this machine runs under that torch, lowest first."""
    best = subprocess.run(
        [str(python), "-c", "import eca_cuda; print(eca_cuda.cpu_capability())"],
        cwd=src,  # the clone's package, not the one in this process's folder
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return ORDER[: ORDER.index(best) + 1]


def pytest_counts(log_text: str) -> dict[str, int]:
    """passed / failed / skipped / errors of pytest's last summary line."""
    summary = log_text.strip().splitlines()[-1] if log_text.strip() else ""
    counts = {key: 0 for key in ("passed", "failed", "skipped", "error")}
    for number, key in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary):
        counts[key.rstrip("s") if key.startswith("error") else key] += int(number)
    return counts


def test_runs(python: Path, torch_version: str, work: Path) -> list[dict]:
    results = []
    src = work / "src"
    found = capabilities(python, src)
    for capability in found:
        best = capability == found[-1]
        files = SUITE + (DEPLOY if best else [])
        # A torch.compile cache per CPU build: Inductor's does not tell the pins apart.
        env = dict(os.environ, TORCHINDUCTOR_COMPILE_THREADS="1")
        env["TORCHINDUCTOR_CACHE_DIR"] = str(work / f"inductor-{capability}")
        env.pop("ATEN_CPU_CAPABILITY", None)
        if PINS[capability]:
            env["ATEN_CPU_CAPABILITY"] = PINS[capability]
        log = work / f"pytest-{capability}.log"
        log.unlink(missing_ok=True)
        start = time.monotonic()
        # The build it runs is checked first: a pin the CPU cannot honour must not pass as it.
        probe = "import eca_cuda, sys; sys.exit(eca_cuda.cpu_capability() != sys.argv[1])"
        status = run([str(python), "-c", probe, capability], log, env=env, cwd=src)
        if status == 0:
            cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
            cmd += ["-m", "not needs_cuda"] + ([] if best else LOWER_ONLY)
            status = run(cmd + [f"tests/{f}" for f in files], log, env=env, cwd=src)
        counts = pytest_counts(log.read_text())
        minutes = (time.monotonic() - start) / 60
        results.append({"torch": torch_version, "cpu": capability, "status": status, **counts})
        results[-1]["minutes"] = round(minutes, 1)
        print(
            f"torch {torch_version} {capability:12s} exit {status}: {counts['passed']} passed, "
            f"{counts['failed']} failed, {counts['skipped']} skipped, {counts['error']} errors "
            f"in {minutes:.1f} min (log: {log})",
            flush=True,
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch", nargs="+", default=[FLOOR], help="torch releases to test")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "matrix")
    parser.add_argument(
        "--reuse", action="store_true", help="test the set-up of an earlier run as it is"
    )
    args = parser.parse_args()
    results = []
    for torch_version in args.torch:
        work = args.work / f"torch-{torch_version}"
        start = time.monotonic()
        python = work / "venv" / "bin" / "python"
        if not (args.reuse and python.exists()):
            python = set_up(torch_version, work, work.parent / f"setup-{torch_version}.log")
        print(f"torch {torch_version}: set up in {(time.monotonic() - start) / 60:.1f} min")
        results += test_runs(python, torch_version, work)
    print("\n| torch | CPU build | passed | failed | skipped | minutes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['torch']} | {r['cpu']} | {r['passed']} | {r['failed'] + r['error']} | "
            f"{r['skipped']} | {r['minutes']} |"
        )
    return int(any(r["status"] != 0 for r in results))


if __name__ == "__main__":
    sys.exit(main())
