"""What :func:`~robustkernels.eval.evaluate` and :func:`~robustkernels.eval.autoattack` decide about
a model before attacking it, in one place: its device, its forward behind the normalisation,
its number of classes, whether it is stochastic (EOT and repeated passes then), whether its
input gradient is masked (BPDA through its non-differentiable front-ends then), and the speed
levers of the model the attacks run (:mod:`~robustkernels.levers`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..common import dtype_hint, model_device
from ..defences import with_bpda
from ..levers import Levers, with_levers
from ..threat import ThreatModel, normalize
from .probe import gradient_masked, probe

AUTO_EOT, AUTO_REPEATS = 20, 5  # a stochastic model: EOT-20 and 5 passes, as AutoAttack's "rand"


@dataclass
class ModelSetup:
    device: torch.device
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model behind its normalisation
    classes: int
    stochastic: bool
    masked: bool  # the input gradient is missing or zero
    attacked: nn.Module  # what the attacks differentiate: the model, or its BPDA / levers' copy
    fronts: list[str]  # the front-ends wrapped in BPDA
    levers: Levers = Levers(False, False)
    base: nn.Module | None = None  # the model or its BPDA copy, before the levers

    @property
    def gradients(self) -> str:
        return f"BPDA (identity backward) through {', '.join(self.fronts)}" if self.fronts else "the model's own"


def model_setup(model: nn.Module, threat: ThreatModel, x: torch.Tensor, bpda="auto", channels_last=False,
                compile=False, autocast=None) -> ModelSetup:
    """Probe ``model`` on the first inputs ``x``; ``bpda``: ``"auto"`` (through BPDA when the
    gradient is masked), ``True`` or ``False``; ``channels_last``, ``compile``, ``autocast``: the
    levers of :func:`~robustkernels.levers.with_levers`."""
    device = model_device(model)
    x = x.to(device)

    def forward(v):
        return model(normalize(v, threat.normalization))

    with dtype_hint(model, x, "data"):
        classes, stochastic = probe(model, forward, x[:64])
    masked = gradient_masked(model, forward, x[:16])
    attacked, fronts = with_bpda(model) if bpda is True or (bpda == "auto" and masked) else (model, [])
    fast, levers = with_levers(attacked, x, channels_last, compile, autocast)
    return ModelSetup(device, forward, classes, stochastic, masked, fast, fronts, levers, attacked)


def eot_and_repeats(stochastic: bool, eot_iter="auto", repeats="auto") -> tuple[int, int]:
    """EOT passes per attack step and evaluation passes: the given ones, or for ``"auto"``
    :data:`AUTO_EOT` / :data:`AUTO_REPEATS` for a stochastic model and 1 for a deterministic one."""
    eot = (AUTO_EOT if stochastic else 1) if eot_iter == "auto" else eot_iter
    reps = (AUTO_REPEATS if stochastic else 1) if repeats == "auto" else repeats
    return eot, reps
