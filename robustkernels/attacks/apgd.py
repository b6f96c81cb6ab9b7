"""APGD and APGD-T (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"), following fra31/auto-attack: PGD with momentum
0.75 and a step size (2 eps at first) that halves at checkpoints where the loss stopped
improving, restarting from the best point. APGD-T runs the targeted DLR loss once per target:
the 2nd, 3rd, ... highest-scoring classes of the clean input."""

from __future__ import annotations

import dataclasses

import torch

from ..common import flag, non_negative, positive_int
from .apgd_l1 import run_l1
from .base import finite_eps
from .loop import Iterative, RowState, runs_on_unfooled
from .starts import checked_start, start_point

LOSSES = ("ce", "dlr", "dlr-targeted")


def checkpoints(steps: int) -> list[int]:
    """The iterations after which the step size may halve, as in the original: the first after
    ``max(int(0.22 n), 1)`` iterations, each next window ``max(int(0.03 n), 1)`` shorter, down to
    ``max(int(0.06 n), 1)``."""
    window, shrink, shortest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, at = [], 0
    while at + window <= steps:
        at += window
        marks.append(at)
        window = max(window - shrink, shortest)
    return marks


@dataclasses.dataclass
class _APGDState(RowState):
    """One APGD run's iterate, momentum point, gradients, best point and step-size bookkeeping."""

    x_prev: torch.Tensor
    grad: torch.Tensor
    x_best: torch.Tensor
    grad_best: torch.Tensor
    loss_best: torch.Tensor
    loss_prev: torch.Tensor
    loss_check: torch.Tensor
    step: torch.Tensor
    increases: torch.Tensor
    reduced: torch.Tensor
    logits: torch.Tensor  # at x_adv
    marks: frozenset  # the checkpoints' iterations
    last_mark: int = 0


