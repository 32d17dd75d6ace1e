// Runs the CUDA reduction kernels of csrc/cuda/eca_reduce.cuh on the host, so that their
// summation order is checked without a GPU (tests/test_cuda_reduce_emulated.py). Each block
// runs on its own std::threads, one per CUDA thread, one block at a time: __syncthreads is a
// barrier of the block, __shfl_down_sync exchanges values through a buffer with a barrier of
// the warp. It checks the source's logic (indices, order, synchronisation), not nvcc's code.
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {
std::unique_ptr<std::barrier<>> block_barrier;
std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
double shuffle_buffer[1024];
}  // namespace

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static  // one block runs at a time

void __syncthreads() {
  block_barrier->arrive_and_wait();
}

template <typename T>
T __shfl_down_sync(unsigned /*mask: whole warps call it*/, T v, int delta) {
  const int tid = threadIdx.x + threadIdx.y * blockDim.x, lane = tid % 32;
  std::barrier<>& warp = *warp_barriers[tid / 32];
  shuffle_buffer[tid] = double(v);
  warp.arrive_and_wait();
  const T got = lane + delta < 32 ? T(shuffle_buffer[tid + delta]) : v;
  warp.arrive_and_wait();  // nobody overwrites the buffer before every lane has read it
  return got;
}

using std::fma;
using std::min;

#include "../csrc/cuda/eca_reduce.cuh"

namespace {

void launch(unsigned grid, dim3 block, const std::function<void()>& kernel) {
  gridDim = {grid, 1, 1};
  blockDim = block;
  const unsigned threads = block.x * block.y;
  for (unsigned b = 0; b < grid; ++b) {
    block_barrier = std::make_unique<std::barrier<>>(threads);
    warp_barriers.clear();
    for (unsigned w = 0; w < threads / 32; ++w) {
      warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
    }
    std::vector<std::thread> pool;
    for (unsigned ty = 0; ty < block.y; ++ty) {
      for (unsigned tx = 0; tx < block.x; ++tx) {
        pool.emplace_back([=, &kernel] {
          threadIdx = {tx, ty, 1};
          blockIdx = {b, 1, 1};
          kernel();
        });
      }
    }
    for (auto& t : pool) t.join();
  }
}

// out[n * C + c] = scale * sum_l a (* b) for a (N, C, L) contiguous (channels_last = 0) or an
// (N, L, C) one (channels_last = 1), on `grid` blocks as eca_kernels_cuda.cu launches them.
template <typename T>
void reduce(const T* a, const T* b, int64_t N, int64_t C, int64_t L, int channels_last,
            unsigned grid, T scale, T* out) {
  using namespace eca_cuda;
  if (channels_last) {
    launch(grid, {kTileC, kTileL}, [&] {
      if (b) {
        reduce_columns_kernel<T, T, true>(a, b, N, C, L, scale, out);
      } else {
        reduce_columns_kernel<T, T, false>(a, b, N, C, L, scale, out);
      }
    });
  } else {
    launch(grid, {kSlots, kRowsPerBlock}, [&] {
      if (b) {
        reduce_rows_kernel<T, T, true>(a, b, N * C, L, scale, out);
      } else {
        reduce_rows_kernel<T, T, false>(a, b, N * C, L, scale, out);
      }
    });
  }
}

}  // namespace

extern "C" {
void reduce_float(const float* a, const float* b, int64_t N, int64_t C, int64_t L,
                  int channels_last, unsigned grid, float scale, float* out) {
  reduce(a, b, N, C, L, channels_last, grid, scale, out);
}
void reduce_double(const double* a, const double* b, int64_t N, int64_t C, int64_t L,
                   int channels_last, unsigned grid, double scale, double* out) {
  reduce(a, b, N, C, L, channels_last, grid, scale, out);
}
}
