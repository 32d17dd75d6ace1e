// The CPU kernels built for AVX2 (the instructions torch's AVX2 capability requires; see
// eca_cpu_target.h), chosen at run time by eca_kernels_cpu.cpp.
#include "eca_kernels_cpu.h"
#ifdef ECA_CPU_X86_BUILDS
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "eca_kernels_cpu_impl.h"
#endif
