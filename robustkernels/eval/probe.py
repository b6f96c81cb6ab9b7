"""What an evaluation must know about a model before trusting its answers: that it returns finite
``[B, K]`` logits, and whether it is stochastic."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..common import frozen_model
from ..threat import check_logits_shape
from .aa_versions import stage_targets, version_for

STOCHASTIC_PASSES = 6  # a model noisy on one call in k (k <= 5) differs within these passes


def checked_logits(logits, batch: int) -> torch.Tensor:
    """``logits`` if they are a finite ``[batch, K]`` tensor with K >= 2, else a ``ValueError``
    that says what the model returned (a NaN model would otherwise read as robust: the argmax
    of NaN logits is class 0)."""
    check_logits_shape(logits, batch, min_classes=2)
    bad = ~torch.isfinite(logits)
    if bool(bad.any()):
        raise ValueError(f"model returned NaN or inf logits ({int(bad.sum())} of {logits.numel()} entries, "
                         f"{int(bad.any(dim=1).sum())} of {batch} samples); such a model cannot be evaluated")
    return logits


def probe(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
          passes: int = STOCHASTIC_PASSES) -> tuple[int, bool]:
    """``(number of classes, stochastic)``: ``forward`` (the model behind its normalisation) on
    ``x`` ``passes`` times in eval mode; stochastic if any pass differs from the first."""
    with frozen_model(model, "eval"), torch.no_grad():
        first = checked_logits(forward(x), x.shape[0])
        stochastic = False
        for _ in range(passes - 1):
            stochastic |= not torch.equal(first, checked_logits(forward(x), x.shape[0]))
    return first.shape[1], stochastic


def is_stochastic(model: nn.Module, x: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  passes: int = STOCHASTIC_PASSES) -> bool:
    """Whether ``passes`` eval-mode forward passes of ``forward`` (default: ``model``) on ``x``
    differ."""
    return probe(model, model if forward is None else forward, x, passes)[1]


def gradient_masked(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> bool:
    """Whether the input gradient of ``forward`` on ``x`` (eval mode) is missing, zero or not
    finite: a non-differentiable front-end (JPEG, quantisation) masks it, and a gradient attack
    then reports robustness that is not there."""
    with frozen_model(model, "eval"), torch.enable_grad():
        x_in = x.detach().clone().requires_grad_(True)
        logits = forward(x_in)
        if not logits.requires_grad:
            return True
        weights = torch.linspace(1.0, 2.0, logits.shape[1], device=logits.device)  # no class cancels another
        (grad,) = torch.autograd.grad((logits.float() * weights).sum(), x_in, allow_unused=True)
    return grad is None or not bool(grad.ne(0).any()) or not bool(torch.isfinite(grad).all())


def check_version_classes(version: str, norm: str, classes: int, n_target_classes: int = 9,
                          attacks=None) -> None:
    """:func:`check_classes_for` on the attacks of an AutoAttack version (``attacks``: a custom
    version's), with the target classes each runs."""
    check_classes_for(stage_targets(version_for(version, norm, attacks).stages, n_target_classes), classes)


def check_classes_for(attacks, classes: int) -> None:
    """Before any attack runs: a ValueError naming every attack in ``attacks`` that a model with
    ``classes`` outputs cannot run, and what to pass instead (the original's sanity check).
    ``attacks``: names, or ``(name, target classes)`` for the targeted attacks of a version
    (:func:`~robustkernels.eval.aa_versions.stage_targets`)."""
    problems = []
    for item in attacks:
        name, n_target_classes = (item, None) if isinstance(item, str) else item
        if name == "apgd-t" and classes < 4:
            problems.append("apgd-t needs at least 4 classes (its targeted DLR loss)")
        elif name == "apgd-dlr" and classes < 3:
            problems.append("apgd-dlr needs at least 3 classes (the DLR loss)")
        elif name in ("apgd-t", "fab-t") and n_target_classes is not None and n_target_classes > classes - 1:
            problems.append(f"{name} attacks {n_target_classes} target classes but only {classes - 1} exist "
                            f"(pass n_target_classes={classes - 1})")
    if problems:
        raise ValueError(f"the model has {classes} classes: {'; '.join(problems)}")
