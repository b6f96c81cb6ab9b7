"""``auto_levers=True``: the speed levers that pay off on the device at hand (see
``benchmarks/bench_train_levers.py`` for each one's share)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..common import model_device
from ..levers import lever_error, lever_failure
from ..machine import native_bf16


def device_levers(device: torch.device) -> dict:
    """``{"autocast", "channels_last", "compile"}`` for ``auto_levers=True`` on ``device``.

    CUDA: bf16 autocast (fp16 with a scaler on GPUs without bf16), channels_last and
    torch.compile. CPU: bf16 autocast only where the CPU has native bf16 and channels_last;
    no torch.compile (its compile time on a few cores outweighs what it saves in short runs)."""
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return {"autocast": "bf16" if bf16 else "fp16", "channels_last": True, "compile": True}
    return {"autocast": "bf16" if native_bf16(device) else None, "channels_last": True, "compile": False}


def checked_levers(model: nn.Module, x: torch.Tensor, opts) -> None:
    """Set ``opts.autocast / channels_last / compile``: the ones asked for, then ``auto_levers=True``'s
    device defaults. One forward and backward pass on ``x`` [B, ...] checks each: a lever asked
    for that the model fails on (a ``.view`` of a channels_last activation, an op without bf16
    support) is refused with a ValueError naming it; one that ``auto_levers=True`` chose is dropped with
    a warning."""
    device = model_device(model)
    x = x.to(device)
    levers = {"channels_last": bool(opts.channels_last), "autocast": opts.autocast}
    why = lever_failure(model, x, levers["channels_last"], levers["autocast"])
    if why is not None:
        raise lever_error(levers, why)
    chosen = device_levers(device) if opts.auto_levers else {}
    opts.compile = opts.compile or chosen.get("compile", False)
    for name in ("channels_last", "autocast"):
        if levers[name] or not chosen.get(name):
            continue
        trial = dict(levers, **{name: chosen[name]})
        why = lever_failure(model, x, trial["channels_last"], trial["autocast"])
        if why is None:
            levers = trial
        else:
            warnings.warn(f"auto_levers=True: {name} off, the model fails a forward and backward pass with it ({why})",
                          RuntimeWarning, stacklevel=4)
    opts.channels_last, opts.autocast = levers["channels_last"], levers["autocast"]
