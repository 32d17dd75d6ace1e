"""The CUDA kernels in a cycle-level GPU simulator, as ratios to a copy and an add kernel run in
the same simulated GPU: GPGPU-Sim 4.2 in PTX mode, SM86_RTX3070 configuration (46 SMs, 4 MB
L2, L2 invalidated after each kernel, no launch latency), built by build.sh. No GPU is needed.

Each case runs the extension's own launch plan (csrc/cuda/eca_launch.cuh) through eca_sim.cu:
the forward, the ReLU block tail's forward (relu(x * gate + residual)) and the backward, on
the ECA-ResNet-50 layers with N chosen so that x (6.4 MB) is larger than the L2; the tile
budget and SM count are what the extension would pass on an RTX 3070 (99 KiB opt-in shared
memory less 4 KiB, 46 SMs). Every output is checked against the CPU operator (NaN-safe: an
unwritten output starts as NaN). Cycles are the simulator's gpu_sim_cycle per kernel, summed
over a case's launches; the ratio is to the baseline of the same bytes: a 16-byte copy for the
forward (read x, write y), a 16-byte add (read two, write one) for the backward and the tail.

PTX mode is about 34% off real cycles (Accel-Sim, ISCA 2020): the ratios, not the cycles, are
the measurement, and they are a simulated GPU's, not any real GPU's.

    python benchmarks/gpusim/run.py --preset quick   # about 20 minutes on 2 cores
    python benchmarks/gpusim/run.py --preset full    # every layer, dtype, layout: hours

Writes results/gpusim_<preset>.csv and .png (benchmarks/results/; --name renames them) and
prints the table. --compare GIT_REF runs the ECA cases a second time with that commit's kernels,
side by side (column kernels_from).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pandas as pd
import simulator
import torch
from tqdm import tqdm

import eca_cuda

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from helpers import assert_close_to_cpu  # noqa: E402  (the emulated kernels' rule)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE.parent / "results"

# (C, H, W, k) of the ECA-ResNet-50 layers (benchmarks/eca_layer_shapes.csv, official k3557),
# and N so that x is 6.4 MB (N = 2 at 256x56x56 in float32, 4 in bfloat16): over the 4 MB L2.
LAYERS = {
    "256x56x56": (256, 56, 56, 3),
    "512x28x28": (512, 28, 28, 5),
    "1024x14x14": (1024, 14, 14, 5),
    "2048x7x7": (2048, 7, 7, 7),
}
X_BYTES = 2 * 256 * 56 * 56 * 4
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
LAYOUTS = ("contiguous", "channels_last")
BASELINE = {"forward": "copy", "tail": "add", "backward": "add"}
PRESETS = {
    "quick": dict(
        layers=["1024x14x14"],
        dtypes=["float32"],
        layouts=LAYOUTS,
        cases=["forward", "backward", "tail"],
    ),
    "full": dict(
        layers=list(LAYERS),
        dtypes=list(DTYPES),
        layouts=LAYOUTS,
        cases=["forward", "backward", "tail"],
    ),
}
# What the extension passes on the simulated GPU (csrc/cuda/eca_ops_cuda.cpp): the tile budget
# for sm_86's 99 KiB of opt-in shared memory a block (tile_budget_for: 95 KiB) and 100 KiB an
# SM (pair_budget_for, the tiles two blocks an SM hold: 46 KiB), and its SMs.
SMS = 46
TILE_BUDGET = min(100 * 1024, 99 * 1024 - 4096)
PAIR_BUDGET = min(100 * 1024, 100 * 1024 // 2 - 4096)


def build_driver(gpusim_dir: Path, work: Path, ref: str | None = None) -> Path:
    """eca_sim.cu with the extension's nvcc flags and headers, its kernels from the working
    tree's csrc/ or, with `ref`, from that git commit's."""
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS, include_paths

    csrc, name = ROOT / "csrc", "eca_sim"
    if ref:
        tree, name = work / f"ref-{ref}", f"eca_sim-{ref}"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "csrc"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        csrc = tree / "csrc"
    flags = [*COMMON_NVCC_FLAGS, f"-I{csrc}", *[f"-I{p}" for p in include_paths()]]
    return simulator.compile_program(HERE / "eca_sim.cu", work / name, gpusim_dir, flags)


def inputs(case: str, layer: str, dtype: torch.dtype, channels_last: bool):
    """Seeded inputs of a case, and the CPU operator's outputs for them."""
    C, H, W, k = LAYERS[layer]
    N = max(1, X_BYTES // (C * H * W * dtype.itemsize))
    gen = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(N, C, H, W, generator=gen).to(dtype).contiguous(memory_format=fmt)
    weight = torch.randn(k, generator=gen) * 0.5
    other = torch.randn(N, C, H, W, generator=gen).to(dtype).contiguous(memory_format=fmt)
    files = {"x": x, "weight": weight}
    if case in ("add", "tail"):
        files["residual"] = other
    if case == "copy":
        expected = {"y": x}
    elif case == "add":
        expected = {"y": (x.float() + other.float()).to(dtype)}
    elif case == "forward":
        expected = dict(zip(("y", "pooled", "gate"), eca_cuda.ops.eca_forward(x, weight)))
    elif case == "tail":
        out = eca_cuda.ops.eca_tail_forward(x, weight, other, 1.0, None, "relu")
        expected = dict(zip(("y", "pooled", "gate"), out))
    else:
        _, pooled, gate = eca_cuda.ops.eca_forward(x, weight)
        files.update(grad_y=other, pooled=pooled, gate=gate)
        grad_x, grad_w = eca_cuda.ops.eca_backward(other, x, weight, pooled, gate)
        expected = {"grad_x": grad_x, "grad_weight": grad_w}
    return (N, C, H * W, k), files, expected


def raw(t: torch.Tensor) -> bytes:
    """The tensor's elements in memory order ((N, H, W, C) for channels_last), as bytes."""
    if (
        t.dim() == 4
        and t.is_contiguous(memory_format=torch.channels_last)
        and not t.is_contiguous()
    ):
        t = t.permute(0, 2, 3, 1)
    t = t.contiguous()
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32).numpy().tobytes()


