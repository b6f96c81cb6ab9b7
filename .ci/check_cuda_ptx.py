"""Compile every csrc/<op>/*.cu to PTX for sm_80 and sm_90 with the flags the real build uses
(torch's cpp_extension nvcc flags, -O3 -fmad=false) and check each float32 / bf16 / fp16 kernel:
no fma., no .approx or .ftz arithmetic (their bits must match the CPU and the reference). The
float64 instantiations are exempt: libdevice's log / exp there are not claimed bit-equal to libm.
Needs nvcc; no GPU. Exit 1 on any problem."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

from torch.utils.cpp_extension import COMMON_NVCC_FLAGS, include_paths

from robustkernels.kernels.ptx import bad_ptx_lines, entries

FLOAT64 = re.compile(r"<[^<>()]*\bdouble\b[^<>()]*>\(")  # a template argument list holding double
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = [*COMMON_NVCC_FLAGS, "-O3", "-fmad=false", "-std=c++20", "-DRK_WITH_CUDA", "-diag-suppress", "3306"]


def demangle(names: list[str]) -> list[str]:
    if not names or shutil.which("c++filt") is None:
        return names
    result = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
    return result.stdout.split("\n")


def main() -> int:
    if shutil.which("nvcc") is None:
        print("nvcc not found: PTX of the CUDA sources not checked")
        return 0
    problems, checked = [], 0
    with tempfile.TemporaryDirectory() as work:
        stub = os.path.join(work, "stub", "c10", "cuda", "impl")
        os.makedirs(stub)
        with open(os.path.join(stub, "cuda_cmake_macros.h"), "w") as f:
            f.write("#pragma once\n")  # generated in CUDA builds of torch; the CPU wheel lacks it
        includes = [f"-I{os.path.join(work, 'stub')}", f"-I{os.path.join(ROOT, 'csrc')}"]
        includes += [f"-I{p}" for p in include_paths()]
        for source in sorted(glob.glob(os.path.join(ROOT, "csrc", "*", "*.cu"))):
            for arch in (80, 90):
                out = os.path.join(work, f"{os.path.basename(source)}.sm{arch}.ptx")
                result = subprocess.run(["nvcc", "-ptx", f"-arch=sm_{arch}", *FLAGS, *includes, source, "-o", out],
                                        capture_output=True, text=True)
                if result.returncode:
                    problems.append(f"{source} sm_{arch}: nvcc failed: {result.stderr.strip().splitlines()[-1]}")
                    continue
                with open(out) as f:
                    kernels = entries(f.read())
                for body, name in zip(kernels.values(), demangle(list(kernels))):
                    if FLOAT64.search(name):
                        continue  # a float64 instantiation (template argument double)
                    checked += 1
                    bad = bad_ptx_lines(body)
                    if bad:
                        problems.append(f"{os.path.basename(source)} sm_{arch} {name}: {len(bad)} instructions "
                                        f"break bit-equality, e.g. {bad[0]!r}")
    print(f"CUDA PTX: {checked} float32/bf16/fp16 kernels checked for sm_80 and sm_90; {len(problems)} problems")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
