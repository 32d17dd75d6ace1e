"""Fingerprint the CPU kernels' bits over a sweep of cases, to show that a change of kernel
code that must not change arithmetic (a refactor, a new schedule) gives the same bits.

For each case (shape x dtype x layout x padding mode x 1 and 2 threads) it hashes ``y``,
``grad_x`` and ``grad_weight`` of ``eca_cuda.eca``, and checks within the run that
channels_last equals contiguous and 2 threads equal 1 (the kernels' promise). Run it with the
build before and after a change and compare the two files:

    python tests/bits_fingerprint.py before.json        # on the old build
    python tests/bits_fingerprint.py after.json         # on the new build
    python tests/bits_fingerprint.py --compare before.json after.json

Each instruction-set build has bits of its own; ``ATEN_CPU_CAPABILITY=avx2`` (or ``default``,
``avx512``) set before the run fingerprints a lower build. Not a pytest file: the whole sweep
takes about a minute, and its value is the comparison across builds.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys

import torch

import eca_cuda

# (N, C, H, W, k), chosen to reach every path: the contiguous row pipeline (short and
# multi-chunk rows, k > C), channels-last whole samples and groups, several row sub-chunks,
# channel blocks, narrow layers (C not a multiple of a vector) and the register column walk.
SHAPES = [
    (2, 8, 3, 3, 3),
    (1, 1, 1, 1, 3),
    (2, 3, 5, 5, 7),
    (3, 24, 7, 7, 3),
    (8, 160, 7, 7, 7),
    (8, 64, 14, 14, 5),
    (2, 96, 14, 14, 5),
    (8, 24, 56, 56, 3),
    (2, 16, 112, 112, 3),
    (4, 32, 28, 28, 3),
    (1, 1024, 14, 14, 5),
    (1, 2048, 7, 7, 7),
    (8, 2048, 7, 7, 7),
    (2, 512, 28, 28, 5),
    (1, 256, 56, 56, 3),
    (8, 256, 56, 56, 3),
    (3, 130, 33, 35, 5),
    (2, 300, 45, 1, 9),
    (2, 5, 1100, 1, 3),
    (1, 40, 2500, 1, 5),
    (5, 17, 23, 29, 11),
    (16, 320, 7, 7, 7),
    (2, 129, 24, 24, 5),
    (1, 1000, 1, 1, 5),
    (6, 33, 9, 9, 3),
]
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
LAYOUTS = ("contiguous", "channels_last")
PADDING_MODES = ("zeros", "circular")


def digest(t: torch.Tensor) -> str:
    data = t.detach().contiguous().view(torch.uint8).numpy().tobytes()
    return hashlib.sha1(data).hexdigest()[:16]


def fingerprint() -> dict[str, list[str]]:
    """``{case: [hash of y, of grad_x, of grad_weight]}`` over the sweep."""
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for shape, dtype, layout, mode in itertools.product(SHAPES, DTYPES, LAYOUTS, PADDING_MODES):
            N, C, H, W, k = shape
            gen = torch.Generator().manual_seed(N * 1000 + C + H + W + k)
            x = torch.randn(N, C, H, W, generator=gen) + torch.randn(1, C, 1, 1, generator=gen)
            weight = torch.randn(k, generator=gen).to(dtype).requires_grad_()
            grad_y = torch.randn(N, C, H, W, generator=gen).to(dtype)
            x = x.to(dtype)
            if layout == "channels_last":
                x, grad_y = (t.contiguous(memory_format=torch.channels_last) for t in (x, grad_y))
            x.requires_grad_()
            y = eca_cuda.eca(x, weight, mode)
            y.backward(grad_y)
            key = f"{threads} {N}x{C}x{H}x{W} k{k} {str(dtype)[6:]} {layout} {mode}"
            out[key] = [digest(y), digest(x.grad), digest(weight.grad)]
    return out


def promise_broken(prints: dict[str, list[str]]) -> list[str]:
    """Cases where channels_last differs from contiguous, or 2 threads from 1."""
    broken = []
    for key, value in prints.items():
        threads, rest = key.split(" ", 1)
        if (
            "channels_last" in rest
            and prints[f"{threads} {rest.replace('channels_last', 'contiguous')}"] != value
        ):
            broken.append(f"{key}: channels_last differs from contiguous")
        if threads == "2" and prints[f"1 {rest}"] != value:
            broken.append(f"{key}: 2 threads differ from 1")
    return broken


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", help="write the fingerprint here (JSON)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two files")
    args = parser.parse_args(argv)
    if args.compare:
        a, b = (json.load(open(path)) for path in args.compare)
        differ = sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))
        print(f"{len(a.keys() & b.keys()) - len(differ)} cases equal, {len(differ)} differ")
        print("\n".join(differ[:20]))
        return 1 if differ else 0
    if not args.out:
        parser.error("give an output file, or --compare A B")
    prints = fingerprint()
    broken = promise_broken(prints)
    with open(args.out, "w") as f:
        json.dump(prints, f, indent=0, sort_keys=True)
    print(f"{len(prints)} cases, CPU kernels {eca_cuda.cpu_capability()} -> {args.out}")
    print("\n".join(broken) or "channels_last == contiguous and 2 threads == 1 in every case")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
