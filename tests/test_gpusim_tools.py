"""The GPU simulator tool's own pieces that run without the simulator (benchmarks/gpusim/):
the PTX rewrites that make GPGPU-Sim's parser read nvcc 13's PTX right, checked on the idioms
nvcc emits (and by ptxas, where there is one, so the rewritten PTX is still valid); the
per-kernel cycles read from a simulator log; the tensors' bytes in and out of the driver in
both layouts. The simulator itself is built and run by `make gpusim` (not in CI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

GPUSIM = Path(__file__).resolve().parents[1] / "benchmarks" / "gpusim"
sys.path.insert(0, str(GPUSIM))

import simulator  # noqa: E402

PTX = """//
.version 9.0
.target sm_80
.address_size 64

.visible .entry k(.param .u64 k_param_0, .param .u64 k_param_1)
{
\t.reg .pred \t%p<3>;
\t.reg .b16 \t%rs<3>;
\t.reg .b32 \t%r<4>;
\t.reg .f32 \t%f<3>;
\t.reg .b64 \t%rd<8>;

\tld.param.u64 \t%rd1, [k_param_0];
\tld.param.u64 \t%rd2, [k_param_1];
\tcvta.to.global.u64 \t%rd3, %rd1;
\tld.global.u16 \t%rs1, [%rd3];
\t{ mov.b32 %f1, {0,%rs1};}
\tadd.f32 \t%f2, %f1, %f1;
\t{ cvt.rn.bf16.f32 %rs2, %f2;}
\tst.global.u16 \t[%rd3], %rs2;
\tand.b64 \t%rd4, %rd2, -4294967296;
\tsetp.eq.s64 \t%p1, %rd4, 0;
\tmov.u64 \t%rd5, -4616189618054758400;
\t@%p1 add.s64 \t%rd6, %rd2, 8589934592;
\tst.global.u64 \t[%rd3+8], %rd5;
\tst.global.u64 \t[%rd3+16], %rd6;
\tld.global.L1::no_allocate.v4.u32 \t{%r1, %r2, %r3, %r1}, [%rd3+32];
\tst.global.L1::no_allocate.u16 \t[%rd3+48], %rs2;
\tret;
}
"""


def test_fix_ptx_rewrites_what_the_simulator_misreads(tmp_path):
    path = tmp_path / "k.ptx"
    path.write_text(PTX)
    subprocess.run([sys.executable, GPUSIM / "toolchain" / "fix_ptx.py", path], check=True)
    out = path.read_text()
    assert "cvt.rn.bf16.f32" not in out and "{0,%rs1}" not in out
    assert "shr.u64 %rd4, %rd2, 32;" in out  # the 32-bit test, no 64-bit immediate
    # No decimal immediate beyond 32 bits is left; the double's bits and the predicated add's
    # constant come from 32-bit hex halves.
    assert "4616189618054758400" not in out and "8589934592" not in out
    assert "mov.b32 %fxl, 0x00000000; mov.b32 %fxh, 0xBFF00000;" in out
    assert "@%p1 add.s64 \t%rd6, %rd2, %fx64;" in out or "@%p1 add.s64 %rd6, %rd2, %fx64;" in out
    # The eviction-priority qualifier the parser does not know, as the L1 bypass it simulates.
    assert "L1::no_allocate" not in out
    assert "ld.global.cg.v4.u32" in out and "st.global.cg.u16" in out
    ptxas = shutil.which("ptxas") or (
        shutil.which("nvcc") and str(Path(shutil.which("nvcc")).resolve().parent / "ptxas")
    )
    if ptxas and Path(ptxas).exists():
        subprocess.run(
            [ptxas, "-arch=sm_80", str(path), "-o", str(tmp_path / "k.cubin")],
            check=True,
            capture_output=True,
        )


def test_kernel_cycles_from_a_simulator_log():
    log = "\n".join(
        [
            "kernel_name = _ZN12_GLOBAL__N_113copy16_kernelEPK5uint4PS0_l",
            "kernel_launch_uid = 1",
            "gpu_sim_cycle = 30277",
            "kernel_name = _ZN8eca_cuda19tile_forward_kernelIffLb1EEEvNS_11ForwardArgsIT_T0_EEl",
            "gpu_sim_cycle = 90005",
        ]
    )
    if shutil.which("c++filt") is None:
        pytest.skip("needs c++filt")
    assert simulator.kernel_cycles(log) == [
        ("copy16_kernel", 30277),
        ("tile_forward_kernel", 90005),
    ]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_driver_bytes_round_trip(channels_last, dtype):
    pytest.importorskip("pandas")
    pytest.importorskip("tqdm")
    import run

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 5, 3, 4).to(dtype).contiguous(memory_format=fmt)
    data = run.raw(x)
    # Memory order: (N, H, W, C) for channels_last, as the kernels read it.
    order = x.permute(0, 2, 3, 1) if channels_last else x
    assert data == run.raw(order.contiguous())
    back = run.unraw(data, x)
    assert torch.equal(
        back.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
        x.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
    )
