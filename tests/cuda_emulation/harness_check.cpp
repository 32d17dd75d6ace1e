// Kernels with known answers for the stand-ins of cuda_emulation.h, the ones the ECA kernels
// use and the ones new kernels may (tests/test_cuda_emulation_harness.py): warp intrinsics
// over segments and partial masks, barrier rules, shared memory fill, block order.
#include <string>

#include "cuda/eca_device.cuh"
#include "cuda_emulation.h"

namespace {

std::string last_error;
int blocks_run = 0;  // case 3's position in out; blocks run in turn, so a plain counter is safe

// out[t * 5 + i], i = shfl, shfl_up, shfl_down, shfl_xor, ballot, of v = 100 t at thread t;
// threads whose lane is outside `mask` return at once.
__global__ void warp_intrinsics_kernel(unsigned mask, int delta, int width, int* out) {
  const int t = threadIdx.x;
  if (!(mask >> (t % 32) & 1u)) return;
  const int v = 100 * t;
  int* o = out + 5 * t;
  o[0] = __shfl_sync(mask, v, delta, width);
  o[1] = __shfl_up_sync(mask, v, delta, width);
  o[2] = __shfl_down_sync(mask, v, delta, width);
  o[3] = __shfl_xor_sync(mask, v, delta, width);
  o[4] = static_cast<int>(__ballot_sync(mask, t % 3 == 0));
  __syncwarp(mask);
}

// case 0: threads below `split` wait at one barrier, the others at another;
// case 1: threads below `split` return before the barrier;
// case 2: thread 0 reads a shared word nobody wrote (out[0]);
// case 3: each block writes its index at the next position of out (the order blocks ran in).
__global__ void rules_kernel(int which, int split, float* out) {
  ECA_SHARED(float, never_written, [4]);
  const int t = threadIdx.x;
  if (which == 0) {
    if (t < split) {
      __syncthreads();
    } else {
      __syncthreads();
    }
  } else if (which == 1) {
    if (t < split) return;
    __syncthreads();
  } else if (which == 2) {
    if (t == 0) out[0] = never_written[1];
  } else if (which == 3) {
    if (t == 0) out[blocks_run++] = float(blockIdx.x);
  }
}

int run(const std::function<void()>& f) {
  last_error.clear();
  try {
    f();
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
  return 0;
}

}  // namespace

extern "C" {

int emu_warp_intrinsics(int threads, unsigned mask, int delta, int width, int* out) {
  return run([&] {
    eca_emu::launch(dim3(1), dim3(threads),
                    [&] { warp_intrinsics_kernel(mask, delta, width, out); });
  });
}

int emu_rules(int which, int split, int threads, int blocks, int shuffle_seed, float* out) {
  eca_emu::Options options{shuffle_seed >= 0, static_cast<unsigned>(shuffle_seed)};
  blocks_run = 0;
  return run([&] {
    eca_emu::launch(dim3(blocks), dim3(threads), [&] { rules_kernel(which, split, out); }, options);
  });
}

const char* emu_error() {
  return last_error.c_str();
}

}  // extern "C"
