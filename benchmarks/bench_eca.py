"""Time eca_cuda against the eager and compiled reference on published ECA layer shapes.

Providers: ``eca_cuda`` (fused op), ``reference`` (eager ``eca_cuda.reference.eca``) and
``compiled`` (``torch.compile(reference.eca)``); modes ``forward`` (no grad) and ``full``
(forward + backward). Each case also times ``y.copy_(x)`` on the same tensor: the op is
memory-bound, so GB/s against that copy bandwidth is its efficiency. Minimal traffic is
2|x| forward (read x, write y) and 5|x| forward+backward (shared/design/ECA.md).

Timing: ``torch.utils.benchmark.Timer.blocked_autorange`` after warm-up, providers of a case
interleaved in rounds so machine drift hits all alike; p20/p50/p80 over all blocks.

Prints a table and writes a long-format CSV (one row per case x provider x mode) and the
table as Markdown under ``--out-dir``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils.benchmark as benchmark

import eca_cuda
from eca_cuda import reference

HERE = Path(__file__).resolve().parent
PROVIDERS = ("eca_cuda", "reference", "compiled")
MODES = ("forward", "full")
MIN_BYTES_FACTOR = {"forward": 2, "full": 5}  # passes over |x| a perfect kernel makes


@dataclass(frozen=True)
class Case:
    N: int
    C: int
    H: int
    W: int
    k: int
    dtype: torch.dtype
    memory_format: str

    def label(self) -> str:
        dtype = str(self.dtype).replace("torch.", "")
        return f"{self.N}x{self.C}x{self.H}x{self.W} k={self.k} {dtype} {self.memory_format}"


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        model = platform.processor() or "cpu"
    return f"{model}, {torch.get_num_threads()} threads"


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def layer_shapes(model: str) -> list[tuple[int, int, int, int]]:
    """(C, H, W, k) rows of the published-shapes table for one model."""
    with open(HERE / "eca_layer_shapes.csv") as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    shapes = [
        (int(r["C"]), int(r["H"]), int(r["W"]), int(r["k"])) for r in rows if r["model"] == model
    ]
    if not shapes:
        raise SystemExit(f"no rows for model {model!r} in eca_layer_shapes.csv")
    return shapes


def make_step(provider: str, mode: str, x: torch.Tensor, weight: torch.Tensor, compiled_fn):
    """A zero-argument callable doing one forward (no grad) or forward+backward."""
    fn = {"eca_cuda": eca_cuda.eca, "reference": reference.eca, "compiled": compiled_fn}[provider]
    if mode == "forward":

        def forward():
            with torch.no_grad():
                return fn(x, weight)

        return forward
    x_leaf = x.detach().requires_grad_()
    w_leaf = weight.detach().requires_grad_()
    grad_y = torch.randn_like(x)

    def full():
        x_leaf.grad = None
        w_leaf.grad = None
        fn(x_leaf, w_leaf).backward(grad_y)

    return full


def time_rounds(steps: dict, device: str, rounds: int, min_run_time: float) -> dict:
    """Per-step lists of block times (s), steps interleaved in rounds after a warm-up."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for step in steps.values():  # warm-up, including compilation
        for _ in range(3):
            step()
    sync()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            timer = benchmark.Timer(stmt="step()", globals={"step": step})
            times[name].extend(timer.blocked_autorange(min_run_time=min_run_time).times)
    return times


def quantiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=10, method="inclusive")
    return q[1], statistics.median(values), q[7]


def run_case(case: Case, device: str, compiled_fn, rounds: int, min_run_time: float) -> list[dict]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(case.N, case.C, case.H, case.W, generator=gen).to(device, case.dtype)
    if case.memory_format == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(case.k, generator=gen).to(device, case.dtype)
    copy_out = torch.empty_like(x)
    steps = {("copy", "forward"): lambda: copy_out.copy_(x)}
    for mode in MODES:
        for provider in PROVIDERS:
            steps[(provider, mode)] = make_step(provider, mode, x, weight, compiled_fn)
    times = time_rounds(steps, device, rounds, min_run_time)

    x_bytes = x.numel() * x.element_size()
    copy_s = statistics.median(times[("copy", "forward")])
    copy_gbps = 2 * x_bytes / copy_s / 1e9
    rows = []
    for mode in MODES:
        eager_s = statistics.median(times[("reference", mode)])
        for provider in PROVIDERS:
            p20, p50, p80 = quantiles(times[(provider, mode)])
            gbps = MIN_BYTES_FACTOR[mode] * x_bytes / p50 / 1e9
            rows.append(
                {
                    "kernel": "eca",
                    "provider": provider,
                    "mode": mode,
                    "metric": "time",
                    "unit": "ms",
                    "shape": f"{case.N}x{case.C}x{case.H}x{case.W}",
                    "k": case.k,
                    "dtype": str(case.dtype).replace("torch.", ""),
                    "memory_format": case.memory_format,
                    "p20": p20 * 1e3,
                    "p50": p50 * 1e3,
                    "p80": p80 * 1e3,
                    "speedup_vs_eager": eager_s / p50,
                    "gbps": gbps,
                    "copy_gbps": copy_gbps,
                    "pct_of_copy_bandwidth": 100 * gbps / copy_gbps,
                }
            )
    return rows


