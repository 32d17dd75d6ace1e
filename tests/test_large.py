"""More than 2^31 elements: float16 x of shape (1, 2, 2^30 + 3), so element offsets pass 2^31
in channel 1 and each channel mean is over 2^30 + 3 values; checked against closed-form
means, gates and gradients. Needs about 9 GiB free (host or GPU); skipped when less is free.
And more than 2^31 rows (N * C): x of shape (1, 2^31 + 6, 1), which needs 56 GiB free on the
host or 48 GiB on the GPU; the same check runs on 1000 rows everywhere."""

import math
import os

import pytest
import torch

import eca_cuda
from helpers import DEVICES

L = (1 << 30) + 3
LEVELS = (1.0, -2.0)  # channel c holds LEVELS[c] + sign * (l % 7) / 8 (exact in float16)
WEIGHT = (0.5, 1.0, -0.25)
NEEDED_BYTES = 9 << 30


def free_bytes(device):
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    try:  # MemAvailable counts the page cache the kernel can drop; "free" does not
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def make_x(device):
    x = torch.empty(1, 2, L, dtype=torch.float16, device=device)
    periods = L // 7
    pattern = torch.arange(7, device=device, dtype=torch.float16) / 8
    for c, level in enumerate(LEVELS):
        sign = 1.0 if level > 0 else -1.0
        x[0, c, : 7 * periods].view(periods, 7).copy_(level + sign * pattern)
        x[0, c, 7 * periods :] = level
    return x


