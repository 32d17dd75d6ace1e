"""Plot a benchmark CSV of ``bench_eca.py``: time over roofline per shape and provider.

One panel per mode (rows) and per dtype and layout (columns); in each, every provider's p50
time over the roofline of the same case (log scale; 1.0, the dashed line, would be ideal).

    python benchmarks/plot_results.py benchmarks/results/eca_cpu.csv   # writes eca_cpu.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

STYLE = {  # provider -> (colour, marker)
    "eca_cuda": ("tab:blue", "o"),
    "operator": ("tab:cyan", "^"),
    "floor": ("tab:gray", "_"),
    "compiled": ("tab:orange", "s"),
    "reference": ("tab:red", "x"),
}


def plot_csv(csv_path, png_path) -> None:
    """Write ``png_path`` from the rows of ``csv_path`` (the columns of ``bench_eca.py``)."""
    df = pd.read_csv(csv_path)
    modes = list(dict.fromkeys(df["mode"]))
    panels = list(dict.fromkeys(zip(df["dtype"], df["memory_format"])))
    fig, axes = plt.subplots(
        len(modes),
        len(panels),
        figsize=(4.2 * len(panels), 3.2 * len(modes)),
        squeeze=False,
        sharey=True,
    )
    for i, mode in enumerate(modes):
        for j, (dtype, layout) in enumerate(panels):
            ax = axes[i][j]
            part = df[
                (df["mode"] == mode) & (df["dtype"] == dtype) & (df["memory_format"] == layout)
            ]
            shapes = list(dict.fromkeys(part["shape"]))
            for provider in [p for p in STYLE if p in set(part["provider"])]:
                rows = part[part["provider"] == provider].set_index("shape").reindex(shapes)
                colour, marker = STYLE[provider]
                ax.plot(
                    range(len(shapes)),
                    rows["x_roofline"],
                    marker=marker,
                    color=colour,
                    linewidth=0.8,
                    markersize=5,
                    label=provider,
                )
            ax.axhline(1.0, color="black", linestyle="--", linewidth=0.7)
            ax.set_yscale("log")
            ax.set_xticks(range(len(shapes)), shapes, rotation=70, fontsize=6)
            ax.set_title(f"{mode}, {dtype}, {layout}", fontsize=9)
            if j == 0:
                ax.set_ylabel("p50 time / roofline time")
    axes[0][0].legend(fontsize=7)
    meta = df.iloc[0]
    fig.suptitle(
        f"eca_cuda benchmark: {meta['device']}\n"
        f"torch {meta['torch']}, git {meta['git_sha']}, {meta['timestamp']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    print(f"wrote {png_path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="a CSV written by bench_eca.py")
    parser.add_argument("--out", type=Path, help="the PNG (default: the CSV's name, .png)")
    args = parser.parse_args(argv)
    plot_csv(args.csv, args.out or args.csv.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
