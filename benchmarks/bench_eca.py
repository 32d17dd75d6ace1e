"""Time eca_cuda against the eager and compiled reference on published ECA layer shapes.

Providers: ``eca_cuda`` (fused op), ``reference`` (eager ``eca_cuda.reference.eca``) and
``compiled`` (``torch.compile(reference.eca)``); modes ``forward`` (no grad), ``backward``
(one backward of a retained graph) and ``full`` (forward + backward). Each case also times
the rooflines on the same tensors: ``y.copy_(x)`` for the forward (2 passes, one launch) and
``torch.add(g, x, out=dx)`` for the backward (3 passes); ``full`` is held against their sum.
The op is memory-bound, so time over roofline (and GB/s of the minimal traffic: 2|x|
forward, 3|x| backward, 5|x| both; shared/design/ECA.md) is its efficiency.

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
MODES = ("forward", "backward", "full")
MIN_BYTES_FACTOR = {"forward": 2, "backward": 3, "full": 5}  # passes over |x| at the minimum
RESNET50 = "ECA-ResNet-50 (official k3557)"
MOBILENETV2 = "ECA-MobileNetV2 (official k13)"
# (model, N) pairs of each preset; the GPU presets follow issue 3, the CPU ones issue 4.
PRESETS = {
    ("cpu", False): [(RESNET50, 8)],
    ("cpu", True): [(RESNET50, 1), (RESNET50, 8), (MOBILENETV2, 8)],
    ("cuda", False): [(RESNET50, 32)],
    ("cuda", True): [(m, n) for n in (1, 32, 128) for m in (RESNET50, MOBILENETV2)],
}


@dataclass(frozen=True)
class Case:
    model: str
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
    return (
        f"{model}, {torch.get_num_threads()} threads, "
        f"CPU kernels {eca_cuda.build_info.cpu_capability()}"
    )


def git_sha() -> str:
    """Short commit of the measured code, with ``+dirty`` when the tree has changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=HERE,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) or "unknown"
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


def make_step(fn, mode: str, x: torch.Tensor, weight: torch.Tensor):
    """A zero-argument callable doing one ``fn(x, weight)`` forward (no grad), one backward of
    its retained graph, or forward+backward (``mode``)."""
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
            # Timer defaults to one thread; time with all of them, as users run.
            timer = benchmark.Timer(
                stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads()
            )
            times[name].extend(timer.blocked_autorange(min_run_time=min_run_time).times)
    return times


def quantiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=10, method="inclusive")
    return q[1], statistics.median(values), q[7]


