"""FAB, the Fast Adaptive Boundary attack (Croce & Hein 2020), Linf, L2 and L1, untargeted and
targeted (FAB-T), with fra31/auto-attack's defaults (100 iterations, ``alpha_max = 0.1``,
``eta = 1.05``, ``beta = 0.9``).

Each iteration linearises the decision boundary between the true class and the closest (or the
target) class, projects both the current point and the clean point onto that hyperplane inside
the box, and moves to a biased combination of the two; after a success it pulls the point back
towards the clean input by ``beta``, to find a smaller perturbation.
"""

from __future__ import annotations

import dataclasses

import torch

from ..common import flag, input_gradient, non_negative, positive_int
from ..threat import lp_norms
from .loop import Iterative, RowState, runs_on_unfooled
from .starts import random_direction


def project_onto_hyperplane(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                            norm: str) -> torch.Tensor:
    """The smallest ``d`` (Linf, L2 or L1) with ``w . (t + d) = b`` and ``lo <= t + d <= hi``.

    t, w: [N, D]; b: [N]; lo, hi: broadcastable to [N, D]. Where the box keeps the hyperplane
    out of reach, every coordinate goes to its box limit on the useful side (the closest the
    box allows). Moving coordinate i by up to ``lam`` (Linf) or ``lam |w_i|`` (L2), capped by
    its room to the box, changes ``w . z`` by ``f(lam) = sum_i min(lam g_i, h_i)``, piecewise
    linear, increasing and concave, with breakpoints ``h_i / g_i``; :func:`solve_breakpoints`
    finds the lam where it reaches ``|w . t - b|``.
    """
    c = (w * t).sum(1) - b  # w . t - b: the plane needs a change of -c
    direction = -torch.sign(c)[:, None] * torch.sign(w)
    room = torch.where(direction > 0, hi - t, t - lo).clamp_min(0)
    aw = w.abs()
    if norm == "l1":
        return direction * _l1_move(aw, room, c.abs()[:, None])
    g = aw if norm == "linf" else aw * aw
    h = aw * room
    breaks = room if norm == "linf" else torch.where(aw > 0, room / aw.clamp_min(1e-30), torch.zeros_like(room))
    lam = solve_breakpoints(breaks, g, h, c.abs()[:, None])
    move = torch.where(aw > 0, torch.minimum(lam * g, h) / aw.clamp_min(1e-30), torch.zeros_like(aw))
    return direction * move


def _l1_move(aw, room, need) -> torch.Tensor:
    """[N, D] the L1-smallest moves (each within its ``room``) whose gains ``aw * move`` add up to
    ``need``: the coordinates with the largest |w| first, each to its box limit, the last one
    part way (a fractional knapsack, as the original's ``projection_l1``); where the box falls
    short, every coordinate to its limit."""
    order = aw.argsort(dim=1, descending=True)
    a, r = aw.gather(1, order), room.gather(1, order)
    before = (a * r).cumsum(1) - a * r  # gain of the coordinates ahead in the order
    part = ((need - before) / a.clamp_min(1e-30)).clamp(min=0)
    move = torch.where(a > 0, torch.minimum(part, r), torch.zeros_like(r))
    return torch.zeros_like(move).scatter(1, order, move)


def solve_breakpoints(breaks, g, h, need, max_newton: int = 16) -> torch.Tensor:
    """[N, 1] lam with ``sum_i min(lam g_i, h_i) = need`` (inf where even ``sum_i h_i`` falls
    short). breaks, g, h: [N, D] with ``h = breaks * g``, g >= 0; need: [N, 1] >= 0.

    Newton steps from lam = 0: f is concave, so each step lands at or below the root, and a step
    that passes no breakpoint is exact - usually after a few O(D) passes, against the O(D log D)
    sort of every row the original does (which was most of FAB's time here). Rows still moving
    after ``max_newton`` steps take the sort."""
    reachable = h.sum(1, keepdim=True) >= need
    lam = torch.zeros_like(need)
    moving = reachable.clone()
    for _ in range(max_newton):
        passed = breaks <= lam
        gained = torch.where(passed, h, 0).sum(1, keepdim=True)
        slope = torch.where(passed, 0, g).sum(1, keepdim=True)
        new = torch.where(moving, (need - gained) / slope.clamp_min(1e-30), lam)
        moving = moving & (~passed & (breaks < new)).any(1, keepdim=True)  # a breakpoint passed: not exact yet
        lam = new
        if not bool(moving.any()):
            break
    rows = moving.squeeze(1).nonzero().squeeze(1)
    if rows.numel():
        lam[rows] = _solve_sorted(breaks[rows], g[rows], h[rows], need[rows])
    return torch.where(reachable, lam, torch.full_like(lam, float("inf")))


