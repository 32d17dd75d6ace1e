"""eca_cuda: fused Efficient Channel Attention (ECA-Net, Wang et al., CVPR 2020) for PyTorch.

Public API: :func:`eca` (functional), :func:`eca_tail` (ECA with the residual block's
add and activation fused), :class:`ECA` (module), :func:`convert_eca` (swap
the ECA layers of a timm or authors' model for :class:`ECA`), :class:`ECAFunction`
(autograd function), :func:`onnx_translation_table` (ONNX export as standard operators),
:mod:`eca_cuda.reference` (pure-PyTorch reference),
:func:`has_cuda_kernels` / :func:`cuda_archs` / :func:`cpu_capability` (build info).
"""

from . import ops, reference
from .autograd import ECAFunction
from .build_info import cpu_capability, cuda_archs, has_cuda_kernels
from .convert import convert_eca
from .functional import eca, eca_tail
from .modules import ECA, adaptive_kernel_size
from .onnx_export import onnx_translation_table

__version__ = "0.1.0"

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
