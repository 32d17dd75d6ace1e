"""Rewrites PTX from nvcc 13 into what GPGPU-Sim 4.2's parser executes correctly, in place.

- bf16 <-> f32 moves and conversions (`mov.b32 d, {0, h}`, `cvt.rn.bf16.f32`), which the
  parser does not know, as integer shifts; f32 -> bf16 rounds to nearest even, NaN to 0x7fff.
- GPGPU-Sim reads decimal immediates with atoi (32 bits): "-4294967296" becomes 0. nvcc uses
  `and.b64 t, x, -4294967296; setp.eq.s64 p, t, 0` to test whether x fits 32 bits (its fast
  32-bit division path); that idiom becomes `shr.u64 t, x, 32`, which tests the same. Any
  other instruction with an immediate outside 32 bits (`mov.u64 d, -4616189618054758400`, a
  double's bits) gets it from a 64-bit register built of two 32-bit hex halves.
- `ld.global.L1::no_allocate` / `st.global.L1::no_allocate` (the tile kernels' accesses of data
  they touch once, eca_device.cuh), whose eviction-priority qualifier the parser does not
  know, as `.cg`: cached in L2, not L1, which is what GPGPU-Sim does with `.cg` (shader.cc
  bypasses L1D) and what no_allocate does for data read or written once.

Usage: fix_ptx.py FILE.ptx (called by the cuobjdump wrapper on each extracted file).
"""

import re
import sys


def bf16_to_f32(m: re.Match) -> str:
    d, r = m.group(1), m.group(2)
    return f"{{ .reg .b32 %bft; cvt.u32.u16 %bft, {r}; shl.b32 %bft, %bft, 16; mov.b32 {d}, %bft;}}"


def f32_to_bf16(m: re.Match) -> str:
    d, f = m.group(1), m.group(2)
    return (
        f"{{ .reg .b32 %bfu, %bfl, %bfr; .reg .pred %bfn; mov.b32 %bfu, {f}; "
        "shr.u32 %bfl, %bfu, 16; and.b32 %bfl, %bfl, 1; add.u32 %bfr, %bfu, 32767; "
        f"add.u32 %bfr, %bfr, %bfl; shr.u32 %bfr, %bfr, 16; setp.nan.f32 %bfn, {f}, {f}; "
        f"selp.b32 %bfr, 32767, %bfr, %bfn; cvt.u16.u32 {d}, %bfr;}}"
    )


def hoist_long_immediate(m: re.Match) -> str:
    """An instruction with a decimal immediate outside 32 bits, the immediate first built in
    a 64-bit register from two 32-bit hex halves (which the parser reads whole)."""
    pred, instr, operands = m.group(1) or "", m.group(2), m.group(3)
    values = [int(v) for v in re.findall(r"(?<![\w.%])-?\d{10,}(?![\w.])", operands)]
    values = [v for v in values if not -(2**31) <= v < 2**32]
    if not values:
        return m.group(0)
    bits = values[0] & (2**64 - 1)
    operands = re.sub(r"(?<![\w.%])" + str(values[0]) + r"(?![\w.])", "%fx64", operands, count=1)
    return (
        f"{{ .reg .b32 %fxl, %fxh; .reg .b64 %fx64; mov.b32 %fxl, 0x{bits & 0xFFFFFFFF:08X}; mov.b32 %fxh, 0x{bits >> 32:08X}; "
        f"mov.b64 %fx64, {{%fxl, %fxh}}; {pred}{instr} {operands}; }}"
    )


def main(path: str) -> None:
    with open(path) as f:
        s = f.read()
    s, n1 = re.subn(r"\{\s*mov\.b32\s+(%\w+),\s*\{0,\s*(%\w+)\};\s*\}", bf16_to_f32, s)
    s, n2 = re.subn(r"\{\s*cvt\.rn\.bf16\.f32\s+(%\w+),\s*(%\w+);\s*\}", f32_to_bf16, s)
    mask = re.compile(
        r"and\.b64\s+(%\w+),\s*(%\w+),\s*-4294967296;(\s*setp\.(?:eq|ne)\.s64\s+%\w+,\s*\1,\s*0;)"
    )
    s, n3 = mask.subn(lambda m: "shr.u64 {}, {}, 32;{}".format(*m.group(1, 2, 3)), s)
    s, n4 = re.subn(
        r"^([ \t]*@!?%\w+[ \t]+)?([ \t]*[a-z][\w.]*)[ \t]+([^;{}\n]*?-?\d{10,}[^;{}\n]*);",
        hoist_long_immediate,
        s,
        flags=re.M,
    )
    s, n5 = re.subn(r"\b(ld|st)\.global\.L1::no_allocate\b", r"\1.global.cg", s)
    left = len(re.findall(r"[ ,]-?\d{10,}", s))
    with open(path, "w") as f:
        f.write(s)
    sys.stderr.write(
        f"fix_ptx: {path}: {n1} bf16->f32, {n2} f32->bf16, {n3} 64-bit mask idioms, "
        f"{n4} 64-bit immediates, {n5} L1::no_allocate accesses rewritten; "
        f"{left} long immediates left\n"
    )


if __name__ == "__main__":
    main(sys.argv[1])
