// The CUDA registration of eca_forward / eca_tail_forward / eca_backward / eca_tail_backward:
// tensors to the plain arguments of the CUDA entry points (eca_cuda_entry.h), on the current
// stream of x's device.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>

#include "../eca_host.h"
#include "eca_cuda_entry.h"

namespace eca_cuda {
namespace {

void check(const LaunchResult& result) {
  TORCH_CHECK(result.error == cudaSuccess, "eca_cuda: launching ", result.kernel,
              " failed: ", cudaGetErrorString(result.error));
}

// One attribute of a device (a cheap query, unlike cudaGetDeviceProperties).
int64_t device_attribute(cudaDeviceAttr attribute, int device) {
  int value = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, attribute, device));
  return value;
}

// The single-pass kernels' tile: tile_budget_for this device's shared memory a block, tiles
// of pair_budget_for its shared memory an SM first, and at most ECA_CUDA_TILE_BUDGET bytes
// where that is set (0: the multi-launch plans, which the GPU tests
// and benchmarks compare with); and its SMs.
template <typename Args>
void plan_tiles(Args& args, const at::Device& device) {
  const int index = device.index();
  args.tile_budget =
      tile_budget_for(device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, index));
  args.pair_budget =
      pair_budget_for(device_attribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor, index));
  if (const char* budget = std::getenv("ECA_CUDA_TILE_BUDGET")) {
    args.tile_budget = std::min<int64_t>(args.tile_budget, std::atoll(budget));
  }
  args.sms = device_attribute(cudaDevAttrMultiProcessorCount, index);
}

template <typename scalar_t>
void forward_typed(const ForwardProblem& p) {
  using acc_t = at::opmath_type<scalar_t>;
  ForwardArgs<scalar_t, acc_t> args{p.x.const_data_ptr<scalar_t>(),
                                    p.weight.const_data_ptr<acc_t>(),
                                    p.y.mutable_data_ptr<scalar_t>(),
                                    p.pooled.mutable_data_ptr<acc_t>(),
                                    p.gate.mutable_data_ptr<acc_t>(),
                                    p.N,
                                    p.C,
                                    p.L,
                                    p.k,
                                    p.mode,
                                    p.layout};
  if (p.residual.defined()) args.residual = p.residual.const_data_ptr<scalar_t>();
  args.scale = acc_t(p.scale);
  if (p.gain.defined()) args.gain = p.gain.const_data_ptr<acc_t>();
  if (p.multiplier.defined()) args.multiplier = p.multiplier.mutable_data_ptr<acc_t>();
  args.activation = p.activation;
  plan_tiles(args, p.x.device());
  check(forward_cuda(args, c10::cuda::getCurrentCUDAStream()));
}

template <typename scalar_t>
void backward_typed(const BackwardProblem& p) {
  using acc_t = at::opmath_type<scalar_t>;
  at::Tensor dz = at::empty({p.N, p.C}, p.pooled.options());
  at::Tensor shift = at::empty({p.N, p.C}, p.pooled.options());
  at::Tensor chunk_sums = at::empty({p.k * weight_grad_chunks(p.N * p.C)}, p.pooled.options());
  BackwardArgs<scalar_t, acc_t> args{p.grad_y.const_data_ptr<scalar_t>(),
                                     p.x.const_data_ptr<scalar_t>(),
                                     p.weight.const_data_ptr<acc_t>(),
                                     p.pooled.const_data_ptr<acc_t>(),
                                     p.gate.const_data_ptr<acc_t>(),
                                     p.grad_x.mutable_data_ptr<scalar_t>(),
                                     p.grad_weight.mutable_data_ptr<acc_t>(),
                                     dz.mutable_data_ptr<acc_t>(),
                                     shift.mutable_data_ptr<acc_t>(),
                                     p.N,
                                     p.C,
                                     p.L,
                                     p.k,
                                     p.mode,
                                     p.layout};
  args.weight_grad_partial = chunk_sums.mutable_data_ptr<acc_t>();
  if (p.relu_out.defined()) {
    args.relu_out = p.relu_out.const_data_ptr<scalar_t>();
    args.grad_pre = p.grad_pre.mutable_data_ptr<scalar_t>();
  }
  plan_tiles(args, p.x.device());
  check(backward_cuda(args, c10::cuda::getCurrentCUDAStream()));
}

void forward_kernel_cuda(const ForwardProblem& p) {
  const c10::cuda::CUDAGuard guard(p.x.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "eca_forward_cuda",
                                  [&] { forward_typed<scalar_t>(p); });
}

void backward_kernel_cuda(const BackwardProblem& p) {
  const c10::cuda::CUDAGuard guard(p.x.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "eca_backward_cuda",
                                  [&] { backward_typed<scalar_t>(p); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_forward_cuda(const at::Tensor& x,
                                                                const at::Tensor& weight,
                                                                c10::string_view padding_mode) {
  return run_forward(x, weight, padding_mode, &forward_kernel_cuda);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_tail_forward_cuda(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& residual,
    double scale, const std::optional<at::Tensor>& gain, c10::string_view activation,
    c10::string_view padding_mode) {
  return run_tail_forward(x, weight, residual, scale, gain, activation, padding_mode,
                          &forward_kernel_cuda);
}

std::tuple<at::Tensor, at::Tensor> eca_backward_cuda(const at::Tensor& grad_y, const at::Tensor& x,
                                                     const at::Tensor& weight,
                                                     const at::Tensor& pooled,
                                                     const at::Tensor& gate,
                                                     c10::string_view padding_mode) {
  return run_backward(grad_y, x, weight, pooled, gate, padding_mode, &backward_kernel_cuda);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_tail_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& pooled, const at::Tensor& gate, const at::Tensor& out,
    c10::string_view padding_mode) {
  return run_tail_backward(grad_out, x, weight, pooled, gate, out, padding_mode,
                           &backward_kernel_cuda, /*masks=*/true);
}

}  // namespace
}  // namespace eca_cuda

TORCH_LIBRARY_IMPL(eca_cuda, CUDA, m) {
  m.impl("eca_forward", &eca_cuda::eca_forward_cuda);
  m.impl("eca_tail_forward", &eca_cuda::eca_tail_forward_cuda);
  m.impl("eca_backward", &eca_cuda::eca_backward_cuda);
  m.impl("eca_tail_backward", &eca_cuda::eca_tail_backward_cuda);
}
