// The CUDA kernels' spatial sums, one kernel per layout, both in the canonical order below.
// Device code only, on CUDA's built-ins (threadIdx, __syncthreads, __shfl_down_sync, min,
// fma): nvcc compiles it, and so does the host emulation in tests/cuda_emulation/, which runs
// these very kernels on the CPU.
#pragma once

#include <cstdint>

#include "eca_device.cuh"

namespace eca_cuda {

// The canonical order of every spatial sum (pooling, and t = sum g x in the backward), the
// same for both layouts, so that contiguous and channels_last inputs give the same bits:
// - element l goes to slot l % kSlots; each slot adds its elements in increasing l, in acc_t,
//   one chunk of kSumChunk elements (64 per slot) at a time, and adds each chunk's sum to a
//   double total (so a mean over 2^30 values keeps float32 accuracy);
// - the kSlots totals are added by a halving tree in double: a[i] += a[i + w] for
//   w = 32, 16, ..., 1; a[0] is the sum.
// The contiguous kernel gives each slot of a row its own thread; the channels-last kernel
// gives a thread 8 slots of one channel.
constexpr int kSlots = 64;
constexpr int64_t kSumChunk = 64 * kSlots;
constexpr int kRowsPerBlock = 4;  // contiguous: rows summed per block
// Channels last: a block is kTileC channels (one warp, coalesced) x kTileL threads over l;
// thread (c, ty) owns slots ty + kTileL * m, m < kSlotsPerThread.
constexpr int kTileC = 32;
constexpr int kTileL = 8;
constexpr int kSlotsPerThread = kSlots / kTileL;
static_assert(kSlots == 64 && kSlotsPerThread * kTileL == kSlots && kTileC == 32);

// sum + a[i] (* b[i]), the one step of every slot's chain.
template <bool kProduct, typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t add_term(const scalar_t* a, const scalar_t* b, int64_t i,
                                          acc_t sum) {
  if constexpr (kProduct) {
    return fma(acc_t(a[i]), acc_t(b[i]), sum);
  } else {
    return sum + acc_t(a[i]);
  }
}

// out[r] = scale * sum_l a[r, l] (* b[r, l]) for the rows r = n * C + c of a (N, C, L) tensor:
// block (kSlots, kRowsPerBlock), thread (slot, row of the group).
template <typename scalar_t, typename acc_t, bool kProduct>
__global__ void reduce_rows_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                   int64_t rows, int64_t L, acc_t scale, acc_t* __restrict__ out) {
  ECA_SHARED(double, totals, [kRowsPerBlock][kSlots]);
  const int slot = threadIdx.x;
  const int64_t groups = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  for (int64_t group = blockIdx.x; group < groups; group += gridDim.x) {  // same for the block
    const int64_t row = group * kRowsPerBlock + threadIdx.y;
    double total = 0;
    if (row < rows) {
      const scalar_t* ar = a + row * L;
      const scalar_t* br = kProduct ? b + row * L : nullptr;
      for (int64_t l0 = 0; l0 < L; l0 += kSumChunk) {
        const int64_t end = min(L, l0 + kSumChunk);
        acc_t sum = acc_t(0);
        for (int64_t l = l0 + slot; l < end; l += kSlots) sum = add_term<kProduct>(ar, br, l, sum);
        total += double(sum);
      }
    }
    totals[threadIdx.y][slot] = total;
    __syncthreads();
    if (slot < 32) {  // one warp per row: w = 32 from shared memory, then shuffles
      double v = totals[threadIdx.y][slot] + totals[threadIdx.y][slot + 32];
      for (int w = 16; w >= 1; w /= 2) v += __shfl_down_sync(0xffffffffu, v, w);
      if (slot == 0 && row < rows) out[row] = acc_t(v) * scale;
    }
    __syncthreads();  // totals is rewritten by the next group
  }
}

// The same sums for (N, L, C) tensors: a block owns kTileC channels of one sample.
template <typename scalar_t, typename acc_t, bool kProduct>
__global__ void reduce_columns_kernel(const scalar_t* __restrict__ a,
                                      const scalar_t* __restrict__ b, int64_t N, int64_t C,
                                      int64_t L, acc_t scale, acc_t* __restrict__ out) {
  ECA_SHARED(double, partial, [kTileL][kTileC]);
  const int ty = threadIdx.y;
  const int64_t tiles = (C + kTileC - 1) / kTileC;
  for (int64_t item = blockIdx.x; item < N * tiles; item += gridDim.x) {  // same for the block
    const int64_t n = item / tiles;
    const int64_t c = (item % tiles) * kTileC + threadIdx.x;
    double total[kSlotsPerThread] = {};
    if (c < C) {
      const scalar_t* an = a + n * L * C + c;
      const scalar_t* bn = kProduct ? b + n * L * C + c : nullptr;
      for (int64_t l0 = 0; l0 < L; l0 += kSumChunk) {
        const int64_t end = min(L, l0 + kSumChunk);
        acc_t sum[kSlotsPerThread] = {};
        for (int64_t l1 = l0; l1 < end; l1 += kSlots) {
#pragma unroll
          for (int m = 0; m < kSlotsPerThread; ++m) {
            const int64_t l = l1 + ty + kTileL * m;
            if (l < end) sum[m] = add_term<kProduct>(an, bn, l * C, sum[m]);
          }
        }
#pragma unroll
        for (int m = 0; m < kSlotsPerThread; ++m) total[m] += double(sum[m]);
      }
    }
    // Tree steps w = 32, 16, 8 pair slots of this thread (slot + w = ty + kTileL * (m + w / 8)).
#pragma unroll
    for (int half = kSlotsPerThread / 2; half >= 1; half /= 2) {
#pragma unroll
      for (int m = 0; m < half; ++m) total[m] += total[m + half];
    }
    partial[ty][threadIdx.x] = total[0];  // slot ty's value after w = 8
    __syncthreads();
    if (ty == 0 && c < C) {  // w = 4, 2, 1 across the threads of the channel
      double p[kTileL];
#pragma unroll
      for (int i = 0; i < kTileL; ++i) p[i] = partial[i][threadIdx.x];
#pragma unroll
      for (int w = kTileL / 2; w >= 1; w /= 2) {
#pragma unroll
        for (int i = 0; i < w; ++i) p[i] += p[i + w];
      }
      out[n * C + c] = acc_t(p[0]) * scale;
    }
    __syncthreads();  // partial is rewritten by the next item
  }
}

}  // namespace eca_cuda
