"""Model-level benchmark: a timm ECA-ResNet's step time as it is, converted by
``eca_cuda.convert_eca`` (fused block tails), each eager and under ``torch.compile``, beside the
same model with its ECA layers replaced by identities (the floor: ECA costing nothing).

    python benchmarks/bench_models.py            # quick: ecaresnet50d inference, float32
    python benchmarks/bench_models.py --preset cpu   # ecaresnet50d and ecaresnet26t, N = 8:
                                                    # inference 224 px, training 160 px,
                                                    # float32 and bfloat16 autocast
    python benchmarks/bench_models.py --preset gpu   # N = 128, 224 px, bfloat16

Cases run channels_last. ``inference`` is ``model(x)`` in eval mode under ``no_grad``;
``train`` is one training step (forward, cross-entropy, backward, SGD step). Writes
``models_<device>.csv`` (the layer benchmark's schema: provider, mode, model, shape, dtype,
p20/p50/p80 ms, speedups, the run's metadata) and, through ``report_models.py``, the Markdown
table and the plot.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys

import pandas as pd
import timm
import torch
from harness import add_timing_args, quantiles, run_metadata, time_rounds
from report_models import summary_table, write_report
from torch import nn
from tqdm import tqdm

import eca_cuda

PROVIDERS = (
    "timm",
    "converted",
    "timm_compiled",
    "converted_compiled",
    "identity",
    "identity_compiled",
)
# (device, preset) -> cases (model, mode, N, resolution, dtype)
PRESETS = {
    ("cpu", "quick"): [("ecaresnet50d", "inference", 8, 224, torch.float32)],
    ("cpu", "cpu"): [
        (model, mode, 8, 224 if mode == "inference" else 160, dtype)
        for model in ("ecaresnet50d", "ecaresnet26t")
        for mode in ("inference", "train")
        for dtype in (torch.float32, torch.bfloat16)
    ],
    ("cuda", "quick"): [("ecaresnet50d", "train", 128, 224, torch.bfloat16)],
    ("cuda", "gpu"): [
        (model, mode, 128, 224, torch.bfloat16)
        for model in ("ecaresnet50d", "ecaresnet26t")
        for mode in ("inference", "train")
    ],
}


def without_eca(model: nn.Module) -> nn.Module:
    """``model`` with every ECA layer (timm's or eca_cuda's) replaced by an identity."""
    for name, child in list(model.named_children()):
        if isinstance(child, (timm.layers.EcaModule, timm.layers.CecaModule, eca_cuda.ECA)):
            setattr(model, name, nn.Identity())
        else:
            without_eca(child)
    return model


def make_step(model: nn.Module, mode: str, x: torch.Tensor, dtype: torch.dtype):
    """One inference call or one training step of ``model`` (already compiled or not)."""
    device = x.device.type
    autocast = torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32)
    if mode == "inference":

        def inference():
            with torch.no_grad(), autocast:
                return model(x)

        return inference
    target = torch.randint(0, 1000, (x.shape[0],), generator=torch.Generator().manual_seed(0))
    target = target.to(x.device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def train():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()

    return train


def run_case(case, device, providers, rounds, min_run_time):
    model_name, mode, N, size, dtype = case
    torch.manual_seed(0)
    base = timm.create_model(model_name, pretrained=False).to(device)
    base = base.to(memory_format=torch.channels_last).train(mode == "train")
    variants = {
        "timm": base,
        "converted": eca_cuda.convert_eca(copy.deepcopy(base)),
        "identity": without_eca(copy.deepcopy(base)),
    }
    x = torch.randn(N, 3, size, size, device=device).to(memory_format=torch.channels_last)
    torch._dynamo.reset()
    steps = {}
    for provider in providers:
        model = variants[provider.removesuffix("_compiled")]
        if provider.endswith("_compiled"):
            # Each provider its own copy: the compiled and eager steps must not share
            # optimizer state or parameters' grads.
            model = torch.compile(copy.deepcopy(model))
        elif mode == "train":
            model = copy.deepcopy(model)
        steps[provider] = make_step(model, mode, x, dtype)
    times = time_rounds(steps, rounds, min_run_time)
    p50 = {name: statistics.median(t) for name, t in times.items()}
    rows = []
    for provider in providers:
        p20, median, p80 = quantiles(times[provider])
        rows.append(
            {
                "provider": provider,
                "mode": mode,
                "model": model_name,
                "shape": f"{N}x3x{size}x{size}",
                "N": N,
                "H": size,
                "W": size,
                "dtype": str(dtype).replace("torch.", ""),
                "memory_format": "channels_last",
                "p20_ms": p20 * 1e3,
                "p50_ms": median * 1e3,
                "p80_ms": p80 * 1e3,
                "speedup_vs_eager": p50["timm"] / median if "timm" in p50 else float("nan"),
                "speedup_vs_compiled": (
                    p50["timm_compiled"] / median if "timm_compiled" in p50 else float("nan")
                ),
            }
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=["quick", "cpu", "gpu"], default="quick")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--model", help="only this model's cases")
    parser.add_argument(
        "--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS), help="what to time"
    )
    add_timing_args(parser)
    parser.set_defaults(min_run_time=1.0)
    args = parser.parse_args(argv)
    key = (args.device, args.preset)
    if key not in PRESETS:
        raise SystemExit(f"no preset {args.preset!r} for {args.device}")
    cases = [c for c in PRESETS[key] if args.model in (None, c[0])]

    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    meta = run_metadata(args.device)
    meta["command"] = " ".join(
        ["benchmarks/bench_models.py", *(argv if argv is not None else sys.argv[1:])]
    )
    print(f"eca_cuda model benchmark: {len(cases)} cases; providers {', '.join(args.providers)}")
    print(", ".join(f"{k} {v}" for k, v in meta.items()))
    print(eca_cuda.build_info.summary())
    rows = []
    for case in tqdm(cases, desc="cases", unit="case"):
        case_rows = run_case(case, args.device, args.providers, args.rounds, args.min_run_time)
        rows += [{**r, **meta} for r in case_rows]
        tqdm.write(
            f"{case[0]} {case[1]} N={case[2]} {case[3]}px {case[4]}: "
            + ", ".join(f"{r['provider']} {r['p50_ms']:.1f} ms" for r in case_rows)
        )
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\n{summary_table(df).to_string(index=False)}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = args.out_dir / f"models_{args.device}.csv"
    df.to_csv(csv_path, index=False)
    print(f"wrote {csv_path}")
    write_report(csv_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