def _solve_sorted(breaks, g, h, need) -> torch.Tensor:
    """:func:`solve_breakpoints` through the sorted breakpoints (the original's way)."""
    order = breaks.argsort(dim=1)
    bs, gs, hs = breaks.gather(1, order), g.gather(1, order), h.gather(1, order)
    h_before = hs.cumsum(1) - hs  # sum of h over the breakpoints passed
    g_from = gs.sum(1, keepdim=True) - gs.cumsum(1) + gs  # sum of g over those not passed
    k = ((h_before + bs * g_from) < need).sum(1, keepdim=True).clamp(max=breaks.shape[1] - 1)
    return (need - h_before.gather(1, k)) / g_from.gather(1, k).clamp_min(1e-30)


@dataclasses.dataclass
class _FABState(RowState):
    """One FAB run: x the clean rows, x1 the iterate, x_adv / res the best adversarial point and
    its distance."""

    x1: torch.Tensor
    res: torch.Tensor


class FAB(Iterative):
    """The Fast Adaptive Boundary attack (Croce & Hein 2020), with fra31/auto-attack's defaults.
    A minimum-norm attack: a sample counts as fooled only if FAB finds a misclassified point
    within ``eps``; then that (smallest found) point is returned, else x. Restarts after the first
    start at a random point at distance eps / 2. With ``early_stop`` a sample stops (and leaves
    the batch) once fooled within eps; without it, FAB keeps shrinking the perturbation for all
    ``steps``, as in the original.

    Threat model: Linf, L2 or L1 (``norm``); untargeted, or FAB-T (``targeted=True``: one run per
    target, the classes ranked 2nd, 3rd, ... at x or ``rank_at``; success is any misclassification).

    Args:
        model: returns logits [B, K].
        eps: the radius within which a success counts; steps: iterations per run; restarts: runs.
        targeted: FAB-T (it picks its own targets: the call takes none); n_target_classes: its targets.
        alpha_max, eta, beta: the original's step bias, overshoot and pull-back (0.1, 1.05, 0.9).
        **kwargs: the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, ...] in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> x_adv = FAB(model, eps=8/255, norm="linf", steps=100)(x, y)
    """

    NORMS = ("linf", "l2", "l1")

    def __init__(self, model, eps: float = 8 / 255, norm: str = "linf", steps: int = 100, restarts: int = 1,
                 targeted: bool = False, n_target_classes: int = 9, alpha_max: float = 0.1, eta: float = 1.05,
                 beta: float = 0.9, **kwargs):
        if kwargs.get("loss", "margin") != "margin":
            raise ValueError("loss: FAB follows the linearised decision boundary; it takes no loss")
        if kwargs.get("eot_iter", 1) != 1:
            raise ValueError("eot_iter: FAB is not an EOT attack (use APGD with eot_iter for stochastic models)")
        kwargs["loss"] = "margin"
        # FAB-T picks its own targets: the contract's ``targeted`` (caller-given targets) stays off
        super().__init__(model, eps=eps, norm=norm, **kwargs)
        self.fab_targeted = flag("targeted", targeted)
        self.steps = positive_int("steps", steps)
        self.restarts = positive_int("restarts", restarts)
        self.n_target_classes = positive_int("n_target_classes", n_target_classes)
        self.alpha_max, self.eta, self.beta = (non_negative(n, v) for n, v in
                                               (("alpha_max", alpha_max), ("eta", eta), ("beta", beta)))
        if restarts > 1 and self.eps == float("inf"):
            raise ValueError("eps: FAB's random restarts need a finite eps")

    def perturb(self, ctx, x, y, target):
        with torch.no_grad():
            ctx.oracle.check_output(ctx.oracle.logits(x), y, None)
        ranks = self.target_ranks() or [None]
        return runs_on_unfooled(ctx, x, y, None, ranks, self.restarts, lambda xs, ys, ts, rank, restart: self.iterate(
            ctx, xs, ys, ts, self.steps, restart=restart))

    def target_ranks(self) -> range:
        return range(2, self.n_target_classes + 2) if self.fab_targeted else range(0)

    # -- the linearisation ------------------------------------------------------------------
    @staticmethod
    def boundary(ctx, x, y, target):
        """(df [B, M], dg [B, M, D]): logit differences f_j - f_y and their input gradients, for
        every class j (untargeted; f_y - f_y is set to 1e10 so it is never chosen) or the target."""
        batch = x.shape[0]
        if target is not None:
            x_in = x.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = ctx.oracle.logits(x_in).float()
                diff = logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
                grad = input_gradient(diff.sum(), x_in)
            return diff.detach()[:, None], grad.flatten(1)[:, None].float()
        with torch.no_grad():
            classes = ctx.oracle.logits(x[:1]).shape[1]
        x_in = x.detach().repeat(classes, *[1] * (x.dim() - 1)).requires_grad_(True)
        with torch.enable_grad():  # one pass over K copies: copy j gives the gradient of logit j
            logits = ctx.oracle.logits(x_in).float()
            picked = logits.view(classes, batch, classes).diagonal(dim1=0, dim2=2)  # [B, K]
            grad = input_gradient(picked.sum(), x_in)
        f = logits.detach()[:batch]
        jac = grad.view(classes, batch, -1).transpose(0, 1).float()  # [B, K, D]
        rows = torch.arange(batch, device=x.device)
        df = f - f[rows, y][:, None]
        dg = jac - jac[rows, y][:, None]
        df[rows, y] = 1e10
        return df, dg

    # -- one run: the loop's hooks ----------------------------------------------------------------
    def start_state(self, ctx, x, y, target, restart):
        """x itself for the first run; later restarts at distance eps / 2 in a random direction."""
        x1 = x.clone() if restart == 0 else ctx.bounds.clamp(x + 0.5 * self.eps * random_direction(ctx, x))
        return _FABState(x, y, target, x_adv=x.clone(), fooled=torch.zeros(x.shape[0], dtype=torch.bool,
                                                                           device=x.device),
                         x1=x1, res=torch.full((x.shape[0],), float("inf"), device=x.device))

    @torch.no_grad()
    def verdict(self, ctx, s, i):
        """After a step: track the smallest adversarial point, pull a successful iterate back
        towards x; with early_stop a row is done once that point lies within eps."""
        if i == 0:  # FAB judges its iterates, not its start
            return torch.zeros_like(s.fooled)
        is_adv = ctx.oracle.succeeded(ctx.oracle.mean_logits(s.x1), s.y, None, s.x1)
        dist = lp_norms(s.x1 - s.x, self.norm)
        better = is_adv & (dist < s.res)
        s.x_adv[better], s.res[better] = s.x1[better], dist[better].to(s.res.dtype)
        pulled = s.x + (s.x1 - s.x) * self.beta
        s.x1 = torch.where(is_adv.view(-1, *[1] * (s.x.dim() - 1)), pulled, s.x1)
        return s.res <= self.eps * (1 + 1e-6) if self.early_stop else torch.zeros_like(s.fooled)

    @torch.no_grad()
    def advance(self, ctx, s, i, live):
        s.x1 = self._iterate(s.x, s.x1, *self.boundary(ctx, s.x1, s.y, s.target), *self._flat_bounds(ctx, s.x))

    def finish(self, s, rows, out, fooled):
        """Rows whose smallest adversarial point lies within eps end there; the others at x."""
        within = rows.live & (s.res <= self.eps * (1 + 1e-6))
        out[rows.index[within]], fooled[rows.index[within]] = s.x_adv[within], True

    @staticmethod
    def _flat_bounds(ctx, x):
        """Bounds as [1, D] (per channel) or [1, 1] rows for the flattened inputs."""
        lo_b, hi_b = ctx.bounds.lo_b, ctx.bounds.hi_b
        shape = (1, *x.shape[1:])
        return lo_b.expand(shape).reshape(1, -1).float(), hi_b.expand(shape).reshape(1, -1).float()

    def _iterate(self, x0, x1, df, dg, lo, hi):
        """One FAB step from x1 (clean point x0) on the linearisation (df, dg)."""
        n = x0.shape[0]
        dual = {"linf": lambda g: g.abs().sum(-1), "l2": lambda g: g.norm(dim=-1),
                "l1": lambda g: g.abs().amax(-1)}[self.norm](dg)
        pick = (df.abs() / (dual + 1e-12)).argmin(dim=1)
        rows = torch.arange(n, device=x0.device)
        w = dg[rows, pick]
        p1, p0 = x1.flatten(1).float(), x0.flatten(1).float()
        b = -df[rows, pick] + (w * p1).sum(1)
        d = project_onto_hyperplane(torch.cat((p1, p0)), torch.cat((w, w)), torch.cat((b, b)), lo, hi, self.norm)
        d1, d0 = d[:n], d[n:]
        size = lp_norms(d, self.norm).clamp_min(1e-8)
        a1, a0 = size[:n], size[n:]
        alpha = (a1 / (a1 + a0)).clamp(0, self.alpha_max)[:, None]
        moved = (p1 + self.eta * d1) * (1 - alpha) + (p0 + self.eta * d0) * alpha
        return torch.minimum(torch.maximum(moved, lo), hi).view(x0.shape).to(x0.dtype)