def unraw(data: bytes, like: torch.Tensor) -> torch.Tensor:
    flat = torch.frombuffer(bytearray(data), dtype=like.dtype)
    if (
        like.dim() == 4
        and like.is_contiguous(memory_format=torch.channels_last)
        and not like.is_contiguous()
    ):
        N, C, H, W = like.shape
        return flat.view(N, H, W, C).permute(0, 3, 1, 2)
    return flat.view(like.shape)


def check(name: str, ours: torch.Tensor, cpu: torch.Tensor) -> str:
    """ "ok", or what differs: the emulated kernels' rule (tests/helpers.py,
    assert_close_to_cpu: a few units in the last place, NaN only where the CPU has NaN)."""
    try:
        assert_close_to_cpu(ours, cpu, name)
    except AssertionError as error:
        return " ".join(str(error).split())[:200]
    return "ok"


def simulate(
    exe: Path,
    source: str,
    env: dict,
    gpusim_dir: Path,
    case: str,
    layer: str,
    dtype_name: str,
    layout: str,
    tile_budget: int = TILE_BUDGET,
    pair_budget: int = PAIR_BUDGET,
    logs: Path | None = None,
) -> dict:
    dtype = DTYPES[dtype_name]
    (N, C, L, k), files, expected = inputs(case, layer, dtype, layout == "channels_last")
    with tempfile.TemporaryDirectory(prefix=f"gpusim-{case}-") as tmp:
        run_dir = Path(tmp)
        for name, t in files.items():
            (run_dir / f"{name}.bin").write_bytes(raw(t))
        start = time.time()
        proc = simulator.run_program(
            exe,
            [
                case,
                dtype_name,
                layout,
                str(N),
                str(C),
                str(L),
                str(k),
                str(tile_budget),
                str(SMS),
                str(run_dir),
                str(pair_budget),
            ],
            env,
            gpusim_dir,
            run_dir,
        )
        wall = time.time() - start
        log = proc.stdout + proc.stderr
        if logs:  # the simulator's own statistics per kernel (stalls, caches, DRAM)
            logs.mkdir(parents=True, exist_ok=True)
            tag = re.sub(r"\W+", "-", f"{source}-{case}-{layer}-{dtype_name}-{layout}")
            (logs / f"{tag}.log").write_text(log)
        if proc.returncode != 0:
            tail = "\n".join(log.splitlines()[-30:])
            raise RuntimeError(
                f"{case} {layer} {dtype_name} {layout}: exit {proc.returncode}\n{tail}"
            )
        results = [
            check(name, unraw((run_dir / f"{name}.bin").read_bytes(), cpu), cpu)
            for name, cpu in expected.items()
        ]
    kernels = simulator.kernel_cycles(log)
    launches = re.findall(r"^ECA_SIM launch (\S+) grid=(\d+) block=(\S+) shared=(\d+)", log, re.M)
    return dict(
        kernels_from=source,
        layer=layer,
        N=N,
        dtype=dtype_name,
        layout=layout,
        case=case,
        kernels=" + ".join(f"{name} {cycles}" for name, cycles in kernels),
        grids=" + ".join(f"{g}x{b}/{int(s) // 1024}KiB" for _, g, b, s in launches),
        cycles=sum(c for _, c in kernels),
        bytes=x_bytes(files) * {"copy": 2, "forward": 2, "add": 3, "tail": 3, "backward": 3}[case],
        check="ok"
        if all(r == "ok" for r in results)
        else "; ".join(r for r in results if r != "ok"),
        wall_s=round(wall),
    )


