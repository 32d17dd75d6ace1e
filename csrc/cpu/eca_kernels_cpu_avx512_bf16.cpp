// The CPU kernels built for AVX512 plus AVX512-BF16 (its bfloat16 conversions; see
// eca_cpu_target.h and bfloat16_from_float), chosen at run time by eca_kernels_cpu.cpp on a CPU
// that has it. at::vec takes its AVX512 code (CPU_CAPABILITY_AVX512) in a namespace of its
// own (CPU_CAPABILITY), so nothing inline is shared with the AVX512 build.
#include "eca_kernels_cpu.h"
#ifdef ECA_CPU_X86_BUILDS
#define CPU_CAPABILITY AVX512_BF16
#define CPU_CAPABILITY_AVX512
#define CPU_CAPABILITY_AVX512_BF16
#include "eca_kernels_cpu_impl.h"
#endif
