"""Builds robustkernels._C: the C++ CPU kernels always, the CUDA kernels only when asked.

ROBUSTKERNELS_CUDA=1 builds the CUDA kernels too (an error if the torch it builds against has no
CUDA or nvcc is missing); unset or 0, CPU kernels only. The CUDA build is never guessed from nvcc
being on PATH: under pip's build isolation the torch this script sees is a fresh download (a CUDA
wheel), not the torch the package will run with.

TORCH_CUDA_ARCH_LIST picks the GPU architectures; unset with no GPU visible, the build uses
robustkernels/kernels/cuda_arch.py's DEFAULT_CUDA_ARCH_LIST (torch's builder would fail), and
`robustkernels info` says what the kernels were built for.
"""

import glob
import os
import runpy

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(ROOT, "csrc")  # sources include "common/...", "<op>/..." from here
ARCH = runpy.run_path(os.path.join(ROOT, "robustkernels", "kernels", "cuda_arch.py"))


def build_cuda() -> bool:
    """ROBUSTKERNELS_CUDA=1: the CUDA kernels too (checked possible); unset or 0: CPU only."""
    flag = os.environ.get("ROBUSTKERNELS_CUDA", "").strip()
    if flag not in ("", "0", "1"):
        raise ValueError(f"ROBUSTKERNELS_CUDA must be 0 or 1, got {flag!r}")
    # On the CPU wheel CUDA_HOME may be set (nvcc installed) while torch has no CUDA: need both.
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    if flag != "1":
        if possible and not flag:
            print("robustkernels: building the CPU kernels only; ROBUSTKERNELS_CUDA=1 builds the CUDA kernels too")
        return False
    if not possible:
        raise RuntimeError(
            "ROBUSTKERNELS_CUDA=1 but CUDA kernels cannot be built: "
            f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={CUDA_HOME!r}"
        )
    return True


def cuda_arch_list() -> tuple[str, str]:
    """(arch list, source) of the CUDA build, set in TORCH_CUDA_ARCH_LIST (so torch's builder,
    which fails with no GPU visible, never guesses)."""
    visible = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    archs, source = ARCH["resolve_cuda_arch_list"](os.environ.get("TORCH_CUDA_ARCH_LIST"), visible)
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    print(f"robustkernels: CUDA kernels for {ARCH['describe'](archs, source)}")
    return archs, source


def sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def extension():
    # -ffp-contract=off / -fmad=false: no a*b+c becomes an FMA, so the random-number math rounds
    # the same on the CPU, the GPU, Triton and the reference (bit-identical draws).
    # -fno-trapping-math lets float selects (clamps, max) become vector blends; it changes no value.
    # cpp_extension picks the C++ standard.
    cxx_flags = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
    srcs = sources("csrc/ops.cpp") + sources("csrc/*/*.cpp")
    if build_cuda():
        archs, source = cuda_arch_list()
        # recorded for `robustkernels info` (csrc/ops.cpp); ',' for ';', which the build's shell splits
        recorded = [f"-DRK_CUDA_ARCHS={archs.replace(';', ',')}", f"-DRK_CUDA_ARCH_SOURCE={source}"]
        return CUDAExtension(
            "robustkernels._C",
            srcs + sources("csrc/*/*.cu"),
            include_dirs=[CSRC],
            define_macros=[("RK_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags + recorded, "nvcc": ["-O3", "-fmad=false"]},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "robustkernels._C",
        srcs,
        include_dirs=[CSRC],
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


if __name__ == "__main__":  # as pip and setuptools run it; a test loads the functions alone
    setup(
        ext_modules=[extension()],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    )
