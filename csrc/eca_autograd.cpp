// The autograd kernel of eca_cuda::eca_forward: y is differentiable in x and weight through
// eca_backward; pooled and gate are not. Written in C++ rather than as a Python
// torch.autograd.Function because that costs tens of microseconds per forward+backward (its
// apply, and the engine calling back into Python), most of a small layer's step on CPU. Being
// the operator's own autograd, it also goes wherever the operator goes: torch.compile and
// torch.export trace eca_forward and eca_backward as before.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/library.h>

#include <string>
#include <tuple>

namespace eca_cuda {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using ForwardSchema = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&,
                                                                     const at::Tensor&,
                                                                     c10::string_view);
using BackwardSchema = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, c10::string_view);

// Typed handles of the two operators (the schemas TORCH_LIBRARY defines in eca_ops.cpp),
// looked up once: the library is registered by the time a kernel runs.
const c10::TypedOperatorHandle<ForwardSchema>& forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eca_cuda::eca_forward", "")
                             .typed<ForwardSchema>();
  return op;
}

const c10::TypedOperatorHandle<BackwardSchema>& backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eca_cuda::eca_backward", "")
                             .typed<BackwardSchema>();
  return op;
}

// eca_forward's kernels below autograd (CPU, CUDA, or the fake kernel under tracing).
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_below_autograd(
    const at::Tensor& x, const at::Tensor& weight, c10::string_view padding_mode) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return forward_op().call(x, weight, padding_mode);
}

std::tuple<at::Tensor, at::Tensor> backward_below_autograd(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& pooled, const at::Tensor& gate, c10::string_view padding_mode) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return backward_op().call(grad_y, x, weight, pooled, gate, padding_mode);
}

// Saves x, weight and the two (N, C) tensors: nothing of x's size beyond x itself.
class ECAForwardNode : public torch::autograd::Function<ECAForwardNode> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const std::string& padding_mode) {
    auto [y, pooled, gate] = forward_below_autograd(x, weight, padding_mode);
    ctx->save_for_backward({x, weight, pooled, gate});
    ctx->saved_data["padding_mode"] = padding_mode;
    ctx->mark_non_differentiable({pooled, gate});
    // pooled and gate never get gradients: without this the engine would fill two (N, C)
    // zero tensors for them on every backward, microseconds each on a small layer.
    ctx->set_materialize_grads(false);
    return {y, pooled, gate};
  }

  // grad_outputs[1:] (pooled, gate) are undefined: they are not differentiable.
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    // Undefined (not materialized) grad of y: zero gradients, which undefined tensors mean.
    if (!grad_outputs[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_weight] =
        backward_below_autograd(grad_outputs[0], saved[0], saved[1], saved[2], saved[3],
                                ctx->saved_data["padding_mode"].toStringRef());
    if (!at::GradMode::is_enabled()) return {grad_x, grad_weight, at::Tensor()};
    // create_graph: as torch.autograd.function.once_differentiable does, return gradients
    // whose own backward raises, rather than ones silently without a graph.
    grad_x.requires_grad_(true);
    grad_weight.requires_grad_(true);
    torch::autograd::DelayedError error(
        "eca_cuda: double backward is not supported (eca_backward has no derivative)", 2);
    variable_list grads = error.apply({grad_x, grad_weight});
    return {grads[0], grads[1], at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_forward_autograd(const at::Tensor& x,
                                                                    const at::Tensor& weight,
                                                                    c10::string_view padding_mode) {
  // No graph to record (inference, or inside ECAFunction.forward): skip the node's set-up.
  if (!at::GradMode::is_enabled() || !(x.requires_grad() || weight.requires_grad())) {
    return forward_below_autograd(x, weight, padding_mode);
  }
  const variable_list out = ECAForwardNode::apply(x, weight, std::string(padding_mode));
  return {out[0], out[1], out[2]};
}

}  // namespace
}  // namespace eca_cuda

TORCH_LIBRARY_IMPL(eca_cuda, Autograd, m) {
  m.impl("eca_forward", &eca_cuda::eca_forward_autograd);
}
