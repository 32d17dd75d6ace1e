// Typed handles of the two operators, for C++ callers that go through the dispatcher: the
// autograd kernel (eca_autograd.cpp) below autograd, the Python entry (eca_python.cpp) from
// the top. The schemas are the ones TORCH_LIBRARY defines in eca_ops.cpp.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>

#include <tuple>

namespace eca_cuda {

using ForwardSchema = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&,
                                                                     const at::Tensor&,
                                                                     c10::string_view);
using BackwardSchema = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, c10::string_view);

// Looked up once (the library is registered by the time a kernel or the module runs).
inline const c10::TypedOperatorHandle<ForwardSchema>& forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eca_cuda::eca_forward", "")
                             .typed<ForwardSchema>();
  return op;
}

inline const c10::TypedOperatorHandle<BackwardSchema>& backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("eca_cuda::eca_backward", "")
                             .typed<BackwardSchema>();
  return op;
}

}  // namespace eca_cuda
