// Kernels whose access costs the CUDA programming guide's rules give (compute capability 5.0
// and later: 32-byte sectors, 32 banks of 4-byte words, 16-byte accesses served a quarter of a
// warp at a time), for access_counter.cpp (tests/test_cuda_access_counts.py). One warp each.
#include <functional>
#include <string>

#include "cuda/eca_device.cuh"
#include "cuda_emulation.h"

namespace {

struct alignas(16) Four {
  float v[4];
};

std::string last_error;

// Case `which`, for thread t of a warp (in and out hold 32 * 32 * 4 floats):
//  0  out[t] = in[t]                 4-byte loads and stores, coalesced: 4 sectors each, ideal 4
//  1  out[t] = in[32 t]              loads 128 bytes apart: 32 sectors, ideal 4
//  2  out[t] = in[0]                 a broadcast: 1 sector, ideal 1
//  3  16-byte copies, coalesced      16 sectors, ideal 16
//  4  shared[t] = in[t]              shared stores, one word per bank: 1 wavefront, ideal 1
//  5  shared[32 t] = in[t]           every lane in bank 0: 32 wavefronts, ideal 1
//  6  shared[2 t] = in[t]            two lanes per bank: 2 wavefronts, ideal 1
//  7  shared[33 t] = in[t]           padded rows, one lane per bank: 1 wavefront, ideal 1
//  8  16-byte shared loads of consecutive Fours: 4 wavefronts (one per quarter warp), ideal 4
//  9  16-byte shared loads 128 bytes apart: 8 lanes of a quarter in banks 0-3: 32, ideal 4
__global__ void access_cases_kernel(int which, const float* in, float* out) {
  ECA_SHARED(float, words, [32 * 33 * 4]);
  const int t = threadIdx.x;
  switch (which) {
    case 0:
      out[t] = in[t];
      break;
    case 1:
      out[t] = in[32 * t];
      break;
    case 2:
      out[t] = in[0];
      break;
    case 3:
      reinterpret_cast<Four*>(out)[t] = reinterpret_cast<const Four*>(in)[t];
      break;
    case 4:
      words[t] = in[t];
      break;
    case 5:
      words[32 * t] = in[t];
      break;
    case 6:
      words[2 * t] = in[t];
      break;
    case 7:
      words[33 * t] = in[t];
      break;
    case 8:
    case 9: {
      for (int i = 0; i < 4; ++i) words[4 * 32 * t + i] = 0.0f;
      for (int i = 0; i < 4; ++i) words[4 * t + i] = 0.0f;
      __syncthreads();
      const int pack = which == 8 ? t : 8 * t;  // 8 Fours: 128 bytes
      reinterpret_cast<Four*>(out)[t] = reinterpret_cast<const Four*>(words)[pack];
      break;
    }
    default:
      break;
  }
}

}  // namespace

extern "C" {

int emu_access_case(int which, const float* in, float* out) {
  last_error.clear();
  try {
    eca_emu_count_kernel("access_cases_kernel");
    eca_emu::launch(dim3(1), dim3(32), [&] { access_cases_kernel(which, in, out); });
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
  return 0;
}

const char* emu_access_error() {
  return last_error.c_str();
}

}  // extern "C"
