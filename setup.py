"""Builds robustkernels._C: the C++ CPU kernels always, the CUDA kernels when torch has CUDA.

ROBUSTKERNELS_CUDA=1 forces the CUDA kernels (error if impossible), =0 leaves them out.
"""

import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def build_cuda() -> bool:
    # On the CPU wheel CUDA_HOME may be None even with nvcc installed: gate on both.
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    flag = os.environ.get("ROBUSTKERNELS_CUDA", "").strip()
    if flag == "0":
        return False
    if flag == "1":
        if not possible:
            raise RuntimeError(
                "ROBUSTKERNELS_CUDA=1 but CUDA kernels cannot be built: "
                f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={CUDA_HOME!r}"
            )
        return True
    if flag:
        raise ValueError(f"ROBUSTKERNELS_CUDA must be 0 or 1, got {flag!r}")
    return possible


def sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def extension():
    # -ffp-contract=off / -fmad=false: no a*b+c becomes an FMA, so the random-number math rounds
    # the same on the CPU, the GPU, Triton and the reference (bit-identical draws).
    # -fno-trapping-math lets float selects (clamps, max) become vector blends; it changes no value.
    # cpp_extension picks the C++ standard.
    cxx_flags = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
    srcs = sources("csrc/ops.cpp") + sources("csrc/cpu/*.cpp")
    if build_cuda():
        return CUDAExtension(
            "robustkernels._C",
            srcs + sources("csrc/cuda/*.cu"),
            define_macros=[("RK_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-fmad=false"]},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "robustkernels._C",
        srcs,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
