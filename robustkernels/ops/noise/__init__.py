"""Parametric Noise Injection (He, Rakin & Fan, CVPR 2019) as fused ops.

``noisy_weight(w, alpha) = w + alpha * std(w) * eta`` and ``inject_noise(x, alpha)`` (the same
for activations or inputs), with ``eta ~ N(0, 1)`` generated inside the kernel from the shared
Philox stream. ``std`` is the unbiased std over the whole tensor, a constant for autograd (as in
the paper's code). The backward regenerates ``eta`` from ``(seed, offset)``: no noise tensor is
materialised or kept; the op saves only the 0-dim ``std``.

Gradients: ``d/dx = grad``; ``d/dalpha = sum(grad * eta) * std`` over what each alpha covers
(the products in the op-math type, summed in float64, on every backend).

Draw ``offset + i`` goes to the element at position ``i`` of ``x``'s memory: row-major for a
contiguous tensor, NHWC for channels_last (which the kernels read and write in place, and the
result keeps), in general the order of :func:`memory_order`; a tensor that is not dense (a
strided slice) is read from a row-major copy. So a channels_last tensor and its contiguous copy
get different (equally distributed) noise, and every backend, reference included, the same.

Same seed, same bits: the draws and the arithmetic given ``std`` are identical on every backend.
``std`` itself is per device: the CPU kernel's two-pass sums (float chunks, float64 totals),
``torch.std`` on the reference and on GPUs; they agree to about 1e-7 relative and can differ in
the last bit, so a noisy weight can differ by one rounding between a CPU and a GPU run.
"""

import torch

from ...common import is_number
from ...threat import check_all
from .._random import draw_seed_tensor
from .._registry import KernelOp
from .._validation import check_float_tensor, check_int, opmath_dtype
from . import reference


def _noise_add_schema(x: torch.Tensor, alpha: torch.Tensor, std: torch.Tensor, channels: int, inner: int,
                      elementwise: bool, seed: torch.Tensor, offset: int) -> torch.Tensor:
    """Noise injection (PNI): ``out = x + std * alpha[(i / inner) % channels] * eta_i``
    (``alpha[i]`` when elementwise), ``eta`` from the four-per-block normal stream at
    ``offset + i``; ``x`` contiguous, ``alpha`` and ``std`` in the op-math dtype of ``x``."""
    raise NotImplementedError  # the schema only


def _noise_alpha_grad_schema(grad: torch.Tensor, alpha: torch.Tensor, std: torch.Tensor, channels: int, inner: int,
                             elementwise: bool, seed: torch.Tensor, offset: int) -> torch.Tensor:
    """The gradient of ``noise_add`` w.r.t. the flat ``alpha``, regenerating the noise."""
    raise NotImplementedError  # the schema only


def _tensor_std_schema(x: torch.Tensor) -> torch.Tensor:
    """Unbiased std over the whole tensor (0-dim, in the op-math dtype of ``x``): the noise scale."""
    raise NotImplementedError  # the schema only


noise_add = KernelOp("noise_add", _noise_add_schema, device_arg="x", key_arg="seed")
tensor_std = KernelOp("tensor_std", _tensor_std_schema, device_arg="x")
noise_alpha_grad = KernelOp("noise_alpha_grad", _noise_alpha_grad_schema, device_arg="grad", key_arg="seed")

for _op, _name in ((noise_add, "noise_add"), (noise_alpha_grad, "noise_alpha_grad")):
    _op.register_backend("reference", getattr(reference, _name))
    _op.register_compiled(_name)
    _op.register_backend("triton", f"robustkernels.ops.noise.triton:{_name}")


def _torch_std(x):
    return x.to(opmath_dtype(x.dtype)).std()


tensor_std.register_backend("reference", _torch_std)
tensor_std.register_compiled("tensor_std")
tensor_std.register_backend("cuda", _torch_std)  # one reduction kernel on a GPU already
tensor_std.register_backend("triton", _torch_std)


@tensor_std.register_fake
def _tensor_std_fake(x):
    return x.new_empty((), dtype=opmath_dtype(x.dtype))


@noise_add.register_fake
def _noise_add_fake(x, alpha, std, channels, inner, elementwise, seed, offset):
    return torch.empty_like(x)


@noise_alpha_grad.register_fake
def _noise_alpha_grad_fake(grad, alpha, std, channels, inner, elementwise, seed, offset):
    return torch.empty_like(alpha)


def _setup_context(ctx, inputs, output):
    _, alpha, std, channels, inner, elementwise, seed, offset = inputs
    # alpha is a parameter, std and the key are 0-dim: no noise is kept (the key saved, so one
    # changed in place is an autograd error)
    ctx.save_for_backward(alpha, std, seed)
    ctx.layout = (channels, inner, elementwise)
    ctx.offset = offset


