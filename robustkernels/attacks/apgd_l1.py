"""APGD in L1 (Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on image
classifiers", ICML 2021), following fra31/auto-attack: each step moves along the sign of the
top-k gradient coordinates, rescaled to L1 norm ``step``, then projects onto the L1 ball and the
box at once (:func:`~robustkernels.ops.project_l1`); no momentum. Every ``max(int(0.04 n), 1)``
iterations the sparsity k follows the best point's (``||x_best - x||_0 / 1.5``): where the best
point got sparser by more than 5% the step resets to ``eps`` and the run restarts from the best
point, elsewhere the step shrinks by 1.5 (down to ``eps / 10``).

``use_largereps`` (AutoAttack's L1 setting) runs 30% / 30% / 40% of the iterations at 3, 2 and
1 times eps, each stage starting from the previous stage's best point; only the last stage
(at eps) can fool a sample.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..ops import draw_seed, philox_normal, project_l1
from .loop import ActiveSet, RowState, record

TOPK_START = 0.2  # share of coordinates in the first sparse step (a start without a given point)
SPARSER = 0.95  # the best point got this much sparser: reset the step and restart from it
STEP_SHRINK, STEP_FLOOR = 1.5, 10.0


@dataclasses.dataclass
class _L1State(RowState):
    grad: torch.Tensor
    x_best: torch.Tensor
    grad_best: torch.Tensor
    loss_best: torch.Tensor
    step: torch.Tensor
    topk: torch.Tensor
    sparsity: torch.Tensor  # ||x_best - x||_0 at the last check


def schedule(steps: int, largereps: bool) -> list[tuple[float, int]]:
    """(eps multiple, iterations) per stage: the original's [3, 2, 1] x eps over ceil(0.3 n),
    ceil(0.3 n) and the rest, or one stage at eps."""
    if not largereps:
        return [(1.0, steps)]
    first = math.ceil(0.3 * steps)
    return [(3.0, first), (2.0, first), (1.0, steps - 2 * first)]


def sparse_sign_step(grad: torch.Tensor, topk: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """``step * sign(g_k) / ||sign(g_k)||_1`` with g_k the gradient on its ``topk`` share [B] of
    largest-magnitude coordinates (ties at the threshold included, as in the original)."""
    flat = grad.flatten(1).abs()
    n = flat.shape[1]
    index = ((1.0 - topk) * n).clamp(0, n - 1).long()
    threshold = flat.sort(dim=1).values.gather(1, index[:, None])
    signs = torch.sign(grad.flatten(1)) * (flat >= threshold)
    return (step[:, None] * signs / (signs.abs().sum(1, keepdim=True) + 1e-10)).view(grad.shape)


def l0(delta: torch.Tensor) -> torch.Tensor:
    return (delta.flatten(1) != 0).sum(1).to(torch.float64)


def run_l1(attack, ctx, x: torch.Tensor, y: torch.Tensor, target, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD-L1 run (all stages, ``steps`` iterations) of ``attack`` (an APGD) in the call
    ``ctx`` on (x, y[, target]): (x_adv, fooled)."""
    stages = schedule(steps, attack.use_largereps)
    noise = philox_normal(x.numel(), draw_seed(ctx.generator), 0, device=x.device, per_block=4)
    x_init = x + noise.view(x.shape).to(x.dtype)  # the original's start: x + N(0, 1), projected
    out, fooled = x.clone(), torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for k, (multiple, iterations) in enumerate(stages):
        eps = multiple * attack.eps
        x_init = project_l1(x_init, x, eps=eps, bounds=attack.bounds)
        last = k == len(stages) - 1
        x_init = _stage(attack, ctx, x, y, target, x_init, eps, iterations, out if last else None,
                        fooled if last else None, given=attack.use_largereps)
    return out, fooled


def _stage(attack, ctx, x, y, target, x_adv, eps: float, iterations: int, out, fooled_out, given: bool):
    """``iterations`` L1 steps at radius ``eps`` from ``x_adv``; records first fooling points
    into ``out`` / ``fooled_out`` (None: a larger-eps stage, which fools nothing). Returns the
    best point of every row: the next stage's start (only the last stage, whose return is not
    used, compacts its rows)."""
    batch, dev, n = x.shape[0], x.device, x[0].numel()
    loss, grad, logits = ctx.oracle.loss_and_grad(x_adv, y, target)
    sparsity = l0(x_adv - x) if given else torch.full((batch,), float(n), dtype=torch.float64, device=dev)
    s = _L1State(x, y, target, x_adv=x_adv, grad=grad, x_best=x_adv.clone(), grad_best=grad.clone(),
                 loss_best=loss.clone(), step=torch.full((batch,), eps, dtype=torch.float64, device=dev),
                 topk=sparsity / n / 1.5 if given else torch.full_like(sparsity, TOPK_START), sparsity=sparsity,
                 fooled=torch.zeros(batch, dtype=torch.bool, device=dev))
    rows = ActiveSet(batch, dev, enabled=out is not None and attack.early_stop and attack.active_set)
    _record(attack, ctx, s, rows, out, fooled_out, logits)
    every = max(int(0.04 * iterations), 1)
    for i in range(iterations):
        if out is not None and attack.early_stop and not rows.any_live():
            break
        s = rows.compact(s)
        with torch.no_grad():
            moved = s.x_adv + sparse_sign_step(s.grad, s.topk, s.step).to(s.x_adv.dtype)
            live = rows.live.view(-1, *[1] * (x.dim() - 1))
            s.x_adv = torch.where(live, project_l1(moved, s.x, eps=eps, bounds=attack.bounds), s.x_adv)
        loss, s.grad, logits = ctx.oracle.loss_and_grad(s.x_adv, s.y, s.target)
        with torch.no_grad():
            _record(attack, ctx, s, rows, out, fooled_out, logits)
            better = loss > s.loss_best
            s.x_best[better], s.grad_best[better], s.loss_best[better] = s.x_adv[better], s.grad[better], loss[better]
            if (i + 1) % every == 0:
                _check(s, eps, n)
    if out is not None:
        never = ~s.fooled
        out[rows.index[never]] = s.x_best[never]
    return s.x_best


def _record(attack, ctx, s, rows, out, fooled_out, logits) -> None:
    if out is not None:  # a larger-eps stage fools nothing
        record(s, rows, out, fooled_out, ctx.oracle.succeeded(logits, s.y, s.target, s.x_adv), attack.early_stop)


def _check(s: _L1State, eps: float, n: int) -> None:
    """The original's L1 checkpoint: sparsity from the best point, step reset or shrunk."""
    current = l0(s.x_best - s.x)
    sparser = (current / s.sparsity.clamp_min(1)) < SPARSER
    s.topk = current / n / 1.5
    s.step = torch.where(sparser, torch.full_like(s.step, eps), s.step / STEP_SHRINK).clamp(eps / STEP_FLOOR, eps)
    s.sparsity = current
    s.x_adv[sparser], s.grad[sparser] = s.x_best[sparser], s.grad_best[sparser]
