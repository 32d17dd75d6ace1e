"""The CUDA kernels, through every launch the extension makes, run on the CPU by the emulation
in tests/cuda_emulation/ (the kernels' own source on host stand-ins for CUDA's built-ins), so
that CI checks them without a GPU: against the float64 reference and the CPU operator, and bit
for bit across layouts, grids and block orders. This checks the source's logic (indices,
orders, synchronisation), not the code nvcc makes of it: tests marked needs_cuda do that."""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

import pytest
import torch

import eca_cuda
from emulated_cuda import CSRC, MAX_BLOCKS, Emulation, build, compiler
from helpers import (
    assert_close_to_cpu,
    assert_close_to_reference,
    forward_backward,
    make_inputs,
    reference_float64,
)

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler on this machine")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# (shape, k): each there for a reason.
CASES = [
    pytest.param((2, 16, 5, 5), 1, id="k=1"),
    pytest.param((2, 16, 5, 5), 3, id="k=3"),
    pytest.param((2, 16, 5, 5), 5, id="k=5"),
    pytest.param((2, 16, 5, 5), 9, id="k=9"),
    pytest.param((2, 3, 4, 4), 5, id="k>C"),
    pytest.param((3, 1, 3, 3), 3, id="C=1"),
    pytest.param((2, 37, 3, 5), 3, id="C=37 (no multiple of a tile or a pack)"),
    pytest.param((3, 100, 3, 3), 5, id="N*C=300 (over a block of threads)"),
    pytest.param((2, 12, 7, 7), 3, id="7x7"),
    pytest.param((3, 40, 1, 1), 3, id="L=1"),
    pytest.param((2, 8, 0, 4), 3, id="L=0"),
    pytest.param((0, 8, 4, 4), 3, id="N=0"),
    pytest.param((1, 4, 90, 100), 3, id="L=9000 (3 chunks)"),
]
# (max_blocks, shuffle seed): every grid gives the same bits. One block makes every
# grid-stride loop wrap where there is more than a block of work.
GRIDS = {"full grid": (MAX_BLOCKS, -1), "shuffled blocks": (MAX_BLOCKS, 7), "one block": (1, -1)}


