"""eca_cuda: fused Efficient Channel Attention (ECA-Net, Wang et al., CVPR 2020) for PyTorch.

Public API: :func:`eca` (functional), :func:`eca_tail` (ECA with the residual block's
add and activation fused), :class:`ECA` (module), :func:`convert_eca` (swap
the ECA layers of a timm or authors' model for :class:`ECA`), :class:`ECAFunction`
(autograd function), :func:`onnx_translation_table` (ONNX export as standard operators),
:mod:`eca_cuda.reference` (pure-PyTorch reference),
:func:`has_cuda_kernels` / :func:`cuda_archs` / :func:`cpu_capability` (build info).

Importing it checks the installed torch against the one the compiled library was built
against (:mod:`eca_cuda.compatibility`) before loading that library, and raises ImportError,
naming both versions and the command to rebuild, where they do not match.
"""

import torch

from . import compatibility

try:
    from . import _build_record
except ImportError as error:  # a source folder nobody built
    raise ImportError(
        "eca_cuda is not built here (no eca_cuda/_build_record.py, written by its build): "
        f"build it with {compatibility.REBUILD}"
    ) from error
compatibility.check_torch(
    torch.__version__, torch.version.cuda, _build_record.torch_version, _build_record.cuda_version
)
try:
    from . import _C  # noqa: F401  (loading the library registers the operators)
except ImportError as error:
    raise ImportError(
        f"eca_cuda's compiled library did not load under torch {torch.__version__} (it was "
        f"built against torch {_build_record.torch_version}): {error}. Rebuild it with "
        f"{compatibility.REBUILD}."
    ) from error

from . import ops, reference  # noqa: E402
from .autograd import ECAFunction  # noqa: E402
from .build_info import cpu_capability, cuda_archs, has_cuda_kernels  # noqa: E402
from .convert import convert_eca  # noqa: E402
from .functional import eca, eca_tail  # noqa: E402
from .modules import ECA, adaptive_kernel_size  # noqa: E402
from .onnx_export import onnx_translation_table  # noqa: E402

# The package's version and the local label of the torch (and CUDA) it was built against,
# e.g. "0.1.0+torch2.14.1.cu130"; setup.py writes both.
__version__ = _build_record.version

__all__ = [
    "ECA",
    "ECAFunction",
    "adaptive_kernel_size",
    "convert_eca",
    "cpu_capability",
    "cuda_archs",
    "eca",
    "eca_tail",
    "has_cuda_kernels",
    "onnx_translation_table",
    "ops",
    "reference",
]
