"""The table and the plot of a model benchmark CSV written by ``bench_models.py``.

    python benchmarks/report_models.py benchmarks/results/models_cpu.csv  # writes .md, .png

Per case (model, mode, dtype): each provider's p50 step time, the converted model's speedup
over timm's (eager over eager, compiled over compiled), and the share of ECA's cost the
conversion removed, ``(t_timm - t_converted) / (t_timm - t_identity)`` (1.0: ECA for free);
then the geometric means of the speedups per model. The plot shows every provider's step
time relative to timm eager, per case.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

META = ("device", "torch", "cuda", "git_sha", "timestamp", "command")
KEYS = ["model", "mode", "shape", "dtype"]
ORDER = (
    "timm",
    "converted",
    "identity",
    "timm_compiled",
    "converted_compiled",
    "identity_compiled",
)


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per case: p50 ms per provider, speedups and the share of ECA's cost removed."""
    table = df.pivot_table(index=KEYS, columns="provider", values="p50_ms", sort=False)
    out = table[[p for p in ORDER if p in table.columns]].add_suffix(" ms")
    for suffix, label in (("", "eager"), ("_compiled", "compiled")):
        timm, ours, floor = (table.get(p + suffix) for p in ("timm", "converted", "identity"))
        if timm is None or ours is None:
            continue
        out[f"speedup {label}"] = timm / ours
        if floor is not None:
            out[f"ECA cost removed {label}"] = (timm - ours) / (timm - floor)
    return out.reset_index()


def geomeans(summary: pd.DataFrame) -> pd.DataFrame:
    """Geometric means of the speedups over each model's cases."""
    columns = [c for c in summary.columns if c.startswith("speedup")]
    return summary.groupby("model", sort=False)[columns].agg(statistics.geometric_mean)


def plot(df: pd.DataFrame, path: Path) -> None:
    summary = df.pivot_table(index=KEYS, columns="provider", values="p50_ms", sort=False)
    providers = [p for p in ORDER if p in summary.columns]
    relative = summary[providers].div(summary["timm"], axis=0)
    labels = [f"{m}\n{mode} {dtype}" for m, mode, _, dtype in relative.index]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4.5))
    width = 0.8 / len(providers)
    for i, provider in enumerate(providers):
        xs = [j + (i - (len(providers) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, relative[provider], width, label=provider)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("step time / timm eager (lower is faster)")
    ax.set_title(f"{df.iloc[0]['device']}, torch {df.iloc[0]['torch']}", fontsize=9)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(csv_path: Path) -> None:
    df = pd.read_csv(csv_path)
    first = df.iloc[0]
    meta = "".join(f"- {key}: {first[key]}\n" for key in META if key in df.columns)
    summary = summary_table(df)
    text = (
        f"# eca_cuda model benchmark\n\n{meta}\n"
        f"## Geometric means of the speedups\n\n{geomeans(summary).to_markdown(floatfmt='.2f')}\n\n"
        f"## Cases (p50)\n\n{summary.to_markdown(index=False, floatfmt='.3g')}\n"
    )
    csv_path.with_suffix(".md").write_text(text)
    plot(df, csv_path.with_suffix(".png"))
    print(f"wrote {csv_path.with_suffix('.md')} and {csv_path.with_suffix('.png')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    write_report(parser.parse_args(argv).csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
