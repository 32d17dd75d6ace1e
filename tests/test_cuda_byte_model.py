"""benchmarks/cuda_byte_model.py, the byte counts behind the CUDA kernels' design and their
predicted times: each count against its formula, and each tile against the constraints the
design states (it fits its shared-memory budget, holds at least its halo, keeps the SMs busy)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cuda_byte_model as model  # noqa: E402

SHAPES = pd.read_csv(model.HERE / "eca_layer_shapes.csv", comment="#")


def test_fallback_schedule_is_three_and_four_passes():
    """conv2_x of ECA-ResNet-50 at N = 32 in bfloat16: 51.4 MB a pass, so 3 passes at 4.3 TB/s
    take 35.8 us and 2 (the copy) 23.9 us."""
    shapes = pd.DataFrame([{"C": 256, "H": 56, "W": 56, "k": 3, "count": 3}])
    table = model.model_table(shapes, 32, 2, model.H200, residual=False)
    fallback = table[table.schedule.str.startswith("three")].iloc[0]
    pass_bytes = 32 * 256 * 56 * 56 * 2
    assert fallback["MB per pass"] == pytest.approx(pass_bytes / 1e6)
    assert fallback["forward us"] == pytest.approx(3 * pass_bytes / 4.3e12 * 1e6)
    assert fallback["forward us"] == pytest.approx(35.8, abs=0.05)
    assert fallback["backward passes"] == 4 and fallback["forward / copy"] == 1.5


@pytest.mark.parametrize("itemsize", [2, 4])
@pytest.mark.parametrize("N", [1, 8, 32, 128])
def test_tiles_fit_hold_their_halo_and_fill_the_sms(N, itemsize):
    for layer in SHAPES.itertuples():
        C, L, pad = layer.C, layer.H * layer.W, (layer.k - 1) // 2
        T = model.tile_channels(C, L, itemsize, pad, N, model.H200)
        if not T:
            continue
        assert model.tile_bytes(T, C, L, itemsize, pad) <= model.TILE_BUDGET
        assert T == C or (4 * pad < T and T + 2 * pad <= C)
        if N * -(-C // T) < 2 * model.H200.sms:
            # too few blocks only where no narrower tile is allowed
            below = 1 << (C - 1).bit_length() - 1 if C > 1 else 0
            narrower = below if T == C else T // 2
            assert narrower < 1 or 4 * pad >= narrower or narrower + 2 * pad > C


@pytest.mark.parametrize("residual", [False, True])
def test_single_pass_schedules_move_fewer_bytes(residual):
    for layer in SHAPES.itertuples():
        rows = model.schedules(layer.C, layer.H * layer.W, layer.k, 2, 32, model.H200, residual)
        fallback, others = rows[0], rows[1:]
        for s in others:
            assert s["forward"] < fallback["forward"] and s["backward"] < fallback["backward"]
            assert s["forward"] >= 2 + residual  # at least read x (and r) and write y
            # the tail backward reads g, out and x and writes dx and the residual's gradient
            assert s["backward"] >= 3 + 2 * residual


def test_script_prints_both_dtypes(capsys):
    assert model.main(["--N", "1", "--model", "ECA-MobileNetV2 (official k13)"]) == 0
    out = capsys.readouterr().out
    assert "bfloat16" in out and "float32" in out and "predictions" in out
