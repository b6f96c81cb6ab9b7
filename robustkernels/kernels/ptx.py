"""What a kernel's PTX must not contain for its bits to match the other backends: fused
multiply-adds and approximate or flush-to-zero arithmetic. Shared by the Triton ahead-of-time
check and the nvcc one (``.ci/check_cuda_ptx.py``)."""

from __future__ import annotations

import re

_ENTRY = re.compile(r"\.entry\s+([\w$]+)\s*\(")


def bad_ptx_lines(ptx: str) -> list[str]:
    """The instructions of ``ptx`` that would break bit-equality (comments and directives skipped)."""
    out = []
    for line in ptx.splitlines():
        code = line.split("//")[0].strip()
        if not code or code.startswith((".", "{", "}", "$", ")")):
            continue  # directives, braces, labels
        words = code.split()
        op = words[1] if code.startswith("@") and len(words) > 1 else words[0]  # "@%p1 fma.rn.f32 ..."
        if op.startswith("fma.") or ".approx" in op or ".ftz" in op:
            out.append(code)
    return out


def entries(ptx: str) -> dict[str, str]:
    """``{mangled kernel name: its body}`` for every ``.entry`` of a PTX module."""
    out, starts = {}, [(m.group(1), m.start()) for m in _ENTRY.finditer(ptx)]
    for (name, start), (_, end) in zip(starts, starts[1:] + [("", len(ptx))]):
        out[name] = ptx[start:end]
    return out
