"""BatchNorm followed by Stochastic LWTA over the channels, with one saved tensor instead of two.

Unfused, a pre-activation network keeps two activation-sized tensors per BN -> LWTA pair for the
backward: BN's input ``x`` (BatchNorm's backward needs it) and LWTA's input ``h = BN(x)``. The
fused op keeps only ``x`` and the per-channel ``scale``/``shift`` (``h = x * scale + shift``);
the backward recomputes ``h`` with the same operation (so bit for bit), runs the fused LWTA
backward (which regenerates the noise from its seed) and then ATen's BatchNorm backward. With
ReLU, a pre-activation block keeps one tensor per pair (ReLU's output, shared with the next
conv); the fused LWTA pair keeps ``x`` and the LWTA output, the same count.

Running statistics follow ``torch.nn.functional.batch_norm``: updated in place with
``momentum`` when ``training`` and they are given (unbiased variance), used when not training.
"""

from __future__ import annotations

import torch

from .._random import draw_seed_tensor
from .._validation import check_float_tensor
from . import KernelLayout, check_lwta_args, lwta_backward, lwta_forward, mode_code


def _normalize(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x * scale + shift`` per channel (dim 1), in x's dtype; the forward and the backward both
    compute LWTA's input with this one function."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul(shift.view(shape), x, scale.view(shape)).to(x.dtype)


def _statistics(x, running_mean, running_var, training, momentum, eps):
    """(mean, invstd) per channel as float32 (float64 for float64 x), updating the running
    statistics in place when training."""
    stats_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if not training:
        return running_mean.to(stats_dtype), torch.rsqrt(running_var.to(stats_dtype) + eps)
    if running_mean is not None:
        mean, var = torch.batch_norm_update_stats(x, running_mean, running_var, momentum)
    else:
        var, mean = torch.var_mean(x, dim=[d for d in range(x.dim()) if d != 1], correction=0)
    return mean.to(stats_dtype), torch.rsqrt(var.to(stats_dtype) + eps)


class _BatchNormLWTA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps, competitors, temperature,
                code, seed):
        mean, invstd = _statistics(x, running_mean, running_var, training, momentum, eps)
        scale = invstd if weight is None else weight.to(invstd.dtype) * invstd
        shift = -mean * scale if bias is None else bias.to(scale.dtype) - mean * scale
        h = _normalize(x, scale, shift)
        layout = KernelLayout(h, 1)
        y = layout.logical(lwta_forward.call_untracked(layout.physical(h), competitors, *layout.args, temperature,
                                                       code, seed, 0))
        ctx.save_for_backward(x, weight, running_mean, running_var, mean, invstd, scale, shift, seed)
        ctx.config = (training, eps, competitors, temperature, code, bias is not None, layout)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, weight, running_mean, running_var, mean, invstd, scale, shift, seed = ctx.saved_tensors
        training, eps, competitors, temperature, code, has_bias, layout = ctx.config
        h = _normalize(x, scale, shift)  # the forward's h, recomputed (same shape and layout)
        grad_h = layout.logical(lwta_backward.call_untracked(layout.physical(grad_y), layout.physical(h), competitors,
                                                             *layout.args, temperature, code, seed, 0))
        del h
        needs = ctx.needs_input_grad
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_h, x, weight, running_mean, running_var, mean if training else None,
            invstd if training else None, training, eps, [needs[0], weight is not None and needs[1],
                                                          has_bias and needs[2]])
        return (grad_x, grad_w, grad_b) + (None,) * 9


def batch_norm_lwta(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                    running_mean: torch.Tensor | None = None, running_var: torch.Tensor | None = None, *,
                    training: bool = True, momentum: float = 0.1, eps: float = 1e-5, competitors: int = 2,
                    temperature: float = 0.67, hard: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``lwta(F.batch_norm(x, ...), dim=1)`` in one autograd node that saves only ``x`` (see the
    module docstring).

    Args:
        x: [B, C, ...] activations (fp32/bf16/fp16/fp64; contiguous or channels_last).
        weight, bias: [C] affine parameters, or None.
        running_mean, running_var: [C] running statistics, or None (batch statistics always).
        training: use batch statistics (and update the running ones); else the running ones.
        momentum, eps: as ``F.batch_norm``.
        competitors, temperature, hard, generator: as :func:`robustkernels.ops.lwta` over dim 1.
    Returns:
        Same shape, dtype and layout as ``x``.
    """
    check_float_tensor("x", x)
    if x.dim() < 2:
        raise ValueError(f"x must be [B, C, ...], got shape {tuple(x.shape)}")
    check_lwta_args(x, competitors, temperature, 1)
    channels = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and (not isinstance(t, torch.Tensor) or t.shape != (channels,)):
            raise ValueError(f"{name} must be a tensor of shape ({channels},) or None")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    if not training and running_mean is None:
        raise ValueError("training=False needs running_mean and running_var")
    code = mode_code(hard, "sample")
    seed = draw_seed_tensor(generator, x.device)
    return _BatchNormLWTA.apply(x, weight, bias, running_mean, running_var, bool(training), float(momentum),
                                float(eps), competitors, float(temperature), code, seed)
