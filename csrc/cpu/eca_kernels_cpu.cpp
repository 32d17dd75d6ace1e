// Registers the CPU kernels for eca_forward / eca_tail_forward / eca_backward /
// eca_tail_backward, choosing once, at the first call, the build for the best instruction set
// torch's own CPU capability allows.
#include "eca_kernels_cpu.h"

#include <ATen/Version.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>

namespace eca_cuda::cpu {
namespace {

struct Kernels {
  ForwardKernel forward;
  BackwardKernel backward;
  const char* capability;
};

Kernels select_kernels() {
#ifdef ECA_CPU_X86_BUILDS
  // torch's "AVX512" / "AVX2" / "DEFAULT"; lowered when ATEN_CPU_CAPABILITY says so.
  const std::string torch_capability = at::get_cpu_capability();
  if (torch_capability == "AVX512") {
    // Torch has no capability for AVX512-BF16 (its conversions are the one difference), so
    // the CPU says; ATEN_CPU_CAPABILITY=avx512 pins the AVX512 build (tests compare the two).
    const char* pinned = std::getenv("ATEN_CPU_CAPABILITY");
    if (!(pinned && std::string(pinned) == "avx512") && __builtin_cpu_supports("avx512bf16")) {
      return {&AVX512_BF16::forward, &AVX512_BF16::backward, "AVX512_BF16"};
    }
    return {&AVX512::forward, &AVX512::backward, "AVX512"};
  }
  if (torch_capability == "AVX2") return {&AVX2::forward, &AVX2::backward, "AVX2"};
#endif
  return {&DEFAULT::forward, &DEFAULT::backward, "DEFAULT"};
}

const Kernels& kernels() {
  static const Kernels chosen = select_kernels();
  return chosen;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_forward_cpu(const at::Tensor& x,
                                                               const at::Tensor& weight,
                                                               c10::string_view padding_mode) {
  return run_forward(x, weight, padding_mode, kernels().forward);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_tail_forward_cpu(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& residual,
    double scale, const std::optional<at::Tensor>& gain, c10::string_view activation,
    c10::string_view padding_mode) {
  return run_tail_forward(x, weight, residual, scale, gain, activation, padding_mode,
                          kernels().forward);
}

std::tuple<at::Tensor, at::Tensor> eca_backward_cpu(const at::Tensor& grad_y, const at::Tensor& x,
                                                    const at::Tensor& weight,
                                                    const at::Tensor& pooled,
                                                    const at::Tensor& gate,
                                                    c10::string_view padding_mode) {
  return run_backward(grad_y, x, weight, pooled, gate, padding_mode, kernels().backward);
}

// The mask runs first (ATen's threshold_backward), then the backward kernels: on the CPU the
// masked gradient is read back from the core's cache.
std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_tail_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& pooled, const at::Tensor& gate, const at::Tensor& out,
    c10::string_view padding_mode) {
  return run_tail_backward(grad_out, x, weight, pooled, gate, out, padding_mode, kernels().backward,
                           /*masks=*/false);
}

}  // namespace

std::string capability() {
  return kernels().capability;
}

}  // namespace eca_cuda::cpu

TORCH_LIBRARY_IMPL(eca_cuda, CPU, m) {
  m.impl("eca_forward", &eca_cuda::cpu::eca_forward_cpu);
  m.impl("eca_tail_forward", &eca_cuda::cpu::eca_tail_forward_cpu);
  m.impl("eca_backward", &eca_cuda::cpu::eca_backward_cpu);
  m.impl("eca_tail_backward", &eca_cuda::cpu::eca_tail_backward_cpu);
}
