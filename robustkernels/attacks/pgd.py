"""PGD (Madry et al. 2018), FGSM (Goodfellow et al. 2015) and FGSM with a random start (Wong et
al. 2020), all on the fused step."""

from __future__ import annotations

import dataclasses

import torch

from ..common import flag, non_negative, positive_int
from ..ops.pgd import random_init
from .base import finite_eps
from .loop import Iterative, RowState


@dataclasses.dataclass
class _PGDState(RowState):
    grad: torch.Tensor | None
    alpha: torch.Tensor


class PGD(Iterative):
    """Projected gradient descent (Madry et al. 2018): ``steps`` fused steps of size ``alpha``
    from a random start, repeated ``restarts`` times keeping each sample's strongest result (a
    success first, then the highest loss).

    Threat model: Linf or L2 (``norm``), untargeted or targeted.

    Args:
        model: returns logits [B, K].
        eps: radius of the ball; alpha: step size (both in input units).
        steps, restarts: iterations per run and runs.
        random_start: start uniformly in the ball (False: at x).
        loss: ``"ce"``, ``"margin"`` (CW-Linf) or ``"dlr"``.
        early_stop: a sample stops at the first point that fools the model and (``active_set``)
            leaves the batch.
        **kwargs: the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, ...] in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> atk = PGD(model, eps=8/255, alpha=2/255, steps=10)
        >>> x_adv = atk(x, y)
    """

    FINAL_CHECK = False  # the last iterate is returned either way

    def __init__(self, model, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10, random_start: bool = True,
                 norm: str = "linf", restarts: int = 1, loss: str = "ce", targeted: bool = False, eot_iter: int = 1,
                 early_stop: bool = False, **kwargs):
        super().__init__(model, eps=eps, norm=norm, loss=loss, targeted=targeted, eot_iter=eot_iter,
                         early_stop=early_stop, **kwargs)
        self.alpha = non_negative("alpha", alpha)
        self.steps = positive_int("steps", steps)
        self.restarts = positive_int("restarts", restarts)
        self.random_start = flag("random_start", random_start)

    def perturb(self, ctx, x, y, target):
        best, best_score = None, None
        for _ in range(self.restarts):
            x_adv = self._run(ctx, x, y, target)
            if self.restarts == 1:
                return x_adv
            with torch.no_grad():
                logits = ctx.oracle.logits(x_adv)
                loss = ctx.oracle.objective(logits, y, target)
                # successes rank above every failure, then higher loss wins
                score = loss + ctx.oracle.succeeded(logits, y, target).to(loss.dtype) * 1e30
            if best is None:
                best, best_score = x_adv, score
            else:
                better = score > best_score
                best[better], best_score[better] = x_adv[better], score[better]
        return best

    def _run(self, ctx, x, y, target):
        start = random_init(x, self.eps, self.norm, self.bounds, generator=ctx.generator) if self.random_start else x
        if self.early_stop:
            return self.iterate(ctx, x, y, target, self.steps, start=start)[0]
        x_adv, alpha = start.clone(), self.step_sizes(self.alpha, x)
        for _ in range(self.steps):  # training's hot path: no verdicts
            _, grad, _ = ctx.oracle.loss_and_grad(x_adv, y, target)
            ctx.step(x_adv, x, grad, alpha, out=x_adv)
        return x_adv

    def start_state(self, ctx, x, y, target, start):
        return _PGDState(x, y, target, x_adv=start.clone(), fooled=torch.zeros(x.shape[0], dtype=torch.bool,
                                                                              device=x.device),
                         grad=None, alpha=self.step_sizes(self.alpha, x))

    def verdict(self, ctx, s, i):
        _, s.grad, logits = ctx.oracle.loss_and_grad(s.x_adv, s.y, s.target)
        return ctx.oracle.succeeded(logits, s.y, s.target, s.x_adv)

    def advance(self, ctx, s, i, live):
        ctx.step(s.x_adv, s.x, s.grad, torch.where(live, s.alpha, 0.0), out=s.x_adv)


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ``eps`` from x.

    Threat model: Linf or L2 (``norm``), untargeted or targeted.

    Args:
        model: returns logits [B, K].
        eps: radius of the ball and step size.
        **kwargs: PGD's and the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, ...] in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> x_adv = FGSM(model, eps=8/255)(x, y)
    """

    def __init__(self, model, eps: float = 8 / 255, **kwargs):
        finite_eps(eps, "FGSM")
        super().__init__(model, eps=eps, alpha=eps, steps=1, random_start=False, **kwargs)


class FGSM_RS(PGD):  # noqa: N801 (the name the literature uses)
    """FGSM from a uniform random start with step ``alpha = 1.25 eps`` (Wong et al. 2020).

    Threat model: Linf or L2 (``norm``), untargeted or targeted.

    Args:
        model: returns logits [B, K].
        eps: radius of the ball; alpha: step size (None: 1.25 eps).
        **kwargs: PGD's and the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, ...] in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> x_adv = FGSM_RS(model, eps=8/255)(x, y)
    """

    def __init__(self, model, eps: float = 8 / 255, alpha: float | None = None, **kwargs):
        if alpha is None:
            finite_eps(eps, "FGSM_RS")
        super().__init__(model, eps=eps, alpha=1.25 * eps if alpha is None else alpha, steps=1, random_start=True,
                         **kwargs)
