// The CUDA entry points: the launch plan of eca_launch.cuh, launched on a stream, for the four
// dtypes. No ATen here (eca_ops_cuda.cpp has the tensors), so each architecture's device pass
// compiles only the kernels. The kernels avoid floating-point atomics: every sum is reduced
// in a fixed order, so results are bitwise reproducible run to run, and the spatial sums
// follow one order for both layouts (eca_reduce.cuh), so contiguous and channels_last inputs
// give the same bits.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "eca_cuda_entry.h"
#include "eca_launch.cuh"

namespace eca_cuda {

std::vector<int64_t> compiled_cuda_archs() {
#ifdef __CUDA_ARCH_LIST__
  std::vector<int64_t> archs{__CUDA_ARCH_LIST__};  // e.g. 800,900 (CUDA >= 11.5)
  for (auto& arch : archs) arch /= 10;
  return archs;
#else
  return {};
#endif
}

namespace {

// Launches on one stream until a launch fails; later launches are skipped, as they would read
// what the failed one did not write.
struct StreamLauncher {
  cudaStream_t stream;
  LaunchResult result{cudaSuccess, nullptr};

  template <typename... Params, typename... Args>
  void operator()(const char* name, void (*kernel)(Params...), const LaunchConfig& config,
                  Args... args) {
    if (result.error != cudaSuccess) return;
    if (config.shared_bytes > 48 * 1024) {
      // Above 48 KiB a kernel must opt in, per device. Every launch opts in to the same size,
      // the most a tile plan asks on this device (tile_budget_for its limit): a size per call
      // let one host thread lower another's between that thread's opt-in and its launch.
      int device = 0, optin = 0;
      cudaError_t error = cudaGetDevice(&device);
      if (error == cudaSuccess) {
        error = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
      }
      const int64_t most = tile_budget_for(optin);
      if (error == cudaSuccess && config.shared_bytes > most) error = cudaErrorInvalidValue;
      if (error == cudaSuccess) {
        error = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(most));
      }
      if (error != cudaSuccess) {
        (void)cudaGetLastError();  // reported here, not left for the next launch's check
        result = {error, name};
        return;
      }
    }
    kernel<<<config.grid, config.block, config.shared_bytes, stream>>>(args...);
    const cudaError_t error = cudaGetLastError();
    if (error != cudaSuccess) result = {error, name};
  }
};

}  // namespace

template <typename scalar_t, typename acc_t>
LaunchResult forward_cuda(const ForwardArgs<scalar_t, acc_t>& args, cudaStream_t stream) {
  StreamLauncher launch{stream};
  launch_forward(launch, args);
  return launch.result;
}

template <typename scalar_t, typename acc_t>
LaunchResult backward_cuda(const BackwardArgs<scalar_t, acc_t>& args, cudaStream_t stream) {
  StreamLauncher launch{stream};
  launch_backward(launch, args);
  return launch.result;
}

#define ECA_INSTANTIATE(scalar_t, acc_t)                                                     \
  template LaunchResult forward_cuda<scalar_t, acc_t>(const ForwardArgs<scalar_t, acc_t>&,   \
                                                      cudaStream_t);                         \
  template LaunchResult backward_cuda<scalar_t, acc_t>(const BackwardArgs<scalar_t, acc_t>&, \
                                                       cudaStream_t);
ECA_INSTANTIATE(float, float)
ECA_INSTANTIATE(double, double)
ECA_INSTANTIATE(c10::Half, float)
ECA_INSTANTIATE(c10::BFloat16, float)
#undef ECA_INSTANTIATE

}  // namespace eca_cuda
