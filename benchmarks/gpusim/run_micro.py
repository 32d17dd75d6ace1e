"""The simulator's micro-tests (micro/*.cu): what the kernels rely on and GPGPU-Sim 4.2 got
wrong before patches/ and toolchain/fix_ptx.py, checked before any kernel is measured, since
a simulator bug looks like a kernel bug. Exits non-zero on a failure.

    python benchmarks/gpusim/run_micro.py [--gpusim-dir build/gpusim]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import simulator

# file: the lines its output must hold (regular expressions), and what they test.
EXPECTED = {
    "cvt_test.cu": (
        [r"cvt\.f32\.s64\(64\)=64 rcp=0\.015625 w/L=0\.046875 cvt\.f32\.s32=64"],
        "64-bit integer to float conversions",
    ),
    "gen_test.cu": (
        [r"dyn direct bad=0", r"generic->shared bad=0", r"generic->global bad=0"],
        "dynamic shared memory, generic pointers to shared and global memory",
    ),
    "param_test.cu": (
        [r"param indirect bad=0 h\[0\]=103"],
        "a dynamic index into a by-value kernel parameter",
    ),
    "shfl_test.cu": (
        [
            r"one: " + " ".join(str(i + 2) for i in range(31)) + " 32",
            r"float sum lane0=528 ",
            r"double sum lane0=528 ",
        ],
        "shfl.sync with a predicate destination, float and double",
    ),
    "smem_test.cu": (
        [r"dyn bad=0 static bad=0"],
        "dynamic shared memory does not overlap static shared arrays",
    ),
    "occupancy_test.cu": (
        [r"CTA/core = 1, limited by: shmem", r"occupancy bad=0"],
        "blocks per SM count the dynamic shared memory",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpusim-dir", type=Path, default=simulator.DEFAULT_DIR)
    args = parser.parse_args()
    env = simulator.environment(args.gpusim_dir)
    failed = []
    with tempfile.TemporaryDirectory(prefix="gpusim-micro-") as tmp:
        for name, (patterns, what) in EXPECTED.items():
            exe = simulator.compile_program(
                simulator.HERE / "micro" / name, Path(tmp) / Path(name).stem, args.gpusim_dir
            )
            proc = simulator.run_program(exe, [], env, args.gpusim_dir)
            out = proc.stdout + proc.stderr
            missing = [p for p in patterns if not re.search(p, out, re.M)]
            ok = proc.returncode == 0 and not missing
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {what}")
            if not ok:
                failed.append(name)
                shown = [line for line in out.splitlines() if "GPGPU-Sim" not in line][-15:]
                print(
                    f"     exit {proc.returncode}; missing {missing}\n     " + "\n     ".join(shown)
                )
    if failed:
        sys.exit(f"simulator micro-tests failed: {', '.join(failed)}")
    print(f"all {len(EXPECTED)} simulator micro-tests passed")


if __name__ == "__main__":
    main()
