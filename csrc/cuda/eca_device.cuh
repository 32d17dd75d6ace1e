// What the device headers use beyond CUDA's built-ins. The host emulation of
// tests/cuda_emulation/ defines ECA_SHARED and ECA_DYNAMIC_SHARED before including them, to
// fill every shared array with NaN before each block (as compute-sanitizer's initcheck flags a
// read of a shared word no thread wrote), so shared memory is declared through them.
#pragma once

#ifndef ECA_SHARED
// ECA_SHARED(double, totals, [4][64]) declares `__shared__ double totals[4][64]`.
#define ECA_SHARED(type, name, dims) __shared__ type name dims
#endif

#ifndef ECA_DYNAMIC_SHARED
// ECA_DYNAMIC_SHARED(bytes) declares the launch's dynamic shared memory (LaunchConfig's
// shared_bytes) as `unsigned char bytes[]`, 16-byte aligned.
#define ECA_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif
