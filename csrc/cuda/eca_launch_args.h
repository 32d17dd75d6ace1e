// What one eca_forward or eca_backward on the GPU works on: plain pointers and sizes, no
// ATen, so that the launch plan (eca_launch.cuh), the CUDA entry points (eca_cuda_entry.h) and
// the host emulation in tests/cuda_emulation/ all take the same arguments.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../eca_math.h"

namespace eca_cuda {

// Blocks per launch: enough to fill any current GPU; grid-stride loops cover the rest, so no
// grid size overflows gridDim.x however large N * C * L is.
constexpr int64_t kMaxBlocks = 65535 * 8;

// Shared memory for a tile of the single-pass kernels: two blocks per SM on sm_90, with room
// for the static arrays (docs/cuda-kernels.md).
constexpr int64_t kTileBudget = 100 * 1024;
// What a tile block needs besides its tile: the static arrays (2 KiB), the system's reserve
// (1 KiB a block on sm_80 and later), rounded up.
constexpr int64_t kTileOverhead = 4096;

// The tile budget on a device that lets a block opt in to `optin_per_block` bytes of shared
// memory (cudaDevAttrMaxSharedMemoryPerBlockOptin): at most kTileBudget, and small enough
// that a block fits: 100 KiB on an H100, H200 or A100, 95 KiB on sm_86 and sm_89, 60 KiB on a
// T4.
inline int64_t tile_budget_for(int64_t optin_per_block) {
  return std::max<int64_t>(0, std::min(kTileBudget, optin_per_block - kTileOverhead));
}

// The budget of tiles that two blocks an SM hold, on a device with `shared_per_sm` bytes of
// shared memory an SM (cudaDevAttrMaxSharedMemoryPerMultiprocessor), each block with
// kTileOverhead besides: 100 KiB on an H100 or H200 (as tile_budget_for), 78 KiB on an A100,
// 46 KiB on sm_86 and sm_89, 28 KiB on a T4. The plan prefers such tiles: a block's phases
// (load, sums, gates, rescale) follow each other barrier to barrier, and only a second
// block's overlap them (docs/cuda-kernels.md, the simulator's figures).
inline int64_t pair_budget_for(int64_t shared_per_sm) {
  return std::max<int64_t>(0, std::min(kTileBudget, shared_per_sm / 2 - kTileOverhead));
}

// Rows of dz one block of the weight gradient's first stage sums (16 a thread), and the
// chunks of N * C rows that makes: one chunk needs no second stage and no workspace.
constexpr int64_t kWeightGradRows = 16 * 256;
inline int64_t weight_grad_chunks(int64_t NC) {
  return NC > kWeightGradRows ? (NC + kWeightGradRows - 1) / kWeightGradRows : 1;
}

template <typename scalar_t, typename acc_t>
struct ForwardArgs {
  const scalar_t* x;    // (N, C, L) or (N, L, C) as `layout`
  const acc_t* weight;  // (k,)
  scalar_t* y;          // same layout as x
  acc_t* pooled;        // (N, C)
  acc_t* gate;          // (N, C)
  int64_t N, C, L, k;
  PaddingMode mode;
  Layout layout;
  int64_t max_blocks = kMaxBlocks;  // the tests lower it, so every grid-stride loop wraps
  // The block tail, y = act(x * gate * scale * gain + residual); the plain layer has none.
  const scalar_t* residual = nullptr;  // x's layout, or null
  acc_t scale = acc_t(1);
  const acc_t* gain = nullptr;  // one value, or null
  acc_t* multiplier = nullptr;  // (N, C) gate * scale * gain; null when neither is given
  Activation activation = Activation::None;
  // The single-pass forward (eca_tile.cuh): the dynamic shared memory a block may use for its
  // tile (0: never; the three launches), the most of it for two blocks an SM, tried first
  // (pair_budget_for; 0: no such preference), and the SMs the grid should keep busy.
  int64_t tile_budget = 0;
  int64_t pair_budget = 0;
  int64_t sms = 1;
};

template <typename scalar_t, typename acc_t>
struct BackwardArgs {
  const scalar_t* grad_y;  // same layout as x
  const scalar_t* x;
  const acc_t* weight;  // (k,)
  const acc_t* pooled;  // (N, C), from the forward
  const acc_t* gate;    // (N, C), from the forward
  scalar_t* grad_x;     // same layout as x
  acc_t* grad_weight;   // (k,)
  acc_t* dz;            // (N, C) workspace
  acc_t* shift;         // (N, C) workspace
  int64_t N, C, L, k;
  PaddingMode mode;
  Layout layout;
  int64_t max_blocks = kMaxBlocks;
  // (k * weight_grad_chunks(N * C),) workspace, with more than one chunk
  acc_t* weight_grad_partial = nullptr;
  // The ReLU block tail: with its output `relu_out` (x's layout), grad_y is first masked
  // where relu_out <= 0 (ReLU's backward), into grad_pre, the residual's gradient.
  const scalar_t* relu_out = nullptr;
  scalar_t* grad_pre = nullptr;
  int64_t tile_budget = 0;  // as ForwardArgs': the single-pass backward (eca_tile.cuh)
  int64_t pair_budget = 0;
  int64_t sms = 1;
};

}  // namespace eca_cuda
