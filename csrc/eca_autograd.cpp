// The autograd kernels of eca_cuda::eca_forward and eca_tail_forward (below). eca_forward: y is
// differentiable in x and weight through eca_backward; pooled and gate are not. Written in C++
// rather than as a Python torch.autograd.Function because that costs tens of microseconds per
// forward+backward (its apply, and the engine calling back into Python), most of a small layer's
// step on CPU. Being the operator's own autograd, it also goes wherever the operator goes:
// torch.compile and torch.export trace eca_forward and eca_backward as before.
#include <ATen/TensorOperators.h>
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
using TailForwardSchema = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, double,
    const std::optional<at::Tensor>&, c10::string_view, c10::string_view);
using BackwardSchema = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, c10::string_view);
using TailBackwardSchema = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, c10::string_view);

// Typed handles of the operators (the schemas TORCH_LIBRARY defines in eca_ops.cpp),
// looked up once: the library is registered by the time a kernel runs.
const c10::TypedOperatorHandle<ForwardSchema>& forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eca_cuda::eca_forward", "")
                             .typed<ForwardSchema>();
  return op;
}

const c10::TypedOperatorHandle<TailForwardSchema>& tail_forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eca_cuda::eca_tail_forward", "")
                             .typed<TailForwardSchema>();
  return op;
}

const c10::TypedOperatorHandle<BackwardSchema>& backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eca_cuda::eca_backward", "")
                             .typed<BackwardSchema>();
  return op;
}

const c10::TypedOperatorHandle<TailBackwardSchema>& tail_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eca_cuda::eca_tail_backward", "")
                             .typed<TailBackwardSchema>();
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> tail_forward_below_autograd(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& residual,
    double scale, const std::optional<at::Tensor>& gain, c10::string_view activation,
    c10::string_view padding_mode) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return tail_forward_op().call(x, weight, residual, scale, gain, activation, padding_mode);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> tail_backward_below_autograd(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& pooled, const at::Tensor& gate, const at::Tensor& out,
    c10::string_view padding_mode) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return tail_backward_op().call(grad_out, x, weight, pooled, gate, out, padding_mode);
}

// As once_differentiable does: gradients whose own backward raises, when the caller asked
// for a graph of the backward (create_graph), rather than ones silently without one.
variable_list raise_on_double_backward(variable_list grads) {
  if (!at::GradMode::is_enabled()) return grads;
  variable_list defined;
  for (auto& g : grads) {
    if (g.defined()) defined.push_back(g.requires_grad_(true));
  }
  torch::autograd::DelayedError error(
      "eca_cuda: double backward is not supported (eca_backward has no derivative)",
      static_cast<int>(defined.size()));
  variable_list wrapped = error.apply(std::move(defined));
  size_t next = 0;
  for (auto& g : grads) {
    if (g.defined()) g = wrapped[next++];
  }
  return grads;
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
    return raise_on_double_backward({grad_x, grad_weight, at::Tensor()});
  }
};

// The block tail out = act(y * scale * gain + residual), y = x * gate. Saves what the unfused
// graph saves: x (the rescale's input), out when the activation is a ReLU (ReLU's backward
// reads its output), the (N, C) pooled and gate, and the 0-d gain.
// Backward: g' = dLoss/d(pre-activation) is grad_residual; eca_backward of g' * scale * gain
// gives grad_x and grad_weight (the rescale is linear in its gradient); grad_gain =
// scale * sum(g' * x * gate). A ReLU tail with scale 1 and no gain (ResNet's) runs all of it
// as eca_tail_backward.
class ECATailNode : public torch::autograd::Function<ECATailNode> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const std::optional<at::Tensor>& residual, double scale,
                               const std::optional<at::Tensor>& gain, const std::string& activation,
                               const std::string& padding_mode) {
    auto [out, pooled, gate] =
        tail_forward_below_autograd(x, weight, residual, scale, gain, activation, padding_mode);
    const bool relu = activation == "relu";
    ctx->save_for_backward(
        {x, weight, pooled, gate, relu ? out : at::Tensor(), gain ? *gain : at::Tensor()});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["residual"] = residual.has_value();
    ctx->saved_data["padding_mode"] = padding_mode;
    ctx->mark_non_differentiable({pooled, gate});
    ctx->set_materialize_grads(false);
    return {out, pooled, gate};
  }

  // One gradient per input of forward: x, weight, residual, scale, gain, activation, padding.
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor none;
    if (!grad_outputs[0].defined()) return {none, none, none, none, none, none, none};
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &pooled = saved[2], &gate = saved[3];
    const at::Tensor &out = saved[4], &gain = saved[5];
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool relu = ctx->saved_data["relu"].toBool();
    const std::string& padding_mode = ctx->saved_data["padding_mode"].toStringRef();
    if (relu && scale == 1.0 && !gain.defined()) {
      // ResNet's tail: the mask, the residual's gradient and eca_backward in one op (on CUDA,
      // in the kernels that read grad_out).
      auto [grad_x, grad_weight, grad_pre] =
          tail_backward_below_autograd(grad_outputs[0], x, weight, pooled, gate, out, padding_mode);
      const at::Tensor grad_residual = ctx->saved_data["residual"].toBool() ? grad_pre : none;
      return raise_on_double_backward({grad_x, grad_weight, grad_residual, none, none, none, none});
    }
    // dLoss/d(y * scale * gain + residual): ReLU's backward, as torch.relu's (g where out > 0).
    const at::Tensor grad_pre =
        relu ? at::threshold_backward(grad_outputs[0], out, 0) : grad_outputs[0];
    at::Tensor grad_y = grad_pre;
    if (gain.defined()) {
      grad_y = grad_pre * (gain * scale);
    } else if (scale != 1.0) {
      grad_y = grad_pre * scale;
    }
    auto [grad_x, grad_weight] =
        backward_below_autograd(grad_y, x, weight, pooled, gate, padding_mode);
    at::Tensor grad_gain;
    if (gain.defined() && gain.requires_grad()) {
      std::vector<int64_t> gate_shape(x.dim(), 1);
      gate_shape[0] = gate.size(0);
      gate_shape[1] = gate.size(1);
      grad_gain = (at::sum(grad_pre * x * gate.view(gate_shape)) * scale).to(gain.scalar_type());
    }
    const at::Tensor grad_residual = ctx->saved_data["residual"].toBool() ? grad_pre : none;
    return raise_on_double_backward(
        {grad_x, grad_weight, grad_residual, none, grad_gain, none, none});
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> eca_tail_forward_autograd(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& residual,
    double scale, const std::optional<at::Tensor>& gain, c10::string_view activation,
    c10::string_view padding_mode) {
  const bool needs_graph =
      at::GradMode::is_enabled() &&
      (x.requires_grad() || weight.requires_grad() || (residual && residual->requires_grad()) ||
       (gain && gain->requires_grad()));
  if (!needs_graph) {
    return tail_forward_below_autograd(x, weight, residual, scale, gain, activation, padding_mode);
  }
  const variable_list out = ECATailNode::apply(x, weight, residual, scale, gain,
                                               std::string(activation), std::string(padding_mode));
  return {out[0], out[1], out[2]};
}

}  // namespace
}  // namespace eca_cuda

TORCH_LIBRARY_IMPL(eca_cuda, Autograd, m) {
  m.impl("eca_forward", &eca_cuda::eca_forward_autograd);
  m.impl("eca_tail_forward", &eca_cuda::eca_tail_forward_autograd);
}
