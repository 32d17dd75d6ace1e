"""``python -m eca_cuda``: print the build summary (torch, CUDA kernels and their archs)."""

from .build_info import summary

print(summary())
