"""Which GPU architectures the CUDA kernels are built for. A leaf module: ``setup.py`` reads it
(by path, before robustkernels is importable) and ``robustkernels info`` prints it.

``TORCH_CUDA_ARCH_LIST`` decides, as for any torch extension. Unset, torch's builder takes the
visible GPUs' architectures, and with no GPU visible it fails (an IndexError in its arch flags),
so the build then uses :data:`DEFAULT_CUDA_ARCH_LIST`: A100 and H100 code, plus PTX that newer
GPUs compile on load."""

from __future__ import annotations

DEFAULT_CUDA_ARCH_LIST = "8.0;9.0+PTX"
SOURCES = {
    "env": "TORCH_CUDA_ARCH_LIST",
    "visible": "the visible GPUs, torch's default",
    "default": "the default: TORCH_CUDA_ARCH_LIST unset and no GPU visible at build time",
}


def resolve_cuda_arch_list(given: str | None, visible_capabilities: list[tuple[int, int]]) -> tuple[str, str]:
    """(the arch list to build with, where it comes from: a key of :data:`SOURCES`).

    ``given``: TORCH_CUDA_ARCH_LIST's value (spaces or ';' between archs); ``visible_capabilities``:
    the visible GPUs' (major, minor), whose list - the last with +PTX - is torch's own default."""
    given = ";".join(arch for arch in (given or "").replace(" ", ";").split(";") if arch)
    if given:
        return given, "env"
    if visible_capabilities:
        archs = [f"{major}.{minor}" for major, minor in sorted(set(visible_capabilities))]
        return ";".join(archs) + "+PTX", "visible"
    return DEFAULT_CUDA_ARCH_LIST, "default"


def describe(archs: str, source: str) -> str:
    """``8.0;9.0+PTX (the default: ...)``."""
    return f"{archs} ({SOURCES.get(source, source)})"


def built_cuda_arch_list() -> str:
    """What the loaded extension's CUDA kernels were built for, in words (``robustkernels info``)."""
    from .. import _extension

    if not _extension.LOADED:
        return "no extension loaded"
    if not _extension.CUDA_BUILT:
        return "none (CPU kernels only; build with ROBUSTKERNELS_CUDA=1)"
    import torch

    archs, _, source = torch.ops.robustkernels_C.cuda_arch_list().partition(" ")
    return describe(archs, source)
