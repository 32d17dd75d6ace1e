// The single-pass forward (docs/cuda-kernels.md): a block owns T channels of one sample, loads
// them into shared memory once, sums each channel of the tile and of its halo (the pad
// channels either side, read from device memory) in the canonical order of eca_reduce.cuh,
// computes the tile's gates, and rescales the tile from shared memory, block tail included.
// One read of x from device memory, plus the halo's; one write of y; one launch; the bits of
// the three-launch plan. Device code only, on CUDA's built-ins, as the other kernel headers.
#pragma once

#include <cstdint>

#include "../eca_math.h"
#include "eca_device.cuh"
#include "eca_kernels.cuh"
#include "eca_launch_args.h"
#include "eca_reduce.cuh"

namespace eca_cuda {

constexpr int kTileThreads = kSlots * kRowsPerBlock;  // block (kSlots, kRowsPerBlock)

// The channels whose means a tile's gates read: the whole sample when the tile is, else the
// tile and pad channels either side.
ECA_HOST_DEVICE int64_t tile_window(int64_t T, int64_t C, int64_t pad) {
  return T == C ? C : T + 2 * pad;
}

// The tile kernel's dynamic shared memory: T * L elements from offset 0, then (16-byte
// aligned) the window's means and the tile's multipliers, in acc_t.
template <typename scalar_t>
ECA_HOST_DEVICE int64_t tile_means_offset(int64_t T, int64_t L) {
  return (T * L * int64_t(sizeof(scalar_t)) + 15) / 16 * 16;
}

template <typename scalar_t, typename acc_t>
ECA_HOST_DEVICE int64_t tile_shared_bytes(int64_t T, int64_t C, int64_t L, int64_t pad) {
  return tile_means_offset<scalar_t>(T, L) + (tile_window(T, C, pad) + T) * int64_t(sizeof(acc_t));
}

// Whether the tile starting at `p` moves in 16-byte packs: p aligned and, channels last, rows
// of Tn channels (stride C) that are whole packs.
template <typename scalar_t, bool kChannelsLast>
__device__ __forceinline__ bool tile_packs(const scalar_t* p, int64_t Tn, int64_t C, int64_t L) {
  constexpr int64_t kSize = Pack16<scalar_t>::kSize;
  if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return false;
  // Channels first, a pack may cross one channel's end, not two (the rescale finds its rows so).
  return kChannelsLast ? (Tn % kSize == 0 && C % kSize == 0) : L >= kSize;
}

// Offset from the tile's first element in device memory of tile element e: (t, l) stored at
// e = t * L + l (channels first, the tile is contiguous) or e = l * Tn + t (channels last).
template <bool kChannelsLast>
__device__ __forceinline__ int64_t tile_offset(int64_t e, int64_t Tn, int64_t C) {
  return kChannelsLast ? (e / Tn) * C + e % Tn : e;
}

// The pooled value of channel src, from the window's means (window channel j is channel
// first + j, wrapped), for channel_conv_at.
template <typename acc_t>
struct WindowReader {
  const acc_t* means;
  int64_t first, C;
  bool whole;
  ECA_HOST_DEVICE acc_t operator()(int64_t src) const {
    if (whole) return means[src];
    int64_t j = src - first;  // in (-C, C + pad): one wrap at most either way
    if (j < 0) j += C;
    if (j >= C) j -= C;
    return means[j];
  }
};

template <typename scalar_t, typename acc_t, bool kChannelsLast>
__global__ void tile_forward_kernel(ForwardArgs<scalar_t, acc_t> a, int64_t T) {
  ECA_DYNAMIC_SHARED(shared);
  ECA_SHARED(double, totals, [kRowsPerBlock][kSlots]);
  using Pack = Pack16<scalar_t>;
  constexpr int64_t kSize = Pack::kSize;
  const int64_t C = a.C, L = a.L, pad = (a.k - 1) / 2;
  scalar_t* tile = reinterpret_cast<scalar_t*>(shared);
  acc_t* means = reinterpret_cast<acc_t*>(shared + tile_means_offset<scalar_t>(T, L));
  acc_t* mult = means + tile_window(T, C, pad);
  const int slot = threadIdx.x;
  const int tid = threadIdx.x + kSlots * threadIdx.y;
  const bool whole = T == C;
  const int64_t lead = whole ? 0 : pad;  // window channel j is channel c0 - lead + j (wrapped)
  const int64_t tiles = (C + T - 1) / T;
  for (int64_t item = blockIdx.x; item < a.N * tiles; item += gridDim.x) {  // same for the block
    const int64_t n = item / tiles, c0 = item % tiles * T;
    const int64_t Tn = min(T, C - c0);
    const int64_t window = whole ? C : Tn + 2 * pad;
    const int64_t count = Tn * L;
    const int64_t first = kChannelsLast ? n * L * C + c0 : (n * C + c0) * L;

    // 1. The tile, from device memory into shared memory.
    const scalar_t* xs = a.x + first;
    if (tile_packs<scalar_t, kChannelsLast>(xs, Tn, C, L)) {
      for (int64_t q = tid; q < count / kSize; q += kTileThreads) {
        reinterpret_cast<Pack*>(tile)[q] =
            *reinterpret_cast<const Pack*>(xs + tile_offset<kChannelsLast>(q * kSize, Tn, C));
      }
      if (!kChannelsLast) {  // the elements past the last pack (channels last has none)
        for (int64_t e = count / kSize * kSize + tid; e < count; e += kTileThreads) tile[e] = xs[e];
      }
    } else {
      for (int64_t e = tid; e < count; e += kTileThreads) {
        tile[e] = xs[tile_offset<kChannelsLast>(e, Tn, C)];
      }
    }
    __syncthreads();

    // 2. The window's means, kRowsPerBlock channels at a time, as reduce_rows_kernel sums rows:
    // the tile's channels from shared memory, the halo's from device memory.
    for (int64_t j0 = 0; j0 < window; j0 += kRowsPerBlock) {
      const int64_t j = j0 + threadIdx.y, t = j - lead;
      const bool in_tile = j < window && t >= 0 && t < Tn;
      const int64_t halo = (j < window && !in_tile) ? halo_channel(c0, t, C, a.mode) : -1;
      double total = 0;
      if (in_tile || halo >= 0) {
        const scalar_t* src = in_tile
                                  ? tile + (kChannelsLast ? t : t * L)
                                  : a.x + (kChannelsLast ? n * L * C + halo : (n * C + halo) * L);
        const int64_t stride = in_tile ? (kChannelsLast ? Tn : 1) : (kChannelsLast ? C : 1);
        for (int64_t l0 = 0; l0 < L; l0 += kSumChunk) {
          const int64_t end = min(L, l0 + kSumChunk);
          acc_t sum = acc_t(0);
          for (int64_t l = l0 + slot; l < end; l += kSlots) sum = sum + acc_t(src[l * stride]);
          total += double(sum);
        }
      }
      totals[threadIdx.y][slot] = total;
      __syncthreads();
      if (slot < 32) {  // one warp per channel: w = 32 from shared memory, then shuffles
        double v = totals[threadIdx.y][slot] + totals[threadIdx.y][slot + 32];
        for (int w = 16; w >= 1; w /= 2) v += __shfl_down_sync(0xffffffffu, v, w);
        if (slot == 0 && j < window) means[j] = acc_t(v) * (acc_t(1) / acc_t(L));
      }
      __syncthreads();  // totals is rewritten by the next channels
    }

    // 3. The tile's gates (gate_kernel's arithmetic, the means read from the window).
    const acc_t factor = a.scale * (a.gain ? *a.gain : acc_t(1));
    const WindowReader<acc_t> pooled_at{means, c0 - lead, C, whole};
    for (int64_t t = tid; t < Tn; t += kTileThreads) {
      const int64_t r = n * C + c0 + t;
      const acc_t s = sigmoid(channel_conv_at(pooled_at, a.weight, a.k, c0 + t, C, a.mode));
      a.pooled[r] = means[t + lead];
      a.gate[r] = s;
      acc_t m = s;
      if (a.multiplier) {
        m = s * factor;
        a.multiplier[r] = m;
      }
      mult[t] = m;
    }
    __syncthreads();

    // 4. The rescale and the block tail, from shared memory to device memory.
    scalar_t* ys = a.y + first;
    const scalar_t* rs = a.residual ? a.residual + first : nullptr;
    if (tile_packs<scalar_t, kChannelsLast>(ys, Tn, C, L) &&
        (!rs || tile_packs<scalar_t, kChannelsLast>(rs, Tn, C, L))) {
      for (int64_t q = tid; q < count / kSize; q += kTileThreads) {
        const int64_t e = q * kSize, offset = tile_offset<kChannelsLast>(e, Tn, C);
        const int64_t t = kChannelsLast ? e % Tn : e / L;
        const int64_t l = kChannelsLast ? 0 : e - t * L;
        const Pack in = reinterpret_cast<const Pack*>(tile)[q];
        const Pack res = rs ? *reinterpret_cast<const Pack*>(rs + offset) : in;  // in: unused
        Pack out;
#pragma unroll
        for (int m = 0; m < kSize; ++m) {
          const int64_t tm = kChannelsLast ? t + m : t + (l + m >= L);
          out.v[m] = rescale_one(in.v[m], mult[tm], rs != nullptr, res.v[m], a.activation);
        }
        *reinterpret_cast<Pack*>(ys + offset) = out;
      }
      if (!kChannelsLast) {
        for (int64_t e = count / kSize * kSize + tid; e < count; e += kTileThreads) {
          ys[e] =
              rescale_one(tile[e], mult[e / L], rs != nullptr, rs ? rs[e] : tile[e], a.activation);
        }
      }
    } else {
      for (int64_t e = tid; e < count; e += kTileThreads) {
        const int64_t offset = tile_offset<kChannelsLast>(e, Tn, C);
        const int64_t t = kChannelsLast ? e % Tn : e / L;
        ys[offset] =
            rescale_one(tile[e], mult[t], rs != nullptr, rs ? rs[offset] : tile[e], a.activation);
      }
    }
    __syncthreads();  // the next item rewrites the tile, the means and the multipliers
  }
}

}  // namespace eca_cuda
