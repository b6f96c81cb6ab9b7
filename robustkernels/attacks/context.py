"""One attack call's state, passed to the attack explicitly instead of kept on the instance: the
threat model with its bounds prepared for this batch, the model oracle, the attack's generator and
where target classes are ranked; and the fused step inside those bounds."""

from __future__ import annotations

import dataclasses

import torch

from ..ops.pgd import pgd_step_prepared
from ..threat import Bounds, ThreatModel
from .oracle import Oracle


@dataclasses.dataclass
class Context:
    """What one call of an attack works with.

    Attributes:
        threat: the attack's threat model (eps, norm, bounds, normalization).
        bounds: ``threat``'s bounds as tensors for this call's inputs.
        oracle: the model as this call queries it.
        generator: the attack's source of random starts and proposals (lives across calls).
        rank_points: inputs [B, ...] at which the attacks that pick their own targets rank them
            (None: the clean inputs).
    """

    threat: ThreatModel
    bounds: Bounds
    oracle: Oracle
    generator: torch.Generator
    rank_points: torch.Tensor | None = None

    @property
    def eps(self) -> float:
        return self.threat.eps

    @property
    def norm(self) -> str:
        return self.threat.norm

    def step(self, x_adv, x, grad, step, out=None, eps=None):
        """The fused step (``step`` and ``eps``: [B] tensors) projected onto the eps-ball and the bounds."""
        eps_t = self.eps_like(x) if eps is None else eps
        return pgd_step_prepared(x_adv, x, grad.to(x_adv.dtype), step, eps_t, self.bounds.lo, self.bounds.hi,
                                 self.threat.l2, out=out)

    def project(self, x_adv, x):
        """x_adv projected onto the eps-ball around x and the bounds."""
        return self.step(x_adv, x, x_adv, torch.zeros(x.shape[0], dtype=self.bounds.lo.dtype, device=x.device))

    def eps_like(self, x) -> torch.Tensor:
        """[B] eps in the bounds' dtype, on x's device."""
        return torch.full((x.shape[0],), self.eps, dtype=self.bounds.lo.dtype, device=x.device)