class APGD(Iterative):
    """Auto-PGD (Croce & Hein 2020), following fra31/auto-attack: PGD with momentum 0.75 and a
    step (2 eps at first) that halves at checkpoints where the loss stopped improving (``rho``),
    restarting from the best point. ``loss="dlr-targeted"`` is APGD-T: one run per target, the
    classes ranked 2nd, 3rd, ... at x (or at ``rank_at``); a sample counts as fooled when
    misclassified as any class. Restarts and later targets run on the samples not fooled yet.
    Without ``early_stop`` fooled samples go on, as in the original, and the first fooling point
    is kept.

    Threat model: Linf, L2 or L1 (``norm``; L1: :mod:`~robustkernels.attacks.apgd_l1`, sparse
    steps and the joint ball-and-box projection), untargeted or targeted.

    Args:
        model: returns logits [B, K].
        eps: radius of the ball; steps: iterations per run; restarts: runs.
        loss: ``"ce"``, ``"dlr"`` or ``"dlr-targeted"`` (APGD-T).
        rho: the checkpoints' oscillation threshold; n_target_classes: APGD-T's targets.
        use_largereps: the L1 schedule (3 / 2 / 1 x eps), as AutoAttack runs L1.
        start: ``"uniform"`` (the original's) or ``"stripes"`` (Square's vertex of the Linf
            ball: on a model whose gradient is masked near x, short DLR runs from there break
            points that otherwise only Square's 5000 queries break).
        first_target_steps: the top-ranked target's run length (AutoAttack fast: 100, then 50).
        **kwargs: the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, ...] in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> x_adv = APGD(model, eps=8/255, steps=100, loss="ce")(x, y)
    """

    NORMS = ("linf", "l2", "l1")

    def __init__(self, model, eps: float = 8 / 255, steps: int = 100, norm: str = "linf", loss: str = "ce",
                 restarts: int = 1, rho: float = 0.75, n_target_classes: int = 9, use_largereps: bool = False,
                 start: str = "uniform", first_target_steps: int | None = None, **kwargs):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES} for APGD, got {loss!r}")
        if loss == "dlr-targeted" and kwargs.get("targeted"):
            raise ValueError(
                "loss='dlr-targeted' picks its own targets; use targeted=True with loss='dlr' to give them"
            )
        super().__init__(model, eps=eps, norm=norm, loss=loss, **kwargs)
        finite_eps(eps, type(self).__name__, "its step size starts at 2 eps")
        self.steps = positive_int("steps", steps)
        self.restarts = positive_int("restarts", restarts)
        self.rho = non_negative("rho", rho, upper=1)  # a share of the window's steps
        self.n_target_classes = positive_int("n_target_classes", n_target_classes)
        self.momentum = 0.75
        if use_largereps and norm != "l1":
            raise ValueError("use_largereps is the L1 schedule (norm='l1')")
        self.use_largereps = flag("use_largereps", use_largereps)
        self.start_at = checked_start(start, norm)
        if first_target_steps is not None and loss != "dlr-targeted":
            raise ValueError("first_target_steps is APGD-T's (loss='dlr-targeted')")
        self.first_target_steps = None if first_target_steps is None else positive_int("first_target_steps",
                                                                                        first_target_steps)

    def perturb(self, ctx, x, y, target):
        ranks = self.target_ranks() or [None]
        return runs_on_unfooled(ctx, x, y, target, ranks, self.restarts, lambda xs, ys, ts, rank, _: self._run(
            ctx, xs, ys, ts, self.steps_for(rank)))

    def target_ranks(self) -> range:
        return range(2, self.n_target_classes + 2) if self.loss == "dlr-targeted" else range(0)

    def steps_for(self, rank: int | None) -> int:
        """A run's length: ``first_target_steps`` on the top-ranked target (rank 2), else ``steps``."""
        return self.first_target_steps if rank == 2 and self.first_target_steps else self.steps

    def _run(self, ctx, x, y, target, steps: int):
        """One run of ``steps`` iterations on (x, y[, target]): (x_adv, fooled) per the attack's contract."""
        if self.norm == "l1":
            return run_l1(self, ctx, x, y, target, steps)
        return self.iterate(ctx, x, y, target, steps, steps_in_run=steps)

    def start_state(self, ctx, x, y, target, steps_in_run):
        batch, dev = x.shape[0], x.device
        x_adv = start_point(ctx, x, self.start_at)
        loss, grad, logits = ctx.oracle.loss_and_grad(x_adv, y, target)
        return _APGDState(x, y, target, x_adv=x_adv, fooled=torch.zeros(batch, dtype=torch.bool, device=dev),
                          x_prev=x_adv.clone(), grad=grad, x_best=x_adv.clone(), grad_best=grad.clone(),
                          loss_best=loss.clone(), loss_prev=loss.clone(), loss_check=loss.clone(),
                          step=torch.full((batch,), 2 * self.eps, dtype=ctx.bounds.lo.dtype, device=dev),
                          increases=torch.zeros(batch, device=dev),
                          reduced=torch.ones(batch, dtype=torch.bool, device=dev), logits=logits,
                          marks=frozenset(checkpoints(steps_in_run)))

    def verdict(self, ctx, s, i):
        if i > 0:  # the start was measured by start_state
            loss, s.grad, s.logits = ctx.oracle.loss_and_grad(s.x_adv, s.y, s.target)
            with torch.no_grad():
                self._track_best(s, loss)
        return ctx.oracle.succeeded(s.logits, s.y, s.target, s.x_adv)

    @torch.no_grad()
    def advance(self, ctx, s, i, live):
        if i in s.marks:  # the window since the last checkpoint ends with iterate i
            self._checkpoint(s, i - s.last_mark)
            s.last_mark = i
        z = ctx.step(s.x_adv, s.x, s.grad, torch.where(live, s.step, 0.0))
        a = self.momentum if i > 0 else 1.0
        moved = s.x_adv + a * (z - s.x_adv) + (1 - a) * (s.x_adv - s.x_prev)
        s.x_prev, s.x_adv = s.x_adv, torch.where(live.view(-1, *[1] * (s.x.dim() - 1)), ctx.project(moved, s.x),
                                                 s.x_adv)

    def finish(self, s, rows, out, fooled):
        """Never-fooled rows end at their highest-loss point."""
        never = ~s.fooled
        out[rows.index[never]] = s.x_best[never]

    @staticmethod
    def _track_best(s, loss) -> None:
        s.increases += (loss > s.loss_prev).float()
        s.loss_prev = loss
        better = loss > s.loss_best
        for best, value in ((s.x_best, s.x_adv), (s.grad_best, s.grad), (s.loss_best, loss)):
            best[better] = value[better]

    def _checkpoint(self, s, window: int) -> None:
        """Halve the step where the loss oscillated (increased in at most rho of the window) or
        where the last check did not halve and the best loss has not improved since; those
        samples restart from their best point."""
        oscillating = s.increases <= window * self.rho
        stalled = ~s.reduced & (s.loss_check >= s.loss_best)
        halve = oscillating | stalled
        s.step = torch.where(halve, s.step / 2, s.step)
        s.x_adv[halve], s.grad[halve] = s.x_best[halve], s.grad_best[halve]
        s.reduced, s.loss_check = halve, s.loss_best.clone()
        s.increases.zero_()


class APGDT(APGD):
    """APGD-T: ``APGD(..., loss="dlr-targeted")`` with AutoAttack's defaults (9 target classes).

    Threat model: Linf, L2 or L1 (``norm``); picks its own targets, success is any misclassification.

    Args:
        model: returns logits [B, K].
        eps: radius of the ball; steps: iterations per target; n_target_classes: targets.
        **kwargs: APGD's and the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, ...] in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> x_adv = APGDT(model, eps=8/255, n_target_classes=9)(x, y)
    """

    def __init__(self, model, eps: float = 8 / 255, steps: int = 100, n_target_classes: int = 9, **kwargs):
        if "loss" in kwargs:
            raise ValueError("loss: APGDT always uses the targeted DLR loss")
        super().__init__(model, eps=eps, steps=steps, loss="dlr-targeted", n_target_classes=n_target_classes,
                         **kwargs)
