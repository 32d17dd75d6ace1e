// Which CUDA kernels eca_forward and eca_backward launch, on which grids: host code with no
// ATen, shared by eca_kernels_cuda.cu, whose Launcher launches on the GPU, and by the host
// emulation in tests/cuda_emulation/, whose Launcher runs the same launches on the CPU.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "eca_kernels.cuh"
#include "eca_launch_args.h"
#include "eca_reduce.cuh"
#include "eca_tile.cuh"

namespace eca_cuda {

struct LaunchConfig {
  dim3 grid, block;
  std::size_t shared_bytes = 0;  // dynamic shared memory
};

// Blocks for `items` work items of `per_block` each, at most max_blocks (the kernels loop).
inline LaunchConfig blocks_for(int64_t items, int64_t per_block, dim3 block, int64_t max_blocks) {
  const int64_t blocks = std::min((items + per_block - 1) / per_block, max_blocks);
  return {dim3(static_cast<unsigned>(std::max<int64_t>(blocks, 1))), block};
}

inline LaunchConfig threads_for(int64_t items, int64_t max_blocks) {
  return blocks_for(items, kThreads, dim3(kThreads), max_blocks);
}

// out[n, c] = scale * sum_l a (* b): the spatial sum kernel of `layout`.
template <typename scalar_t, typename acc_t, typename Launcher>
void launch_reduce(Launcher& launch, const scalar_t* a, const scalar_t* b, int64_t N, int64_t C,
                   int64_t L, Layout layout, acc_t scale, acc_t* out, int64_t max_blocks) {
  if (layout == Layout::ChannelsFirst) {
    const LaunchConfig config =
        blocks_for(N * C, kRowsPerBlock, dim3(kSlots, kRowsPerBlock), max_blocks);
    if (b) {
      launch("reduce_rows_kernel", reduce_rows_kernel<scalar_t, acc_t, true>, config, a, b, N * C,
             L, scale, out);
    } else {
      launch("reduce_rows_kernel", reduce_rows_kernel<scalar_t, acc_t, false>, config, a, b, N * C,
             L, scale, out);
    }
  } else {
    // 1-D grid over (n, channel tile): gridDim.y would cap N at 65535.
    const LaunchConfig config =
        blocks_for(N * ((C + kTileC - 1) / kTileC), 1, dim3(kTileC, kTileL), max_blocks);
    if (b) {
      launch("reduce_columns_kernel", reduce_columns_kernel<scalar_t, acc_t, true>, config, a, b, N,
             C, L, scale, out);
    } else {
      launch("reduce_columns_kernel", reduce_columns_kernel<scalar_t, acc_t, false>, config, a, b,
             N, C, L, scale, out);
    }
  }
}

// Whether scale_shift_packed_kernel may run: every pointer 16-byte aligned (the residual
// when there is one), and its condition on the layout (see the kernel).
template <typename scalar_t>
bool scale_shift_packs(const scalar_t* in, const scalar_t* out, const scalar_t* residual, int64_t C,
                       int64_t L, Layout layout) {
  constexpr int64_t kSize = Pack16<scalar_t>::kSize;
  const bool aligned = reinterpret_cast<std::uintptr_t>(in) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(out) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(residual) % 16 == 0;
  return aligned && (layout == Layout::ChannelsLast ? C % kSize == 0 : L >= kSize);
}

// out = in * scale (+ shift), each (N, C) value over its channel's L elements, then the tail.
template <typename scalar_t, typename acc_t, typename Launcher>
void launch_scale_shift(Launcher& launch, const scalar_t* in, const acc_t* scale,
                        const acc_t* shift, int64_t N, int64_t C, int64_t L, Layout layout,
                        scalar_t* out, int64_t max_blocks,
                        TailArgs<scalar_t> tail = {nullptr, Activation::None}) {
  const int64_t numel = N * C * L;
  if (numel == 0) return;
  const bool last = layout == Layout::ChannelsLast;
  if (scale_shift_packs(in, out, tail.residual, C, L, layout)) {
    const LaunchConfig config = threads_for(numel / Pack16<scalar_t>::kSize, max_blocks);
    if (last) {
      launch("scale_shift_packed_kernel", scale_shift_packed_kernel<scalar_t, acc_t, true>, config,
             in, scale, shift, numel, C, L, out, tail);
    } else {
      launch("scale_shift_packed_kernel", scale_shift_packed_kernel<scalar_t, acc_t, false>, config,
             in, scale, shift, numel, C, L, out, tail);
    }
    return;
  }
  const LaunchConfig config = threads_for(numel, max_blocks);
  if (last) {
    launch("scale_shift_kernel", scale_shift_kernel<scalar_t, acc_t, true>, config, in, scale,
           shift, numel, C, L, out, tail);
  } else {
    launch("scale_shift_kernel", scale_shift_kernel<scalar_t, acc_t, false>, config, in, scale,
           shift, numel, C, L, out, tail);
  }
}

// Channels per tile within `budget` bytes, or 0: tiles from the whole sample down, in powers
// of two below C, the first that fits and leaves the grid two blocks per SM; else the
// narrowest that fits, as long as its halo (2 pad channels, read a second time) is under half
// the tile and its window holds distinct channels.
template <typename scalar_t, typename acc_t, typename Args>
int64_t tile_channels_within(const Args& a, int64_t budget) {
  const int64_t pad = (a.k - 1) / 2;
  int64_t below = 1;  // the largest power of two below C
  while (below * 2 < a.C) below *= 2;
  int64_t best = 0;
  for (int64_t T = a.C; T >= 1 && budget > 0; T = T == a.C ? (below < a.C ? below : 0) : T / 2) {
    if (tile_shared_bytes<scalar_t, acc_t>(T, a.C, a.L, pad) > budget) continue;
    if (T < a.C && T + 2 * pad > a.C) continue;  // the window would wrap onto itself
    if (T < a.C && 4 * pad >= T) break;          // the halo is half the tile or more
    best = T;
    if (a.N * ((a.C + T - 1) / T) >= 2 * a.sms) break;
  }
  return best;
}

// Channels per tile of the single-pass kernels, or 0 for the multi-launch plans: a tile that
// two blocks an SM hold (pair_budget) where one fits, else one of up to tile_budget bytes
// (one block an SM). The forward and the backward take the same tiles.
template <typename scalar_t, typename acc_t, typename Args>
int64_t tile_channels(const Args& a) {
  const int64_t pair =
      tile_channels_within<scalar_t, acc_t>(a, std::min(a.pair_budget, a.tile_budget));
  return pair > 0 ? pair : tile_channels_within<scalar_t, acc_t>(a, a.tile_budget);
}

// The launch of a single-pass kernel with T channels per tile.
template <typename scalar_t, typename acc_t, typename Args>
LaunchConfig tile_config(const Args& a, int64_t T) {
  LaunchConfig config =
      blocks_for(a.N * ((a.C + T - 1) / T), 1, dim3(kSlots, kRowsPerBlock), a.max_blocks);
  config.shared_bytes = tile_shared_bytes<scalar_t, acc_t>(T, a.C, a.L, (a.k - 1) / 2);
  return config;
}

// y = act(x * sigmoid(conv(mean_l x)) * scale * gain + residual), the tail optional: one
// launch of the single-pass kernel where a tile fits, else 3 launches. Expects N * C > 0 (the
// caller returns early).
template <typename scalar_t, typename acc_t, typename Launcher>
void launch_forward(Launcher& launch, const ForwardArgs<scalar_t, acc_t>& a) {
  if (const int64_t T = tile_channels<scalar_t, acc_t>(a); T > 0) {
    const LaunchConfig config = tile_config<scalar_t, acc_t>(a, T);
    if (a.layout == Layout::ChannelsLast) {
      launch("tile_forward_kernel", tile_forward_kernel<scalar_t, acc_t, true>, config, a, T);
    } else {
      launch("tile_forward_kernel", tile_forward_kernel<scalar_t, acc_t, false>, config, a, T);
    }
    return;
  }
  const int64_t NC = a.N * a.C;
  launch_reduce(launch, a.x, static_cast<const scalar_t*>(nullptr), a.N, a.C, a.L, a.layout,
                acc_t(1) / acc_t(a.L), a.pooled, a.max_blocks);
  launch("gate_kernel", gate_kernel<acc_t>, threads_for(NC, a.max_blocks),
         static_cast<const acc_t*>(a.pooled), a.weight, NC, a.C, a.k, a.mode, a.gate, a.scale,
         a.gain, a.multiplier);
  launch_scale_shift(launch, a.x, static_cast<const acc_t*>(a.multiplier ? a.multiplier : a.gate),
                     static_cast<const acc_t*>(nullptr), a.N, a.C, a.L, a.layout, a.y, a.max_blocks,
                     TailArgs<scalar_t>{a.residual, a.activation});
}

// grad_weight[j] = sum_{n, c} dz[n, c] p[n, c + j - pad], in a fixed order: one launch per
// tap and chunk of rows, and one more to add the chunks' sums where there are several.
template <typename scalar_t, typename acc_t, typename Launcher>
void launch_weight_grad(Launcher& launch, const BackwardArgs<scalar_t, acc_t>& a) {
  const int64_t NC = a.N * a.C, chunks = weight_grad_chunks(NC);
  acc_t* out = chunks == 1 ? a.grad_weight : a.weight_grad_partial;
  launch("weight_grad_kernel", weight_grad_kernel<acc_t>,
         blocks_for(a.k * chunks, 1, dim3(kThreads), a.max_blocks), static_cast<const acc_t*>(a.dz),
         a.pooled, NC, a.C, a.k, a.mode, chunks, out);
  if (chunks > 1) {
    launch("weight_grad_sum_kernel", weight_grad_sum_kernel<acc_t>,
           blocks_for(a.k, 1, dim3(kThreads), a.max_blocks), static_cast<const acc_t*>(out), a.k,
           chunks, a.grad_weight);
  }
}

// grad_x = g * s + dp / L and grad_weight (g masked first by the ReLU tail's output, into
// grad_pre, when there is one): where a tile fits, the single-pass kernel and the weight
// gradient (2 launches, 3 when N * C > kWeightGradRows); else the mask's launch and 5 (t =
// sum_l g x; dz; dp / L; grad_x; grad_weight, one more as before), the same bits. Expects
// N * C > 0.
template <typename scalar_t, typename acc_t, typename Launcher>
void launch_backward(Launcher& launch, const BackwardArgs<scalar_t, acc_t>& a) {
  if (const int64_t T = tile_channels<scalar_t, acc_t>(a); T > 0) {
    const LaunchConfig config = tile_config<scalar_t, acc_t>(a, T);
    if (a.layout == Layout::ChannelsLast) {
      launch("tile_backward_kernel", tile_backward_kernel<scalar_t, acc_t, true>, config, a, T);
    } else {
      launch("tile_backward_kernel", tile_backward_kernel<scalar_t, acc_t, false>, config, a, T);
    }
    launch_weight_grad(launch, a);
    return;
  }
  BackwardArgs<scalar_t, acc_t> b = a;
  if (a.relu_out) {
    const int64_t numel = a.N * a.C * a.L;
    launch("relu_backward_kernel", relu_backward_kernel<scalar_t, acc_t>,
           threads_for(numel, a.max_blocks), a.grad_y, a.relu_out, numel, a.grad_pre);
    b.grad_y = a.grad_pre;
  }
  const int64_t NC = b.N * b.C;
  launch_reduce(launch, b.grad_y, b.x, b.N, b.C, b.L, b.layout, acc_t(1), b.dz,
                b.max_blocks);  // dz holds t
  launch("gate_input_grad_kernel", gate_input_grad_kernel<acc_t>, threads_for(NC, b.max_blocks),
         b.dz, b.gate, NC);
  launch("pooled_grad_kernel", pooled_grad_kernel<acc_t>, threads_for(NC, b.max_blocks),
         static_cast<const acc_t*>(b.dz), b.weight, NC, b.C, b.k, b.L, b.mode, b.shift);
  launch_scale_shift(launch, b.grad_y, b.gate, static_cast<const acc_t*>(b.shift), b.N, b.C, b.L,
                     b.layout, b.grad_x, b.max_blocks);
  launch_weight_grad(launch, b);
}

}  // namespace eca_cuda
