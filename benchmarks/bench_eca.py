"""Time eca_cuda beside the eager and compiled reference, the bare operators and the floor, on
the published ECA layer shapes, against the copy/add rooflines of the same tensors.

Providers (each in modes ``forward``: no grad; ``backward``: one backward of a retained graph;
``full``: forward + backward):

- ``eca_cuda``: :func:`eca_cuda.eca`, as a model calls it (Python, autograd).
- ``reference``: eager :func:`eca_cuda.reference.eca` (stock PyTorch ops).
- ``compiled``: ``torch.compile(reference.eca)``.
- ``operator``: the operators called directly (``eca_cuda.ops``), no autograd and no Python
  layer, bare calls as the rooflines are.
- ``floor``: ``x.clone()`` timed as ``eca_cuda`` is: its forward reads ``x`` and writes a new
  tensor of its size, its backward takes ``g`` through the autograd engine into ``x.grad``.
  Any ECA layer does at least that through the same entry points, so ``floor`` over the
  roofline bounds what any kernel can reach in this benchmark on this machine.

Rooflines, timed in the same rounds: ``y.copy_(x)`` for the forward (2 passes over ``|x|``),
``torch.add(g, x, out=dx)`` for the backward (3 passes), their sum for ``full``. The op is
memory-bound, so time over roofline is its efficiency (1.0 would be ideal).

Writes ``eca_<device>.csv`` (one row per case, provider and mode), ``eca_<device>.md`` (the
tables) and ``eca_<device>.png`` (:mod:`plot_results`) under ``--out-dir``; the columns are
described in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd
import torch
from harness import (
    MOBILENETV2,
    MODES,
    RESNET50,
    Case,
    add_timing_args,
    case_inputs,
    geomean,
    layer_shapes,
    make_step,
    quantiles,
    run_metadata,
    time_rounds,
    write_results,
)
from plot_results import plot_csv
from tqdm import tqdm

import eca_cuda
from eca_cuda import ops, reference

PROVIDERS = ("eca_cuda", "reference", "compiled", "operator", "floor")
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
        per_mode = (
            operator_steps(x, weight)
            if provider == "operator"
            else {mode: make_step(fns[provider], mode, x, weight) for mode in MODES}
        )
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


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Geometric means of the p50 ratios per dtype, layout and mode: eca_cuda against eager,
    compiled and the roofline (per batch size), and the operator's and floor's roofline ratio."""
    keys = ["dtype", "memory_format", "mode"]
    columns = {}
    ours = df[df.provider == "eca_cuda"]
    for column, name in (("speedup_vs_eager", "x eager"), ("speedup_vs_compiled", "x compiled")):
        columns[name] = ours.groupby(keys, sort=False)[column].agg(geomean)
    for n in sorted(ours.N.unique()):
        batch = ours[ours.N == n]
        columns[f"x roofline N={n}"] = batch.groupby(keys, sort=False).x_roofline.agg(geomean)
    for provider in ("operator", "floor"):
        theirs = df[df.provider == provider]
        if len(theirs):
            columns[f"{provider} x roofline"] = theirs.groupby(keys, sort=False).x_roofline.agg(
                geomean
            )
    return pd.DataFrame(columns)


def cases_table(df: pd.DataFrame) -> pd.DataFrame:
    """p50 (ms) of every provider per case and mode, with the roofline and eca_cuda's ratios."""
    keys = ["shape", "k", "dtype", "memory_format", "mode"]
    table = df.pivot_table(index=keys, columns="provider", values="p50_ms", sort=False)
    table = table[[p for p in PROVIDERS if p in table.columns]].add_suffix(" ms")
    ours = df[df.provider == "eca_cuda"].set_index(keys)
    for column in ("roofline_ms", "x_roofline", "speedup_vs_eager", "speedup_vs_compiled"):
        if len(ours):
            table[column] = ours[column]
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more models, batches, dtypes, layouts")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--model", help="only this model's rows of eca_layer_shapes.csv")
    parser.add_argument("--batch", type=int, nargs="+", help="only these batch sizes N")
    parser.add_argument(
        "--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS), help="what to time"
    )
    add_timing_args(parser)
    args = parser.parse_args(argv)

    device = args.device
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
    summary, table = summary_table(df), cases_table(df)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\nAll cases (p50):\n{table.round(3)}")
        print(f"\nGeometric means (p50 ratios; x roofline: time / roofline):\n{summary.round(2)}")
    base = args.out_dir / f"eca_{device}"
    write_results(
        base,
        f"eca_cuda benchmark: {models}",
        meta,
        df,
        {"Geometric means (p50 ratios)": summary, "All cases (p50)": table},
    )
    plot_csv(f"{base}.csv", f"{base}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
