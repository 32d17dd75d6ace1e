"""The least time any op called as ``eca_cuda.eca`` is timed can take here, beside eca_cuda's.

``bench_eca.py`` holds eca_cuda against rooflines of bare ATen calls writing into buffers
made beforehand: ``y.copy_(x)`` for the forward, ``torch.add(g, x, out=dx)`` for the
backward. An op timed as that benchmark times eca_cuda pays more before any arithmetic: a
forward allocates its output and comes in through Python; a backward timed as
``y.backward(g)`` runs the autograd engine (graph task, the op's node, ``AccumulateGrad``).

The floor is ``x.clone()`` timed the same ways (``bench_eca.make_step``): its forward reads
``x`` and writes a new tensor of its size; its backward takes ``g`` through the engine into
``x.grad`` (one copy, as the caller holds ``g``). Any ECA layer does at least that: it reads
``x`` (and ``g``) and writes a tensor of ``x``'s size, through the same entry points. So
floor / roofline is a lower bound on the x roofline any kernel reaches in ``bench_eca.py``
on this machine, and eca_cuda / floor is what is left to its kernels. The operators are also
timed called directly (``eca_cuda.ops``, no autograd): bare calls, as the rooflines are.

Cases: the N = 8 layers of the CPU benchmark (ECA-ResNet-50, ECA-MobileNetV2; the issue-4
roofline targets), float32 and bfloat16, contiguous and channels_last; steps of a case
interleaved in rounds, p50 of the blocks, as ``bench_eca.py``. Prints a table and writes
``floor_cpu.csv`` and ``floor_cpu.md`` under ``--out-dir``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics

import torch
from bench_eca import (
    MOBILENETV2,
    RESNET50,
    Case,
    add_timing_args,
    case_inputs,
    device_name,
    geomean,
    git_sha,
    layer_shapes,
    make_step,
    time_rounds,
    write_results,
)

import eca_cuda
from eca_cuda import ops

MODES = {"forward": "copy", "backward": "add"}  # mode -> its roofline in bench_eca.py
PROVIDERS = {"clone floor": lambda x, weight: x.clone(), "eca_cuda": eca_cuda.eca}


def run_case(case: Case, rounds: int, min_run_time: float) -> list[dict]:
    """One row per mode: roofline, floor, eca_cuda and operator p50 times (ms), and ratios."""
    x, weight = case_inputs(case, "cpu")
    copy_out, add_g, add_out = torch.empty_like(x), torch.randn_like(x), torch.empty_like(x)
    steps = {
        "copy": lambda: copy_out.copy_(x),
        "add": lambda: torch.add(add_g, x, out=add_out),
    }
    for mode in MODES:
        for provider, fn in PROVIDERS.items():
            steps[(provider, mode)] = make_step(fn, mode, x, weight)
    _, pooled, gate = ops.eca_forward(x, weight)
    steps[("operator", "forward")] = lambda: ops.eca_forward(x, weight)
    steps[("operator", "backward")] = lambda: ops.eca_backward(add_g, x, weight, pooled, gate)
    p50 = {
        name: statistics.median(t) * 1e3
        for name, t in time_rounds(steps, "cpu", rounds, min_run_time).items()
    }
    rows = []
    for mode, roofline in MODES.items():
        floor, ours = p50[("clone floor", mode)], p50[("eca_cuda", mode)]
        rows.append(
            {
                "shape": f"{case.N}x{case.C}x{case.H}x{case.W}",
                "k": case.k,
                "dtype": str(case.dtype).replace("torch.", ""),
                "memory_format": case.memory_format,
                "mode": mode,
                "roofline": roofline,
                "roofline_ms": p50[roofline],
                "floor_ms": floor,
                "eca_cuda_ms": ours,
                "floor_x_roofline": floor / p50[roofline],
                "eca_cuda_x_roofline": ours / p50[roofline],
                "eca_cuda_x_floor": ours / floor,
                "operator_ms": p50[("operator", mode)],
                "operator_x_roofline": p50[("operator", mode)] / p50[roofline],
            }
        )
    return rows


def tables(rows: list[dict]) -> tuple[list[str], list[str]]:
    """(geometric means per dtype x format x mode, all cases) as Markdown lines."""
    summary = [
        "| dtype | format | mode | floor x roofline | eca_cuda x roofline | eca_cuda x floor "
        "| operator x roofline |",
        "|" + "---|" * 7,
    ]
    groups = {}
    for r in rows:
        groups.setdefault((r["dtype"], r["memory_format"], r["mode"]), []).append(r)
    for (dtype, fmt, mode), group in groups.items():
        means = [
            geomean(r[key] for r in group)
            for key in (
                "floor_x_roofline",
                "eca_cuda_x_roofline",
                "eca_cuda_x_floor",
                "operator_x_roofline",
            )
        ]
        summary.append(
            f"| {dtype} | {fmt} | {mode} | " + " | ".join(f"{m:.2f}" for m in means) + " |"
        )
    cases = [
        "| shape | k | dtype | format | mode | roofline | roofline ms | floor ms | eca_cuda ms "
        "| floor x roofline | eca_cuda x roofline | eca_cuda x floor | operator ms "
        "| operator x roofline |",
        "|" + "---|" * 14,
    ]
    for r in rows:
        cases.append(
            f"| {r['shape']} | {r['k']} | {r['dtype']} | {r['memory_format']} | {r['mode']} "
            f"| {r['roofline']} | {r['roofline_ms']:.4f} | {r['floor_ms']:.4f} | {r['eca_cuda_ms']:.4f} "
            f"| {r['floor_x_roofline']:.2f} | {r['eca_cuda_x_roofline']:.2f} | {r['eca_cuda_x_floor']:.2f} "
            f"| {r['operator_ms']:.4f} | {r['operator_x_roofline']:.2f} |"
        )
    return summary, cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_args(parser)
    args = parser.parse_args(argv)

    cases = [
        Case(model, 8, C, H, W, k, dtype, fmt)
        for dtype in (torch.float32, torch.bfloat16)
        for fmt in ("contiguous", "channels_last")
        for model in (RESNET50, MOBILENETV2)
        for C, H, W, k in layer_shapes(model)
    ]
    meta = {
        "device": device_name("cpu"),
        "torch": torch.__version__,
        "git_sha": git_sha(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "unset"),
    }
    print(
        f"eca_cuda floor benchmark: {len(cases)} cases; "
        + ", ".join(f"{k} {v}" for k, v in meta.items())
    )
    rows = []
    for i, case in enumerate(cases, 1):
        case_rows = run_case(case, args.rounds, args.min_run_time)
        rows += [{**r, **meta} for r in case_rows]
        print(
            f"[{i}/{len(cases)}] {case.label()}: "
            + ", ".join(
                f"{r['mode']} floor {r['floor_x_roofline']:.2f}x, eca_cuda {r['eca_cuda_x_roofline']:.2f}x {r['roofline']}"
                for r in case_rows
            ),
            flush=True,
        )
    summary, table = tables(rows)
    print("\n" + "\n".join(table) + "\n\nGeometric means (p50 ratios):\n" + "\n".join(summary))

    write_results(
        args.out_dir / "floor_cpu",
        "eca_cuda floor benchmark: N = 8 layers",
        meta,
        rows,
        {"Geometric means (p50 ratios)": summary, "All cases (p50)": table},
        argv,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
