"""Exact memory access counts of the CUDA kernels, from the CPU emulation (no GPU): for each
ECA-ResNet-50 layer shape, dtype and layout, the forward, the ReLU tail's forward and the
backward under the single-pass plan of a 132-SM GPU (H100, H200: the 100 KiB tile budget) and
the multi-launch plan, every kernel's global 32-byte sectors and shared-memory wavefronts
against the ideal (what the same bytes would take coalesced and conflict-free), as Nsight
Compute's "sectors per request" and bank conflicts name them. Counts, not times; the counter's
model is in tests/cuda_emulation/access_counter.cpp, its tests in
tests/test_cuda_access_counts.py.

    python benchmarks/cuda_access_counts.py                 # N = 1, writes results/
    python benchmarks/cuda_access_counts.py --channels 64   # a quick look: 64 channels

Writes results/cuda_access_counts.csv (one row per access site and case) and prints, per
kernel and layout, the ratio to the ideal of its global and its shared accesses and the worst
site, the table docs/cuda-kernels.md shows. Takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from emulated_cuda import Emulation, build_counting  # noqa: E402

# (C, H, W, k): the ECA-ResNet-50 layers (eca_layer_shapes.csv, official k3557).
LAYERS = [(256, 56, 56, 3), (512, 28, 28, 5), (1024, 14, 14, 5), (2048, 7, 7, 7)]
PLANS = {"single-pass (132 SMs, 100 KiB tiles)": (100 * 1024, 132), "multi-launch": (0, 1)}


def count(emulation, N, C, H, W, k, dtype, channels_last, budget, sms):
    """Access sites of the forward, the ReLU tail's forward and its backward, with the case."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, H, W, generator=gen).to(dtype)
    weight = torch.randn(k, generator=gen)
    grad = torch.randn(N, C, H, W, generator=gen).to(dtype)
    rows = []
    plan = dict(tile_budget=budget, sms=sms)

    def collect(direction):
        for s in emulation.access_sites():
            rows.append({**vars(s), "direction": direction, "ratio": s.ratio})

    emulation.tail_forward(x, weight, None, 1.0, None, "none", "zeros", channels_last, **plan)
    collect("forward")
    out, pooled, gate = emulation.tail_forward(
        x, weight, torch.randn_like(x), 1.0, None, "relu", "zeros", channels_last, **plan
    )
    collect("tail forward")
    emulation.backward(grad, x, weight, pooled, gate, "zeros", channels_last, relu_out=out, **plan)
    collect("tail backward")
    return rows


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per plan, kernel, layout and space: units over ideal, and the worst site."""
    out = []
    for key, g in df.groupby(["plan", "kernel", "layout", "space"]):
        worst = g.loc[g["ratio"].idxmax()]
        out.append(
            dict(
                zip(["plan", "kernel", "layout", "space"], key),
                ratio=round(g["units"].sum() / g["ideal"].sum(), 2),
                worst=f"{worst['where']} {worst['kind']} x{worst['ratio']:.2f}",
            )
        )
    return pd.DataFrame(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--N", type=int, default=1)
    parser.add_argument("--channels", type=int, default=0, help="cap C (0: the layers' own)")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        emulation = Emulation(build_counting(Path(tmp) / "ops.so", ["launcher.cpp"]))
        rows = []
        for C, H, W, k in LAYERS:
            C = min(C, args.channels) if args.channels else C
            for dtype in (torch.bfloat16, torch.float32):
                for layout in ("contiguous", "channels_last"):
                    for plan, (budget, sms) in PLANS.items():
                        case = dict(layer=f"{args.N}x{C}x{H}x{W}", k=k, dtype=str(dtype)[6:])
                        case.update(layout=layout, plan=plan)
                        for row in count(
                            emulation,
                            args.N,
                            C,
                            H,
                            W,
                            k,
                            dtype,
                            layout == "channels_last",
                            budget,
                            sms,
                        ):
                            rows.append({**case, **row})
                        print(case, flush=True)
    df = pd.DataFrame(rows)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out_dir / "cuda_access_counts.csv", index=False)
    table = summary(df)
    print(table.to_markdown(index=False))
    (args.out_dir / "cuda_access_counts.md").write_text(
        "Exact access counts from the CPU emulation (benchmarks/cuda_access_counts.py): units "
        "(32-byte sectors, global; wavefronts, shared) over the ideal, summed over the "
        f"ECA-ResNet-50 layers at N = {args.N}, bfloat16 and float32, forward, ReLU tail forward "
        "and its backward.\n\n" + table.to_markdown(index=False) + "\n"
    )


if __name__ == "__main__":
    main()
