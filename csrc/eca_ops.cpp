// Operator schemas (one TORCH_LIBRARY block), the shared host logic behind every device's
// kernels, and the build-info op. Device kernels register in cpu/ and cuda/, eca_forward's
// autograd kernel in eca_autograd.cpp.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <torch/version.h>

#include <string>
#include <utility>
#include <vector>

#include "cpu/eca_kernels_cpu.h"
#include "eca_host.h"

namespace eca_cuda {

#ifdef ECA_WITH_CUDA
std::vector<int64_t> compiled_cuda_archs();  // defined in cuda/eca_kernels_cuda.cu
#endif

namespace {

PaddingMode parse_padding_mode(c10::string_view padding_mode) {
  const std::string mode(padding_mode.data(), padding_mode.size());
  if (mode == "zeros") return PaddingMode::Zeros;
  if (mode == "circular") return PaddingMode::Circular;
  TORCH_CHECK_VALUE(false, "eca: padding_mode must be 'zeros' or 'circular', got '", mode, "'");
}

// Whether t is (N, *spatial, C) contiguous, i.e. t.movedim(1, -1).is_contiguous(), read from
// the strides: the view that movedim makes costs about a microsecond, several per call.
bool is_channels_last_dense(const at::Tensor& t) {
  if (t.numel() == 0) return true;
  const auto sizes = t.sizes();
  const auto strides = t.strides();
  int64_t expected = 1;
  // Dims from the fastest: C, the spatial dims from the last, N. Size-1 dims may have any
  // stride, as in is_contiguous().
  const auto next = [&](int64_t d) {
    const bool ok = sizes[d] == 1 || strides[d] == expected;
    expected *= sizes[d];
    return ok;
  };
  if (!next(1)) return false;
  for (int64_t d = t.dim() - 1; d >= 2; --d) {
    if (!next(d)) return false;
  }
  return next(0);
}

bool has_layout(const at::Tensor& t, Layout layout) {
  return layout == Layout::ChannelsFirst ? t.is_contiguous() : is_channels_last_dense(t);
}

// The layout the kernel writes into: that of `out` when it is one of the two native ones.
Layout kernel_layout(const at::Tensor& out) {
  return (!out.is_contiguous() && is_channels_last_dense(out)) ? Layout::ChannelsLast
                                                               : Layout::ChannelsFirst;
}

// `t` itself when it already has `layout`, else a copy that does (odd strides, views).
at::Tensor in_layout(const at::Tensor& t, Layout layout) {
  if (has_layout(t, layout)) return t;
  if (layout == Layout::ChannelsFirst) return t.contiguous();
  return t.movedim(1, -1).contiguous().movedim(-1, 1);
}

// A buffer for the kernel to write: `out` when its strides are native, else a
// contiguous buffer that finish_output() copies back into `out`.
at::Tensor kernel_output(const at::Tensor& out, Layout layout) {
  return has_layout(out, layout) ? out : at::empty(out.sizes(), out.options());
}

void finish_output(at::Tensor& out, const at::Tensor& written) {
  if (!written.is_same(out)) out.copy_(written);
}

at::ScalarType accumulate_type(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

void check_x(const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.dim() >= 3,
                    "eca: x must be (N, C, *spatial) with at least one spatial "
                    "dim, got shape ",
                    x.sizes());
  const auto dtype = x.scalar_type();
  TORCH_CHECK_VALUE(
      dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat || dtype == at::kDouble,
      "eca: x must be float16, bfloat16, float32 or float64, got ", dtype);
}

// Returns k after checking the weight against x: (k,) or (1, 1, k), k odd, dtype that of x
// (or float32 for half x, as under autocast), same device.
int64_t check_weight(const at::Tensor& weight, const at::Tensor& x) {
  const bool shape_ok =
      weight.dim() == 1 || (weight.dim() == 3 && weight.size(0) == 1 && weight.size(1) == 1);
  TORCH_CHECK_VALUE(shape_ok, "eca: weight must be (k,) or (1, 1, k), got shape ", weight.sizes());
  const int64_t k = weight.size(-1);
  TORCH_CHECK_VALUE(k % 2 == 1, "eca: weight must have an odd number of taps k, got k = ", k);
  const auto x_dtype = x.scalar_type();
  const auto w_dtype = weight.scalar_type();
  const bool half_x = x_dtype == at::kHalf || x_dtype == at::kBFloat16;
  TORCH_CHECK_VALUE(w_dtype == x_dtype || (half_x && w_dtype == at::kFloat),
                    "eca: weight must have x's dtype (", x_dtype,
                    ") or float32 when x is half precision, got ", w_dtype);
  TORCH_CHECK(weight.device() == x.device(), "eca: weight must be on x's device (", x.device(),
              "), got ", weight.device());
  return k;
}

Activation parse_activation(c10::string_view activation) {
  const std::string act(activation.data(), activation.size());
  if (act == "none") return Activation::None;
  if (act == "relu") return Activation::ReLU;
  TORCH_CHECK_VALUE(false, "eca_tail: activation must be 'none' or 'relu', got '", act, "'");
}

// The residual of a block tail: x's shape, dtype and device, any strides.
void check_residual(const at::Tensor& residual, const at::Tensor& x) {
  TORCH_CHECK_VALUE(residual.sizes() == x.sizes() && residual.scalar_type() == x.scalar_type(),
                    "eca_tail: residual must match x (shape ", x.sizes(), ", dtype ",
                    x.scalar_type(), "), got shape ", residual.sizes(), ", dtype ",
                    residual.scalar_type());
  TORCH_CHECK(residual.device() == x.device(), "eca_tail: residual must be on x's device (",
              x.device(), "), got ", residual.device());
}

// A learned factor of the tail (NormFreeBlock's skipinit_gain): a 0-d floating tensor.
void check_gain(const at::Tensor& gain, const at::Tensor& x) {
  TORCH_CHECK_VALUE(gain.dim() == 0 && at::isFloatingType(gain.scalar_type()),
                    "eca_tail: gain must be a 0-d floating-point tensor, got shape ", gain.sizes(),
                    ", dtype ", gain.scalar_type());
  TORCH_CHECK(gain.device() == x.device(), "eca_tail: gain must be on x's device (", x.device(),
              "), got ", gain.device());
}

// (N, C, L) of x, with L the product of the spatial sizes.
std::tuple<int64_t, int64_t, int64_t> problem_sizes(const at::Tensor& x) {
  int64_t L = 1;
  for (int64_t d = 2; d < x.dim(); ++d) L *= x.size(d);
  return {x.size(0), x.size(1), L};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> run_tail_forward(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& residual,
    double scale, const std::optional<at::Tensor>& gain, c10::string_view activation,
    c10::string_view padding_mode, ForwardKernel kernel) {
  check_x(x);
  const int64_t k = check_weight(weight, x);
  const PaddingMode mode = parse_padding_mode(padding_mode);
  const Activation act = parse_activation(activation);
  const auto [N, C, L] = problem_sizes(x);
  const auto acc_options = x.options().dtype(accumulate_type(x.scalar_type()));
  if (residual) check_residual(*residual, x);
  if (gain) check_gain(*gain, x);

  at::Tensor y = at::empty_like(x);
  at::Tensor pooled = at::empty({N, C}, acc_options);
  at::Tensor gate = at::empty({N, C}, acc_options);
  if (N * C == 0) return {y, pooled, gate};

  const Layout layout = kernel_layout(y);
  ForwardProblem p{in_layout(x, layout),
                   kernel_output(y, layout),
                   weight.reshape({k}).to(acc_options.dtype()).contiguous(),
                   pooled,
                   gate,
                   N,
                   C,
                   L,
                   k,
                   mode,
                   layout};
  if (residual) p.residual = in_layout(*residual, layout);
  p.scale = scale;
  if (gain) p.gain = gain->to(acc_options.dtype()).reshape({});
  if (scale != 1.0 || gain) p.multiplier = at::empty({N, C}, acc_options);
  p.activation = act;
  kernel(p);
  finish_output(y, p.y);
  return {y, pooled, gate};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> run_forward(const at::Tensor& x,
                                                           const at::Tensor& weight,
                                                           c10::string_view padding_mode,
                                                           ForwardKernel kernel) {
  return run_tail_forward(x, weight, std::nullopt, 1.0, std::nullopt, "none", padding_mode, kernel);
}

namespace {

// run_backward's body; with relu_out (checked), the kernel masks grad_y into grad_pre.
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_impl(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& pooled, const at::Tensor& gate, c10::string_view padding_mode,
    BackwardKernel kernel, const at::Tensor& relu_out) {
  check_x(x);
  const int64_t k = check_weight(weight, x);
  const PaddingMode mode = parse_padding_mode(padding_mode);
  const auto [N, C, L] = problem_sizes(x);
  const auto acc_dtype = accumulate_type(x.scalar_type());
  TORCH_CHECK_VALUE(grad_y.sizes() == x.sizes() && grad_y.scalar_type() == x.scalar_type(),
                    "eca_backward: grad_y must match x (shape ", x.sizes(), ", dtype ",
                    x.scalar_type(), "), got shape ", grad_y.sizes(), ", dtype ",
                    grad_y.scalar_type());
  for (const at::Tensor* t : {&pooled, &gate}) {
    TORCH_CHECK_VALUE(
        t->dim() == 2 && t->size(0) == N && t->size(1) == C && t->scalar_type() == acc_dtype,
        "eca_backward: pooled and gate must be (N, C) = (", N, ", ", C, ") of ", acc_dtype,
        ", got shape ", t->sizes(), ", dtype ", t->scalar_type());
  }
  for (const at::Tensor* t : {&grad_y, &pooled, &gate}) {
    TORCH_CHECK(t->device() == x.device(), "eca_backward: all tensors must be on x's device (",
                x.device(), "), got ", t->device());
  }

  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_pre = relu_out.defined() ? at::empty_like(x) : at::Tensor();
  // Every kernel writes each tap, so no zero fill unless there is nothing to reduce.
  at::Tensor grad_weight_acc = at::empty({k}, x.options().dtype(acc_dtype));
  if (N * C == 0) {
    grad_weight_acc.zero_();
  } else {
    const Layout layout = kernel_layout(grad_x);
    BackwardProblem p{in_layout(grad_y, layout),
                      in_layout(x, layout),
                      weight.reshape({k}).to(acc_dtype).contiguous(),
                      pooled.contiguous(),
                      gate.contiguous(),
                      kernel_output(grad_x, layout),
                      grad_weight_acc,
                      N,
                      C,
                      L,
                      k,
                      mode,
                      layout};
    if (relu_out.defined()) {
      p.relu_out = in_layout(relu_out, layout);
      p.grad_pre = kernel_output(grad_pre, layout);
    }
    kernel(p);
    finish_output(grad_x, p.grad_x);
    if (relu_out.defined()) finish_output(grad_pre, p.grad_pre);
  }
  return {grad_x, grad_weight_acc.to(weight.scalar_type()).view(weight.sizes()), grad_pre};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> run_backward(const at::Tensor& grad_y, const at::Tensor& x,
                                                const at::Tensor& weight, const at::Tensor& pooled,
                                                const at::Tensor& gate,
                                                c10::string_view padding_mode,
                                                BackwardKernel kernel) {
  auto [grad_x, grad_weight, unused] =
      backward_impl(grad_y, x, weight, pooled, gate, padding_mode, kernel, at::Tensor());
  return {grad_x, grad_weight};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> run_tail_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& pooled, const at::Tensor& gate, const at::Tensor& out,
    c10::string_view padding_mode, BackwardKernel kernel, bool masks) {
  for (const auto& [name, t] : {std::pair{"grad_out", &grad_out}, std::pair{"out", &out}}) {
    TORCH_CHECK_VALUE(t->sizes() == x.sizes() && t->scalar_type() == x.scalar_type(),
                      "eca_tail_backward: ", name, " must match x (shape ", x.sizes(), ", dtype ",
                      x.scalar_type(), "), got shape ", t->sizes(), ", dtype ", t->scalar_type());
  }
  TORCH_CHECK(out.device() == x.device(), "eca_tail_backward: out must be on x's device (",
              x.device(), "), got ", out.device());
  if (masks) return backward_impl(grad_out, x, weight, pooled, gate, padding_mode, kernel, out);
  // grad_pre laid out as the masking kernels write it, so every device returns the same
  // strides (and the fake kernel can say which).
  at::Tensor grad_pre = at::empty_like(x);
  at::threshold_backward_out(grad_pre, grad_out, out, 0);
  auto [grad_x, grad_weight] =
      run_backward(grad_pre, x, weight, pooled, gate, padding_mode, kernel);
  return {grad_x, grad_weight, grad_pre};
}

}  // namespace eca_cuda

TORCH_LIBRARY(eca_cuda, m) {
  // y = x * sigmoid(conv1d(mean(x), w)); pooled and gate are (N, C) in float32 (float64
  // for float64 x) and are what eca_backward needs besides x.
  m.def(
      "eca_forward(Tensor x, Tensor weight, str padding_mode) -> "
      "(Tensor y, Tensor pooled, Tensor gate)");
  // The fused block tail: out = act(y * scale * gain + residual) with y as above; gate is
  // the plain sigmoid. Its autograd kernel differentiates through eca_backward.
  m.def(
      "eca_tail_forward(Tensor x, Tensor weight, Tensor? residual, float scale, Tensor? gain, "
      "str activation, str padding_mode) -> (Tensor out, Tensor pooled, Tensor gate)");
  m.def(
      "eca_backward(Tensor grad_y, Tensor x, Tensor weight, Tensor pooled, Tensor gate, "
      "str padding_mode) -> (Tensor grad_x, Tensor grad_weight)");
  // The backward of eca_tail_forward with activation "relu", scale 1 and no gain, given its
  // output: grad_pre = grad_out where out > 0 (the residual's gradient), then eca_backward
  // of grad_pre. The CUDA kernels mask as they read grad_out.
  m.def(
      "eca_tail_backward(Tensor grad_out, Tensor x, Tensor weight, Tensor pooled, Tensor gate, "
      "Tensor out, str padding_mode) -> (Tensor grad_x, Tensor grad_weight, Tensor grad_pre)");
  // The instruction set the CPU kernels run: "AVX512_BF16", "AVX512", "AVX2" or "DEFAULT".
  m.def("cpu_capability() -> str", []() -> std::string { return eca_cuda::cpu::capability(); });
  // The torch release this library was compiled against (torch/version.h), e.g. "2.14.1".
  m.def("built_torch_version() -> str", []() -> std::string { return TORCH_VERSION; });
#ifdef ECA_CPU_POISON_PARTIAL_LOADS
  // Only in the test build whose partial loads put NaN past their count (vec_io.h).
  m.def("partial_loads_poisoned() -> bool", []() { return true; });
  m.def("set_partial_load_padding(bool on) -> ()",
        [](bool on) { eca_cuda::cpu::poison::pad_partial_loads = on; });
#endif
  // SM numbers the CUDA kernels were compiled for (e.g. [80, 90]); empty without CUDA.
  m.def("compiled_cuda_archs() -> int[]", []() -> std::vector<int64_t> {
#ifdef ECA_WITH_CUDA
    return eca_cuda::compiled_cuda_archs();
#else
    return {};
#endif
  });
}
