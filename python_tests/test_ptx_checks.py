"""The PTX checks CI runs ahead of time (every Triton specialisation, every .cu kernel): the
checker finds what breaks bit-equality, and a kernel compiled without our flags is caught."""

import os
import subprocess
import sys

import pytest

from robustkernels.kernels.ptx import bad_ptx_lines, entries

PTX = """
.visible .entry _Z6kernelPf(
    .param .u64 _Z6kernelPf_param_0
)
{
    mul.rn.f32  %f3, %f1, %f2;   // fine
    add.rn.f32  %f4, %f3, %f1;
    @%p1 bra    $L__BB0_2;
$L__BB0_2:
    div.rn.f32  %f5, %f4, %f3;
    ret;
}
.visible .entry _Z5otherPf(
    .param .u64 _Z5otherPf_param_0
)
{
    fma.rn.f32  %f3, %f1, %f2, %f4;
    @%p2 fma.rn.f64 %fd1, %fd2, %fd3, %fd4;
    ex2.approx.ftz.f32 %f5, %f4;
    cvt.rmi.ftz.f32.f32 %f6, %f5;
    div.full.f32 %f7, %f6, %f5;  // not approx by name, not caught: IEEE division is div.rn
}
"""


def test_the_checker_finds_fma_approx_and_ftz_per_kernel():
    kernels = entries(PTX)
    assert list(kernels) == ["_Z6kernelPf", "_Z5otherPf"]
    assert bad_ptx_lines(kernels["_Z6kernelPf"]) == []
    bad = bad_ptx_lines(kernels["_Z5otherPf"])
    assert [b.split()[0] if not b.startswith("@") else b.split()[1] for b in bad] == [
        "fma.rn.f32", "fma.rn.f64", "ex2.approx.ftz.f32", "cvt.rmi.ftz.f32.f32"]


SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from robustkernels.kernels.ptx import bad_ptx_lines
from robustkernels.ops import aot

launches = [l for l in aot.recorded_launches() if l.kernel.__name__ == "_l2_sums_kernel"]
name, signature, constexprs = aot.specialisation(launches[0])
for fusion in (False, True):
    k = triton.compile(ASTSource(launches[0].kernel, signature, constexprs=constexprs),
                       target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": fusion})
    print(fusion, len(bad_ptx_lines(k.asm["ptx"])))
"""


def test_a_triton_kernel_compiled_with_fusion_on_is_caught():
    """The fp64 L2 sums (issue 28: launched once without enable_fp_fusion=False) compiled ahead of
    time for sm_90 on this CPU-only machine: clean with our flag, FMAs found without it."""
    pytest.importorskip("triton", reason="triton is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    clean, fused = (line.split() for line in result.stdout.strip().splitlines()[-2:])
    assert clean == ["False", "0"] and fused[0] == "True" and int(fused[1]) > 0, result.stdout