def format_table(rows: list[dict]) -> list[str]:
    header = (
        "| shape | k | dtype | format | mode | eca_cuda ms | eager ms | compiled ms "
        "| x eager | x compiled | eca GB/s | % of copy |"
    )
    lines = [header, "|" + "---|" * 12]
    by_key = {}
    for r in rows:
        by_key.setdefault((r["shape"], r["k"], r["dtype"], r["memory_format"], r["mode"]), {})[
            r["provider"]
        ] = r
    for (shape, k, dtype, fmt, mode), p in by_key.items():
        ours = p["eca_cuda"]
        lines.append(
            f"| {shape} | {k} | {dtype} | {fmt} | {mode} | {ours['p50']:.3f} | {p['reference']['p50']:.3f} "
            f"| {p['compiled']['p50']:.3f} | {ours['speedup_vs_eager']:.2f} "
            f"| {p['compiled']['p50'] / ours['p50']:.2f} | {ours['gbps']:.1f} | {ours['pct_of_copy_bandwidth']:.0f} |"
        )
    return lines


def geomean(values):
    values = list(values)
    return statistics.geometric_mean(values) if values else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--full", action="store_true", help="all batch sizes, dtypes and memory formats"
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument(
        "--model",
        default="ECA-ResNet-50 (official k3557)",
        help="model rows of eca_layer_shapes.csv",
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", help="batch sizes N (default depends on device and --full)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per case")
    parser.add_argument(
        "--min-run-time", type=float, default=0.1, help="seconds per blocked_autorange call"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=HERE.parent / "build" / "bench",
        help="where CSV/Markdown go",
    )
    args = parser.parse_args(argv)

    device = args.device
    if args.batch:
        batches = args.batch
    elif device == "cuda":
        batches = [1, 32, 128] if args.full else [32]
    else:
        batches = [1, 8, 32] if args.full else [8]
    dtypes = [torch.float32]
    formats = ["contiguous"]
    if args.full:
        dtypes += [torch.bfloat16, torch.float16] if device == "cuda" else [torch.bfloat16]
        formats.append("channels_last")
    cases = [
        Case(N, C, H, W, k, dtype, fmt)
        for dtype in dtypes
        for fmt in formats
        for N in batches
        for C, H, W, k in layer_shapes(args.model)
    ]

    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    compiled_fn = torch.compile(reference.eca)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "git_sha": git_sha(),
        "timestamp": stamp,
    }
    print(f"eca_cuda benchmark: {args.model}, {len(cases)} cases on {meta['device']}")
    print(f"torch {meta['torch']} (CUDA {meta['cuda']}), {eca_cuda.build_info.summary()}")
    print(
        f"git {meta['git_sha']}, {stamp}, GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', 'unset')}"
    )

    rows = []
    for i, case in enumerate(cases, 1):
        case_rows = run_case(case, device, compiled_fn, args.rounds, args.min_run_time)
        rows += [{**r, **meta} for r in case_rows]
        summary = ", ".join(
            f"{r['mode']} {r['p50']:.3f} ms ({r['speedup_vs_eager']:.2f}x eager)"
            for r in case_rows
            if r["provider"] == "eca_cuda"
        )
        print(f"[{i}/{len(cases)}] {case.label()}: eca_cuda {summary}", flush=True)

    table = format_table(rows)
    print("\n" + "\n".join(table))
    print("\nGeometric means of eca_cuda speedup (p50):")
    for mode in MODES:
        ours = {id(r): r for r in rows if r["provider"] == "eca_cuda" and r["mode"] == mode}
        comp = [r for r in rows if r["provider"] == "compiled" and r["mode"] == mode]
        vs_eager = geomean(r["speedup_vs_eager"] for r in ours.values())
        vs_compiled = geomean(c["p50"] / o["p50"] for c, o in zip(comp, ours.values()))
        pct = geomean(r["pct_of_copy_bandwidth"] for r in ours.values())
        print(
            f"  {mode:8s} {vs_eager:.2f}x vs eager, {vs_compiled:.2f}x vs compiled, {pct:.0f}% of copy bandwidth"
        )

    args.out_dir.mkdir(parents=True, exist_ok=True)
    base = args.out_dir / f"eca_{device}"
    with open(f"{base}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(f"{base}.md", "w") as f:
        f.write(f"# eca_cuda benchmark, {args.model}\n\n")
        f.write("".join(f"- {k}: {v}\n" for k, v in meta.items()))
        f.write(f"- command: `{' '.join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}`\n\n")
        f.write("\n".join(table) + "\n")
    print(f"\nwrote {base}.csv and {base}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
