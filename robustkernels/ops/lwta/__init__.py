"""Stochastic Local Winner-Takes-All (Panousis, Chatzis & Theodoridis 2021) as a fused op.

``lwta(h)`` splits the units along ``dim`` into blocks of ``competitors`` (U) consecutive units
(for conv activations: U consecutive channels at every position) and samples a winner per
block with the Gumbel-softmax relaxation: ``xi = softmax((h + G) / T)``, ``y = h * xi``.
``hard=True``: one-hot winner forward, straight-through gradient. ``mode="argmax"``: the
deterministic winner ``argmax h`` (analysis), no noise.

Memory: the op saves only its input ``h``; the backward regenerates the Gumbel noise from
``(seed, offset)`` and recomputes ``xi`` in the same fused pass (the reference formulation keeps
the noise, the tempered logits and the softmax per element). Contiguous and channels_last
inputs are both handled in place; the output has the input's layout.
"""


import torch

from ...kernels.modes import LwtaMode
from .._random import check_generator, draw_seed_tensor
from .._registry import KernelOp
from .._validation import check_float_tensor, check_int
from . import reference

MODES = {"sample": LwtaMode.SOFT, "argmax": LwtaMode.ARGMAX}  # the user-facing names; hard=True gives HARD


def _forward_schema(h: torch.Tensor, competitors: int, dim_size: int, inner: int, positions: int, temperature: float,
                    mode: int, seed: torch.Tensor, offset: int) -> torch.Tensor:
    """Stochastic LWTA forward. ``h`` contiguous in memory: [outer, dim_size, inner] when
    ``positions == 0``, or channels_last [B, positions, dim_size]. ``mode``: 0 soft, 1 hard,
    2 argmax. ``seed``: the Philox key as a one-element int64 tensor on ``h``'s device (read when
    the kernel runs, so CUDA graph replays draw afresh)."""
    raise NotImplementedError  # the schema only


def _backward_schema(grad: torch.Tensor, h: torch.Tensor, competitors: int, dim_size: int, inner: int, positions: int,
                     temperature: float, mode: int, seed: torch.Tensor, offset: int) -> torch.Tensor:
    """Stochastic LWTA backward, regenerating the forward's draws; arguments as the forward's."""
    raise NotImplementedError  # the schema only


lwta_forward = KernelOp("lwta_forward", _forward_schema, device_arg="h", key_arg="seed")
lwta_backward = KernelOp("lwta_backward", _backward_schema, device_arg="h", key_arg="seed")


def _logical(h, dim_size, inner, positions):
    """The physical tensor as a logical [outer, D, L] view (L = inner, or positions)."""
    if positions > 0:
        return h.view(-1, positions, dim_size).transpose(1, 2)
    return h.view(-1, dim_size, inner)


def _reference(function, tensors, competitors, dim_size, inner, positions, temperature, mode, seed, offset):
    """Run a reference function on the logical [outer, D, L] views and return the physical layout."""
    views = [_logical(t, dim_size, inner, positions) for t in tensors]
    y = function(*views, competitors, temperature, 1, hard=mode == 1, mode="argmax" if mode == 2 else "sample",
                 seed=int(seed), offset=offset)
    return (y.transpose(1, 2) if positions > 0 else y).contiguous().view(tensors[-1].shape)


def _reference_forward(h, *layout):
    return _reference(reference.lwta, (h,), *layout)


def _reference_backward(grad, h, *layout):
    return _reference(reference.lwta_backward, (grad, h), *layout)


for _op, _impl, _name in ((lwta_forward, _reference_forward, "lwta_forward"),
                          (lwta_backward, _reference_backward, "lwta_backward")):
    _op.register_backend("reference", _impl)
    _op.register_compiled(_name)
    _op.register_backend("triton", f"robustkernels.ops.lwta.triton:{_name}")


@lwta_forward.register_fake
def _forward_fake(h, *args):
    return torch.empty_like(h)


@lwta_backward.register_fake
def _backward_fake(grad, h, *args):
    return torch.empty_like(h)


def _setup_context(ctx, inputs, output):
    h, competitors, dim_size, inner, positions, temperature, mode, seed, offset = inputs
    # the input and the 0-dim key only (saved, so a key changed in place is an autograd error):
    # noise and winner weights are recomputed
    ctx.save_for_backward(h, seed)
    ctx.layout = (competitors, dim_size, inner, positions, temperature, mode)
    ctx.offset = offset


