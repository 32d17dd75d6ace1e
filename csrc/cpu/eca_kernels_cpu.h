// The CPU kernels, built once per instruction set (eca_kernels_cpu_impl.h compiled by
// eca_kernels_cpu_{default,avx2,avx512,avx512_bf16}.cpp), as ATen builds its own CPU kernels.
#pragma once

#include <string>
#ifdef ECA_CPU_POISON_PARTIAL_LOADS
#include <atomic>
#endif

#include "../eca_host.h"

// The AVX2 and AVX-512 builds use GCC's target pragma, so they exist only for GCC on x86-64;
// other compilers and architectures run the DEFAULT build (still vectorized by at::vec's
// portable code).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ECA_CPU_X86_BUILDS 1
#endif

namespace eca_cuda::cpu {

#define ECA_DECLARE_CPU_KERNELS(ISA)       \
  namespace ISA {                          \
  void forward(const ForwardProblem& p);   \
  void backward(const BackwardProblem& p); \
  }

ECA_DECLARE_CPU_KERNELS(DEFAULT)
#ifdef ECA_CPU_X86_BUILDS
ECA_DECLARE_CPU_KERNELS(AVX2)
ECA_DECLARE_CPU_KERNELS(AVX512)
ECA_DECLARE_CPU_KERNELS(AVX512_BF16)
#endif
#undef ECA_DECLARE_CPU_KERNELS

// The build the CPU kernels run: "AVX512_BF16", "AVX512", "AVX2" or "DEFAULT", the best that
// both this extension and torch's CPU capability allow (torch honours ATEN_CPU_CAPABILITY;
// AVX512_BF16 is the AVX512 build on a CPU with AVX512-BF16, unless ATEN_CPU_CAPABILITY=avx512).
std::string capability();

#ifdef ECA_CPU_POISON_PARTIAL_LOADS
// Only in the test build whose partial loads put NaN past their count (vec_io.h): false
// makes loadu_zero_padded skip its padding, the bug it fixes, for the test that shows it.
namespace poison {
inline std::atomic<bool> pad_partial_loads{true};
}
#endif

}  // namespace eca_cuda::cpu
