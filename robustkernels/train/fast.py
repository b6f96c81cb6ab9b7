"""``fast=True``: the speed levers that pay off on the device at hand (see
``benchmarks/fast_levers.py`` for each one's share)."""

from __future__ import annotations

import torch

from ..machine import native_bf16


def fast_levers(device: torch.device) -> dict:
    """``{"autocast", "channels_last", "compile"}`` for ``fast=True`` on ``device``.

    CUDA: bf16 autocast (fp16 with a scaler on GPUs without bf16), channels_last and
    torch.compile. CPU: bf16 autocast only where the CPU has native bf16 and channels_last;
    no torch.compile (its compile time on a few cores outweighs what it saves in short runs)."""
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return {"autocast": "bf16" if bf16 else "fp16", "channels_last": True, "compile": True}
    return {"autocast": "bf16" if native_bf16(device) else None, "channels_last": True, "compile": False}
