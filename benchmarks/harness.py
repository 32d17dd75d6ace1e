"""What every eca_cuda benchmark shares: the cases (published layer shapes), the steps timed,
the interleaved timing, the run's metadata and the output files.

Timing is ``torch.utils.benchmark.Timer.blocked_autorange`` (which synchronizes CUDA), after a
warm-up that includes any compilation; the steps of one case run interleaved in rounds, so
that drift of the machine hits all of them alike, and p20/p50/p80 are taken over all blocks.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils.benchmark as benchmark

import eca_cuda

HERE = Path(__file__).resolve().parent
SHAPES_CSV = HERE / "eca_layer_shapes.csv"
RESNET50 = "ECA-ResNet-50 (official k3557)"
MOBILENETV2 = "ECA-MobileNetV2 (official k13)"
MODES = ("forward", "backward", "full")


@dataclass(frozen=True)
class Case:
    """One layer to time: ``x`` of shape ``(N, C, H, W)``, ``k`` taps, dtype and layout."""

    model: str
    N: int
    C: int
    H: int
    W: int
    k: int
    dtype: torch.dtype
    memory_format: str

    @property
    def shape(self) -> str:
        return f"{self.N}x{self.C}x{self.H}x{self.W}"

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def label(self) -> str:
        return f"{self.shape} k={self.k} {self.dtype_name} {self.memory_format}"


def layer_shapes(model: str) -> list[tuple[int, int, int, int]]:
    """``(C, H, W, k)`` of each ECA layer shape of ``model`` in ``eca_layer_shapes.csv``.

    Raises:
        SystemExit: the table has no rows for ``model``.
    """
    with open(SHAPES_CSV) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    shapes = [
        (int(r["C"]), int(r["H"]), int(r["W"]), int(r["k"])) for r in rows if r["model"] == model
    ]
    if not shapes:
        raise SystemExit(f"no rows for model {model!r} in {SHAPES_CSV.name}")
    return shapes


def case_inputs(case: Case, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (N, C, H, W) in the case's dtype and layout, and ``weight`` (k,); seeded."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(case.N, case.C, case.H, case.W, generator=gen).to(device, case.dtype)
    if case.memory_format == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randn(case.k, generator=gen).to(device, case.dtype)


def make_step(fn: Callable, mode: str, x: torch.Tensor, weight: torch.Tensor) -> Callable:
    """A zero-argument callable: one ``fn(x, weight)`` forward without grad (``"forward"``),
    one backward of its retained graph into fresh leaves' ``.grad`` (``"backward"``), or
    both (``"full"``), as a training step calls a layer."""
    if mode == "forward":

        def forward():
            with torch.no_grad():
                return fn(x, weight)

        return forward
    x_leaf = x.detach().requires_grad_()
    w_leaf = weight.detach().requires_grad_()
    grad_y = torch.randn_like(x)
    if mode == "backward":
        y = fn(x_leaf, w_leaf)

        def backward():
            x_leaf.grad = None
            w_leaf.grad = None
            y.backward(grad_y, retain_graph=True)

        return backward

    def full():
        x_leaf.grad = None
        w_leaf.grad = None
        fn(x_leaf, w_leaf).backward(grad_y)

    return full


def time_rounds(steps: dict, rounds: int, min_run_time: float) -> dict[object, list[float]]:
    """Block times (s) of each zero-argument step, the steps interleaved in ``rounds`` after
    three warm-up calls each."""
    for step in steps.values():
        for _ in range(3):
            step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            # Timer defaults to one thread; time with all of them, as users run.
            timer = benchmark.Timer(
                stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads()
            )
            times[name].extend(timer.blocked_autorange(min_run_time=min_run_time).times)
    return times


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """p20, p50, p80 of ``values``."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=10, method="inclusive")
    return q[1], statistics.median(values), q[7]


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model with the thread count and the CPU kernels' build."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        model = platform.processor() or "cpu"
    threads = torch.get_num_threads()
    return f"{model}, {threads} threads, CPU kernels {eca_cuda.cpu_capability()}"


def git_sha() -> str:
    """Short commit of the measured code, with ``+dirty`` when tracked files have changes."""
    try:
        run = lambda *args: subprocess.run(
            ["git", *args], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
        sha = run("rev-parse", "--short", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return (sha + ("+dirty" if dirty else "")) or "unknown"
    except OSError:
        return "unknown"


def run_metadata(device: str) -> dict[str, str]:
    """What a result depends on beside the code: device, versions, commit, time, allocator."""
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "git_sha": git_sha(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "unset"),
    }


def add_timing_args(parser) -> None:
    """``--rounds``, ``--min-run-time`` and ``--out-dir`` (for any benchmark script)."""
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per case")
    parser.add_argument(
        "--min-run-time", type=float, default=0.1, help="seconds per blocked_autorange call"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=HERE.parent / "build" / "bench", help="output folder"
    )
