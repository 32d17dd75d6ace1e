// The CUDA kernels' two entry points, as the ATen side (eca_ops_cuda.cpp) calls them: plain
// pointers and sizes in, the first failed launch out. Keeping ATen out of the .cu file keeps
// nvcc's passes, one per GPU architecture, short.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "eca_launch_args.h"

namespace eca_cuda {

struct LaunchResult {
  cudaError_t error;   // cudaSuccess, or the error of the first launch that failed
  const char* kernel;  // that launch's kernel, or nullptr
};

// The launches of launch_forward / launch_backward on `stream`, for scalar_t in float, double,
// c10::Half and c10::BFloat16 with acc_t its at::opmath_type (eca_kernels_cuda.cu).
template <typename scalar_t, typename acc_t>
LaunchResult forward_cuda(const ForwardArgs<scalar_t, acc_t>& args, cudaStream_t stream);

template <typename scalar_t, typename acc_t>
LaunchResult backward_cuda(const BackwardArgs<scalar_t, acc_t>& args, cudaStream_t stream);

// SM numbers this file was compiled for, from nvcc's own list (e.g. 80, 90).
std::vector<int64_t> compiled_cuda_archs();

}  // namespace eca_cuda
