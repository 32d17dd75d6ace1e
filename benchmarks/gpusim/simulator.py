"""Building and running a CUDA program in the simulator build.sh built: compiled by nvcc 13 to
compute_80 PTX only (what the simulator executes), linked against the simulator's libcudart
and the CUDA 13 launch shim, run in a folder holding the configuration."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_DIR = ROOT / "build" / "gpusim"


def environment(gpusim_dir: Path) -> dict:
    """The environment env.sh (build.sh) sets: the simulator's libcudart and its tools."""
    out = subprocess.run(
        ["bash", "-c", f"source {gpusim_dir / 'env.sh'} && env -0"],
        check=True,
        capture_output=True,
    ).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def nvcc() -> str:
    return shutil.which("nvcc") or "nvcc"


def nvcc_version() -> str:
    match = re.search(
        r"release ([\d.]+)",
        subprocess.run([nvcc(), "--version"], capture_output=True, text=True).stdout,
    )
    return match.group(1) if match else "?"


def compile_program(source: Path, exe: Path, gpusim_dir: Path, flags: list[str] = ()) -> Path:
    obj = exe.with_suffix(".o")
    subprocess.run(
        [
            nvcc(),
            "-std=c++17",
            "-O3",
            "-gencode",
            "arch=compute_80,code=compute_80",
            *flags,
            "-c",
            str(source),
            "-o",
            str(obj),
        ],
        check=True,
    )
    subprocess.run(
        [
            "g++",
            str(obj),
            str(gpusim_dir / "cuda13_launch_shim.o"),
            str(gpusim_dir / "cuda118" / "lib64" / "libcudart.so.11.0"),
            "-o",
            str(exe),
        ],
        check=True,
    )
    return exe


def run_program(
    exe: Path, args: list[str], env: dict, gpusim_dir: Path, run_dir: Path | None = None
) -> subprocess.CompletedProcess:
    """Runs exe in run_dir (a temporary folder if None) with the configuration copied in."""
    with tempfile.TemporaryDirectory(prefix="gpusim-") as tmp:
        where = run_dir or Path(tmp)
        for f in (gpusim_dir / "config").iterdir():
            shutil.copy(f, where)
        return subprocess.run([str(exe), *args], cwd=where, env=env, capture_output=True, text=True)


def kernel_cycles(log: str) -> list[tuple[str, int]]:
    """(kernel, gpu_sim_cycle) of each kernel the simulator ran, in order, names demangled
    to the function's own (no namespace, template arguments or parameters)."""
    names = re.findall(r"^kernel_name = (\S+)", log, re.M)
    cycles = [int(c) for c in re.findall(r"^gpu_sim_cycle = (\d+)", log, re.M)]
    if len(names) != len(cycles):
        raise RuntimeError(f"{len(names)} kernel names but {len(cycles)} cycle counts")
    demangled = subprocess.run(
        ["c++filt"], input="\n".join(names), capture_output=True, text=True
    ).stdout.split("\n")
    demangled = [n.replace("(anonymous namespace)::", "") for n in demangled]
    short = [re.sub(r"^void ", "", re.sub(r"[<(].*", "", n)).split("::")[-1] for n in demangled]
    return list(zip(short, cycles))
