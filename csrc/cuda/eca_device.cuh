// What the device headers use beyond CUDA's built-ins. The host emulation of
// tests/cuda_emulation/ defines ECA_SHARED and ECA_DYNAMIC_SHARED before including them, to
// fill every shared array with NaN before each block (as compute-sanitizer's initcheck flags a
// read of a shared word no thread wrote), so shared memory is declared through them.
#pragma once

#include <cstring>

#ifndef ECA_SHARED
// ECA_SHARED(double, totals, [4][64]) declares `__shared__ double totals[4][64]`.
#define ECA_SHARED(type, name, dims) __shared__ type name dims
#endif

#ifndef ECA_DYNAMIC_SHARED
// ECA_DYNAMIC_SHARED(bytes) declares the launch's dynamic shared memory (LaunchConfig's
// shared_bytes) as `unsigned char bytes[]`, 16-byte aligned.
#define ECA_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// Device memory the tile kernels touch once (the tile, the halo, the residual, the outputs):
// loaded and stored with the L1::no_allocate eviction priority ("do not allocate
// data to cache", PTX ISA 7.4, sm_70 and later), so that a stream of rows mapping to one L1
// set cannot take every line of it (docs/cuda-kernels.md, "The gaps"); weak accesses, unlike
// __ldcg's ld.global.cg, which sm_70 and later compile to strong (LDG.E.STRONG.GPU) ones.
// T: 2, 4, 8 or 16 bytes, trivially copyable. The host emulation reads and writes plainly,
// always inlined, so each call site stays its own site for the access counts.
#if defined(__CUDA_ARCH__)
#define ECA_ONCE_INLINE __device__ __forceinline__
#else
#define ECA_ONCE_INLINE inline __attribute__((always_inline))
#endif

namespace eca_cuda {

template <typename T>
ECA_ONCE_INLINE T load_once(const T* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  T v;
  if constexpr (sizeof(T) == 16) {
    uint4 b;
    asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(b.x), "=r"(b.y), "=r"(b.z), "=r"(b.w)
                 : "l"(p));
    memcpy(&v, &b, 16);
  } else if constexpr (sizeof(T) == 8) {
    unsigned long long b;
    asm volatile("ld.global.L1::no_allocate.u64 %0, [%1];" : "=l"(b) : "l"(p));
    memcpy(&v, &b, 8);
  } else if constexpr (sizeof(T) == 4) {
    unsigned int b;
    asm volatile("ld.global.L1::no_allocate.u32 %0, [%1];" : "=r"(b) : "l"(p));
    memcpy(&v, &b, 4);
  } else {
    static_assert(sizeof(T) == 2, "2, 4, 8 or 16 bytes");
    unsigned short b;
    asm volatile("ld.global.L1::no_allocate.u16 %0, [%1];" : "=h"(b) : "l"(p));
    memcpy(&v, &b, 2);
  }
  return v;
#else
  return *p;
#endif
}

template <typename T>
ECA_ONCE_INLINE void store_once(T* p, const T& v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  if constexpr (sizeof(T) == 16) {
    uint4 b;
    memcpy(&b, &v, 16);
    asm volatile("st.global.L1::no_allocate.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(b.x),
                 "r"(b.y), "r"(b.z), "r"(b.w));
  } else if constexpr (sizeof(T) == 8) {
    unsigned long long b;
    memcpy(&b, &v, 8);
    asm volatile("st.global.L1::no_allocate.u64 [%0], %1;" ::"l"(p), "l"(b));
  } else if constexpr (sizeof(T) == 4) {
    unsigned int b;
    memcpy(&b, &v, 4);
    asm volatile("st.global.L1::no_allocate.u32 [%0], %1;" ::"l"(p), "r"(b));
  } else {
    static_assert(sizeof(T) == 2, "2, 4, 8 or 16 bytes");
    unsigned short b;
    memcpy(&b, &v, 2);
    asm volatile("st.global.L1::no_allocate.u16 [%0], %1;" ::"l"(p), "h"(b));
  }
#else
  *p = v;
#endif
}

}  // namespace eca_cuda