def _backward(ctx, grad):
    alpha, std, seed = ctx.saved_tensors
    grad_alpha = None
    if ctx.needs_input_grad[1]:
        grad_alpha = noise_alpha_grad(grad.contiguous(), alpha, std, *ctx.layout, seed, ctx.offset)
    return grad, grad_alpha, None, None, None, None, None, None


noise_add.register_autograd(_backward, setup_context=_setup_context)


def _alpha_layout(x: torch.Tensor, alpha: torch.Tensor, channel_dim: int) -> tuple[int, int, bool]:
    """(channels, inner, elementwise) for the kernels, from alpha's shape (x row-major)."""
    if alpha.numel() == 1:
        return 1, x.numel(), False
    if alpha.shape == x.shape:
        return x.numel(), 1, True
    channels = x.shape[channel_dim]
    per_channel = [1] * (x.dim() - channel_dim)
    per_channel[0] = channels
    if alpha.numel() == channels and list(alpha.shape) in ([channels], per_channel):
        return channels, x[(0,) * channel_dim].numel() // channels, False
    raise ValueError(
        f"alpha must have one element (layer-wise), shape [{channels}] or {per_channel} (per channel along "
        f"dim {channel_dim}), or x's shape {list(x.shape)} (element-wise); got {list(alpha.shape)}"
    )


def memory_order(x: torch.Tensor) -> list[int]:
    """The dims of ``x`` from the outermost in memory to the innermost when ``x`` is dense in
    that order (``x.permute(order)`` is contiguous: row-major, channels_last, a transpose ...);
    the identity for anything else (which the kernels read from a row-major copy)."""
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))  # stable: ties keep their order
    return order if x.permute(order).is_contiguous() else list(range(x.dim()))


def _inverse(order: list[int]) -> list[int]:
    return sorted(range(len(order)), key=order.__getitem__)


def _add_noise(x, alpha, channel_dim, generator, name):
    check_float_tensor(name, x)
    if x.numel() < 2:
        raise ValueError(f"{name} needs at least 2 elements for its std, got shape {list(x.shape)}")
    check_int("channel_dim", channel_dim, low=-x.dim(), high=x.dim() - 1)
    channel_dim %= x.dim()
    compute = opmath_dtype(x.dtype)
    if is_number(alpha):
        alpha = torch.tensor(float(alpha), dtype=compute, device=x.device)
    if not isinstance(alpha, torch.Tensor):
        raise TypeError(f"alpha must be a float or a Tensor, got {type(alpha).__name__}")
    if not alpha.is_floating_point():
        raise TypeError(f"alpha must be a floating-point tensor, got {alpha.dtype}")
    if alpha.device != x.device:
        raise ValueError(f"alpha is on {alpha.device} but {name} is on {x.device}")
    check_all(torch.isfinite(alpha.detach()),
              f"alpha must be finite (a NaN or inf noise scale makes every entry of {name} NaN)")
    channels, inner, elementwise = _alpha_layout(x, alpha, channel_dim)
    # The kernels run on x's memory in its own order (channels_last stays channels_last, no copy)
    order = memory_order(x)
    physical = x.permute(order).contiguous()  # a view, unless x is not dense
    if elementwise:
        alpha = alpha.permute(order)
    elif channels > 1:
        inner = physical[(0,) * (order.index(channel_dim) + 1)].numel()
    std = tensor_std(physical.detach())
    out = noise_add(physical, alpha.to(compute).reshape(-1).contiguous(), std, channels, inner, elementwise,
                    draw_seed_tensor(generator, x.device), 0)
    return out.permute(_inverse(order))


def noisy_weight(weight: torch.Tensor, alpha, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """PNI-W: ``weight + alpha * std(weight) * eta``, eta ~ N(0, 1) drawn in the kernel.

    Args:
        weight: any shape, >= 2 elements, fp32/bf16/fp16 (math in fp32) or fp64.
        alpha: a float or 1-element tensor (layer-wise, the paper's default), ``[C_out]`` or
            ``[C_out, 1, ...]`` (per output channel, dim 0), or weight's shape (element-wise).
        generator: where the Philox seed comes from (default generator if None).
    Returns:
        A new tensor like ``weight``, in its memory format (channels_last stays channels_last),
        differentiable in weight and alpha.
    """
    return _add_noise(weight, alpha, 0, generator, "weight")


def inject_noise(
    x: torch.Tensor, alpha, *, channel_dim: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """PNI-A / PNI-I: ``x + alpha * std(x) * eta`` for activations or inputs (e.g. [B, C, H, W]).

    ``alpha`` as in :func:`noisy_weight`, per channel along ``channel_dim`` (default 1, NCHW).
    """
    return _add_noise(x, alpha, channel_dim, generator, "x")
