// The CPU kernels for the baseline instruction set (any CPU torch runs on).
#define CPU_CAPABILITY DEFAULT
#include "eca_kernels_cpu_impl.h"
