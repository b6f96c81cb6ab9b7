"""CROWN-IBP (Zhang et al. 2020): interval bounds (IBP) for every intermediate step, then one
backward linear-bound pass (CROWN) from the margins ``z_y - z_j`` to the input.

The backward pass carries a linear lower bound ``margin >= A . h + c`` on the margins in terms
of the current step's input ``h`` (``A``: [B, S, *h.shape[1:]], ``c``: [B, S]). Affine steps
transpose it exactly (the transpose taken by autograd); a ReLU with input bounds ``[l, u]`` from
IBP is replaced by its linear relaxation (upper line through ``(l, 0)`` and ``(u, u)``; lower
slope 1 when ``u > -l``, else 0 - CROWN's adaptive choice); non-overlapping max pooling by
``z_i* <= max <= max(u)`` (i* the largest lower bound of the window); residual blocks add the
bounds of their two branches. A step without a linear relaxation here (overlapping max pooling,
the other monotone activations, a leaky ReLU) ends the pass: the bound is made concrete on its
IBP output box, which is still sound. At the input, ``A . x + c`` is minimised over the box in
closed form.

Neither CROWN-IBP nor IBP is always the tighter (Zhang et al. 2020, Sec. 3), so
:func:`margin_bounds` with ``method="crown-ibp"`` returns the larger of the two sound bounds."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F

from ..common import grad_enabled, normal_tensor
from .graph import Affine, Block, Monotone, model_steps
from .ibp import Box, ibp_margins, input_boxes, split_last_linear, step_bounds

BOUND_METHODS = ("ibp", "crown-ibp")


def bound_method(name: str, value: str) -> str:
    """``value`` if it names one of :data:`BOUND_METHODS`, else a ValueError naming ``name``."""
    if value not in BOUND_METHODS:
        raise ValueError(f"{name} must be one of {BOUND_METHODS}, got {value!r}")
    return value


def _bounding_mode(bound):
    """Run ``bound(model, lower, ...)`` in the inputs' own precision (autocast off: half-precision
    rounding would make the bounds unsound) with autograd usable even inside
    ``torch.inference_mode()`` / ``torch.no_grad()`` (the backward pass takes transposes by
    autograd), recording gradients only when the caller does; the caller's inference-mode
    tensors are copied into normal ones."""
    @functools.wraps(bound)
    def run(model, lower, *args, **kwargs):
        record = torch.is_grad_enabled()
        with grad_enabled(), torch.set_grad_enabled(record), torch.autocast(lower.device.type, enabled=False):
            return bound(model, *map(normal_tensor, (lower, *args)), **kwargs)
    return run


def _sum_last(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2).sum(2)


def concretize(A: torch.Tensor, c: torch.Tensor, box: Box) -> torch.Tensor:
    """[B, S]: the minimum of ``A . h + c`` over ``h`` in the box."""
    lower, upper = box
    return _sum_last(A.clamp(min=0) * lower[:, None] + A.clamp(max=0) * upper[:, None]) + c


def _back_affine(step: Affine, A, c, shape):
    """``A . f(h) + c = (f^T A) . h + (A . f(0) + c)``, the transpose taken by autograd
    (differentiable when the caller records gradients)."""
    keep_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        zero = torch.zeros(A.shape[0] * A.shape[1], *shape, dtype=A.dtype, device=A.device, requires_grad=True)
        out = step.f(zero)
        (A_in,) = torch.autograd.grad(out, zero, A.reshape(out.shape), create_graph=keep_graph)
    return A_in.view(*A.shape[:2], *shape), c + _sum_last(A * out[0])


def _back_relu(A, c, box):
    """Lower bound of ``A . relu(h)`` for ``h`` in the box: positive coefficients take the lower
    line, negative ones the upper line."""
    lower, upper = box
    active, unstable = lower >= 0, (lower < 0) & (upper > 0)
    slope = upper / (upper - lower).clamp_min(1e-12)
    up = torch.where(unstable, slope, active.to(A.dtype))[:, None]
    lo = torch.where(unstable, (upper > -lower).to(A.dtype), active.to(A.dtype))[:, None]
    icpt = torch.where(unstable, -slope * lower, torch.zeros_like(lower))[:, None]
    neg = A.clamp(max=0)
    return A.clamp(min=0) * lo + neg * up, c + _sum_last(neg * icpt)


def _back_max_pool(pool: nn.MaxPool2d, A, c, box):
    """Non-overlapping max pooling: ``max(z) >= z_i*`` (i* the window's largest lower bound) for
    positive coefficients, ``max(z) <= max(u)`` for negative ones. Other pools: None."""
    k, s = pool.kernel_size, pool.stride
    if k != s or pool.padding not in (0, (0, 0)) or pool.dilation not in (1, (1, 1)) or pool.ceil_mode:
        return None
    lower, upper = box
    _, index = F.max_pool2d(lower, k, s, return_indices=True)
    top = F.max_pool2d(upper, k, s)
    batch, specs = A.shape[:2]
    pos = A.clamp(min=0).flatten(0, 1)
    index = index[:, None].expand(-1, specs, *index.shape[1:]).flatten(0, 1)
    A_in = F.max_unpool2d(pos, index, k, s, output_size=lower.shape[-2:])
    return A_in.view(batch, specs, *lower.shape[1:]), c + _sum_last(A.clamp(max=0) * top[:, None])


def _back_block(block: Block, A, c, box):
    """``out = main(pre) + (x or shortcut(pre))``, ``pre = head(x)``: both branches back to ``pre``
    (or ``x``), then through the head to ``x``. None when a branch has a step without a linear
    relaxation (the caller then makes the bound concrete on the block's output box)."""
    head_boxes = input_boxes(block.head, *box)
    pre_box = step_bounds(block.head[-1], *head_boxes[-1]) if block.head else box
    A_pre, c_pre = backward(block.main, input_boxes(block.main, *pre_box), A, c)
    if A_pre is not None and block.shortcut is not None:
        A_short, c_pre = backward(block.shortcut, input_boxes(block.shortcut, *pre_box), A, c_pre)
        A_pre = None if A_short is None else A_pre + A_short
    if A_pre is None:
        return None
    A_x, c_x = backward(block.head, head_boxes, A_pre, c_pre)
    if A_x is None:
        return None
    return (A_x if block.shortcut is not None else A_x + A), c_x


def backward(steps: list, boxes: list[Box], A, c):
    """Carry ``margin >= A . h + c`` from the output of ``steps`` back to their input. Returns
    ``(A, c)``, or ``(None, bound)`` when a step without a linear relaxation ended the pass."""
    for step, box in zip(reversed(steps), reversed(boxes)):
        relaxed = None
        if isinstance(step, Affine):
            relaxed = _back_affine(step, A, c, box[0].shape[1:])
        elif isinstance(step, Monotone) and step.kind == "relu":
            relaxed = _back_relu(A, c, box)
        elif isinstance(step, Monotone) and step.kind == "max_pool":
            relaxed = _back_max_pool(step.pool, A, c, box)
        elif isinstance(step, Block):
            relaxed = _back_block(step, A, c, box)
        if relaxed is None:
            return None, concretize(A, c, step_bounds(step, *box))
        A, c = relaxed
    return A, c


def _crown_margins(steps: list, boxes: list[Box], lower: torch.Tensor, upper: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
    """:func:`crown_ibp_margins` from the steps and their IBP input boxes."""
    _, fc = split_last_linear(steps)
    if fc is not None:
        classes = fc.weight.shape[0]
    else:
        classes = (step_bounds(steps[-1], *boxes[-1]) if steps else (lower, upper))[0].shape[1]
    eye = torch.eye(classes, dtype=lower.dtype, device=lower.device)
    A = eye[y][:, None, :] - eye[None, :, :]  # [B, K, K]: e_y - e_j on the logits
    A, c = backward(steps, boxes, A, A.new_zeros(A.shape[:2]))
    return c if A is None else concretize(A, c, (lower, upper))


@_bounding_mode
def crown_ibp_margins(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor, *,
                      normalization=None) -> torch.Tensor:
    """[B, K]: CROWN-IBP lower bounds on ``z_y - z_j`` over the box ``[lower, upper]``; column y is 0."""
    steps = model_steps(model, normalization)
    return _crown_margins(steps, input_boxes(steps, lower, upper), lower, upper, y)


@_bounding_mode
def margin_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor,
                  method: str = "crown-ibp", *, normalization=None) -> torch.Tensor:
    """[B, K] sound lower bounds on ``z_y - z_j`` over the box: ``"ibp"`` (last layer folded
    into the margins) or ``"crown-ibp"`` (the larger of the CROWN-IBP and IBP bounds). The steps
    and the IBP boxes are built once and serve both."""
    bound_method("method", method)
    steps = model_steps(model, normalization)
    boxes = input_boxes(steps, lower, upper)
    ibp = ibp_margins(steps, boxes, lower, upper, y)
    if method == "ibp":
        return ibp
    return torch.maximum(ibp, _crown_margins(steps, boxes, lower, upper, y))