def case_inputs(case: Case, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (N, C, H, W) in the case's dtype and memory format, and ``weight`` (k,); seeded."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(case.N, case.C, case.H, case.W, generator=gen).to(device, case.dtype)
    if case.memory_format == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randn(case.k, generator=gen).to(device, case.dtype)


def run_case(case: Case, device: str, compiled_fn, rounds: int, min_run_time: float) -> list[dict]:
    x, weight = case_inputs(case, device)
    copy_out = torch.empty_like(x)
    add_g, add_out = torch.randn_like(x), torch.empty_like(x)
    steps = {
        ("copy", "roofline"): lambda: copy_out.copy_(x),
        ("add", "roofline"): lambda: torch.add(add_g, x, out=add_out),
    }
    fns = {"eca_cuda": eca_cuda.eca, "reference": reference.eca, "compiled": compiled_fn}
    for mode in MODES:
        for provider in PROVIDERS:
            steps[(provider, mode)] = make_step(fns[provider], mode, x, weight)
    times = time_rounds(steps, device, rounds, min_run_time)

    x_bytes = x.numel() * x.element_size()
    copy_s = statistics.median(times[("copy", "roofline")])
    add_s = statistics.median(times[("add", "roofline")])
    roofline_s = {"forward": copy_s, "backward": add_s, "full": copy_s + add_s}
    rows = []
    for mode in MODES:
        eager_s = statistics.median(times[("reference", mode)])
        compiled_s = statistics.median(times[("compiled", mode)])
        for provider in PROVIDERS:
            p20, p50, p80 = quantiles(times[(provider, mode)])
            rows.append(
                {
                    "kernel": "eca",
                    "provider": provider,
                    "mode": mode,
                    "metric": "time",
                    "unit": "ms",
                    "model": case.model,
                    "shape": f"{case.N}x{case.C}x{case.H}x{case.W}",
                    "N": case.N,
                    "k": case.k,
                    "dtype": str(case.dtype).replace("torch.", ""),
                    "memory_format": case.memory_format,
                    "p20": p20 * 1e3,
                    "p50": p50 * 1e3,
                    "p80": p80 * 1e3,
                    "speedup_vs_eager": eager_s / p50,
                    "speedup_vs_compiled": compiled_s / p50,
                    "gbps": MIN_BYTES_FACTOR[mode] * x_bytes / p50 / 1e9,
                    "roofline_ms": roofline_s[mode] * 1e3,
                    "x_roofline": p50 / roofline_s[mode],
                    "copy_gbps": 2 * x_bytes / copy_s / 1e9,
                }
            )
    return rows


def format_table(rows: list[dict]) -> list[str]:
    lines = [
        "| shape | k | dtype | format | mode | eca_cuda ms | eager ms | compiled ms | x eager "
        "| x compiled | eca GB/s | roofline ms | x roofline |",
        "|" + "---|" * 13,
    ]
    case_key = lambda r: (r["model"], r["shape"], r["dtype"], r["memory_format"], r["mode"])  # noqa: E731
    by_case = {}
    for r in rows:
        by_case.setdefault(case_key(r), {})[r["provider"]] = r
    for r in rows:
        if r["provider"] != "eca_cuda":
            continue
        others = by_case[case_key(r)]
        lines.append(
            f"| {r['shape']} | {r['k']} | {r['dtype']} | {r['memory_format']} | {r['mode']} "
            f"| {r['p50']:.3f} | {others['reference']['p50']:.3f} | {others['compiled']['p50']:.3f} "
            f"| {r['speedup_vs_eager']:.2f} | {r['speedup_vs_compiled']:.2f} | {r['gbps']:.1f} "
            f"| {r['roofline_ms']:.3f} | {r['x_roofline']:.2f} |"
        )
    return lines


def summary_table(rows: list[dict]) -> list[str]:
    """Geometric means of eca_cuda per dtype x memory format x mode (p50 ratios)."""
    ours = [r for r in rows if r["provider"] == "eca_cuda"]
    batches = sorted({r["N"] for r in ours})
    lines = [
        "| dtype | format | mode | x eager | x compiled | "
        + " | ".join(f"x roofline (N={n})" for n in batches)
        + " |",
        "|" + "---|" * (5 + len(batches)),
    ]
    groups = {}
    for r in ours:
        groups.setdefault((r["dtype"], r["memory_format"], r["mode"]), []).append(r)
    for (dtype, fmt, mode), group in groups.items():
        roofline = [geomean(r["x_roofline"] for r in group if r["N"] == n) for n in batches]
        lines.append(
            f"| {dtype} | {fmt} | {mode} | {geomean(r['speedup_vs_eager'] for r in group):.2f} "
            f"| {geomean(r['speedup_vs_compiled'] for r in group):.2f} | "
            + " | ".join(f"{v:.2f}" for v in roofline)
            + " |"
        )
    return lines


def geomean(values):
    values = list(values)
    return statistics.geometric_mean(values) if values else float("nan")


def add_timing_args(parser: argparse.ArgumentParser) -> None:
    """--rounds, --min-run-time and --out-dir, shared by the benchmark scripts."""
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


def write_results(
    base: Path, title: str, meta: dict, rows: list[dict], sections: dict, argv
) -> None:
    """``rows`` as ``base.csv``; ``base.md``: the title, ``meta``, the command, then each
    section (heading -> Markdown lines)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{base}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(f"{base}.md", "w") as f:
        f.write(f"# {title}\n\n")
        f.write("".join(f"- {k}: {v}\n" for k, v in meta.items()))
        f.write(f"- command: `{' '.join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}`\n")
        f.write(
            "".join(
                f"\n## {head}\n\n" + "\n".join(lines) + "\n" for head, lines in sections.items()
            )
        )
    print(f"\nwrote {base}.csv and {base}.md")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--full",
        action="store_true",
        help="the full preset: more models, batch sizes, dtypes, formats",
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--model", help="only this model's rows of eca_layer_shapes.csv")
    parser.add_argument("--batch", type=int, nargs="+", help="only these batch sizes N")
    add_timing_args(parser)
    args = parser.parse_args(argv)

    device = args.device
    groups = [
        (model, n)
        for model, n in PRESETS[(device, args.full)]
        if (args.model in (None, model)) and (not args.batch or n in args.batch)
    ]
    if args.model and not groups:
        groups = [(args.model, n) for n in (args.batch or [PRESETS[(device, False)][0][1]])]
    dtypes = [torch.float32]
    formats = ["contiguous"]
    if args.full:
        dtypes += [torch.bfloat16, torch.float16] if device == "cuda" else [torch.bfloat16]
        formats.append("channels_last")
    cases = [
        Case(model, N, C, H, W, k, dtype, fmt)
        for dtype in dtypes
        for fmt in formats
        for model, N in groups
        for C, H, W, k in layer_shapes(model)
    ]

    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    # The backward mode replays one retained graph, which donated buffers forbid.
    torch._functorch.config.donated_buffer = False
    compiled_fn = torch.compile(reference.eca)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "git_sha": git_sha(),
        "timestamp": stamp,
    }
    models = ", ".join(f"{m} N={n}" for m, n in groups)
    print(f"eca_cuda benchmark: {models}; {len(cases)} cases on {meta['device']}")
    print(f"torch {meta['torch']} (CUDA {meta['cuda']}), {eca_cuda.build_info.summary()}")
    print(
        f"git {meta['git_sha']}, {stamp}, GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', 'unset')}"
    )

    rows = []
    for i, case in enumerate(cases, 1):
        case_rows = run_case(case, device, compiled_fn, args.rounds, args.min_run_time)
        rows += [{**r, **meta} for r in case_rows]
        summary = ", ".join(
            f"{r['mode']} {r['p50']:.3f} ms ({r['speedup_vs_eager']:.2f}x eager, {r['x_roofline']:.2f}x roofline)"
            for r in case_rows
            if r["provider"] == "eca_cuda"
        )
        print(f"[{i}/{len(cases)}] {case.label()}: eca_cuda {summary}", flush=True)

    table = format_table(rows)
    summary = summary_table(rows)
    print("\n" + "\n".join(table))
    print(
        "\nGeometric means of eca_cuda (p50 ratios; x roofline: time / roofline time, 1.0 is ideal):"
    )
    print("\n".join(summary))

    write_results(
        args.out_dir / f"eca_{device}",
        f"eca_cuda benchmark: {models}",
        meta,
        rows,
        {"Geometric means of eca_cuda (p50 ratios)": summary, "All cases (p50)": table},
        argv,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
