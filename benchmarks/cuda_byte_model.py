"""Byte-count model of the CUDA schedules: for each ECA layer of a model
(``eca_layer_shapes.csv``) at batch ``N``, the bytes each forward and backward schedule moves
through device memory, and the time that predicts at the device's measured copy bandwidth.
These are predictions, not measurements; ``docs/cuda-kernels.md`` describes the schedules and
which shapes each covers.

    python benchmarks/cuda_byte_model.py                # ECA-ResNet-50, N = 32, H200
    python benchmarks/cuda_byte_model.py --N 1 --model "ECA-MobileNetV2 (official k13)"
    python benchmarks/cuda_byte_model.py --waves        # tiles, blocks per SM, waves per GPU

A pass is ``N * C * H * W * itemsize`` bytes read or written once. The copy bandwidth counts
read plus write bytes, as ``y.copy_(x)`` (2 passes) moves them, so a schedule of ``p`` passes
is predicted to take ``p / 2`` of that copy's time.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Device:
    """What the model needs of a GPU: SMs, shared memory per SM and the most a block may opt
    in to (bytes; the CUDA programming guide's table of compute capabilities), threads per SM,
    L2 (bytes), and the device copy's bandwidth (bytes/s, read plus write; None where not
    measured)."""

    name: str
    sms: int
    shared_per_sm: int
    optin_per_block: int
    threads_per_sm: int
    l2: int
    copy_bandwidth: float | None = None


KIB = 1024
# H200: about 4.3 TB/s measured device copy (read plus write).
H200 = Device("H200", 132, 228 * KIB, 227 * KIB, 2048, 60 * 10**6, copy_bandwidth=4.3e12)
H100 = Device("H100 SXM", 132, 228 * KIB, 227 * KIB, 2048, 50 * 10**6)
A100 = Device("A100", 108, 164 * KIB, 163 * KIB, 2048, 40 * 10**6)
RTX_4090 = Device("RTX 4090", 128, 100 * KIB, 99 * KIB, 1536, 72 * 10**6)
T4 = Device("T4", 40, 64 * KIB, 64 * KIB, 1024, 4 * 10**6)
DEVICES = [T4, A100, RTX_4090, H100, H200]

# The tile budget's cap and a tile block's other shared memory (kTileBudget, kTileOverhead of
# csrc/cuda/eca_launch_args.h).
TILE_BUDGET = 100 * KIB
TILE_OVERHEAD = 4 * KIB
TILE_THREADS = 256
TILE_REGISTERS = 128
CLUSTER = 8  # blocks per thread-block cluster (the portable maximum on sm_90)


def tile_bytes(T: int, C: int, L: int, itemsize: int, pad: int) -> int:
    """A tile kernel's dynamic shared memory (``tile_shared_bytes`` of
    ``csrc/cuda/eca_tile.cuh``): ``T * L`` elements, then one float32 per window channel (the
    whole sample, or the tile and ``pad`` channels either side: the forward's means, the
    backward's dz) and two per tile channel (multipliers; gates and dp / L)."""
    window = C if T == C else T + 2 * pad
    return -(-T * L * itemsize // 16) * 16 + (window + 2 * T) * 4


def tile_budget(device: Device) -> int:
    """``tile_budget_for`` of ``csrc/cuda/eca_launch_args.h``, mirrored (the tests compare):
    at most TILE_BUDGET, and a block fits."""
    return max(0, min(TILE_BUDGET, device.optin_per_block - TILE_OVERHEAD))


def pair_budget(device: Device) -> int:
    """``pair_budget_for`` of ``csrc/cuda/eca_launch_args.h``, mirrored: at most TILE_BUDGET,
    and two blocks share an SM."""
    return max(0, min(TILE_BUDGET, device.shared_per_sm // 2 - TILE_OVERHEAD))


def blocks_per_sm(T: int, C: int, L: int, itemsize: int, pad: int, device: Device) -> int:
    """Tile blocks an SM holds at once, by shared memory, threads and registers (64 K a SM on
    all five; the tile kernels take up to TILE_REGISTERS a thread, their launch bounds')."""
    by_shared = device.shared_per_sm // (tile_bytes(T, C, L, itemsize, pad) + TILE_OVERHEAD)
    by_registers = 65536 // (TILE_THREADS * TILE_REGISTERS)
    return min(by_shared, device.threads_per_sm // TILE_THREADS, by_registers)


def tile_channels(C: int, L: int, itemsize: int, pad: int, N: int, device: Device) -> int:
    """The channels per tile that the single-pass plan picks (``tile_channels`` of
    ``csrc/cuda/eca_launch.cuh``, mirrored; the tests compare the two), or 0 for the three
    launches: a tile two blocks an SM hold (``pair_budget``) where one fits, else one of up to
    ``tile_budget`` (one block an SM)."""
    pair = tile_channels_within(C, L, itemsize, pad, N, device, pair_budget(device))
    return pair or tile_channels_within(C, L, itemsize, pad, N, device, tile_budget(device))


def tile_channels_within(
    C: int, L: int, itemsize: int, pad: int, N: int, device: Device, budget: int
) -> int:
    """``tile_channels_within``, mirrored: from the whole sample down through the powers of
    two below ``C``, the first tile that fits ``budget`` bytes and gives the grid two blocks
    per SM, else the narrowest that fits while its halo is under half the tile; 0 if none."""
    below = 1  # the largest power of two below C
    while below * 2 < C:
        below *= 2
    best, T = 0, C
    while T >= 1:
        if tile_bytes(T, C, L, itemsize, pad) <= budget and (T == C or T + 2 * pad <= C):
            if T < C and 4 * pad >= T:
                break  # the halo is half the tile or more, and narrower tiles only worse
            best = T
            if N * -(-C // T) >= 2 * device.sms:
                break
        T = (below if below < C else 0) if T == C else T // 2
    return best


def halo_fraction(C: int, T: int, pad: int) -> float:
    """The halo channels a tile re-reads (``pad`` each side, at most the rest of the sample),
    as a fraction of the tile: the extra share of one pass."""
    return min(2 * pad, C - T) / T


def schedules(
    C: int, L: int, k: int, itemsize: int, N: int, device: Device, residual: bool
) -> list[dict]:
    """Each schedule's passes for one layer: forward, backward (with ``residual``: the block
    tail's residual read and, in the backward, the ReLU mask's read of ``out`` and the
    residual gradient's write)."""
    pad = (k - 1) // 2
    tail = 1 if residual else 0
    rows = [
        {
            "schedule": "three launches (fallback)",
            "T": 0,
            "cluster": 0,
            "launches": "3 / 5",
            "forward": 3 + tail,  # read x (pool); read x (+ r), write y
            # mask: read g, out, write g'; t: read g', x; dx: read g', write dx
            "backward": 4 + 3 * tail,
        }
    ]
    T = tile_channels(C, L, itemsize, pad, N, device)
    if T:
        h = halo_fraction(C, T, pad)
        rows.append(
            {
                "schedule": "channel tile in shared memory",
                "T": T,
                "cluster": 0,
                "launches": "1 / 2",
                # read x once into the tile (+ its halo channels), write y (+ read r)
                "forward": 2 + h + tail,
                # read g and x once (+ halo of both, and of out); write dx (+ g')
                "backward": 3 + 2 * h + tail * (2 + h),
            }
        )
        clustered = min(CLUSTER, C // T)
        if clustered > 1:
            hc = h / clustered  # halo means exchanged inside a cluster, re-read at its edges
            rows.append(
                {
                    "schedule": "tiles in clusters (sm_90)",
                    "T": T,
                    "cluster": clustered,
                    "launches": "1 / 2",
                    "forward": 2 + hc + tail,
                    "backward": 3 + 2 * hc + tail * (2 + hc),
                }
            )
    return rows


def model_table(shapes: pd.DataFrame, N: int, dtype_bytes: int, device: Device, residual: bool):
    """One row per (layer shape, schedule): passes, MB moved and predicted microseconds."""
    out = []
    for layer in shapes.itertuples():
        L = layer.H * layer.W
        pass_bytes = N * layer.C * L * dtype_bytes
        for s in schedules(layer.C, L, layer.k, dtype_bytes, N, device, residual):
            T = s["T"]
            row = {
                "C": layer.C,
                "HxW": f"{layer.H}x{layer.W}",
                "k": layer.k,
                "layers": layer.count,
                "MB per pass": pass_bytes / 1e6,
                "schedule": s["schedule"],
                "tile channels": T or "-",
                "blocks": N * layer.C // T if T else "-",
                "cluster": s["cluster"] or "-",
                "halo %": 100 * halo_fraction(layer.C, T, (layer.k - 1) // 2) if T else 0.0,
                "launches fwd / bwd": s["launches"],
            }
            for direction in ("forward", "backward"):
                passes = s[direction]
                row[f"{direction} passes"] = passes
                row[f"{direction} us"] = passes * pass_bytes / device.copy_bandwidth * 1e6
            # The targets' yardsticks: y.copy_(x) (2 passes), torch.add(g, x, out=dx) (3).
            row["forward / copy"] = s["forward"] / 2
            row["backward / add"] = s["backward"] / 3
            out.append(row)
    return pd.DataFrame(out)


def waves_table(shapes: pd.DataFrame, itemsize: int, batches=(1, 32, 128)) -> pd.DataFrame:
    """Per device and layer, at each batch size: the tile the plan picks (channels), the tile
    blocks an SM holds, and the waves the grid makes (blocks over SMs times blocks per SM);
    "3 launches" where no tile fits."""
    rows = []
    for device in DEVICES:
        for layer in shapes.itertuples():
            L, pad = layer.H * layer.W, (layer.k - 1) // 2
            row = {
                "GPU": device.name,
                "budget KiB: two / one an SM": f"{pair_budget(device) // KIB} / "
                f"{tile_budget(device) // KIB}",
                "layer": f"{layer.C}x{layer.H}x{layer.W}",
            }
            for N in batches:
                T = tile_channels(layer.C, L, itemsize, pad, N, device)
                if T:
                    per_sm = blocks_per_sm(T, layer.C, L, itemsize, pad, device)
                    waves = N * -(-layer.C // T) / (device.sms * per_sm)
                    row[f"N = {N}: T / blocks per SM / waves"] = f"{T} / {per_sm} / {waves:.2f}"
                else:
                    row[f"N = {N}: T / blocks per SM / waves"] = "3 launches"
            rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ECA-ResNet-50 (official k3557)")
    parser.add_argument("--N", type=int, default=32)
    parser.add_argument("--residual", action="store_true", help="with the block tail")
    parser.add_argument(
        "--waves", action="store_true", help="the tile plan on T4, A100, RTX 4090, H100, H200"
    )
    args = parser.parse_args(argv)
    shapes = pd.read_csv(HERE / "eca_layer_shapes.csv", comment="#")
    shapes = shapes[shapes.model == args.model]
    if shapes.empty:
        raise SystemExit(f"no model {args.model!r} in eca_layer_shapes.csv")
    if args.waves:
        for dtype, size in (("bfloat16", 2), ("float32", 4)):
            print(f"\n{args.model}, {dtype}: the tile plan per GPU\n")
            print(waves_table(shapes, size).to_markdown(index=False))
        return 0
    print(
        f"{args.model}, N = {args.N}, {H200.name} at {H200.copy_bandwidth / 1e12:.1f} TB/s copy"
        f"{', with the block tail' if args.residual else ''}: predictions"
    )
    for dtype, size in (("bfloat16", 2), ("float32", 4)):
        table = model_table(shapes, args.N, size, H200, args.residual)
        print(f"\n{dtype}\n")
        shown = table.drop(columns=["cluster", "launches fwd / bwd"])
        print(shown.to_markdown(index=False, floatfmt=".3g"))
        for direction in ("forward", "backward"):
            total = (table.groupby("schedule", sort=False)[f"{direction} us"]).apply(
                lambda t, table=table: (t * table.loc[t.index, "layers"]).sum()
            )
            print(
                f"\n{direction}, all {int(shapes['count'].sum())} layers: "
                + ", ".join(
                    f"{name} {us:.0f} us" for name, us in total.items() if math.isfinite(us)
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