@pytest.fixture(scope="module")
def emulation(tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda_emulation") / "launcher.so"
    return Emulation(build(out, ["launcher.cpp"], shared=True))


def emulated(emulation, x, weight, grad_y, padding_mode, channels_last, grid, offset=0):
    """(y, pooled, gate, grad_x, grad_weight) of the emulated CUDA op."""
    max_blocks, seed = GRIDS[grid]
    kw = dict(channels_last=channels_last, max_blocks=max_blocks, seed=seed, offset=offset)
    y, pooled, gate = emulation.forward(x, weight, padding_mode, **kw)
    grad_x, grad_w = emulation.backward(grad_y, x, weight, pooled, gate, padding_mode, **kw)
    return y, pooled, gate, grad_x, grad_w


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def assert_same_bits(a, b, what):
    for name, u, v in zip(("y", "pooled", "gate", "grad_x", "grad_weight"), a, b):
        assert torch.equal(bits(u), bits(v)), f"{name}: {what}"


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape, k", CASES)
def test_emulated_cuda_op(emulation, shape, k, dtype, padding_mode):
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x, weight, grad_y = make_inputs(shape, k, dtype, "cpu", "contiguous", weight_dtype=acc)
    runs = {
        (layout, grid): emulated(emulation, x, weight, grad_y, padding_mode, layout, grid)
        for layout in (False, True)
        for grid in GRIDS
    }
    first = runs[(False, "full grid")]
    for (layout, grid), run in runs.items():
        assert_same_bits(first, run, f"contiguous, full grid vs channels_last={layout}, {grid}")

    y, pooled, gate, grad_x, grad_w = first
    # The CPU operator: same math in other summation orders, so equal up to rounding.
    cpu_y, cpu_pooled, cpu_gate = torch.ops.eca_cuda.eca_forward(x, weight, padding_mode)
    cpu_grad_x, cpu_grad_w = torch.ops.eca_cuda.eca_backward(
        grad_y, x, weight, cpu_pooled, cpu_gate, padding_mode
    )
    pairs = zip(
        ("y", "pooled", "gate", "grad_x", "grad_weight"),
        (y, pooled, gate, grad_x, grad_w),
        (cpu_y, cpu_pooled, cpu_gate, cpu_grad_x, cpu_grad_w.reshape(-1)),
    )
    for name, ours, cpu in pairs:
        assert_close_to_cpu(ours, cpu, name)
    if math.prod(shape[2:]) == 1:  # a sum of one term: both orders give the term itself
        assert torch.equal(pooled, cpu_pooled)
    if math.prod(shape[2:]) == 0:  # the mean of nothing: NaN, as the reference's; nothing else
        assert pooled.isnan().all()
        return

    ref64 = reference_float64(x, weight, grad_y, padding_mode)
    ref_lowp = forward_backward(eca_cuda.reference.eca, x, weight, grad_y, padding_mode)
    for name, ours, *refs in zip(
        ("y", "grad_x", "grad_weight"), (y, grad_x, grad_w), ref64, ref_lowp
    ):
        assert_close_to_reference(ours.reshape(refs[0].shape), *refs, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_misaligned_buffers_take_the_element_kernel(emulation, dtype, channels_last):
    """Buffers one element off 16 bytes cannot be read in 16-byte packs: the launch plan falls
    back to one element a step, with the same bits."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x, weight, grad_y = make_inputs((2, 16, 6, 6), 3, dtype, "cpu", "contiguous", weight_dtype=acc)
    aligned = emulated(emulation, x, weight, grad_y, "zeros", channels_last, "full grid")
    before = emulation.launched()
    off = emulated(emulation, x, weight, grad_y, "zeros", channels_last, "full grid", offset=1)
    assert_same_bits(aligned, off, "aligned vs misaligned buffers")
    assert "scale_shift_kernel" in emulation.launched()
    assert before <= emulation.launched()


def test_every_cuda_kernel_is_emulated(tmp_path):
    """Each __global__ function of csrc/cuda/ is launched by the emulated op (both layouts,
    packed and element-wise rescale), and the launch plan names no kernel that is not there."""
    emulation = Emulation(build(tmp_path / "launcher.so", ["launcher.cpp"], shared=True))
    for shape, channels_last in [
        ((2, 16, 5, 5), False),
        ((2, 16, 5, 5), True),
        ((1, 3, 1, 1), False),
        ((2, 2100, 1, 1), False),  # two chunks of the weight gradient
    ]:
        x, weight, grad_y = make_inputs(shape, 3, torch.float32, "cpu", "contiguous")
        emulated(emulation, x, weight, grad_y, "zeros", channels_last, "full grid")
        # and through the single-pass kernels
        _, pooled, gate = emulation.tail_forward(
            x, weight, None, 1.0, None, "none", "zeros", channels_last, tile_budget=1 << 16
        )
        emulation.backward(
            grad_y, x, weight, pooled, gate, "zeros", channels_last, tile_budget=1 << 16
        )
        # and the ReLU tail's mask before the multi-launch backward
        emulation.backward(grad_y, x, weight, pooled, gate, "zeros", channels_last, relu_out=x)
    source = "\n".join(p.read_text() for p in sorted((CSRC / "cuda").glob("*.cu*")))
    kernels = set(
        re.findall(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)", source)
    )
    assert len(kernels) == 12, kernels
    assert emulation.launched() == kernels


TAILS = {
    "residual + relu": dict(residual=True, scale=1.0, gain=None, activation="relu"),
    "residual, scale (NormFreeBlock)": dict(residual=True, scale=0.4, gain=None, activation="none"),
    "gain, relu, no residual": dict(residual=False, scale=2.0, gain=0.3, activation="relu"),
}


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "shape", [(2, 16, 5, 5), (2, 37, 3, 5), (3, 40, 1, 1), (2, 12, 7, 7)], ids=str
)
def test_emulated_cuda_tail(emulation, shape, dtype, tail):
    """eca_tail_forward's CUDA launches (the gate kernel's multiplier, the rescale's residual
    and ReLU, packed and element by element): the same bits for every layout, grid and
    alignment, and the CPU operator's values up to rounding."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x, weight, _ = make_inputs(shape, 3, dtype, "cpu", "contiguous", weight_dtype=acc)
    residual = torch.randn(shape).to(dtype) if TAILS[tail]["residual"] else None
    gain = None if TAILS[tail]["gain"] is None else torch.tensor(TAILS[tail]["gain"], dtype=acc)
    args = (x, weight, residual, TAILS[tail]["scale"], gain, TAILS[tail]["activation"], "zeros")
    runs = {
        (layout, grid, offset): emulation.tail_forward(
            *args, layout, max_blocks=GRIDS[grid][0], seed=GRIDS[grid][1], offset=offset
        )
        for layout in (False, True)
        for grid in GRIDS
        for offset in (0, 1)
    }
    first = runs[(False, "full grid", 0)]
    for key, run in runs.items():
        for name, u, v in zip(("out", "pooled", "gate"), first, run):
            assert torch.equal(bits(u), bits(v)), f"{name}: contiguous, full grid vs {key}"
    cpu = torch.ops.eca_cuda.eca_tail_forward(*args)
    for name, ours, theirs in zip(("y", "pooled", "gate"), first, cpu):
        assert_close_to_cpu(ours, theirs, name)
    if TAILS[tail]["activation"] == "relu":
        assert (first[0] >= 0).all()


def test_emulated_cuda_tail_without_a_tail_is_the_plain_forward(emulation):
    x, weight, _ = make_inputs((2, 16, 5, 5), 3, torch.float32, "cpu", "contiguous")
    plain = emulation.forward(x, weight, "zeros", False)
    tail = emulation.tail_forward(x, weight, None, 1.0, None, "none", "zeros", False)
    for u, v in zip(plain, tail):
        assert torch.equal(bits(u), bits(v))


# The single-pass kernels (csrc/cuda/eca_tile.cuh): tile budgets that give narrow tiles with
# halos (and partial last tiles) or whole samples, on a GPU of 1 or 132 SMs.
TILE_PLANS = {"narrow tiles": (3000, 1), "whole samples": (1 << 17, 1), "132 SMs": (1 << 17, 132)}


@pytest.mark.parametrize("plan", TILE_PLANS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape, k", CASES)
def test_single_pass_forward_gives_the_three_launch_bits(emulation, shape, k, dtype, plan):
    """One launch, the tile in shared memory: the same bits as the three launches (out,
    pooled, gate), for every tail, both layouts and padding modes, aligned (16-byte packs) and
    misaligned (one element a step), on a full grid or one block."""
    budget, sms = TILE_PLANS[plan]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x, weight, _ = make_inputs(shape, k, dtype, "cpu", "contiguous", weight_dtype=acc)
    residual = torch.randn(shape).to(dtype)
    for tail in ("none", *TAILS):
        spec = TAILS.get(tail, dict(residual=False, scale=1.0, gain=None, activation="none"))
        gain = None if spec["gain"] is None else torch.tensor(spec["gain"], dtype=acc)
        res = residual if spec["residual"] else None
        for layout, padding_mode in [(False, "zeros"), (True, "circular"), (True, "zeros")]:
            args = (x, weight, res, spec["scale"], gain, spec["activation"], padding_mode, layout)
            three = emulation.tail_forward(*args)
            for offset, grid in [(0, "full grid"), (1, "one block"), (0, "shuffled blocks")]:
                max_blocks, seed = GRIDS[grid]
                one = emulation.tail_forward(
                    *args,
                    max_blocks=max_blocks,
                    seed=seed,
                    offset=offset,
                    tile_budget=budget,
                    sms=sms,
                )
                for name, u, v in zip(("out", "pooled", "gate"), three, one):
                    assert torch.equal(bits(u), bits(v)), (
                        f"{name}: {tail}, channels_last={layout}, {padding_mode}, "
                        f"offset {offset}, {grid}"
                    )


@pytest.mark.parametrize("plan", TILE_PLANS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape, k", CASES)
def test_single_pass_backward_gives_the_five_launch_bits(emulation, shape, k, dtype, plan):
    """Two launches, g's tile in shared memory: the same bits as the five launches (grad_x,
    grad_weight), both layouts and padding modes, aligned and misaligned, on every grid."""
    budget, sms = TILE_PLANS[plan]
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x, weight, grad_y = make_inputs(shape, k, dtype, "cpu", "contiguous", weight_dtype=acc)
    for layout, padding_mode in [(False, "zeros"), (True, "circular"), (True, "zeros")]:
        _, pooled, gate = emulation.forward(x, weight, padding_mode, layout)
        args = (grad_y, x, weight, pooled, gate, padding_mode, layout)
        five = emulation.backward(*args)
        for offset, grid in [(0, "full grid"), (1, "one block"), (0, "shuffled blocks")]:
            max_blocks, seed = GRIDS[grid]
            two = emulation.backward(
                *args, max_blocks=max_blocks, seed=seed, offset=offset, tile_budget=budget, sms=sms
            )
            for name, u, v in zip(("grad_x", "grad_weight"), five, two):
                assert torch.equal(bits(u), bits(v)), (
                    f"{name}: channels_last={layout}, {padding_mode}, offset {offset}, {grid}"
                )


@pytest.mark.parametrize("plan", ["multi-launch", *TILE_PLANS])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape, k", CASES)
def test_relu_tail_backward_is_the_mask_then_the_backward(emulation, shape, k, dtype, plan):
    """Under the ReLU tail (relu_out given), the backward masks grad_out where out <= 0, as
    ATen's threshold_backward, writes that as the residual's gradient, and gives the plain
    backward's bits for the masked gradient: in the single-pass kernel (masked as g's tile
    loads, the halo as it is read) and in the multi-launch plan (a mask launch first), both
    layouts and padding modes, aligned and not, on every grid."""
    budget, sms = TILE_PLANS.get(plan, (0, 1))
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x, weight, grad_out = make_inputs(shape, k, dtype, "cpu", "contiguous", weight_dtype=acc)
    residual = torch.randn(shape).to(dtype)
    for layout, padding_mode in [(False, "zeros"), (True, "circular"), (True, "zeros")]:
        out, pooled, gate = emulation.tail_forward(
            x, weight, residual, 1.0, None, "relu", padding_mode, layout
        )
        grad_pre = torch.ops.aten.threshold_backward(grad_out, out, 0)
        expected = (*emulation.backward(grad_pre, x, weight, pooled, gate, padding_mode, layout),)
        for offset, grid in [(0, "full grid"), (1, "one block"), (0, "shuffled blocks")]:
            max_blocks, seed = GRIDS[grid]
            ours = emulation.backward(
                grad_out,
                x,
                weight,
                pooled,
                gate,
                padding_mode,
                layout,
                max_blocks=max_blocks,
                seed=seed,
                offset=offset,
                tile_budget=budget,
                sms=sms,
                relu_out=out,
            )
            for name, u, v in zip(
                ("grad_x", "grad_weight", "grad_pre"), ours, (*expected, grad_pre)
            ):
                assert torch.equal(bits(u), bits(v)), (
                    f"{name}: channels_last={layout}, {padding_mode}, offset {offset}, {grid}"
                )


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_weight_gradient_in_chunks(emulation, dtype, padding_mode):
    """N * C = 4500 rows: the weight gradient's two stages (chunk sums, then their sum) give
    the same bits on every grid and plan, and the CPU operator's values up to rounding."""
    x, weight, grad_y = make_inputs(
        (3, 1500, 1, 1), 3, dtype, "cpu", "contiguous", weight_dtype=dtype
    )
    _, pooled, gate = emulation.forward(x, weight, padding_mode, False)
    args = (grad_y, x, weight, pooled, gate, padding_mode)
    first = emulation.backward(*args, False)[1]
    for layout, grid, budget in [(True, "one block", 0), (False, "shuffled blocks", 1 << 16)]:
        max_blocks, seed = GRIDS[grid]
        run = emulation.backward(
            *args, layout, max_blocks=max_blocks, seed=seed, tile_budget=budget
        )
        assert torch.equal(bits(first), bits(run[1])), (layout, grid, budget)
    _, cpu_pooled, cpu_gate = torch.ops.eca_cuda.eca_forward(x, weight, padding_mode)
    cpu = torch.ops.eca_cuda.eca_backward(grad_y, x, weight, cpu_pooled, cpu_gate, padding_mode)
    assert_close_to_cpu(first, cpu[1].reshape(-1), "grad_weight")


def test_single_pass_cases_cover_every_kind_of_tile(emulation):
    """The cases above run whole samples, tiles with halos read from device memory (wrapped,
    for circular padding), partial last tiles, and channel counts on and off the 16-byte
    packs, in both dtypes of each size."""
    kinds = set()
    for param in CASES:
        shape, k = param.values
        N, C, L = shape[0], shape[1], math.prod(shape[2:])
        for budget, sms in TILE_PLANS.values():
            for dtype in (torch.float32, torch.bfloat16):
                T, _ = emulation.tile_channels(dtype, N, C, L, k, budget, sms)
                pack = 16 // dtype.itemsize
                if T:
                    kinds.add("whole" if T == C else "halo" if k > 1 else "no halo")
                    kinds.add("partial" if C % T else "even")
                    kinds.add(f"packs {dtype}" if T % pack == 0 and C % pack == 0 else "elements")
    expected = {"whole", "halo", "no halo", "partial", "even", "elements"}
    assert kinds >= expected | {"packs torch.float32", "packs torch.bfloat16"}, kinds


def byte_model():
    pytest.importorskip("pandas")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import cuda_byte_model

    return cuda_byte_model


def test_tile_budget_fits_a_block(emulation):
    """The tile budgets the extension computes from a device's shared memory are the byte
    model's: a block of the tile budget launches (the static arrays and the system's reserve
    besides), and two of the pair budget share an SM, on each GPU of the model: 60 / 28 KiB on
    a T4, 95 / 46 on an RTX 4090, 100 / 78 on an A100, 100 / 100 on an H100 and H200."""
    model = byte_model()
    budgets = {}
    for device in model.DEVICES:
        budget = emulation.tile_budget(device.optin_per_block)
        pair = emulation.pair_budget(device.shared_per_sm)
        assert (budget, pair) == (model.tile_budget(device), model.pair_budget(device))
        assert budget + model.TILE_OVERHEAD <= device.optin_per_block, device.name
        assert 2 * (pair + model.TILE_OVERHEAD) <= device.shared_per_sm, device.name
        budgets[device.name] = (budget // 1024, pair // 1024)
    assert budgets == {
        "T4": (60, 28),
        "A100": (100, 78),
        "RTX 4090": (95, 46),
        "H100 SXM": (100, 100),
        "H200": (100, 100),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("N", [1, 8, 32, 128])
def test_tile_plan_is_the_byte_models(emulation, N, dtype):
    """The channels per tile the launch plan picks for every ECA-ResNet-50 and
    ECA-MobileNetV2 layer on each GPU of the byte-count model (benchmarks/cuda_byte_model.py:
    T4, A100, RTX 4090, H100, H200, with their tile budgets and SMs) are those the model
    predicts with; each fits and holds its halo; two blocks of it share an SM wherever a tile
    of the pair budget fits, always on an H100 or H200."""
    model = byte_model()
    import pandas as pd

    shapes = pd.read_csv(model.HERE / "eca_layer_shapes.csv", comment="#")
    itemsize = torch.finfo(dtype).bits // 8
    for device in model.DEVICES:
        budget, pair = model.tile_budget(device), model.pair_budget(device)
        for layer in shapes.itertuples():
            L, pad = layer.H * layer.W, (layer.k - 1) // 2
            T, shared = emulation.tile_channels(
                dtype, N, layer.C, L, layer.k, budget, device.sms, pair_budget=pair
            )
            assert T == model.tile_channels(layer.C, L, itemsize, pad, N, device), layer
            if T:
                assert shared == model.tile_bytes(T, layer.C, L, itemsize, pad) <= budget
                per_sm = model.blocks_per_sm(T, layer.C, L, itemsize, pad, device)
                paired = model.tile_channels_within(layer.C, L, itemsize, pad, N, device, pair)
                assert per_sm == 2 or not paired, (device, layer)
                assert per_sm == 2 or device not in (model.H100, model.H200), (device, layer)
    # Every layer of ECA-ResNet-50 runs in one launch at the batch sizes of training, on H200.
    resnet = shapes[shapes.model == "ECA-ResNet-50 (official k3557)"]
    for layer in resnet.itertuples():
        T, _ = emulation.tile_channels(
            dtype, 32, layer.C, layer.H * layer.W, layer.k, model.TILE_BUDGET, model.H200.sms
        )
        assert T > 0, layer


def test_tile_plan_without_a_budget_keeps_three_launches(emulation):
    assert emulation.tile_channels(torch.float32, 8, 64, 49, 3, 0, 132) == (0, 0)
    # A channel larger than the budget: no tile.
    assert emulation.tile_channels(torch.float32, 8, 64, 10_000, 3, 3000, 1) == (0, 0)


def mobilenet_small_layers():
    """(C, H, W, k) of the ECA-MobileNetV2 layers of 7x7 and 14x14
    (benchmarks/eca_layer_shapes.csv)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "eca_layer_shapes.csv"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    rows = csv.DictReader(lines)
    return [
        (int(r["C"]), int(r["H"]), int(r["W"]), int(r["k"]))
        for r in rows
        if r["model"].startswith("ECA-MobileNetV2") and int(r["H"]) in (7, 14)
    ]


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layer", mobilenet_small_layers(), ids=str)
def test_small_tensors_replay_from_a_capture(emulation, layer, dtype, channels_last):
    """N = 1 on an H200's plan (132 SMs, the 100 KiB tile budget): the forward is one launch
    and the backward two. Captured as a CUDA graph records a stream (nothing runs) and replayed
    on new inputs written into the same buffers, they give the bits of a direct run on those
    inputs: no launch depends on anything the host read or kept between launches, or on the
    values it was captured with."""
    C, H, W, k = layer
    acc = torch.float32
    budget = 100 * 1024  # kTileBudget of csrc/cuda/eca_launch_args.h
    layout = "channels_last" if channels_last else "contiguous"
    x, weight, grad_y = make_inputs((1, C, H, W), k, dtype, "cpu", layout, weight_dtype=acc)
    plan = dict(tile_budget=budget, sms=132)
    tail = (None, 1.0, None, "none", "zeros", channels_last)

    def run():
        out, pooled, gate = emulation.tail_forward(x, weight, *tail, **plan)
        grad_x, grad_w = emulation.backward(
            grad_y, x, weight, pooled, gate, "zeros", channels_last, **plan
        )
        return out, pooled, gate, grad_x, grad_w

    with emulation.captured() as graph:
        captured = run()
    assert graph.launches() == ["tile_forward_kernel", "tile_backward_kernel", "weight_grad_kernel"]
    assert all(t.isnan().all() for t in captured), "a launch ran at capture"
    for seed in (1, 2):
        new_x, _, new_grad_y = make_inputs((1, C, H, W), k, dtype, "cpu", layout, seed=seed)
        x.copy_(new_x)
        grad_y.copy_(new_grad_y)
        graph.replay()
        direct = run()
        for name, u, v in zip(("out", "pooled", "gate", "grad_x", "grad_weight"), captured, direct):
            assert torch.equal(bits(u), bits(v)), f"{name}: replay {seed} vs a direct run"
