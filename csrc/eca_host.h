// Host-side plumbing shared by the CPU and CUDA registrations: argument checks,
// memory-layout handling and output allocation happen once here, so each device file
// only launches kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

#include "eca_math.h"

namespace eca_cuda {

struct ForwardProblem {
  at::Tensor x;       // input, laid out as `layout`
  at::Tensor y;       // output, same layout; written by the kernel
  at::Tensor weight;  // (k,), accumulation dtype, contiguous
  at::Tensor pooled;  // (N, C), accumulation dtype; written by the kernel
  at::Tensor gate;    // (N, C), accumulation dtype; written by the kernel
  int64_t N, C, L, k;
  PaddingMode mode;
  Layout layout;
  // The block tail, y = act(x * gate * scale * gain + residual); the plain layer has none:
  at::Tensor residual;    // undefined, or x's shape and dtype laid out as `layout`
  double scale = 1.0;     // a constant factor (NormFreeBlock's attn_gain * alpha)
  at::Tensor gain;        // undefined, or 0-d accumulation dtype (a learned factor)
  at::Tensor multiplier;  // undefined, or (N, C) gate * scale * gain; written by the kernel
  Activation activation = Activation::None;
};

struct BackwardProblem {
  at::Tensor grad_y;       // laid out as `layout`
  at::Tensor x;            // laid out as `layout`
  at::Tensor weight;       // (k,), accumulation dtype, contiguous
  at::Tensor pooled;       // (N, C), accumulation dtype, contiguous
  at::Tensor gate;         // (N, C), accumulation dtype, contiguous
  at::Tensor grad_x;       // same layout as x; written by the kernel
  at::Tensor grad_weight;  // (k,), accumulation dtype; written by the kernel
  int64_t N, C, L, k;
  PaddingMode mode;
  Layout layout;
  // The ReLU block tail (eca_tail_backward, on a kernel that masks): grad_y is masked where
  // relu_out <= 0 into grad_pre, the residual's gradient. Both undefined otherwise.
  at::Tensor relu_out;  // x's shape and dtype, laid out as `layout`
  at::Tensor grad_pre;  // same layout; written by the kernel
};

using ForwardKernel = void (*)(const ForwardProblem&);
using BackwardKernel = void (*)(const BackwardProblem&);

// Validates the arguments, prepares layouts and outputs, runs `kernel` unless the problem
// is empty, and returns (y, pooled, gate) as the eca_forward schema says.
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_forward(const at::Tensor& x,
                                                           const at::Tensor& weight,
                                                           c10::string_view padding_mode,
                                                           ForwardKernel kernel);

// eca_tail_forward: run_forward with the block tail out = act(y * scale * gain + residual)
// (residual and gain optional). Returns (out, pooled, gate), gate the plain sigmoid.
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_tail_forward(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& residual,
    double scale, const std::optional<at::Tensor>& gain, c10::string_view activation,
    c10::string_view padding_mode, ForwardKernel kernel);

// Same for the backward: returns (grad_x, grad_weight).
std::tuple<at::Tensor, at::Tensor> run_backward(const at::Tensor& grad_y, const at::Tensor& x,
                                                const at::Tensor& weight, const at::Tensor& pooled,
                                                const at::Tensor& gate,
                                                c10::string_view padding_mode,
                                                BackwardKernel kernel);

// eca_tail_backward, the backward of the ReLU tail out = relu(x * gate + residual): grad_pre =
// grad_out where out > 0, else 0 (the residual's gradient), and (grad_x, grad_weight) =
// eca_backward(grad_pre). A kernel that `masks` applies the mask itself (BackwardProblem's
// relu_out, grad_pre); otherwise the mask runs first, as at::threshold_backward. Returns
// (grad_x, grad_weight, grad_pre).
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_tail_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& pooled, const at::Tensor& gate, const at::Tensor& out,
    c10::string_view padding_mode, BackwardKernel kernel, bool masks);

}  // namespace eca_cuda
