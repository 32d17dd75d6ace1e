// The eca_cuda._C Python module. Importing it loads this library, which runs the operator
// registrations (eca_ops.cpp, eca_autograd.cpp). Its one function, forward_y, is the eager
// entry point of eca_cuda.eca: the same operator called through the dispatcher (autograd,
// autocast, every device and dispatch mode as before), without the boxed torch.ops call,
// whose argument parsing costs about 2 us, as much as the kernel of a small layer on CPU.
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>

#include <tuple>

#include "eca_op_handles.h"

namespace {

// forward_y(x, weight, padding_mode) -> y: eca_forward(x, weight, padding_mode)[0]. The caller
// (eca_cuda.eca) sends here only plain tensors outside torch.compile: anything with
// __torch_function__ goes through torch.ops, which honours it. Other argument types return
// NotImplemented, so that the caller's torch.ops call raises the schema's own error.
PyObject* forward_y(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs != 3 || !THPVariable_Check(args[0]) || !THPVariable_Check(args[1]) ||
      !PyUnicode_Check(args[2])) {
    Py_RETURN_NOTIMPLEMENTED;
  }
  Py_ssize_t size = 0;
  const char* mode = PyUnicode_AsUTF8AndSize(args[2], &size);
  if (mode == nullptr) return nullptr;
  const at::Tensor& x = THPVariable_Unpack(args[0]);
  const at::Tensor& weight = THPVariable_Unpack(args[1]);
  at::Tensor y;
  {
    pybind11::gil_scoped_release no_gil;  // as torch.ops does: other Python threads run
    y = std::get<0>(eca_cuda::forward_op().call(x, weight, c10::string_view(mode, size)));
  }
  return THPVariable_Wrap(std::move(y));
  END_HANDLE_TH_ERRORS
}

PyMethodDef methods[] = {
    {"forward_y", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(forward_y)),
     METH_FASTCALL, "eca_forward(x, weight, padding_mode)[0] through the dispatcher."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