def x_bytes(files: dict) -> int:
    return files["x"].numel() * files["x"].element_size()


def plot(frame: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = frame[frame.case.isin(list(BASELINE))].reset_index(drop=True)
    if "kernels_from" not in rows:
        rows["kernels_from"] = "working tree"
    labels = [
        f"{r.case}\n{r.layer} {r.dtype}\n{r.layout}"
        + ("" if r.kernels_from == "working tree" else f"\n{r.kernels_from}")
        for r in rows.itertuples()
    ]
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(rows) + 2), 5))
    ax.bar(
        range(len(rows)),
        rows.ratio,
        color=["C0" if layout == "contiguous" else "C1" for layout in rows.layout],
    )
    for i, r in enumerate(rows.itertuples()):
        ax.text(i, r.ratio, f"{r.ratio:.2f}", ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("simulated cycles / the baseline's\n(copy: forward; add: tail, backward)")
    ax.set_title("\n".join(textwrap.wrap(title, 120)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="quick")
    parser.add_argument("--gpusim-dir", type=Path, default=simulator.DEFAULT_DIR)
    for key, choices in (
        ("layers", list(LAYERS)),
        ("dtypes", list(DTYPES)),
        ("layouts", LAYOUTS),
        ("cases", list(BASELINE)),
    ):
        parser.add_argument(f"--{key}", nargs="+", choices=choices, help="instead of the preset's")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="simulations at once (each takes one core)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", help="file names gpusim_<name>.csv/.png (default: the preset)")
    parser.add_argument(
        "--compare",
        metavar="GIT_REF",
        help="also run the ECA cases with the kernels of this commit, side by side",
    )
    parser.add_argument(
        "--tile-budget",
        type=int,
        default=TILE_BUDGET,
        metavar="BYTES",
        help=f"the single-pass kernels' shared memory budget (default {TILE_BUDGET}, as the "
        "extension on sm_86)",
    )
    parser.add_argument(
        "--pair-budget",
        type=int,
        default=PAIR_BUDGET,
        metavar="BYTES",
        help="the budget of the tiles two blocks an SM hold, tried first (default "
        f"{PAIR_BUDGET}, as the extension on sm_86; 0: tiles of the tile budget only)",
    )
    parser.add_argument("--logs", type=Path, metavar="DIR", help="keep each simulation's log here")
    parser.add_argument("--replot", type=Path, metavar="CSV", help="only redraw CSV's plot")
    args = parser.parse_args()
    if args.replot:
        frame = pd.read_csv(args.replot)
        title = (
            f"{frame.config.iloc[0]}\nhost: {frame.host.iloc[0]}"
            if "host" in frame
            else frame.config.iloc[0]
        )
        plot(frame, args.replot.with_suffix(".png"), title)
        return
    if not (args.gpusim_dir / ".built").exists():
        sys.exit(f"no simulator in {args.gpusim_dir}: run benchmarks/gpusim/build.sh (make gpusim)")
    preset = {key: getattr(args, key) or value for key, value in PRESETS[args.preset].items()}
    env = simulator.environment(args.gpusim_dir)
    work = Path(tempfile.mkdtemp(prefix="gpusim-driver-"))
    drivers = {"working tree": build_driver(args.gpusim_dir, work)}
    if args.compare:
        drivers[args.compare] = build_driver(args.gpusim_dir, work, args.compare)

    jobs = []
    for layer in preset["layers"]:
        for dtype in preset["dtypes"]:
            for case in ("copy", "add"):
                jobs.append(
                    (drivers["working tree"], "working tree", case, layer, dtype, "contiguous")
                )
            for source, exe in drivers.items():
                for layout in preset["layouts"]:
                    jobs += [(exe, source, case, layer, dtype, layout) for case in preset["cases"]]
    rows = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(
                simulate,
                exe,
                source,
                env,
                args.gpusim_dir,
                *job,
                args.tile_budget,
                args.pair_budget,
                args.logs,
            )
            for exe, source, *job in jobs
        ]
        for future in tqdm(
            concurrent.futures.as_completed(futures),
            total=len(futures),
            desc=f"gpusim {args.preset}",
            file=sys.stdout,
        ):
            rows.append(future.result())
    frame = pd.DataFrame(rows)
    base = frame[frame.case.isin(["copy", "add"])].set_index(["layer", "dtype", "case"]).cycles
    frame["baseline"] = [BASELINE.get(r.case, r.case) for r in frame.itertuples()]
    frame["ratio"] = [
        round(r.cycles / base[(r.layer, r.dtype, r.baseline)], 3) for r in frame.itertuples()
    ]
    order = {c: i for i, c in enumerate(["copy", "add", "forward", "tail", "backward"])}
    frame = frame.sort_values(
        ["layer", "dtype", "layout", "case", "kernels_from"],
        key=lambda s: s.map(order) if s.name == "case" else s,
    )
    config = (
        f"simulated: GPGPU-Sim 4.2 (667834cf, patched) PTX mode, SM86_RTX3070 config "
        f"(46 SMs, 4 MB L2 flushed per kernel, launch latency 0); kernels compute_80 PTX "
        f"from nvcc {simulator.nvcc_version()}; tile budget {args.tile_budget} B, "
        f"{args.pair_budget} B for two blocks an SM"
    )
    host = f"{cpu_name()}, torch {torch.__version__}, eca_cuda {eca_cuda.__version__}"
    frame.insert(0, "host", host)
    frame.insert(0, "config", config)
    frame.insert(0, "date", datetime.date.today().isoformat())
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"gpusim_{args.name or args.preset}.csv"
    frame.to_csv(csv_path, index=False)
    plot(frame, args.out / f"gpusim_{args.name or args.preset}.png", f"{config}\nhost: {host}")
    print(config)
    print(f"host: {host}")
    print(frame.drop(columns=["date", "config", "host"]).to_string(index=False))
    shutil.rmtree(work, ignore_errors=True)
    if (frame.check != "ok").any():
        sys.exit("some outputs differ from the CPU operator's (column check)")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
