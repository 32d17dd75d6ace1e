"""The CUDA kernels run on the CPU: builds tests/cuda_emulation/ (the host stand-ins for CUDA's
built-ins, compiled with the device code of csrc/cuda/) and calls its launcher through ctypes,
with tensors in and out as eca_forward / eca_backward take and give them."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import shutil
import subprocess
from pathlib import Path

import torch
import torch.utils.cpp_extension

TESTS = Path(__file__).resolve().parent
EMULATION = TESTS / "cuda_emulation"
CSRC = TESTS.parent / "csrc"
MAX_BLOCKS = 65535 * 8  # kMaxBlocks of csrc/cuda/eca_launch_args.h
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
# As nvcc builds the device code, with FMA contraction off on both sides (setup.py passes
# --fmad=false), so a * b + c rounds twice in both and the emulated bits are the GPU's but
# for CUDA's own exp.
# -fno-gnu-unique: each library keeps its own function-local statics (the emulator's launch
# state among them). GCC makes them STB_GNU_UNIQUE, which the dynamic linker merges across
# every library loaded, RTLD_LOCAL or not: an uninstrumented launcher and a counting one in the
# same process shared one state, and a test ended the process with status 0, mid-run.
FLAGS = [
    "-std=c++20",
    "-O1",
    "-g",
    "-ffp-contract=off",
    "-fno-gnu-unique",
    "-Wall",
    "-Wno-unknown-pragmas",
]
SANITIZERS = {
    "address": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"],
    "thread": ["-fsanitize=thread"],
    None: [],
}


# The access counter's build (cuda_emulation/access_counter.cpp): GCC's AddressSanitizer
# instrumentation reduced to a call before every load and store, which access_counter.cpp
# answers in place of the sanitizer's runtime; aggregates are not split (-fno-tree-sra), so a
# 16-byte Pack is one 16-byte access, as on the GPU.
COUNTING = [
    "-fsanitize=address",
    "--param=asan-instrumentation-with-call-threshold=0",
    "--param=asan-stack=0",
    "--param=asan-globals=0",
    "--param=asan-memintrin=0",
    "--param=asan-use-after-return=0",
    "-fno-sanitize-address-use-after-scope",
    "-fno-tree-sra",
    "-DECA_EMU_COUNT_ACCESSES",
]


def compiler() -> str | None:
    return shutil.which("c++") or shutil.which("g++")


def build(out: Path, sources, sanitizer=None, csrc: Path = CSRC, defines=(), shared=False) -> Path:
    """Compiles ``sources`` (files of cuda_emulation/) against the device code under ``csrc``
    into ``out``: a shared library for ctypes, or an executable, instrumented by ``sanitizer``
    ("address", "thread" or None)."""
    torch_include = torch.utils.cpp_extension.include_paths()[0]  # c10's Half and BFloat16
    cmd = [compiler(), *FLAGS, *SANITIZERS[sanitizer], "-pthread"]
    cmd += ["-shared", "-fPIC"] if shared else []
    cmd += [f"-D{d}" for d in defines]
    cmd += ["-isystem", torch_include, "-I", str(csrc), "-I", str(EMULATION)]
    cmd += [str(EMULATION / s) for s in sources] + ["-o", str(out)]
    run_compiler(cmd)
    return out


def run_compiler(cmd):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}\n{result.stderr[-4000:]}")


def build_counting(out: Path, sources, csrc: Path = CSRC, defines=()) -> Path:
    """A shared library of ``sources`` (files of cuda_emulation/) whose every load and store
    goes to access_counter.cpp, which is linked in uninstrumented (no sanitizer runtime)."""
    torch_include = torch.utils.cpp_extension.include_paths()[0]
    common = [compiler(), *FLAGS, "-pthread", "-fPIC", *[f"-D{d}" for d in defines]]
    common += ["-isystem", torch_include, "-I", str(csrc), "-I", str(EMULATION)]
    objects = []
    for source in sources:
        obj = out.parent / f"{out.name}.{Path(source).stem}.o"
        run_compiler([*common, *COUNTING, "-c", EMULATION / source, "-o", obj])
        objects.append(obj)
    counter = out.parent / f"{out.name}.access_counter.o"
    run_compiler([*common, "-c", EMULATION / "access_counter.cpp", "-o", counter])
    run_compiler([compiler(), "-shared", "-pthread", *objects, counter, "-ldl", "-o", out])
    return out


@dataclasses.dataclass
class AccessSite:
    """One access site of a kernel, over the requests of the launches counted: ``units`` are
    32-byte sectors (global) or wavefronts (shared), ``ideal`` what the same bytes would take
    coalesced or conflict-free (cuda_emulation/access_counter.cpp)."""

    kernel: str
    where: str  # file:line of the access in the kernel source
    space: str  # "global" or "shared"
    kind: str  # "load" or "store"
    size: int  # bytes per lane
    requests: int
    accesses: int
    units: int
    ideal: int

    @property
    def ratio(self) -> float:
        return self.units / self.ideal if self.ideal else 1.0


def source_lines(library: Path, offsets: list[str]) -> dict[str, str]:
    """file:line of each code offset of ``library``: the innermost inlined frame in our own
    source (csrc/ or cuda_emulation/), past c10's conversions of Half and BFloat16 and the
    access wrappers of eca_device.cuh (load_once, store_once), so a site is its caller's line."""
    if not offsets:
        return {}
    out = subprocess.run(
        ["addr2line", "-e", str(library), "-i", "-a", *offsets],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    found, current = {}, None
    for line in out:
        if line.startswith("0x"):
            current = line
            continue
        path, _, number = line.partition(":")
        ours = (str(CSRC) in path or str(EMULATION) in path) and Path(path).name != "eca_device.cuh"
        if current is not None and current not in found and ours:
            found[current] = f"{Path(path).name}:{number.split()[0]}"
    return {offset: found.get(f"0x{int(offset, 16):016x}", "?") for offset in offsets}


class Emulation:
    """The launcher library: ``forward`` and ``backward`` as the CUDA op runs them; built by
    :func:`build_counting`, it also counts their memory accesses (:meth:`access_sites`)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lib = ctypes.CDLL(str(path))
        self.lib.eca_emu_error.restype = ctypes.c_char_p
        self.lib.eca_emu_launched.restype = ctypes.c_char_p
        self.counting = hasattr(self.lib, "eca_emu_count_report")
        if self.counting:
            self.lib.eca_emu_count_report.restype = ctypes.c_char_p

    def access_sites(self) -> list[AccessSite]:
        """The accesses counted since the last call, by kernel and site; then starts afresh."""
        rows = [line.split() for line in self.lib.eca_emu_count_report().decode().splitlines()]
        self.lib.eca_emu_count_reset()
        where = source_lines(self.path, sorted({row[1] for row in rows}))
        return [
            AccessSite(row[0], where[row[1]], row[2], row[3], *map(int, row[4:])) for row in rows
        ]

    @contextlib.contextmanager
    def captured(self):
        """Stream capture, as ``torch.cuda.graph`` records: the calls inside record their
        launches (with their arguments) and run none; yields a :class:`Graph` to replay them.
        Outputs of the calls inside are written only by a replay."""
        self.lib.eca_emu_capture(1)
        try:
            yield Graph(self)
        finally:
            self.lib.eca_emu_capture(0)

    def launched(self) -> set[str]:
        """Names of the kernels launched so far."""
        return set(self.lib.eca_emu_launched().decode().split())

    def _call(self, fn, x, tensors, k, padding_mode, channels_last, max_blocks, seed, extra=()):
        """fn(dtype, *tensors' pointers (None: null), N, C, L, k, ..., *extra) of the C API."""
        N, C, L = x.shape[0], x.shape[1], math.prod(x.shape[2:])
        args = [ctypes.c_int(DTYPE_CODES[x.dtype])]
        args += [ctypes.c_void_p(None if t is None else t.data_ptr()) for t in tensors]
        args += [ctypes.c_int64(s) for s in (N, C, L, k)]
        args += [ctypes.c_int(padding_mode == "circular"), ctypes.c_int(channels_last)]
        args += [ctypes.c_int64(max_blocks), ctypes.c_int(seed), *extra]
        if self.counting:  # the tensors are the launch's device memory
            for t in tensors:
                if t is not None:
                    storage = t.untyped_storage()
                    self.lib.eca_emu_count_global(
                        ctypes.c_void_p(storage.data_ptr()), ctypes.c_size_t(storage.nbytes())
                    )
        try:
            if fn(*args) != 0:
                raise RuntimeError(self.lib.eca_emu_error().decode())
        finally:
            if self.counting:
                self.lib.eca_emu_count_forget_globals()

    def forward(
        self, x, weight, padding_mode, channels_last, max_blocks=MAX_BLOCKS, seed=-1, offset=0
    ):
        """(y, pooled, gate) for ``x`` of (N, C, *spatial); the kernels read x in the
        channels-last layout when ``channels_last``, from buffers ``offset`` elements past a
        64-byte boundary, on at most ``max_blocks`` blocks, in an order shuffled by ``seed``
        (>= 0). Outputs start as NaN, so a value not written shows."""
        N, C = x.shape[:2]
        x3 = x.reshape(N, C, math.prod(x.shape[2:]))
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        xs = to_kernel_layout(x3, channels_last, offset)
        w = weight.reshape(-1).to(acc).contiguous()
        y = to_kernel_layout(torch.full_like(x3, math.nan), channels_last, offset)
        pooled, gate = torch.full((2, N, C), math.nan, dtype=acc).unbind()
        launch = (padding_mode, channels_last, max_blocks, seed)
        self._call(self.lib.eca_emu_forward, x, (xs, w, y, pooled, gate), w.numel(), *launch)
        return from_kernel_layout(y, channels_last).reshape(x.shape), pooled, gate

    def tail_forward(
        self,
        x,
        weight,
        residual,
        scale,
        gain,
        activation,
        padding_mode,
        channels_last,
        max_blocks=MAX_BLOCKS,
        seed=-1,
        offset=0,
        tile_budget=0,
        sms=1,
    ):
        """(out, pooled, gate) of eca_tail_forward: :meth:`forward` with the block tail
        ``act(y * scale * gain + residual)``; ``residual`` and ``gain`` may be None. With a
        ``tile_budget`` (bytes of shared memory) the plan runs the single-pass kernel where a
        tile fits, as on a GPU with ``sms`` SMs; 0 keeps the three launches."""
        N, C = x.shape[:2]
        shape3 = (N, C, math.prod(x.shape[2:]))
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        xs = to_kernel_layout(x.reshape(shape3), channels_last, offset)
        res = None
        if residual is not None:
            res = to_kernel_layout(residual.reshape(shape3), channels_last, offset)
        g = None if gain is None else gain.to(acc).reshape(())
        w = weight.reshape(-1).to(acc).contiguous()
        y = to_kernel_layout(torch.full(shape3, math.nan, dtype=x.dtype), channels_last, offset)
        pooled, gate, multiplier = torch.full((3, N, C), math.nan, dtype=acc).unbind()
        if scale == 1.0 and gain is None:
            multiplier = None
        tensors = (xs, w, res, g, y, pooled, gate, multiplier)
        launch = (padding_mode, channels_last, max_blocks, seed)
        extra = (ctypes.c_double(scale), ctypes.c_int(activation == "relu"))
        extra += (ctypes.c_int64(tile_budget), ctypes.c_int64(sms))
        self._call(self.lib.eca_emu_tail_forward, x, tensors, w.numel(), *launch, extra=extra)
        return from_kernel_layout(y, channels_last).reshape(x.shape), pooled, gate

    def tile_channels(self, dtype, N, C, L, k, tile_budget, sms, pair_budget=0):
        """(channels per tile, dynamic shared bytes) of the single-pass plan, forward and
        backward; (0, 0) for the multi-launch plans. ``pair_budget``: tiles two blocks an SM
        hold are tried first (0: none)."""
        shared = ctypes.c_int64(0)
        fn = self.lib.eca_emu_tile_channels
        fn.restype = ctypes.c_int64
        sizes = [ctypes.c_int64(v) for v in (N, C, L, k, tile_budget, pair_budget, sms)]
        T = fn(ctypes.c_int(DTYPE_CODES[dtype]), *sizes, ctypes.byref(shared))
        if T < 0:
            raise RuntimeError(self.lib.eca_emu_error().decode())
        return T, shared.value

    def tile_budget(self, optin_per_block):
        """The tile budget (bytes) the extension computes for a device's shared memory."""
        fn = self.lib.eca_emu_tile_budget
        fn.restype = ctypes.c_int64
        return fn(ctypes.c_int64(optin_per_block))

    def pair_budget(self, shared_per_sm):
        """The budget (bytes) of tiles two blocks an SM hold, as the extension computes it."""
        fn = self.lib.eca_emu_pair_budget
        fn.restype = ctypes.c_int64
        return fn(ctypes.c_int64(shared_per_sm))

    def backward(
        self,
        grad_y,
        x,
        weight,
        pooled,
        gate,
        padding_mode,
        channels_last,
        max_blocks=MAX_BLOCKS,
        seed=-1,
        offset=0,
        tile_budget=0,
        sms=1,
        relu_out=None,
    ):
        """(grad_x, grad_weight in the accumulation dtype), as :meth:`forward`; ``tile_budget``
        and ``sms`` as :meth:`tail_forward`'s, for the single-pass backward. With ``relu_out``
        (the ReLU tail's output), ``grad_y`` is masked where it is <= 0 first and the masked
        gradient (the residual's) comes third."""
        shape3 = (*x.shape[:2], math.prod(x.shape[2:]))
        g = to_kernel_layout(grad_y.reshape(shape3), channels_last, offset)
        xs = to_kernel_layout(x.reshape(shape3), channels_last, offset)
        w = weight.reshape(-1).to(pooled.dtype).contiguous()
        nan = torch.full(shape3, math.nan, dtype=x.dtype)
        grad_x = to_kernel_layout(nan, channels_last, offset)
        grad_w = torch.full_like(w, math.nan)
        out = grad_pre = None
        if relu_out is not None:
            out = to_kernel_layout(relu_out.reshape(shape3), channels_last, offset)
            grad_pre = to_kernel_layout(nan.clone(), channels_last, offset)
        tensors = (g, xs, w, pooled, gate, out, grad_x, grad_w, grad_pre)
        launch = (padding_mode, channels_last, max_blocks, seed)
        extra = (ctypes.c_int64(tile_budget), ctypes.c_int64(sms))
        self._call(self.lib.eca_emu_backward, x, tensors, w.numel(), *launch, extra=extra)
        grads = (from_kernel_layout(grad_x, channels_last).reshape(x.shape), grad_w)
        if grad_pre is None:
            return grads
        return (*grads, from_kernel_layout(grad_pre, channels_last).reshape(x.shape))


class Graph:
    """The launches recorded by :meth:`Emulation.captured`."""

    def __init__(self, emulation: Emulation):
        self.lib = emulation.lib
        self.lib.eca_emu_captured.restype = ctypes.c_char_p

    def launches(self) -> list[str]:
        """The recorded kernels, in launch order."""
        return self.lib.eca_emu_captured().decode().split()

    def replay(self):
        if self.lib.eca_emu_replay() != 0:
            raise RuntimeError(self.lib.eca_emu_error().decode())


def to_kernel_layout(x3, channels_last, offset=0):
    """(N, C, L) values as the kernels read them: (N, C, L) or (N, L, C), dense, ``offset``
    elements into a fresh buffer; with no offset, ``x3``'s own memory where it already is in
    that layout (so that a captured launch reads what is written there before the replay)."""
    dense = x3.transpose(1, 2).contiguous() if channels_last else x3.contiguous()
    if offset == 0:
        return dense
    out = torch.empty(offset + dense.numel(), dtype=dense.dtype)[offset:].view(dense.shape)
    return out.copy_(dense)


def from_kernel_layout(t, channels_last):
    return t.transpose(1, 2) if channels_last else t
