// Schemas of the compiled kernels. These are private building blocks: the public ops are the
// Python custom ops in robustkernels/ops/, which pick a backend and call these for "cpp"/"cuda".
#include <Python.h>
#include <torch/library.h>

#include <algorithm>
#include <string>

#include "cpu/simd.h"

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
  // Fills a contiguous float32 tensor with element offset + i of the uniform or normal stream;
  // per_block = 1 (tl.rand / tl.randn) or 4 (tl.rand4x / tl.randn4x).
  m.def("philox_fill_(Tensor(a!) out, int seed, int offset, bool normal, int per_block) -> ()");
  // Noise injection (PNI): out = x + std * alpha[(i / inner) % channels] * eta_i, eta from the
  // four-per-block normal stream at offset + i
  // (alpha[i] when elementwise); x contiguous, alpha and std in the op-math dtype of x.
  m.def("noise_add(Tensor x, Tensor alpha, Tensor std, int channels, int inner, bool elementwise, Tensor seed, int offset) -> Tensor");
  // PGD update into out (may alias x_adv): Linf x_adv + step * sign(grad), or L2 x_adv + step *
  // grad / ||grad||, then projection onto the eps-ball around x_nat and clamp to [lo, hi].
  // step, eps: [B]; lo, hi: [C] per channel along dim 1, or [1]; all in the op-math dtype.
  m.def("pgd_step_(Tensor(a!) out, Tensor x_adv, Tensor x_nat, Tensor grad, Tensor step, Tensor eps, Tensor lo, Tensor hi, bool l2) -> ()");
  // The stochastic ops take their Philox key as a one-element int64 tensor on the input's device
  // (csrc/seed_host.h): read by the kernels when they run, so CUDA graph replays draw afresh.
  // Stochastic LWTA forward / backward. h contiguous in memory: [outer, dim_size, inner] when
  // positions == 0, or channels_last [B, positions, dim_size]. mode: 0 soft, 1 hard, 2 argmax.
  m.def("lwta_forward(Tensor h, int competitors, int dim_size, int inner, int positions, float temperature, int mode, Tensor seed, int offset) -> Tensor");
  m.def("lwta_backward(Tensor grad, Tensor h, int competitors, int dim_size, int inner, int positions, float temperature, int mode, Tensor seed, int offset) -> Tensor");
  // Unbiased std over the whole tensor (0-dim, in the op-math dtype of x): the noise scale.
  m.def("tensor_std(Tensor x) -> Tensor");
  // Gradient of noise_add w.r.t. the flat alpha, regenerating the noise.
  m.def("noise_alpha_grad(Tensor grad, Tensor alpha, Tensor std, int channels, int inner, bool elementwise, Tensor seed, int offset) -> Tensor");
}

}  // namespace rk
