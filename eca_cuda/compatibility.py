"""Which torch this eca_cuda runs with, checked when the package is imported, before its
compiled library loads.

The compiled library (``eca_cuda._C``) calls torch's C++ API, whose ABI changes between torch
releases, so it runs only under the torch release it was compiled against (and, with CUDA
kernels, that torch's CUDA runtime). Loaded under another it fails with an undefined symbol,
or worse, loads and misbehaves. ``setup.py`` records what it built against in
``eca_cuda/_build_record.py`` (generated, not in git); :func:`check_torch` compares that record
with the torch being imported and raises an :class:`ImportError` that names both versions and
the command to rebuild. This module imports neither torch nor the library, so ``setup.py``
reads :data:`MIN_TORCH` from it too.
"""

from __future__ import annotations

import re

# The oldest torch release this package supports: the lowest end of the tested version matrix
# (benchmarks/README.md says how it runs). pyproject.toml and the Makefile say the same.
MIN_TORCH = "2.4"

REBUILD = (
    "`pip install --no-build-isolation --no-deps --force-reinstall .` in eca_cuda's source "
    "folder (`make clean install` in a clone), or install the eca_cuda wheel built for that torch"
)


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: "2.14.1+cu130" -> (2, 14, 1),
    "2.15.0a0+git1234" -> (2, 15, 0), "2.4" -> (2, 4)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    if not match:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def public_version(version: str) -> str:
    """A version without its local label: "2.14.1+cu130" -> "2.14.1"."""
    return version.split("+", 1)[0]


def local_label(torch_version: str, cuda_version: str | None) -> str:
    """The local version label of a build (PEP 440, as torchvision and flash-attn label their
    wheels): "torch2.14.1.cu130" for torch 2.14.1 with CUDA 13.0 kernels, "torch2.14.1.cpu"
    for a build without CUDA kernels."""
    cuda = "cu" + cuda_version.replace(".", "") if cuda_version else "cpu"
    return f"torch{public_version(torch_version)}.{cuda}"


def check_torch(
    torch_version: str, torch_cuda: str | None, built_torch: str, built_cuda: str | None
) -> None:
    """Raise ImportError unless this torch can load the compiled library.

    torch_version, torch_cuda: ``torch.__version__`` and ``torch.version.cuda`` of the torch
    being imported (``torch_cuda`` None for a CPU build of torch). built_torch, built_cuda: the
    same of the torch the library was compiled against, with ``built_cuda`` None when the
    library has no CUDA kernels (then any CUDA or CPU build of that release loads it).

    Raises ImportError, naming both versions and the command to rebuild, when torch is older
    than :data:`MIN_TORCH`, is another release than ``built_torch`` (local labels such as
    "+cu130" aside), or lacks the CUDA major version the kernels were compiled for.
    """
    if release(torch_version) < release(MIN_TORCH):
        raise ImportError(
            f"eca_cuda needs torch >= {MIN_TORCH}, but torch {torch_version} is installed. "
            f"Install a newer torch (`pip install 'torch>={MIN_TORCH}'`), then rebuild eca_cuda "
            f"against it: {REBUILD}."
        )
    if public_version(torch_version) != public_version(built_torch):
        raise ImportError(
            f"eca_cuda was built against torch {built_torch}, but torch {torch_version} is "
            "installed: its compiled library runs only under the torch release it was built "
            "against (torch's C++ ABI changes between releases). Rebuild eca_cuda against "
            f"torch {torch_version}: {REBUILD}."
        )
    # The CUDA runtime is compatible within a major version (CUDA's minor version
    # compatibility), not across one, and a CPU build of torch has none.
    if built_cuda is not None and (torch_cuda or "").split(".")[0] != built_cuda.split(".")[0]:
        found = f"CUDA {torch_cuda}" if torch_cuda else "no CUDA"
        raise ImportError(
            f"eca_cuda's CUDA kernels were built against torch {built_torch} with CUDA "
            f"{built_cuda}, but torch {torch_version} has {found}. Rebuild eca_cuda against "
            f"torch {torch_version}: {REBUILD}."
        )
