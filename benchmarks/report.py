"""The tables and the plot of a benchmark CSV written by ``bench_eca.py``.

    python benchmarks/report.py benchmarks/results/eca_cpu.csv   # writes eca_cpu.md, .png

The Markdown has the run's metadata (from the CSV's columns), the geometric means of the p50
ratios per dtype, layout and mode, and every case. The plot has one panel per mode (rows) and
per dtype and layout (columns); in each, every provider's p50 time over the roofline of the
same case, per shape (log scale; 1.0, the dashed line, would be ideal).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PROVIDERS = ("eca_cuda", "operator", "fallback", "floor", "compiled", "reference")
STYLE = {  # provider -> (colour, marker)
    "eca_cuda": ("tab:blue", "o"),
    "operator": ("tab:cyan", "^"),
    "fallback": ("tab:purple", "v"),
    "floor": ("tab:gray", "_"),
    "compiled": ("tab:orange", "s"),
    "reference": ("tab:red", "x"),
}
META = ("device", "torch", "cuda", "git_sha", "timestamp", "GLIBC_TUNABLES", "command")
GROUP = ["dtype", "memory_format", "mode"]


def geomean(values) -> float:
    values = list(values)
    return statistics.geometric_mean(values) if values else float("nan")


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Geometric means of the p50 ratios per dtype, layout and mode: eca_cuda against eager,
    compiled and the roofline (per batch size N), and the operator's, the multi-launch
    fallback's and the floor's roofline ratios."""
    columns = {}
    ours = df[df.provider == "eca_cuda"]
    for column, name in (("speedup_vs_eager", "x eager"), ("speedup_vs_compiled", "x compiled")):
        columns[name] = ours.groupby(GROUP, sort=False)[column].agg(geomean)
    for n in sorted(ours.N.unique()):
        batch = ours[ours.N == n].groupby(GROUP, sort=False)
        columns[f"x roofline N={n}"] = batch.x_roofline.agg(geomean)
    for provider in ("operator", "fallback", "floor"):
        theirs = df[df.provider == provider]
        if len(theirs):
            theirs = theirs.groupby(GROUP, sort=False)
            columns[f"{provider} x roofline"] = theirs.x_roofline.agg(geomean)
    return pd.DataFrame(columns).reset_index()


def cases_table(df: pd.DataFrame) -> pd.DataFrame:
    """p50 (ms) of every provider per case and mode, with the roofline and eca_cuda's ratios."""
    keys = ["shape", "k", "dtype", "memory_format", "mode"]
    table = df.pivot_table(index=keys, columns="provider", values="p50_ms", sort=False)
    table = table[[p for p in PROVIDERS if p in table.columns]].add_suffix(" ms")
    ours = df[df.provider == "eca_cuda"].set_index(keys)
    for column in ("roofline_ms", "x_roofline", "speedup_vs_eager", "speedup_vs_compiled"):
        if len(ours):
            table[column] = ours[column]
    return table.reset_index()


def markdown(df: pd.DataFrame, title: str) -> str:
    """The run's metadata, then both tables, as one Markdown document."""
    first = df.iloc[0]
    meta = "".join(f"- {key}: {first[key]}\n" for key in META if key in df.columns)
    summary = summary_table(df).to_markdown(index=False, floatfmt=".2f")
    cases = cases_table(df).to_markdown(index=False, floatfmt=".4g")
    return (
        f"# {title}\n\n{meta}\n## Geometric means of the p50 ratios\n\n{summary}\n\n"
        f"## All cases (p50)\n\n{cases}\n"
    )


def plot(df: pd.DataFrame, png_path) -> None:
    """Time over roofline per shape and provider, one panel per mode, dtype and layout."""
    modes = list(dict.fromkeys(df["mode"]))
    panels = list(dict.fromkeys(zip(df["dtype"], df["memory_format"])))
    fig, axes = plt.subplots(
        len(modes),
        len(panels),
        figsize=(4.2 * len(panels), 3.2 * len(modes) + 0.6),
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
    first = df.iloc[0]
    fig.suptitle(
        f"eca_cuda benchmark: {first['device']}\n"
        f"torch {first['torch']}, git {first['git_sha']}, {first['timestamp']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def write_report(csv_path: Path, title: str | None = None) -> None:
    """Write ``csv_path``'s tables (``.md``) and plot (``.png``) beside it."""
    df = pd.read_csv(csv_path)
    title = title or f"eca_cuda benchmark: {Path(csv_path).stem}"
    Path(csv_path).with_suffix(".md").write_text(markdown(df, title))
    plot(df, Path(csv_path).with_suffix(".png"))
    print(f"wrote {Path(csv_path).with_suffix('.md')} and {Path(csv_path).with_suffix('.png')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="a CSV written by bench_eca.py")
    parser.add_argument("--title", help="the Markdown's heading")
    args = parser.parse_args(argv)
    write_report(args.csv, args.title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
