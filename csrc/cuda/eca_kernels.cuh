// The CUDA kernels besides the spatial sums (eca_reduce.cuh): the (N, C) gate math of
// eca_math.h, the weight gradient, and the elementwise rescale. Device code only, on CUDA's
// built-ins: eca_kernels_cuda.cu compiles it with nvcc, and the host emulation in
// tests/cuda_emulation/ compiles the same text with stand-ins for those built-ins.
#pragma once

#include <cstdint>

#include "../eca_math.h"
#include "eca_device.cuh"
#include "eca_launch_args.h"

namespace eca_cuda {

constexpr int kThreads = 256;  // threads of every 1-D block
static_assert(kWeightGradRows == 16 * kThreads);

// f(i) for i in [0, n), grid-stride, 64-bit indices: any n fits any grid.
template <typename F>
__device__ __forceinline__ void for_each_index(int64_t n, const F& f) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

// gate = sigmoid(conv(pooled)), and with a block tail's factors multiplier = gate * scale *
// gain (gain null: 1).
template <typename acc_t>
__global__ void gate_kernel(const acc_t* __restrict__ pooled, const acc_t* __restrict__ w,
                            int64_t NC, int64_t C, int64_t k, PaddingMode mode,
                            acc_t* __restrict__ gate, acc_t scale, const acc_t* __restrict__ gain,
                            acc_t* __restrict__ multiplier) {
  for_each_index(NC, [&](int64_t r) {
    const int64_t n = r / C, c = r % C;
    const acc_t s = sigmoid(channel_conv(pooled + n * C, w, k, c, C, mode));
    gate[r] = s;
    if (multiplier) multiplier[r] = s * (scale * (gain ? *gain : acc_t(1)));
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

// The sum of v over the block's kThreads threads, valid in thread 0, in one fixed order (ours,
// not a library's, so it does not change with the CUDA version): the halving tree
// a[t] += a[t + w] for w = kThreads / 2, ..., 1.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* partial /* kThreads, shared */) {
  const int t = threadIdx.x;
  partial[t] = v;
  __syncthreads();
  for (int w = kThreads / 2; w >= 32; w /= 2) {
    if (t < w) partial[t] += partial[t + w];
    __syncthreads();
  }
  if (t < 32) {  // the last five steps within warp 0
    v = partial[t];
    for (int w = 16; w >= 1; w /= 2) v += __shfl_down_sync(0xffffffffu, v, w);
  }
  return v;
}

// The weight gradient dw[j] = sum_{n, c} dz[n, c] p[n, c + j - pad], stage 1: block item
// (j, b) sums the rows r = n * C + c of chunk b (kWeightGradRows of them, eca_launch_args.h),
// thread t the rows r0 + t, r0 + t + kThreads, ... in increasing r, then block_sum; it writes
// out[j * chunks + b], which with one chunk is dw itself. Blocks over taps and chunks, so a
// large N * C fills the GPU rather than k SMs.
template <typename acc_t>
__global__ void weight_grad_kernel(const acc_t* __restrict__ dz, const acc_t* __restrict__ pooled,
                                   int64_t NC, int64_t C, int64_t k, PaddingMode mode,
                                   int64_t chunks, acc_t* __restrict__ out) {
  ECA_SHARED(acc_t, partial, [kThreads]);
  for (int64_t item = blockIdx.x; item < k * chunks; item += gridDim.x) {  // same for the block
    const int64_t j = item / chunks, r0 = item % chunks * kWeightGradRows;
    const int64_t end = min(NC, r0 + kWeightGradRows);
    acc_t sum = acc_t(0);
    int64_t r = r0 + threadIdx.x, n = r / C, c = r - n * C;
    // Every load of kBatch rows (a thread's 16 rows of a chunk) before any product or addition,
    // so that all are in flight at once (with each product beside its loads, nvcc's SASS waited
    // on them a row at a time); weight_grad_term's products, the same additions in the same
    // order. A tap past a zero-padded edge loads 0 and 0: its product is acc_t(0), as there.
    constexpr int kBatch = kWeightGradRows / kThreads;
    const int64_t pad = (k - 1) / 2;
    for (; r < end; r += kBatch * kThreads) {
      acc_t d[kBatch], p[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int64_t src = r + b * kThreads < end ? halo_channel(c, j - pad, C, mode) : -1;
        d[b] = src >= 0 ? dz[n * C + c] : acc_t(0);
        p[b] = src >= 0 ? pooled[n * C + src] : acc_t(0);
        for (c += kThreads; c >= C; c -= C) ++n;  // the next row's (n, c), with no division
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        if (r + b * kThreads < end) sum += d[b] * p[b];
      }
    }
    sum = block_sum(sum, partial);
    if (threadIdx.x == 0) out[item] = sum;
    // No barrier before the next item: after block_sum's last one, thread t < 32 reads only
    // partial[t], which no other thread writes next.
  }
}

// Stage 2, with more than one chunk: dw[j] = the sum of tap j's chunk sums, thread t adding
// b = t, t + kThreads, ... in increasing b, then block_sum; a block per tap.
template <typename acc_t>
__global__ void weight_grad_sum_kernel(const acc_t* __restrict__ chunk_sums, int64_t k,
                                       int64_t chunks, acc_t* __restrict__ grad_w) {
  ECA_SHARED(acc_t, partial, [kThreads]);
  for (int64_t j = blockIdx.x; j < k; j += gridDim.x) {  // the same for the whole block
    acc_t sum = acc_t(0);
    for (int64_t b = threadIdx.x; b < chunks; b += kThreads) sum += chunk_sums[j * chunks + b];
    sum = block_sum(sum, partial);
    if (threadIdx.x == 0) grad_w[j] = sum;
  }
}

// ReLU's backward as torch.relu's (threshold_backward at 0): g where out > 0, else 0; a NaN
// out keeps g.
template <typename acc_t, typename scalar_t>
__device__ __forceinline__ scalar_t relu_backward(scalar_t g, scalar_t out) {
  return acc_t(out) <= acc_t(0) ? scalar_t(0) : g;
}

// grad_pre = relu_backward(g, out), elementwise: the block tail's mask before the multi-launch
// backward (the single-pass backward applies it as it loads g).
template <typename scalar_t, typename acc_t>
__global__ void relu_backward_kernel(const scalar_t* __restrict__ g,
                                     const scalar_t* __restrict__ out, int64_t numel,
                                     scalar_t* __restrict__ grad_pre) {
  for_each_index(numel, [&](int64_t i) { grad_pre[i] = relu_backward<acc_t>(g[i], out[i]); });
}

// The row r = n * C + c of (N, C) scale/shift that element i of an (N, C, L) tensor, or of an
// (N, L, C) one when kChannelsLast, multiplies.
template <bool kChannelsLast>
__device__ __forceinline__ int64_t row_of(int64_t i, int64_t C, int64_t L) {
  return kChannelsLast ? (i / (L * C)) * C + i % C : i / L;
}

// The forward's block tail after the rescale: a residual (x's layout, or null) and an
// activation; the backward passes {nullptr, None}.
template <typename scalar_t>
struct TailArgs {
  const scalar_t* residual;
  Activation activation;
};

// One element of the forward's rescale: act(v * m + res) with a residual, else act(v * m),
// rounded once. By value: a pointer to a register pack's element would put the pack in local
// memory.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ scalar_t rescale_one(scalar_t v, acc_t m, bool has_residual,
                                                scalar_t res, Activation act) {
  const acc_t out = has_residual ? fma(acc_t(v), m, acc_t(res)) : acc_t(v) * m;
  return scalar_t(activate(out, act));
}

// One element: act(v * scale[r] + shift[r], or + the residual element `res` when there is
// one), rounded once. (Shift and residual never come together.)
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ scalar_t scale_shift_one(scalar_t v, const acc_t* scale,
                                                    const acc_t* shift, int64_t r,
                                                    const scalar_t* res, Activation act) {
  if (shift) return scalar_t(activate(fma(acc_t(v), scale[r], shift[r]), act));
  return rescale_one(v, scale[r], res != nullptr, res ? *res : v, act);
}

// out = in * scale[n, c] (+ shift[n, c]), then the tail, over all elements, one element a step.
template <typename scalar_t, typename acc_t, bool kChannelsLast>
__global__ void scale_shift_kernel(const scalar_t* __restrict__ in, const acc_t* __restrict__ scale,
                                   const acc_t* __restrict__ shift, int64_t numel, int64_t C,
                                   int64_t L, scalar_t* __restrict__ out, TailArgs<scalar_t> tail) {
  for_each_index(numel, [&](int64_t i) {
    out[i] = scale_shift_one(in[i], scale, shift, row_of<kChannelsLast>(i, C, L),
                             tail.residual ? tail.residual + i : nullptr, tail.activation);
  });
}

// 16 bytes of scalar_t, so that a copy is one 128-bit load or store.
template <typename scalar_t>
struct alignas(16) Pack16 {
  static constexpr int kSize = 16 / sizeof(scalar_t);
  scalar_t v[kSize];
};

// scale_shift_kernel in 16-byte packs, for the layouts where the host code
// (scale_shift_packs in eca_launch.cuh) found in and out 16-byte aligned and a pack's rows
// cheap to find: contiguous with L >= kSize (a pack crosses at most one row end), channels
// last with C % kSize == 0 (a pack is kSize channels of one position). The numel % kSize
// elements past the last pack go one by one.
template <typename scalar_t, typename acc_t, bool kChannelsLast>
__global__ void scale_shift_packed_kernel(const scalar_t* __restrict__ in,
                                          const acc_t* __restrict__ scale,
                                          const acc_t* __restrict__ shift, int64_t numel, int64_t C,
                                          int64_t L, scalar_t* __restrict__ out,
                                          TailArgs<scalar_t> tail) {
  using Pack = Pack16<scalar_t>;
  constexpr int kSize = Pack::kSize;
  const int64_t packs = numel / kSize;
  for_each_index(packs, [&](int64_t q) {
    const int64_t i = q * kSize;
    const int64_t r = row_of<kChannelsLast>(i, C, L);
    const int64_t l = kChannelsLast ? 0 : i - r * L;  // position of element i in its row
    const Pack a = reinterpret_cast<const Pack*>(in)[q];
    Pack res;  // read only with a residual
    if (tail.residual) res = reinterpret_cast<const Pack*>(tail.residual)[q];
    Pack b;
#pragma unroll
    for (int m = 0; m < kSize; ++m) {
      const int64_t rm = kChannelsLast ? r + m : r + (l + m >= L);
      b.v[m] = scale_shift_one(a.v[m], scale, shift, rm, tail.residual ? &res.v[m] : nullptr,
                               tail.activation);
    }
    reinterpret_cast<Pack*>(out)[q] = b;
  });
  for_each_index(numel - packs * kSize, [&](int64_t e) {
    const int64_t i = packs * kSize + e;
    out[i] = scale_shift_one(in[i], scale, shift, row_of<kChannelsLast>(i, C, L),
                             tail.residual ? tail.residual + i : nullptr, tail.activation);
  });
}

}  // namespace eca_cuda
