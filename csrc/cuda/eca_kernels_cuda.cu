// CUDA kernels for eca_forward / eca_backward. Same stages as the CPU file (channel
// reductions, (N, C) gate math from eca_math.h, one elementwise pass); no (N, C, L)
// temporary, no floating-point atomics: every sum is reduced in a fixed order, so results
// are bitwise reproducible run to run, and the spatial sums follow one order for both
// layouts (see kSlots), so contiguous and channels_last inputs give the same bits.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cub/block/block_reduce.cuh>
#include <vector>

#include "../eca_host.h"
#include "eca_reduce.cuh"

namespace eca_cuda {

// SM numbers this file was compiled for, from nvcc's own list (CUDA >= 11.5).
std::vector<int64_t> compiled_cuda_archs() {
#ifdef __CUDA_ARCH_LIST__
  std::vector<int64_t> archs{__CUDA_ARCH_LIST__};  // e.g. 800,900
  for (auto& arch : archs) arch /= 10;
  return archs;
#else
  return {};
#endif
}

namespace {

constexpr int kThreads = 256;
// Blocks per launch: enough to fill any current GPU; grid-stride loops cover the rest, so no
// grid size overflows gridDim.x however large N * C * L is.
constexpr int64_t kMaxBlocks = 65535 * 8;

// f(i) for i in [0, n), grid-stride, 64-bit indices: any n fits a grid of grid_for(n).
template <typename F>
__device__ __forceinline__ void for_each_index(int64_t n, const F& f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

template <typename acc_t>
__global__ void gate_kernel(const acc_t* __restrict__ pooled, const acc_t* __restrict__ w,
                            int64_t NC, int64_t C, int64_t k, PaddingMode mode,
                            acc_t* __restrict__ gate) {
  for_each_index(NC, [&](int64_t r) {
    const int64_t n = r / C, c = r % C;
    gate[r] = sigmoid(channel_conv(pooled + n * C, w, k, c, C, mode));
  });
}

// dz = t * s * (1 - s), in place over t.
template <typename acc_t>
__global__ void gate_input_grad_kernel(acc_t* __restrict__ t_to_dz, const acc_t* __restrict__ gate,
                                       int64_t NC) {
  for_each_index(NC, [&](int64_t r) { t_to_dz[r] = gate_input_grad(t_to_dz[r], gate[r]); });
}

// shift = dp / L, the per-channel term of grad_x.
template <typename acc_t>
__global__ void pooled_grad_kernel(const acc_t* __restrict__ dz, const acc_t* __restrict__ w,
                                   int64_t NC, int64_t C, int64_t k, int64_t L, PaddingMode mode,
                                   acc_t* __restrict__ shift) {
  for_each_index(NC, [&](int64_t r) {
    const int64_t n = r / C, c = r % C;
    shift[r] = channel_conv_transposed(dz + n * C, w, k, c, C, mode) / acc_t(L);
  });
}

// out = in * scale[n, c] (+ shift[n, c]) over all elements.
template <typename scalar_t, typename acc_t, bool kChannelsLast>
__global__ void scale_shift_kernel(const scalar_t* __restrict__ in, const acc_t* __restrict__ scale,
                                   const acc_t* __restrict__ shift, int64_t numel, int64_t C,
                                   int64_t L, scalar_t* __restrict__ out) {
  for_each_index(numel, [&](int64_t i) {
    const int64_t r = kChannelsLast ? (i / (L * C)) * C + i % C : i / L;
    const acc_t v = acc_t(in[i]);
    out[i] = scalar_t(shift ? fma(v, scale[r], shift[r]) : v * scale[r]);
  });
}

// dw[j] = sum_{n, c} dz[n, c] p[n, c + j - pad]: one block per tap, fixed-order block sum.
template <typename acc_t>
__global__ void weight_grad_kernel(const acc_t* __restrict__ dz, const acc_t* __restrict__ pooled,
                                   int64_t NC, int64_t C, int64_t k, PaddingMode mode,
                                   acc_t* __restrict__ grad_w) {
  using BlockReduce = cub::BlockReduce<acc_t, kThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const int64_t j = blockIdx.x;
  acc_t sum = acc_t(0);
  for (int64_t r = threadIdx.x; r < NC; r += kThreads) {
    const int64_t n = r / C;
    sum += weight_grad_term(dz + n * C, pooled + n * C, j, k, r % C, C, mode);
  }
  sum = BlockReduce(temp).Sum(sum);
  if (threadIdx.x == 0) grad_w[j] = sum;
}

// Blocks for `items` work items of `per_block` each, at most kMaxBlocks (the kernels loop).
unsigned grid_for(int64_t items, int64_t per_block = kThreads) {
  return static_cast<unsigned>(std::min((items + per_block - 1) / per_block, kMaxBlocks));
}

template <typename scalar_t, typename acc_t>
void launch_reduce(const scalar_t* a, const scalar_t* b, int64_t N, int64_t C, int64_t L,
                   Layout layout, acc_t scale, acc_t* out, cudaStream_t stream) {
  if (layout == Layout::ChannelsFirst) {
    const unsigned grid = grid_for(N * C, kRowsPerBlock);
    const dim3 block(kSlots, kRowsPerBlock);
    if (b) {
      reduce_rows_kernel<scalar_t, acc_t, true>
          <<<grid, block, 0, stream>>>(a, b, N * C, L, scale, out);
    } else {
      reduce_rows_kernel<scalar_t, acc_t, false>
          <<<grid, block, 0, stream>>>(a, b, N * C, L, scale, out);
    }
  } else {
    // 1-D grid over (n, channel tile): gridDim.y would cap N at 65535.
    const unsigned grid = grid_for(N * ((C + kTileC - 1) / kTileC), 1);
    const dim3 block(kTileC, kTileL);
    if (b) {
      reduce_columns_kernel<scalar_t, acc_t, true>
          <<<grid, block, 0, stream>>>(a, b, N, C, L, scale, out);
    } else {
      reduce_columns_kernel<scalar_t, acc_t, false>
          <<<grid, block, 0, stream>>>(a, b, N, C, L, scale, out);
    }
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename acc_t>
void launch_scale_shift(const scalar_t* in, const acc_t* scale, const acc_t* shift, int64_t N,
                        int64_t C, int64_t L, Layout layout, scalar_t* out, cudaStream_t stream) {
  const int64_t numel = N * C * L;
  if (numel == 0) return;
  const unsigned grid = grid_for(numel);
  if (layout == Layout::ChannelsLast) {
    scale_shift_kernel<scalar_t, acc_t, true>
        <<<grid, kThreads, 0, stream>>>(in, scale, shift, numel, C, L, out);
  } else {
    scale_shift_kernel<scalar_t, acc_t, false>
        <<<grid, kThreads, 0, stream>>>(in, scale, shift, numel, C, L, out);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void forward_typed(const ForwardProblem& p) {
  using acc_t = at::opmath_type<scalar_t>;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t N = p.N, C = p.C, L = p.L, NC = N * C;
  const scalar_t* x = p.x.const_data_ptr<scalar_t>();
  acc_t* pooled = p.pooled.mutable_data_ptr<acc_t>();
  acc_t* gate = p.gate.mutable_data_ptr<acc_t>();

  launch_reduce<scalar_t, acc_t>(x, nullptr, N, C, L, p.layout, acc_t(1) / acc_t(L), pooled,
                                 stream);
  gate_kernel<acc_t><<<grid_for(NC), kThreads, 0, stream>>>(
      pooled, p.weight.const_data_ptr<acc_t>(), NC, C, p.k, p.mode, gate);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  launch_scale_shift<scalar_t, acc_t>(x, gate, nullptr, N, C, L, p.layout,
                                      p.y.mutable_data_ptr<scalar_t>(), stream);
}

template <typename scalar_t>
void backward_typed(const BackwardProblem& p) {
  using acc_t = at::opmath_type<scalar_t>;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t N = p.N, C = p.C, L = p.L, NC = N * C;
  const scalar_t* g = p.grad_y.const_data_ptr<scalar_t>();
  const acc_t* w = p.weight.const_data_ptr<acc_t>();
  const acc_t* gate = p.gate.const_data_ptr<acc_t>();
  at::Tensor dz_t = at::empty({N, C}, p.pooled.options());
  at::Tensor shift_t = at::empty({N, C}, p.pooled.options());
  acc_t* dz = dz_t.mutable_data_ptr<acc_t>();
  acc_t* shift = shift_t.mutable_data_ptr<acc_t>();

  launch_reduce<scalar_t, acc_t>(g, p.x.const_data_ptr<scalar_t>(), N, C, L, p.layout, acc_t(1), dz,
                                 stream);  // dz holds t
  gate_input_grad_kernel<acc_t><<<grid_for(NC), kThreads, 0, stream>>>(dz, gate, NC);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  pooled_grad_kernel<acc_t>
      <<<grid_for(NC), kThreads, 0, stream>>>(dz, w, NC, C, p.k, L, p.mode, shift);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  launch_scale_shift<scalar_t, acc_t>(g, gate, shift, N, C, L, p.layout,
                                      p.grad_x.mutable_data_ptr<scalar_t>(), stream);
  weight_grad_kernel<acc_t><<<static_cast<unsigned>(p.k), kThreads, 0, stream>>>(
      dz, p.pooled.const_data_ptr<acc_t>(), NC, C, p.k, p.mode,
      p.grad_weight.mutable_data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void forward_kernel_cuda(const ForwardProblem& p) {
  const c10::cuda::CUDAGuard guard(p.x.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "eca_forward_cuda",
                                  [&] { forward_typed<scalar_t>(p); });
}

void backward_kernel_cuda(const BackwardProblem& p) {
  const c10::cuda::CUDAGuard guard(p.x.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "eca_backward_cuda",
                                  [&] { backward_typed<scalar_t>(p); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_forward_cuda(const at::Tensor& x,
                                                                const at::Tensor& weight,
                                                                c10::string_view padding_mode) {
  return run_forward(x, weight, padding_mode, &forward_kernel_cuda);
}

std::tuple<at::Tensor, at::Tensor> eca_backward_cuda(const at::Tensor& grad_y, const at::Tensor& x,
                                                     const at::Tensor& weight,
                                                     const at::Tensor& pooled,
                                                     const at::Tensor& gate,
                                                     c10::string_view padding_mode) {
  return run_backward(grad_y, x, weight, pooled, gate, padding_mode, &backward_kernel_cuda);
}

}  // namespace

TORCH_LIBRARY_IMPL(eca_cuda, CUDA, m) {
  m.impl("eca_forward", &eca_forward_cuda);
  m.impl("eca_backward", &eca_backward_cuda);
}

}  // namespace eca_cuda
