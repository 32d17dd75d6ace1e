// What the device headers use beyond CUDA's built-ins. The host emulation of
// tests/cuda_emulation/ defines ECA_SHARED before including them, to fill every shared array
// with NaN before each block (as compute-sanitizer's initcheck flags a read of a shared word no
// thread wrote), so shared memory is declared through it.
#pragma once

#ifndef ECA_SHARED
// ECA_SHARED(double, totals, [4][64]) declares `__shared__ double totals[4][64]`.
#define ECA_SHARED(type, name, dims) __shared__ type name dims
#endif
