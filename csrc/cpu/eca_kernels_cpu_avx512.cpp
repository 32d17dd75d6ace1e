// The CPU kernels built for AVX512 (the instructions torch's AVX512 capability requires; see
// eca_cpu_target.h), chosen at run time by eca_kernels_cpu.cpp.
#include "eca_kernels_cpu.h"
#ifdef ECA_CPU_X86_BUILDS
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "eca_kernels_cpu_impl.h"
#endif
