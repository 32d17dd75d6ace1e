// The single-pass kernels (docs/cuda-kernels.md). Forward: a block owns T channels of one
// sample, sums each channel of the tile and of its halo (the pad channels either side) in the
// canonical order of eca_reduce.cuh as it reads them from device memory, keeping the tile's in
// shared memory, computes the tile's gates, and rescales the tile from shared memory, block
// tail included: one read of x from device memory, plus the halo's; one write of y; one
// launch; the bits of the three-launch plan. Backward: the same with g's tile (below).
// Device code only, on CUDA's built-ins, as the other kernel headers.
#pragma once

#include <cstdint>

#include "../eca_math.h"
#include "eca_device.cuh"
#include "eca_kernels.cuh"
#include "eca_launch_args.h"
#include "eca_reduce.cuh"

namespace eca_cuda {

constexpr int kTileThreads = kSlots * kRowsPerBlock;  // block (kSlots, kRowsPerBlock)
// Blocks per SM the tile kernels' registers are capped for (launch bounds): two, as the tile
// plan aims for (2 x 256 threads x 128 registers fill an SM's register file).
constexpr int kTileMinBlocks = 2;

// The channels whose means a tile's gates read: the whole sample when the tile is, else the
// tile and pad channels either side.
ECA_HOST_DEVICE int64_t tile_window(int64_t T, int64_t C, int64_t pad) {
  return T == C ? C : T + 2 * pad;
}

// A tile kernel's dynamic shared memory: T * L elements from offset 0, then (16-byte
// aligned) one acc_t per window channel (the forward's means, the backward's dz) and two per
// tile channel (the forward's multipliers; the backward's gates and dp / L).
template <typename scalar_t>
ECA_HOST_DEVICE int64_t tile_means_offset(int64_t T, int64_t L) {
  return (T * L * int64_t(sizeof(scalar_t)) + 15) / 16 * 16;
}

template <typename scalar_t, typename acc_t>
ECA_HOST_DEVICE int64_t tile_shared_bytes(int64_t T, int64_t C, int64_t L, int64_t pad) {
  return tile_means_offset<scalar_t>(T, L) +
         (tile_window(T, C, pad) + 2 * T) * int64_t(sizeof(acc_t));
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
// A tile fits in shared memory, so e and Tn fit in 32 bits: one 32-bit division, where a
// 64-bit one is a long instruction sequence per pack.
template <bool kChannelsLast>
__device__ __forceinline__ int64_t tile_offset(int64_t e, int64_t Tn, int64_t C) {
  if constexpr (kChannelsLast) {
    const int64_t row = uint32_t(e) / uint32_t(Tn);
    return row * C + (e - row * Tn);
  } else {
    return e;
  }
}

// 16-byte packs a thread takes at once in the rescale (their residual loads first): an SM holds
// one or two tile blocks, so one load in flight per thread leaves most of device memory's
// latency bare.
constexpr int kTileBatch = 4;

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

// How many of its 8 slots of a channel a thread of the channels-last sums loads together, and
// in how many rounds of 64 elements, before adding any: 8 loads in flight in the forward, as 2
// rounds of 4 slots (4 of 2 for 2-byte types; more slots spill at the launch bounds' 128 registers
// on sm_90 and sm_100); fewer in the backward's sum_l g x, whose g, x and ReLU mask all take
// registers, fewer still in double.
template <bool kProduct, typename scalar_t>
constexpr int kSumSlots = !kProduct              ? (sizeof(scalar_t) < 4 ? 2 : 4)
                          : sizeof(scalar_t) > 4 ? 2
                                                 : 4;
template <bool kProduct, typename scalar_t>
constexpr int kSumRounds = kProduct ? 1 : 8 / kSumSlots<kProduct, scalar_t>;

// The totals of kS slots slot0 + s * kSlotStep (s < kS) of one channel, each in the
// canonical order (eca_reduce.cuh): each chunk's acc_t sum over l = slot, slot + kSlots, ...
// (sum_l a, or with kProduct sum_l a * b), the chunks' sums added in double. Element l of a is
// a[l * a_stride] in device memory, masked by mask[l * stride] where mask is given; of b,
// b[l * stride]. a and mask are read once, without allocating L1 lines (load_once); b (the
// backward's x) is a plain load, as with the hint the channels_last backward spills at the
// launch bounds' 128 registers. kFill: the channel is the tile's, and each (masked) element is
// also written to the shared tile, tile[l * tile_stride], and where `masked` is given to
// masked[l * stride] in device memory: the tile is filled by the pass that sums it. A thread
// issues the loads of kRounds x kS elements before it adds any of them, so that many are in
// flight (findings 1 and 3 of docs/cuda-kernels.md); the additions are the same, in the same
// order.
template <bool kProduct, int kS, int kSlotStep, int kRounds, bool kFill, typename scalar_t,
          typename acc_t>
__device__ __forceinline__ void slot_totals(const scalar_t* a, int64_t a_stride,
                                            const scalar_t* mask, const scalar_t* b, int64_t stride,
                                            int64_t slot0, int64_t L, double (&total)[kS],
                                            scalar_t* tile = nullptr, int64_t tile_stride = 0,
                                            scalar_t* masked = nullptr) {
  static_assert(kS * kSlotStep <= kSlots, "the slots of one round");
  // Each slot's acc_t sum over the chunk [l0, min(L, l0 + kSumChunk)).
  const auto chunk_sums = [&](int64_t l0, acc_t(&sum)[kS]) {
    const int64_t end = min(L, l0 + kSumChunk);
#pragma unroll
    for (int s = 0; s < kS; ++s) sum[s] = acc_t(0);
    for (int64_t base = l0 + slot0; base < end; base += kRounds * kSlots) {
      scalar_t va[kRounds][kS], vm[kRounds][kS], vb[kRounds][kS];
#pragma unroll
      for (int r = 0; r < kRounds; ++r) {
#pragma unroll
        for (int s = 0; s < kS; ++s) {
          const int64_t l = base + r * kSlots + s * kSlotStep;
          va[r][s] = vm[r][s] = vb[r][s] = scalar_t(0);
          if (l < end) {
            va[r][s] = load_once(a + l * a_stride);
            if (mask) vm[r][s] = load_once(mask + l * stride);
            if constexpr (kProduct) vb[r][s] = kFill ? b[l * stride] : load_once(b + l * stride);
          }
        }
      }
#pragma unroll
      for (int r = 0; r < kRounds; ++r) {  // each slot's elements in increasing l
#pragma unroll
        for (int s = 0; s < kS; ++s) {
          const int64_t l = base + r * kSlots + s * kSlotStep;
          if (l < end) {
            const scalar_t v = mask ? relu_backward<acc_t>(va[r][s], vm[r][s]) : va[r][s];
            if constexpr (kFill) {
              tile[l * tile_stride] = v;
              if (masked) store_once(masked + l * stride, v);
            }
            if constexpr (kProduct) {  // add_term's fma(a, b, sum)
              sum[s] = fma(acc_t(v), acc_t(vb[r][s]), sum[s]);
            } else {
              sum[s] = sum[s] + acc_t(v);
            }
          }
        }
      }
    }
  };
  acc_t sum[kS];
  int64_t l0 = 0;
  if constexpr (!kProduct) {
    // The forward's first chunk's total, 0.0 + double(sum), without the double add (double runs
    // at 1/64 the float rate on sm_86 and sm_89): the same bits, as the add only turns -0.0
    // into +0.0. (In the backward's sums the second copy of the loop spills.)
    chunk_sums(0, sum);
#pragma unroll
    for (int s = 0; s < kS; ++s) total[s] = sum[s] == acc_t(0) ? 0.0 : double(sum[s]);
    l0 = kSumChunk;
  } else {
#pragma unroll
    for (int s = 0; s < kS; ++s) total[s] = 0;
  }
  for (; l0 < L; l0 += kSumChunk) {
    chunk_sums(l0, sum);
#pragma unroll
    for (int s = 0; s < kS; ++s) total[s] += double(sum[s]);
  }
}

// window_sums for the channels-last layout: the halo's channels a half-warp each (below), then
// the tile's as reduce_columns_kernel sums, kTileC channels at a time, a warp's lanes on
// consecutive channels of one row (so the tile's rows are read in whole sectors and written to
// shared memory without bank conflicts), thread (lane, ty) owning slots ty + kTileL * m of its
// channel; the same additions in the same order as the channels-first mapping
// (reduce_columns_kernel's bits are reduce_rows_kernel's). `partial` is the tile kernel's
// totals, kTileL x kTileC doubles.
template <bool kProduct, typename scalar_t, typename acc_t, typename Store>
__device__ __forceinline__ void window_sums_columns(
    scalar_t* tile, const scalar_t* a_global, const scalar_t* mask_global, scalar_t* masked_global,
    const scalar_t* b_global, int64_t c0, int64_t Tn, int64_t lead, int64_t window, int64_t C,
    int64_t L, PaddingMode mode, double (*partial)[kTileC], const Store& store) {
  static_assert(kTileC * kTileL == kTileThreads, "a thread per (channel, row) of the block");
  const int tid = threadIdx.x + kSlots * threadIdx.y;
  const int lane = tid % kTileC, ty = tid / kTileC;  // a warp: kTileC channels of one row
  // The halo's channels first, two of one side a warp, lane 16 h + q on slots q + 16 m of the
  // pair's channel h (tree steps w >= 16 in the thread, the rest by shuffles within the
  // half-warp): a row's two adjacent halo channels are one sector of a request, a lane's loads
  // go 8 at a time (the backward's g, mask and x 2 each, in double 1), and no barrier waits on
  // them. A lane a halo channel in the groups below loaded its 8 slots a few at a time behind
  // two barriers: 0.33x a copy more, simulated (docs/cuda-kernels.md).
  const int half = tid % 32 / 16, q = tid % 16;
  const int64_t left = lead, right = window - Tn - lead;  // halo channels either side
  const int64_t left_pairs = (left + 1) / 2, pairs = left_pairs + (right + 1) / 2;
  for (int64_t p = tid / 32; p < pairs; p += kTileThreads / 32) {  // the same for a warp
    const bool on_left = p < left_pairs;
    const int64_t h = 2 * (on_left ? p : p - left_pairs) + half;  // from its side's first
    const bool in_halo = h < (on_left ? left : right);
    const int64_t j = on_left ? h : lead + Tn + h;  // window channel
    const int64_t channel = in_halo ? halo_channel(c0, j - lead, C, mode) : -1;
    double v = 0, s4[4];  // slots q + 16 m
    if (channel >= 0) {
      const scalar_t* a = a_global + channel;
      const scalar_t* mask = mask_global ? mask_global + channel : nullptr;
      const scalar_t* b = kProduct ? b_global + channel : nullptr;
      if constexpr (kProduct) {  // kP slots at once: 4 spill on sm_120, 2 in double on sm_80
        constexpr int kP = sizeof(scalar_t) > 4 ? 1 : 2;
#pragma unroll
        for (int m0 = 0; m0 < 4; m0 += kP) {
          double part[kP];
          slot_totals<true, kP, 16, 1, false, scalar_t, acc_t>(a, C, mask, b, C, q + 16 * m0, L,
                                                               part);
#pragma unroll
          for (int m = 0; m < kP; ++m) s4[m0 + m] = part[m];
        }
      } else {
        slot_totals<false, 4, 16, 2, false, scalar_t, acc_t>(a, C, mask, b, C, q, L, s4);
      }
      v = (s4[0] + s4[2]) + (s4[1] + s4[3]);
    }
    for (int w = 8; w >= 1; w /= 2) v += __shfl_down_sync(0xffffffffu, v, w);
    if (q == 0 && in_halo) store(j, channel, acc_t(v));
  }
  for (int64_t i0 = 0; i0 < Tn; i0 += kTileC) {
    // Lane i takes the tile's channel i0 + i, from the tile's own first (so a warp's row of x
    // starts where the tile does, on a sector or line boundary).
    const int64_t t = i0 + lane;
    const bool in_tile = t < Tn;
    const int64_t c = c0 + (in_tile ? t : 0);  // an address only past the tile's end
    const scalar_t* b = kProduct ? b_global + c : nullptr;
    const scalar_t* mask = mask_global ? mask_global + c : nullptr;
    constexpr int kS = kSumSlots<kProduct, scalar_t>, kR = kSumRounds<kProduct, scalar_t>;
    double s[kSlotsPerThread];  // slots ty + kTileL * m
    static_assert(kSlotsPerThread % kS == 0);
#pragma unroll
    for (int m0 = 0; m0 < kSlotsPerThread; m0 += kS) {
      double part[kS];
      if (in_tile) {
        slot_totals<kProduct, kS, kTileL, kR, true, scalar_t, acc_t>(
            a_global + c, C, mask, b, C, ty + kTileL * m0, L, part, tile + t, Tn,
            masked_global ? masked_global + c : nullptr);
      }
#pragma unroll
      for (int m = 0; m < kS; ++m) s[m0 + m] = in_tile ? part[m] : 0.0;
    }
    static_assert(kSlotsPerThread == 8, "the tree below");
    // Tree steps w = 32, 16, 8 over this thread's slots (slot + w = ty + kTileL * (m + w / 8)).
    const double v0 = (s[0] + s[4]) + (s[2] + s[6]);
    const double v1 = (s[1] + s[5]) + (s[3] + s[7]);
    partial[ty][lane] = v0 + v1;  // slot ty's value after w = 8
    __syncthreads();
    if (ty == 0 && in_tile) {  // w = 4, 2, 1 across the threads of the channel
      double p[kTileL];
#pragma unroll
      for (int y = 0; y < kTileL; ++y) p[y] = partial[y][lane];
#pragma unroll
      for (int w = kTileL / 2; w >= 1; w /= 2) {
#pragma unroll
        for (int y = 0; y < w; ++y) p[y] += p[y + w];
      }
      store(t + lead, c, acc_t(p[0]));
    }
    __syncthreads();  // partial is rewritten by the next channels
  }
}

// The window's spatial sums, read from device memory once: sum_l a (kProduct: sum_l a * b),
// a masked by `mask_global` (relu_backward, where given); all three at the sample's first
// element. The pass also fills the shared tile with the tile's channels of (masked) a, and
// where `masked_global` is given writes them there too. Channels first, a warp per channel, as
// reduce_rows_kernel sums a row (lanes on consecutive elements: whole sectors, no bank
// conflicts); channels last, window_sums_columns. One thread calls store(j, channel, sum) for
// window channel j (channel -1: the zero padding, sum 0). Ends with a barrier: the tile is
// then whole.
template <bool kProduct, bool kChannelsLast, typename scalar_t, typename acc_t, typename Store>
__device__ __forceinline__ void window_sums(scalar_t* tile, const scalar_t* a_global,
                                            const scalar_t* mask_global, scalar_t* masked_global,
                                            const scalar_t* b_global, int64_t c0, int64_t Tn,
                                            int64_t lead, int64_t window, int64_t C, int64_t L,
                                            PaddingMode mode, double (*totals)[kSlots],
                                            const Store& store) {
  if constexpr (kChannelsLast) {  // totals' kRowsPerBlock x kSlots doubles as kTileL x kTileC
    static_assert(kTileL * kTileC == kRowsPerBlock * kSlots);
    window_sums_columns<kProduct, scalar_t, acc_t>(
        tile, a_global, mask_global, masked_global, b_global, c0, Tn, lead, window, C, L, mode,
        reinterpret_cast<double (*)[kTileC]>(totals), store);
  } else {
    // A warp per channel, lane i on slots i and i + 32 (tree step w = 32 in the thread, the
    // rest by shuffles, as reduce_rows_kernel's warp): a warp request reads 32 consecutive
    // elements, one or two 128-byte lines (8 lanes a channel, 4 channels a request, with the
    // tree's steps w >= 8 in the thread, took 59% more simulated cycles: 4 lines a request).
    // No barrier until the end.
    constexpr int kWarps = kTileThreads / 32;
    constexpr int kR = kProduct ? 2 : 4;  // rounds of the 2 slots loaded together
    const int tid = threadIdx.x + kSlots * threadIdx.y;
    const int lane = tid % 32;
    for (int64_t j = tid / 32; j < window; j += kWarps) {
      const int64_t t = j - lead;
      const bool in_tile = t >= 0 && t < Tn;
      const int64_t channel = in_tile ? c0 + t : halo_channel(c0, t, C, mode);
      const int64_t c = channel < 0 ? 0 : channel;  // an address only; padding reads nothing
      const scalar_t* b = kProduct ? b_global + c * L : nullptr;
      const scalar_t* mask = mask_global ? mask_global + c * L : nullptr;
      double v = 0, s[2];  // slots lane and lane + 32
      if (in_tile) {       // the same for the warp
        slot_totals<kProduct, 2, 32, kR, true, scalar_t, acc_t>(
            a_global + c * L, 1, mask, b, 1, lane, L, s, tile + t * L, 1,
            masked_global ? masked_global + c * L : nullptr);
        v = s[0] + s[1];
      } else if (channel >= 0) {  // the halo (the backward: half the rounds, for registers)
        slot_totals<kProduct, 2, 32, kProduct ? kR / 2 : kR, false, scalar_t, acc_t>(
            a_global + c * L, 1, mask, b, 1, lane, L, s);
        v = s[0] + s[1];
      }
      for (int w = 16; w >= 1; w /= 2) v += __shfl_down_sync(0xffffffffu, v, w);
      if (lane == 0) store(j, channel, acc_t(v));
    }
    __syncthreads();
  }
}

// out = op(tile element, its tile channel t, the residual element) from the shared tile to
// device memory (`out` and `residual` at the tile's first element; residual may be null, and
// op then gets the tile element in its place), in 16-byte packs where every pointer allows.
template <typename scalar_t, bool kChannelsLast, typename Op>
__device__ __forceinline__ void store_tile(scalar_t* out, const scalar_t* tile,
                                           const scalar_t* residual, int64_t Tn, int64_t C,
                                           int64_t L, int tid, const Op& op) {
  using Pack = Pack16<scalar_t>;
  constexpr int64_t kSize = Pack::kSize;
  const int64_t count = Tn * L;
  if (tile_packs<scalar_t, kChannelsLast>(out, Tn, C, L) &&
      (!residual || tile_packs<scalar_t, kChannelsLast>(residual, Tn, C, L))) {
    const int64_t packs = count / kSize;
    for (int64_t q0 = tid; q0 < packs; q0 += kTileBatch * kTileThreads) {
      Pack res[kTileBatch];  // read only with a residual, every load first
      int64_t offset[kTileBatch];
#pragma unroll
      for (int b = 0; b < kTileBatch; ++b) {
        const int64_t q = q0 + b * kTileThreads;
        offset[b] = tile_offset<kChannelsLast>(q * kSize, Tn, C);
        if (residual && q < packs) {
          res[b] = load_once(reinterpret_cast<const Pack*>(residual + offset[b]));
        }
      }
#pragma unroll
      for (int b = 0; b < kTileBatch; ++b) {
        const int64_t q = q0 + b * kTileThreads;
        if (q >= packs) break;
        // 32-bit, as tile_offset: e < Tn * L fits
        const int e = int(q * kSize), t = kChannelsLast ? e % int(Tn) : e / int(L);
        const int l = kChannelsLast ? 0 : e - t * int(L);
        const Pack in = reinterpret_cast<const Pack*>(tile)[q];
        Pack o;
#pragma unroll
        for (int m = 0; m < kSize; ++m) {
          o.v[m] = op(in.v[m], kChannelsLast ? t + m : t + (l + m >= L),
                      residual ? res[b].v[m] : in.v[m]);
        }
        store_once(reinterpret_cast<Pack*>(out + offset[b]), o);
      }
    }
    if (!kChannelsLast) {
      for (int64_t e = count / kSize * kSize + tid; e < count; e += kTileThreads) {
        store_once(out + e, op(tile[e], e / L, residual ? load_once(residual + e) : tile[e]));
      }
    }
  } else {
    for (int64_t e = tid; e < count; e += kTileThreads) {
      const int64_t offset = tile_offset<kChannelsLast>(e, Tn, C);
      store_once(out + offset, op(tile[e], kChannelsLast ? e % Tn : e / L,
                                  residual ? load_once(residual + offset) : tile[e]));
    }
  }
}

// Where a block's work item (sample n, tile starting at channel c0) lies.
struct TileItem {
  int64_t n, c0, Tn, window, first;  // first: the tile's first element in device memory
};

template <bool kChannelsLast>
__device__ __forceinline__ TileItem tile_item(int64_t item, int64_t T, int64_t C, int64_t L,
                                              int64_t pad) {
  const int64_t tiles = (C + T - 1) / T;
  const int64_t n = item / tiles, c0 = item % tiles * T;
  const int64_t Tn = min(T, C - c0);
  return {n, c0, Tn, T == C ? C : Tn + 2 * pad, kChannelsLast ? n * L * C + c0 : (n * C + c0) * L};
}

template <typename scalar_t, typename acc_t, bool kChannelsLast>
__global__ void __launch_bounds__(kTileThreads, kTileMinBlocks)
    tile_forward_kernel(ForwardArgs<scalar_t, acc_t> a, int64_t T) {
  ECA_DYNAMIC_SHARED(shared);
  ECA_SHARED(double, totals, [kRowsPerBlock][kSlots]);
  const int64_t C = a.C, L = a.L, pad = (a.k - 1) / 2;
  scalar_t* tile = reinterpret_cast<scalar_t*>(shared);
  acc_t* means = reinterpret_cast<acc_t*>(shared + tile_means_offset<scalar_t>(T, L));
  acc_t* mult = means + tile_window(T, C, pad);
  const int tid = threadIdx.x + kSlots * threadIdx.y;
  const bool whole = T == C;
  const int64_t lead = whole ? 0 : pad;  // window channel j is channel c0 - lead + j (wrapped)
  const int64_t tiles = (C + T - 1) / T;
  for (int64_t item = blockIdx.x; item < a.N * tiles; item += gridDim.x) {  // same for the block
    const TileItem it = tile_item<kChannelsLast>(item, T, C, L, pad);
    const int64_t n = it.n, c0 = it.c0, Tn = it.Tn;

    // 1. The window's means, from device memory, the tile kept in shared memory as it is read.
    const scalar_t* sample = a.x + n * C * L;
    window_sums<false, kChannelsLast, scalar_t, acc_t>(
        tile, sample, nullptr, nullptr, sample, c0, Tn, lead, it.window, C, L, a.mode, totals,
        [&](int64_t j, int64_t, acc_t sum) { means[j] = sum * (acc_t(1) / acc_t(L)); });

    // 2. The tile's gates (gate_kernel's arithmetic, the means read from the window).
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

    // 3. The rescale and the block tail, from shared memory to device memory.
    const bool has_residual = a.residual != nullptr;
    store_tile<scalar_t, kChannelsLast>(
        a.y + it.first, tile, has_residual ? a.residual + it.first : nullptr, Tn, C, L, tid,
        [&](scalar_t v, int64_t t, scalar_t res) {
          return rescale_one(v, mult[t], has_residual, res, a.activation);
        });
    __syncthreads();  // the next item rewrites the tile, the means and the multipliers
  }
}

// The single-pass backward (docs/cuda-kernels.md): a block owns T channels of one sample,
// sums t = g x over the tile and its halo as it reads g and x from device memory, keeping g's
// tile in shared memory (under a ReLU tail: masked by its output as it is read, and written
// out once as the residual's gradient), turns the window's t
// into dz, the tile's dz into dp / L, writes dz (for the weight gradient's launches after it)
// and grad_x = g s + dp / L from shared memory. One read of g and of x, plus the halo's; one
// write of grad_x; the bits of the multi-launch plan.
template <typename scalar_t, typename acc_t, bool kChannelsLast>
__global__ void __launch_bounds__(kTileThreads, kTileMinBlocks)
    tile_backward_kernel(BackwardArgs<scalar_t, acc_t> a, int64_t T) {
  ECA_DYNAMIC_SHARED(shared);
  ECA_SHARED(double, totals, [kRowsPerBlock][kSlots]);
  const int64_t C = a.C, L = a.L, pad = (a.k - 1) / 2;
  scalar_t* tile = reinterpret_cast<scalar_t*>(shared);
  acc_t* dz = reinterpret_cast<acc_t*>(shared + tile_means_offset<scalar_t>(T, L));
  acc_t* gate = dz + tile_window(T, C, pad);
  acc_t* shift = gate + T;
  const int tid = threadIdx.x + kSlots * threadIdx.y;
  const bool whole = T == C;
  const int64_t lead = whole ? 0 : pad;
  const int64_t tiles = (C + T - 1) / T;
  for (int64_t item = blockIdx.x; item < a.N * tiles; item += gridDim.x) {  // same for the block
    const TileItem it = tile_item<kChannelsLast>(item, T, C, L, pad);
    const int64_t n = it.n, c0 = it.c0, Tn = it.Tn;

    // 1. The window's dz = t s (1 - s), t = sum_l g x, g's tile kept in shared memory as it is
    // read (masked, and written out as the residual's gradient, under a ReLU tail).
    const bool masks = a.relu_out != nullptr;
    const int64_t sample = n * C * L;
    const acc_t* gate_n = a.gate + n * C;
    window_sums<true, kChannelsLast, scalar_t, acc_t>(
        tile, a.grad_y + sample, masks ? a.relu_out + sample : nullptr,
        masks ? a.grad_pre + sample : nullptr, a.x + sample, c0, Tn, lead, it.window, C, L, a.mode,
        totals, [&](int64_t j, int64_t channel, acc_t t) {
          dz[j] = channel >= 0 ? gate_input_grad(t, gate_n[channel]) : acc_t(0);
        });

    // 2. The tile's dz (for the weight gradient) and dp / L (pooled_grad_kernel's arithmetic).
    const WindowReader<acc_t> dz_at{dz, c0 - lead, C, whole};
    for (int64_t t = tid; t < Tn; t += kTileThreads) {
      const int64_t r = n * C + c0 + t;
      a.dz[r] = dz[t + lead];
      gate[t] = a.gate[r];
      shift[t] = channel_conv_transposed_at(dz_at, a.weight, a.k, c0 + t, C, a.mode) / acc_t(L);
    }
    __syncthreads();

    // 3. grad_x = g s + dp / L (scale_shift_one's arithmetic), from shared memory.
    store_tile<scalar_t, kChannelsLast>(
        a.grad_x + it.first, tile, static_cast<const scalar_t*>(nullptr), Tn, C, L, tid,
        [&](scalar_t v, int64_t t, scalar_t) {
          return scale_shift_one(v, gate, shift, t, static_cast<const scalar_t*>(nullptr),
                                 Activation::None);
        });
    __syncthreads();  // the next item rewrites the tile, dz, the gates and the shifts
  }
}

}  // namespace eca_cuda
