"""Interval bound propagation (IBP; Gowal et al. 2018): sound elementwise bounds on a network's
outputs over a box of inputs, step by step through :mod:`robustkernels.certify.graph` (which
refuses, by name, every module whose exact function it does not know)."""

from __future__ import annotations

import torch
from torch import nn

from .graph import Affine, Block, Elementwise, Monotone, model_steps

Box = tuple[torch.Tensor, torch.Tensor]


def step_bounds(step, lower: torch.Tensor, upper: torch.Tensor) -> Box:
    """The box of one step's output for inputs in ``[lower, upper]``."""
    if isinstance(step, Affine):
        center, radius = step.f((lower + upper) / 2), step.radius((upper - lower) / 2)
        return center - radius, center + radius
    if isinstance(step, Monotone):
        return step.f(lower), step.f(upper)
    if isinstance(step, Elementwise):
        return step.bounds(lower, upper)
    if isinstance(step, Block):
        pre = steps_bounds(step.head, lower, upper)
        main = steps_bounds(step.main, *pre)
        skip = (lower, upper) if step.shortcut is None else steps_bounds(step.shortcut, *pre)
        return main[0] + skip[0], main[1] + skip[1]
    raise TypeError(f"unknown bound step {type(step).__name__}")


def steps_bounds(steps: list, lower: torch.Tensor, upper: torch.Tensor) -> Box:
    for step in steps:
        lower, upper = step_bounds(step, lower, upper)
    return lower, upper


def interval_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, *, normalization=None) -> Box:
    """Sound bounds ``(l, u)`` on ``model``'s output for every input in ``[lower, upper]``;
    ``normalization=(mean, std)`` puts ``(x - mean) / std`` in front. A module whose exact
    function is not known raises :class:`~robustkernels.certify.NotBoundable` naming it."""
    return steps_bounds(model_steps(model, normalization), lower, upper)


def split_last_linear(steps: list):
    """(the steps before a final Linear, that Linear) or (steps, None) when the model does not end
    in one."""
    last = steps[-1] if steps else None
    if isinstance(last, Affine) and last.weight is not None:
        return steps[:-1], last
    return steps, None


def input_boxes(steps: list, lower: torch.Tensor, upper: torch.Tensor) -> list[Box]:
    """The IBP box of each step's input (the last step's output is not computed)."""
    boxes = []
    for i, step in enumerate(steps):
        boxes.append((lower, upper))
        if i + 1 < len(steps):
            lower, upper = step_bounds(step, lower, upper)
    return boxes


def ibp_margins(steps: list, boxes: list[Box], lower: torch.Tensor, upper: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor:
    """:func:`margin_lower_bounds` from the steps and their input boxes (:func:`input_boxes`)."""
    _, fc = split_last_linear(steps)
    if fc is None:
        out_lo, out_hi = step_bounds(steps[-1], *boxes[-1]) if steps else (lower, upper)
        return (out_lo.gather(1, y[:, None]) - out_hi).scatter(1, y[:, None], 0.0)
    h_lo, h_hi = boxes[-1]  # the final Linear's input
    w = fc.weight[y][:, None, :] - fc.weight[None, :, :]  # [B, K, F]: W_y - W_j
    b = (fc.bias[y][:, None] - fc.bias[None, :]) if fc.bias is not None else 0.0
    center, radius = (h_lo + h_hi) / 2, (h_hi - h_lo) / 2
    return (w @ center[:, :, None]).squeeze(2) - (w.abs() @ radius[:, :, None]).squeeze(2) + b


def margin_lower_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor, *,
                        normalization=None) -> torch.Tensor:
    """[B, K]: lower bounds on ``z_y - z_j`` over the box; column y is 0. A final linear layer is
    folded into the difference (tighter than subtracting the logits' bounds); without one the
    logits' bounds are subtracted."""
    steps = model_steps(model, normalization)
    return ibp_margins(steps, input_boxes(steps, lower, upper), lower, upper, y)