def _backward(ctx, grad):
    h, seed = ctx.saved_tensors
    return (lwta_backward(grad.contiguous(), h, *ctx.layout, seed, ctx.offset),) + (None,) * 8


lwta_forward.register_autograd(_backward, setup_context=_setup_context)


def check_lwta_args(h: torch.Tensor, competitors: int, temperature: float, dim: int, mode: str = "sample") -> int:
    """Validate the arguments of :func:`lwta`; returns ``dim`` made non-negative."""
    check_float_tensor("h", h)
    if h.dim() == 0:
        raise ValueError("h must have at least one dimension (the competing units), got a 0-dim tensor")
    check_int("dim", dim, low=-h.dim(), high=h.dim() - 1)
    dim %= h.dim()
    check_int("competitors", competitors, low=2)
    if h.shape[dim] % competitors:
        raise ValueError(f"competitors={competitors} must divide h.shape[{dim}]={h.shape[dim]}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a float > 0, got {temperature!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {tuple(MODES)}, got {mode!r}")
    return dim


class KernelLayout:
    """How the kernels see ``h``: a contiguous physical tensor and its layout arguments
    ``(dim_size, inner, positions)``. channels_last NCHW with ``dim == 1`` is used in place as
    contiguous [B, H, W, C] (positions = H * W); anything else as contiguous [outer, D, inner]."""

    def __init__(self, h: torch.Tensor, dim: int):
        self.shape = h.shape
        self.channels_last = (dim == 1 and h.dim() == 4 and not h.is_contiguous()
                              and h.is_contiguous(memory_format=torch.channels_last))
        if self.channels_last:
            self.args = (h.shape[1], 1, h.shape[2] * h.shape[3])
        else:
            self.args = (h.shape[dim], h[(0,) * (dim + 1)].numel() if h.numel() else 0, 0)

    def physical(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (shaped like h, any layout) as the kernels read it."""
        if self.channels_last:
            return t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        return t.contiguous()

    def logical(self, t: torch.Tensor) -> torch.Tensor:
        """A kernel output back in the caller's shape (and layout)."""
        return t.permute(0, 3, 1, 2) if self.channels_last else t.view(self.shape)


def lwta(h: torch.Tensor, *, competitors: int = 2, temperature: float = 0.67, dim: int = 1, hard: bool = False,
         mode: str = "sample", generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic LWTA activation.

    Args:
        h: activations, any shape; fp32/bf16/fp16 (math in fp32) or fp64; contiguous or
            channels_last.
        competitors: U >= 2 units per block; must divide ``h.shape[dim]``.
        temperature: T > 0 of the relaxation (0.67 to train and 0.01 to evaluate, as the paper).
        dim: the dimension of the competing units (1 for NCHW conv activations or [B, F]).
        hard: one-hot winners in the forward pass, straight-through gradient.
        mode: ``"sample"`` (stochastic) or ``"argmax"`` (deterministic winner, no noise).
        generator: where the Philox seed comes from (default generator if None).
    Returns:
        ``h * xi``, the same shape, dtype and layout as ``h``.

    Non-finite input: a block holding a NaN or +-inf gives NaN in every one of its units, in the
    forward output and in the gradient, on every backend (reference, cpp, triton, cuda); the other
    blocks are unaffected. Finite inputs so large that ``h / temperature`` overflows float32
    (about 2e38 at T = 0.67) are outside the supported range.
    """
    dim = check_lwta_args(h, competitors, temperature, dim, mode)
    code = mode_code(hard, mode)
    if code != LwtaMode.ARGMAX:  # drawn for an empty h too: the generator advances alike
        seed = draw_seed_tensor(generator, h.device)
    else:
        check_generator(generator)  # argmax draws nothing from it
        seed = torch.zeros((), dtype=torch.int64, device=h.device)
    if h.numel() == 0:
        return h.clone()
    layout = KernelLayout(h, dim)
    out = lwta_forward(layout.physical(h), competitors, *layout.args, float(temperature), code, seed, 0)
    return layout.logical(out)


def mode_code(hard: bool, mode: str) -> int:
    """The kernels' :class:`LwtaMode` for the user's ``hard`` and ``mode``."""
    return int(LwtaMode.HARD if hard and mode == "sample" else MODES[mode])
