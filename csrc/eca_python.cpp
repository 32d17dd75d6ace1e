// The eca_cuda._C Python module. It has no functions: importing it loads this library, whose
// static initialisers register the operators (eca_ops.cpp), their device kernels and their
// autograd kernel; Python then reaches them through torch.ops.eca_cuda, as TorchScript,
// torch.compile and torch.export do.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
