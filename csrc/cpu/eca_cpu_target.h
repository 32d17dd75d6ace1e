// Turns on the instruction set named by CPU_CAPABILITY_AVX2 / CPU_CAPABILITY_AVX512 for the
// rest of the translation unit. eca_kernels_cpu_impl.h includes it after every header but
// at::vec's, so the wider instructions reach only at::vec (namespaced per capability) and
// our kernels, never an inline function shared with the other builds.
//
// GCC's target pragma enables the instructions but not their feature macros, which sleef.h
// and at::vec test, so this defines the macros that -mavx2 -mfma -mf16c (or -mavx512f
// -mavx512bw -mavx512vl -mavx512dq) would.
#pragma once

#if defined(CPU_CAPABILITY_AVX512_BF16)  // the AVX512 build plus AVX512-BF16's conversions
#pragma GCC target( \
    "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")
#elif defined(CPU_CAPABILITY_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")
#elif defined(CPU_CAPABILITY_AVX2)
#pragma GCC target("avx2,fma,f16c,bmi,bmi2,lzcnt,popcnt")
#endif

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#ifndef __SSE3__
#define __SSE3__ 1
#endif
#ifndef __SSSE3__
#define __SSSE3__ 1
#endif
#ifndef __SSE4_1__
#define __SSE4_1__ 1
#endif
#ifndef __SSE4_2__
#define __SSE4_2__ 1
#endif
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
#endif

#if defined(CPU_CAPABILITY_AVX512)
#ifndef __AVX512F__
#define __AVX512F__ 1
#endif
#ifndef __AVX512BW__
#define __AVX512BW__ 1
#endif
#ifndef __AVX512VL__
#define __AVX512VL__ 1
#endif
#ifndef __AVX512DQ__
#define __AVX512DQ__ 1
#endif
#endif
