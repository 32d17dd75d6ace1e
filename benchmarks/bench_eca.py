"""Time eca_cuda beside the eager and compiled reference, the bare operators and the floor, on
the published ECA layer shapes, against the copy/add rooflines of the same tensors.

Providers (each in modes ``forward``: no grad; ``backward``: one backward of a retained graph;
``full``: forward + backward):

- ``eca_cuda``: :func:`eca_cuda.eca`, as a model calls it (Python, autograd).
- ``reference``: eager :func:`eca_cuda.reference.eca` (stock PyTorch ops).
- ``compiled``: ``torch.compile(reference.eca)``.
- ``operator``: the operators called directly (``eca_cuda.ops``), no autograd and no Python
  layer, bare calls as the rooflines are.
- ``fallback`` (CUDA only): ``operator`` with ``ECA_CUDA_TILE_BUDGET=0``, the multi-launch
  plans the single-pass kernels replace, for the side-by-side comparison; setting the
  variable around each call costs it a microsecond or two of host time.
- ``floor``: ``x.clone()`` timed as ``eca_cuda`` is: its forward reads ``x`` and writes a new
  tensor of its size, its backward takes ``g`` through the autograd engine into ``x.grad``.
  Any ECA layer does at least that through the same entry points, so ``floor`` over the
  roofline bounds what any kernel can reach in this benchmark on this machine.

Rooflines, timed in the same rounds: ``y.copy_(x)`` for the forward (2 passes over ``|x|``),
``torch.add(g, x, out=dx)`` for the backward (3 passes), their sum for ``full``. The op is
memory-bound, so time over roofline is its efficiency (1.0 would be ideal).

Writes ``eca_<device>.csv`` (one row per case, provider and mode) under ``--out-dir``, and
from it (:mod:`report`) ``eca_<device>.md`` (the tables) and ``eca_<device>.png`` (the plot);
the columns are described in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import pandas as pd
import torch
from harness import (
    MOBILENETV2,
    MODES,
    RESNET50,
    Case,
    add_timing_args,
    case_inputs,
    layer_shapes,
    make_step,
    quantiles,
    run_metadata,
    time_rounds,
)
from report import summary_table, write_report
from tqdm import tqdm

import eca_cuda
from eca_cuda import ops, reference

PROVIDERS = ("eca_cuda", "reference", "compiled", "operator", "fallback", "floor")
MIN_PASSES = {"forward": 2, "backward": 3, "full": 5}  # passes over |x| at the minimum
# (model, N) groups of each preset: CPU and GPU, quick and --full.
PRESETS = {
    ("cpu", False): [(RESNET50, 8)],
    ("cpu", True): [(RESNET50, 1), (RESNET50, 8), (MOBILENETV2, 8)],
    ("cuda", False): [(RESNET50, 32)],
    ("cuda", True): [(m, n) for n in (1, 32, 128) for m in (RESNET50, MOBILENETV2)],
}


def operator_steps(x: torch.Tensor, weight: torch.Tensor) -> dict[str, object]:
    """The bare operators' steps per mode: no autograd, no Python layer above ``ops``."""
    grad_y = torch.randn_like(x)
    _, pooled, gate = ops.eca_forward(x, weight)

    def forward():
        return ops.eca_forward(x, weight)

    def backward():
        return ops.eca_backward(grad_y, x, weight, pooled, gate)

    def full():
        _, p, s = ops.eca_forward(x, weight)
        return ops.eca_backward(grad_y, x, weight, p, s)

    return {"forward": forward, "backward": backward, "full": full}


def with_tile_budget(budget: str, fn):
    """``fn`` run with ``ECA_CUDA_TILE_BUDGET=budget``, which the CUDA op reads at each call."""

    def step():
        os.environ["ECA_CUDA_TILE_BUDGET"] = budget
        try:
            return fn()
        finally:
            del os.environ["ECA_CUDA_TILE_BUDGET"]

    return step


