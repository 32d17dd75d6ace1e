"""The residual block's tail alone, per layer, in inference: ``relu(eca(x) + r)`` as one
eca_cuda operator call, beside Inductor's fusion of the same expression
(``torch.compile(reference.eca_tail)``) and beside the tail without ECA (``relu(x + r)``,
compiled: what the tail costs when ECA costs nothing), with ``y.copy_(x)`` as the yardstick,
on the ECA-ResNet-50 layer shapes, channels_last.

    python benchmarks/bench_tail.py                 # N = 8, float32 and bfloat16
    python benchmarks/bench_tail.py --N 32 --dtype bfloat16

Prints p50 microseconds per provider and case, and the ratio of eca_cuda's time to Inductor's,
and writes ``tail_<device>.csv`` under ``--out-dir``. It measures where a compiled model's
block tail spends its time; the model benchmark (``bench_models.py``) measures what that is
worth per step.
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd
import torch
from harness import RESNET50, add_timing_args, layer_shapes, quantiles, run_metadata, time_rounds
from tqdm import tqdm

import eca_cuda
from eca_cuda import reference

PROVIDERS = ("eca_tail", "compiled", "no_eca_compiled", "copy")


def tail_steps(x: torch.Tensor, r: torch.Tensor, weight: torch.Tensor) -> dict:
    """One zero-argument step per provider, each in ``no_grad``."""
    compiled = torch.compile(reference.eca_tail, dynamic=False)
    no_eca = torch.compile(lambda x, r: torch.relu(x + r), dynamic=False)
    y = torch.empty_like(x)
    fns = {
        "eca_tail": lambda: eca_cuda.eca_tail(x, weight, r, activation="relu"),
        "compiled": lambda: compiled(x, weight, r, activation="relu"),
        "no_eca_compiled": lambda: no_eca(x, r),
        "copy": lambda: y.copy_(x),
    }

    def no_grad(fn):
        def step():
            with torch.no_grad():
                return fn()

        return step

    return {name: no_grad(fn) for name, fn in fns.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--N", type=int, default=8)
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    add_timing_args(parser)
    args = parser.parse_args(argv)
    meta = run_metadata(args.device)
    print(", ".join(f"{k} {v}" for k, v in meta.items()))
    cases = [(shape, dtype) for dtype in args.dtype for shape in layer_shapes(RESNET50)]
    rows = []
    for (C, H, W, k), dtype_name in tqdm(cases, desc="cases", unit="case"):
        dtype = getattr(torch, dtype_name)
        gen = torch.Generator().manual_seed(0)
        x, r = (
            torch.randn(args.N, C, H, W, generator=gen)
            .to(args.device, dtype)
            .contiguous(memory_format=torch.channels_last)
            for _ in range(2)
        )
        weight = torch.randn(k, generator=gen).to(args.device)
        times = time_rounds(tail_steps(x, r, weight), args.rounds, args.min_run_time)
        for provider in PROVIDERS:
            p20, p50, p80 = quantiles(times[provider])
            rows.append(
                {
                    "provider": provider,
                    "shape": f"{args.N}x{C}x{H}x{W}",
                    "k": k,
                    "dtype": dtype_name,
                    "memory_format": "channels_last",
                    "p20_us": p20 * 1e6,
                    "p50_us": p50 * 1e6,
                    "p80_us": p80 * 1e6,
                    **meta,
                }
            )
    df = pd.DataFrame(rows)
    table = df.pivot_table(
        index=["shape", "dtype"], columns="provider", values="p50_us", sort=False
    )[list(PROVIDERS)]
    table["eca_tail / compiled"] = table["eca_tail"] / table["compiled"]
    table["ECA's cost, ours / Inductor's"] = (table["eca_tail"] - table["no_eca_compiled"]) / (
        table["compiled"] - table["no_eca_compiled"]
    )
    print(f"\np50 us\n{table.round(3).to_markdown()}")
    print(
        "geometric mean of eca_tail / compiled: "
        f"{statistics.geometric_mean(table['eca_tail / compiled']):.3f}"
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = args.out_dir / f"tail_{args.device}.csv"
    df.to_csv(csv_path, index=False)
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