def value(c, pos):
    sign = 1.0 if LEVELS[c] > 0 else -1.0
    return LEVELS[c] + (sign * (pos % 7) / 8 if pos < 7 * (L // 7) else 0.0)


def closed_form():
    """(pooled, gate, t = sum_l x^2) per channel, in float64 from the pattern."""
    periods, rest = divmod(L, 7)
    pooled, t = [], []
    for c, level in enumerate(LEVELS):
        period = [value(c, pos) for pos in range(7)]
        pooled.append((periods * sum(period) + rest * level) / L)
        t.append(periods * sum(v * v for v in period) + rest * level * level)
    z = [
        WEIGHT[1] * pooled[0] + WEIGHT[2] * pooled[1],
        WEIGHT[0] * pooled[0] + WEIGHT[1] * pooled[1],
    ]
    gate = [1 / (1 + math.exp(-v)) for v in z]
    return pooled, gate, t


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_more_than_2_31_elements(device):
    if free_bytes(device) < NEEDED_BYTES:
        pytest.skip(f"needs {NEEDED_BYTES >> 30} GiB free on {device}")
    pooled_ref, gate_ref, t_ref = closed_form()
    x = make_x(device)
    weight = torch.tensor(WEIGHT, device=device)
    y, pooled, gate = eca_cuda.ops.eca_forward(x, weight, "zeros")
    torch.testing.assert_close(
        pooled.cpu().double().view(-1),
        torch.tensor(pooled_ref, dtype=torch.float64),
        rtol=1e-6,
        atol=0,
    )
    torch.testing.assert_close(
        gate.cpu().double().view(-1), torch.tensor(gate_ref, dtype=torch.float64), rtol=1e-6, atol=0
    )
    positions = [
        0,
        1,
        2,
        L // 2,
        (1 << 31) - L - 1,
        L - 4,
        L - 1,
    ]  # the last ones past 2^31 in c = 1
    for c in range(2):
        got = y[0, c, positions].cpu().double()
        want = torch.tensor([value(c, pos) * gate_ref[c] for pos in positions], dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-3, atol=0)
    del y

    # Backward with grad_y = x (read twice, never written): t = sum x^2.
    grad_x, grad_weight = eca_cuda.ops.eca_backward(x, x, weight, pooled, gate, "zeros")
    dz = [t_ref[c] * gate_ref[c] * (1 - gate_ref[c]) for c in range(2)]
    dp = [WEIGHT[1] * dz[0] + WEIGHT[0] * dz[1], WEIGHT[2] * dz[0] + WEIGHT[1] * dz[1]]
    dw = [
        dz[1] * pooled_ref[0],
        dz[0] * pooled_ref[0] + dz[1] * pooled_ref[1],
        dz[0] * pooled_ref[1],
    ]
    torch.testing.assert_close(
        grad_weight.cpu().double(), torch.tensor(dw, dtype=torch.float64), rtol=1e-5, atol=0
    )
    for c in range(2):
        got = grad_x[0, c, positions].cpu().double()
        want = torch.tensor(
            [value(c, pos) * gate_ref[c] + dp[c] / L for pos in positions], dtype=torch.float64
        )
        torch.testing.assert_close(got, want, rtol=1e-3, atol=0)


ROWS = (1 << 31) + 6  # channels of one sample, L = 1: N * C rows past 2^31
ROWS_NEEDED_BYTES = {"cpu": 56 << 30, "cuda": 48 << 30}


def row_value(c):
    """x[0, c, 0] = pooled[c]: 1 + (c % 7) / 8 (exact in float16)."""
    return 1.0 + (c % 7) / 8


def check_rows(device, rows, grad_at):
    """x of shape (1, rows, 1), grad_y zero except 2.0 at the channels `grad_at`, so that the
    weight gradient is a sum of a few exact terms whatever the order of the zeros; means, gates,
    y, grad_x and grad_weight are checked against closed forms in float64."""
    x = torch.empty(1, rows, 1, dtype=torch.float16, device=device)
    periods = rows // 7
    pattern = torch.tensor([row_value(c) for c in range(7)], dtype=torch.float16, device=device)
    x[0, : 7 * periods, 0].view(periods, 7).copy_(pattern)
    for c in range(7 * periods, rows):
        x[0, c, 0] = row_value(c)
    weight = torch.tensor(WEIGHT, device=device)

    def gate(c):
        z = sum(w * row_value(c + j - 1) for j, w in enumerate(WEIGHT) if 0 <= c + j - 1 < rows)
        return 1 / (1 + math.exp(-z))

    y, pooled, gates = eca_cuda.ops.eca_forward(x, weight, "zeros")
    near = {c + d for c in grad_at for d in (-1, 0, 1)}
    checked = sorted({0, 1, rows // 2, *(c for c in near if 0 <= c < rows)})
    index = torch.tensor(checked, device=device)
    values = torch.tensor([row_value(c) for c in checked], dtype=torch.float64)
    want_gate = torch.tensor([gate(c) for c in checked], dtype=torch.float64)
    torch.testing.assert_close(pooled[0, index].cpu().double(), values, rtol=0, atol=0)
    torch.testing.assert_close(gates[0, index].cpu().double(), want_gate, rtol=1e-6, atol=0)
    got_y = y[0, index, 0].cpu().double()
    torch.testing.assert_close(got_y, values * want_gate, rtol=1e-3, atol=0)
    del y

    grad_y = torch.zeros_like(x)
    grad_y[0, torch.tensor(grad_at, device=device), 0] = 2.0
    grad_x, grad_weight = eca_cuda.ops.eca_backward(grad_y, x, weight, pooled, gates, "zeros")
    # L = 1: t = g x, dz = t s (1 - s), dp[c] = sum_j w[j] dz[c + 1 - j], grad_x = g s + dp.
    dz = {c: 2.0 * row_value(c) * gate(c) * (1 - gate(c)) for c in grad_at}
    dw = [
        sum(d * row_value(c + j - 1) for c, d in dz.items() if 0 <= c + j - 1 < rows)
        for j in range(3)
    ]
    torch.testing.assert_close(
        grad_weight.cpu().double(), torch.tensor(dw, dtype=torch.float64), rtol=1e-5, atol=0
    )
    want_grad_x = [
        (2.0 * gate(c) if c in dz else 0.0)
        + sum(w * dz.get(c + 1 - j, 0.0) for j, w in enumerate(WEIGHT))
        for c in checked
    ]
    torch.testing.assert_close(
        grad_x[0, index, 0].cpu().double(),
        torch.tensor(want_grad_x, dtype=torch.float64),
        rtol=1e-3,
        atol=1e-6,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_rows_closed_form(device):
    """check_rows at a small size, so its closed forms are checked wherever the suite runs."""
    check_rows(device, 1000, (0, 5, 500, 999))


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_more_than_2_31_rows(device):
    """(1, 2^31 + 6, 1): every row index, and any grid over the rows, passes 2^31."""
    if free_bytes(device) < ROWS_NEEDED_BYTES[device]:
        pytest.skip(f"needs {ROWS_NEEDED_BYTES[device] >> 30} GiB free on {device}")
    check_rows(device, ROWS, (5, (1 << 31) - 1, 1 << 31, ROWS - 1))
