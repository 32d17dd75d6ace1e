"""The emulation of CUDA's execution model (tests/cuda_emulation/cuda_emulation.h) against
the CUDA programming guide's definitions, with kernels of known answers
(tests/cuda_emulation/harness_check.cpp): the warp intrinsics over segments, partial warps
and partial masks; barriers that part of a block misses or waits at elsewhere fail the launch;
shared memory starts as NaN; blocks run in index order or shuffled."""

from __future__ import annotations

import ctypes
import math

import pytest
import torch

from emulated_cuda import build, compiler

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler on this machine")
FULL = 0xFFFFFFFF


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    lib = ctypes.CDLL(
        str(
            build(
                tmp_path_factory.mktemp("harness") / "check.so", ["harness_check.cpp"], shared=True
            )
        )
    )
    lib.emu_error.restype = ctypes.c_char_p
    return lib


def expected_warp_results(threads, mask, delta, width):
    """What CUDA's guide says each lane gets, v = 100 t at thread t, -1 where none."""
    out = torch.full((threads, 5), -1, dtype=torch.int32)
    for t in range(threads):
        lane, base = t % 32, t - t % 32
        if not mask >> lane & 1:
            continue
        seg = lane // width * width
        up = lane - delta if lane % width >= delta else lane
        down = lane + delta if lane % width + delta < width else lane
        xor = lane ^ delta if (lane ^ delta) // width <= lane // width else lane
        votes = sum(
            1 << i
            for i in range(32)
            if mask >> i & 1 and (base + i) % 3 == 0 and base + i < threads
        )
        sources = (seg + delta % width, up, down, xor)
        out[t] = torch.tensor(
            [100 * (base + s) for s in sources] + [votes - (1 << 32 if votes >= 1 << 31 else 0)]
        )
    return out


@pytest.mark.parametrize(
    "threads, mask, delta, width",
    [
        pytest.param(64, FULL, 1, 32, id="full warps"),
        pytest.param(64, FULL, 3, 8, id="segments of 8"),
        pytest.param(40, 0xFF, 2, 8, id="a partial warp, its 8 lanes named"),
        pytest.param(64, 0x0000FFFF, 5, 16, id="half of each warp"),
        pytest.param(64, FULL, 31, 32, id="delta 31"),
    ],
)
def test_warp_intrinsics(harness, threads, mask, delta, width):
    out = torch.full((threads, 5), -1, dtype=torch.int32)
    assert (
        harness.emu_warp_intrinsics(
            threads, ctypes.c_uint(mask), delta, width, ctypes.c_void_p(out.data_ptr())
        )
        == 0
    ), harness.emu_error()
    assert torch.equal(out, expected_warp_results(threads, mask, delta, width))


@pytest.mark.parametrize(
    "threads, mask, delta, width, error",
    [
        pytest.param(
            32,
            0xFF,
            9,
            32,
            "source lane 9 is not in the warp intrinsic's mask",
            id="reading a lane outside the mask",
        ),
        pytest.param(
            40, FULL, 1, 32, "past the block's last thread", id="a full mask on a partial warp"
        ),
    ],
)
def test_warp_intrinsic_misuse_fails_the_launch(harness, threads, mask, delta, width, error):
    out = torch.full((threads, 5), -1, dtype=torch.int32)
    assert (
        harness.emu_warp_intrinsics(
            threads, ctypes.c_uint(mask), delta, width, ctypes.c_void_p(out.data_ptr())
        )
        == 1
    )
    assert error in harness.emu_error().decode()


def rules(harness, which, split=0, threads=64, blocks=1, seed=-1):
    out = torch.full((max(blocks, 1),), -1.0)
    rc = harness.emu_rules(which, split, threads, blocks, seed, ctypes.c_void_p(out.data_ptr()))
    return rc, harness.emu_error().decode(), out


@pytest.mark.parametrize(
    "which, error",
    [
        (0, "wait at different __syncthreads"),
        (1, "reached by 40 of 64 threads; the others have exited"),
    ],
    ids=["two barriers", "exited threads"],
)
def test_barrier_misuse_fails_the_launch(harness, which, error):
    rc, message, _ = rules(harness, which, split=24)
    assert rc == 1 and error in message


def test_shared_memory_starts_as_nan(harness):
    rc, message, out = rules(harness, 2)
    assert rc == 0, message
    assert math.isnan(out[0])


def test_block_order(harness):
    _, _, in_order = rules(harness, 3, blocks=16)
    _, _, shuffled = rules(harness, 3, blocks=16, seed=3)
    assert in_order.tolist() == list(range(16))
    assert sorted(shuffled.tolist()) == list(range(16)) and shuffled.tolist() != list(range(16))