def run_case(case: Case, device: str, providers, fns: dict, rounds: int, min_run_time: float):
    """Rows (dicts) of one case: each provider and mode, with p20/p50/p80 and its ratios."""
    x, weight = case_inputs(case, device)
    copy_out = torch.empty_like(x)
    add_g, add_out = torch.randn_like(x), torch.empty_like(x)
    steps = {
        "copy": lambda: copy_out.copy_(x),
        "add": lambda: torch.add(add_g, x, out=add_out),
    }
    for provider in providers:
        if provider == "operator":
            per_mode = operator_steps(x, weight)
        elif provider == "fallback":
            per_mode = {m: with_tile_budget("0", f) for m, f in operator_steps(x, weight).items()}
        else:
            per_mode = {mode: make_step(fns[provider], mode, x, weight) for mode in MODES}
        steps.update({(provider, mode): step for mode, step in per_mode.items()})
    times = time_rounds(steps, rounds, min_run_time)

    p50 = {name: statistics.median(t) for name, t in times.items()}
    roofline_s = {"forward": p50["copy"], "backward": p50["add"]}
    roofline_s["full"] = roofline_s["forward"] + roofline_s["backward"]
    x_bytes = x.numel() * x.element_size()
    rows = []
    for mode in MODES:
        for provider in providers:
            p20, median, p80 = quantiles(times[(provider, mode)])
            eager, compiled = p50.get(("reference", mode)), p50.get(("compiled", mode))
            rows.append(
                {
                    "provider": provider,
                    "mode": mode,
                    "model": case.model,
                    "shape": case.shape,
                    "N": case.N,
                    "C": case.C,
                    "H": case.H,
                    "W": case.W,
                    "k": case.k,
                    "dtype": case.dtype_name,
                    "memory_format": case.memory_format,
                    "p20_ms": p20 * 1e3,
                    "p50_ms": median * 1e3,
                    "p80_ms": p80 * 1e3,
                    "roofline_ms": roofline_s[mode] * 1e3,
                    "x_roofline": median / roofline_s[mode],
                    "speedup_vs_eager": eager / median if eager else float("nan"),
                    "speedup_vs_compiled": compiled / median if compiled else float("nan"),
                    "gbps": MIN_PASSES[mode] * x_bytes / median / 1e9,
                    "copy_gbps": 2 * x_bytes / p50["copy"] / 1e9,
                }
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more models, batches, dtypes, layouts")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--model", help="only this model's rows of eca_layer_shapes.csv")
    parser.add_argument("--batch", type=int, nargs="+", help="only these batch sizes N")
    parser.add_argument(
        "--providers", nargs="+", choices=PROVIDERS, help="what to time (default: all that apply)"
    )
    add_timing_args(parser)
    args = parser.parse_args(argv)

    device = args.device
    if args.providers is None:  # the fallback is a CUDA plan: on the CPU it is the operator
        args.providers = [p for p in PROVIDERS if device == "cuda" or p != "fallback"]
    groups = [
        (model, n)
        for model, n in PRESETS[(device, args.full)]
        if args.model in (None, model) and (not args.batch or n in args.batch)
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
    fns = {
        "eca_cuda": eca_cuda.eca,
        "reference": reference.eca,
        "compiled": torch.compile(reference.eca),
        "floor": lambda x, weight: x.clone(),
    }
    meta = run_metadata(device)
    meta["command"] = " ".join(
        ["benchmarks/bench_eca.py", *(argv if argv is not None else sys.argv[1:])]
    )
    models = ", ".join(f"{m} N={n}" for m, n in groups)
    print(
        f"eca_cuda benchmark: {models}; {len(cases)} cases; providers {', '.join(args.providers)}"
    )
    print(", ".join(f"{k} {v}" for k, v in meta.items()))
    print(eca_cuda.build_info.summary())

    rows = []
    for case in tqdm(cases, desc="cases", unit="case"):
        case_rows = run_case(case, device, args.providers, fns, args.rounds, args.min_run_time)
        rows += [{**r, **meta} for r in case_rows]
        ours = [r for r in case_rows if r["provider"] == "eca_cuda"]
        tqdm.write(
            f"{case.label()}: eca_cuda "
            + ", ".join(
                f"{r['mode']} {r['p50_ms']:.3f} ms ({r['speedup_vs_eager']:.2f}x eager, "
                f"{r['x_roofline']:.2f}x roofline)"
                for r in ours
            )
        )

    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\nGeometric means (p50 ratios; x roofline: time / roofline):\n{summary_table(df)}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = args.out_dir / f"eca_{device}.csv"
    df.to_csv(csv_path, index=False)
    print(f"wrote {csv_path}")
    write_report(csv_path, f"eca_cuda benchmark: {models}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
