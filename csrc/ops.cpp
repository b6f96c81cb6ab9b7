// The extension module and what it says about its build. The kernels' schemas are not written
// here: each is declared once, by its Python op (robustkernels/ops/<op>/, KernelOp), which defines
// the private robustkernels_C::<kernel> with the public op's schema; csrc/<op>/cpu.cpp and
// cuda.cu only register implementations (TORCH_LIBRARY_IMPL), and the dispatcher checks each
// C++ signature against the Python schema when both are loaded.
#include <Python.h>
#include <torch/library.h>

#include <algorithm>
#include <string>

#include "common/simd.h"

extern "C" {
// Importing robustkernels._C runs the static TORCH_LIBRARY registrations below; the module
// itself is empty (the pattern of pytorch/extension-cpp).
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace rk {

bool cuda_built() {
#ifdef RK_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int64_t cpu_isa() { return simd_level(); }

// "<TORCH_CUDA_ARCH_LIST> <source>" of a CUDA build (setup.py passes the list with ',' for ';'
// and the source: env | visible | default); "" for a CPU-only build.
#define RK_STRINGIFY_ARGS(...) #__VA_ARGS__
#define RK_STRINGIFY(...) RK_STRINGIFY_ARGS(__VA_ARGS__)
std::string cuda_arch_list() {
#if defined(RK_WITH_CUDA) && defined(RK_CUDA_ARCHS) && defined(RK_CUDA_ARCH_SOURCE)
  std::string archs = RK_STRINGIFY(RK_CUDA_ARCHS);
  std::replace(archs.begin(), archs.end(), ',', ';');
  return archs + " " + RK_STRINGIFY(RK_CUDA_ARCH_SOURCE);
#else
  return "";
#endif
}

TORCH_LIBRARY(robustkernels_C, m) {
  m.def("cuda_built() -> bool", &cuda_built);
  m.def("cuda_arch_list() -> str", &cuda_arch_list);
  // The ISA variant the CPU kernels run: 0 baseline, 1 AVX2, 2 AVX-512 (ROBUSTKERNELS_CPU_ISA caps it).
  m.def("cpu_isa() -> int", &cpu_isa);
}

}  // namespace rk
