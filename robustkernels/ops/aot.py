"""Ahead-of-time compilation of every Triton kernel specialisation the launchers use, for CUDA
targets, on a machine without a GPU: ``python -m robustkernels.ops.aot [--arch 80 90]``.

The launchers run under :func:`~robustkernels.kernels.triton.launch.recording` on meta tensors
over the cases they serve (dtypes, block sizes, U, modes, channels-last, L2 or Linf, alpha
layouts, integer arguments equal to 1, which Triton specialises); each distinct specialisation
is compiled with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))`` and its
PTX checked: no ``fma.`` instruction and no ``.approx`` / ``.ftz`` arithmetic, since every
kernel's bits must match the reference. Run it with TRITON_INTERPRET unset (the interpreter
replaces the kernels); exits 1 on any failure."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from ..kernels.ptx import bad_ptx_lines

META = torch.device("meta")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
POINTER = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float64: "*fp64",
           torch.int64: "*i64", torch.int32: "*i32"}


def _m(*shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device=META)


def _record_pgd():
    from .pgd.triton import pgd_step

    for dtype in DTYPES:
        for shape in ((4, 3, 32, 32), (1, 3000), (7, 1, 1, 1)):  # BLOCK 1024, 1024 (flat), 1 (inner == 1)
            x = _m(*shape, dtype=dtype)
            b = shape[0]
            for channels in (1, 3) if shape[1] == 3 else (1,):
                lo = _m(channels)
                for l2 in (False, True):
                    pgd_step(torch.empty_like(x), x, x, x, _m(b), _m(b), lo, lo, l2)
            flat = x.reshape(1, -1)
            pgd_step(torch.empty_like(flat), flat, flat, flat, _m(1), _m(1), _m(1), _m(1), False)


def _record_noise():
    from .noise.triton import noise_add, noise_alpha_grad

    for dtype in DTYPES:
        for shape in ((64, 32, 3, 3), (16, 5)):
            x, std = _m(*shape, dtype=dtype), _m()
            n = x.numel()
            for alpha, channels, inner, elementwise in ((_m(1), 1, n, False), (_m(shape[0]), shape[0],
                                                        n // shape[0], False), (_m(n), 1, 1, True)):
                noise_add(x, alpha, std, channels, inner, elementwise, _m(dtype=torch.int64), 0)
                noise_alpha_grad(x, alpha, std, channels, inner, elementwise, _m(dtype=torch.int64), 0)


def _record_lwta():
    from .lwta.triton import lwta_backward, lwta_forward

    # (physical shape, (dim_size, inner, positions)) as ops.lwta.KernelLayout gives them:
    # contiguous NCHW, channels_last NCHW (as [B, H, W, C]), [B, F] and a long inner row
    layouts = (((2, 12, 5, 7), (12, 35, 0)), ((2, 5, 7, 12), (12, 1, 35)), ((8, 12), (12, 1, 0)),
               ((3, 12, 600), (12, 600, 0)))
    seed = _m(dtype=torch.int64)
    for dtype in DTYPES:
        for shape, args in layouts:
            physical = _m(*shape, dtype=dtype)
            for competitors in (2, 3, 4):
                for mode in (0, 1, 2):
                    lwta_forward(physical, competitors, *args, 0.67, mode, seed, 0)
                    lwta_backward(torch.empty_like(physical), physical, competitors, *args, 0.67, mode, seed, 0)


def _record_philox():
    from ..kernels.triton.philox import philox_draw

    for normal in (False, True):
        for per_block in (1, 4):
            philox_draw(5000, 2**40 + 1, 2**32 - 7, normal, per_block, META)


def recorded_launches() -> list:
    from ..kernels.triton.launch import recording

    with recording() as launches:
        for record in (_record_pgd, _record_noise, _record_lwta, _record_philox):
            record()
    return launches


def _arg_type(value, specialise: bool = True) -> str | int:
    """The signature entry the JIT would give ``value`` (an int equal to 1 is specialised, unless
    the kernel says ``do_not_specialize`` for it)."""
    if isinstance(value, torch.Tensor):
        return POINTER[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        if value == 1 and specialise:
            return 1
        return "i32" if -(2**31) <= value < 2**31 else ("u64" if value >= 2**63 else "i64")
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton signature type for {type(value).__name__}")


def specialisation(launch) -> tuple[str, dict, dict]:
    """(kernel name, signature, constexprs) of one recorded launch."""
    fn = launch.kernel
    names = fn.arg_names
    fixed = {p.name for p in fn.params if getattr(p, "do_not_specialize", False)}
    signature, constexprs = {}, dict(launch.constexprs)
    for name, value in zip(names, launch.args):
        kind = _arg_type(value, name not in fixed)
        if isinstance(kind, int):
            signature[name], constexprs[name] = "constexpr", kind
        else:
            signature[name] = kind
    for name in launch.constexprs:
        signature[name] = "constexpr"
    return fn.__name__, {n: signature[n] for n in names}, constexprs


def compile_all(archs=(80, 90)) -> list[str]:
    """Compile every distinct specialisation for every arch; the problems found (empty: all good)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    seen, problems, compiled = set(), [], 0
    for launch in recorded_launches():
        name, signature, constexprs = specialisation(launch)
        key = (name, tuple(signature.items()), tuple(sorted(constexprs.items())))
        if key in seen:
            continue
        seen.add(key)
        for arch in archs:
            label = f"{name} sm_{arch} {constexprs} {[t for t in signature.values() if t != 'constexpr']}"
            try:
                kernel = triton.compile(ASTSource(launch.kernel, signature, constexprs=constexprs),
                                        target=GPUTarget("cuda", arch, 32), options={"enable_fp_fusion": False})
            except Exception as exc:  # noqa: BLE001 (every compile error is reported, then CI fails)
                problems.append(f"{label}: does not compile: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            compiled += 1
            bad = bad_ptx_lines(kernel.asm["ptx"])
            if bad:
                problems.append(f"{label}: {len(bad)} PTX instructions break bit-equality, e.g. {bad[0]!r}")
    print(f"triton {triton.__version__}: {len(seen)} specialisations, {compiled} compiled for "
          f"{', '.join(f'sm_{a}' for a in archs)}; {len(problems)} problems")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], help="CUDA compute capabilities")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("aot: unset TRITON_INTERPRET (the interpreter replaces the kernels)", file=sys.stderr)
        return 2
    problems = compile_all(tuple(args.arch))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
