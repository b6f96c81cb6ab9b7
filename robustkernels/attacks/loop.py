"""The iterative loop that PGD, APGD, MD, smoothed PGD and FAB share, and AutoAttack's outer loops.

One run of an :class:`Iterative` attack over a batch::

    s = start_state(...)                      # x_adv [B, ...], fooled [B], the attack's own tensors
    for i in 0 .. steps:
        record(verdict(s, i))                 # first fooling point of each row kept; early_stop retires it
        if i == steps or no row is live: stop
        advance(s, i, live)                   # one step (rows no longer live get step 0)
        s = compact(s)                        # finished rows leave the batch (the active set)
    finish(s)                                 # never-fooled rows: the attack's end point

:func:`runs_on_unfooled` repeats runs over target ranks and restarts on the rows not fooled yet."""

from __future__ import annotations

import dataclasses

import torch

from .base import Attack
from .context import Context


@dataclasses.dataclass
class RowState:
    """An attack's working state: tensors with the batch's rows first (or None), kept in step by
    :meth:`ActiveSet.compact`. ``x_adv`` is the point a verdict judges (and a fooled row keeps),
    ``fooled`` [B] the rows fooled so far."""

    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    x_adv: torch.Tensor
    fooled: torch.Tensor


class ActiveSet:
    """The rows of a batch still under attack. Finished rows stop moving at once (their step is
    0); the working tensors are compacted - finished rows leave the batch, so the model no longer
    runs on them - once at most ``compact_at`` of the current rows are still live."""

    def __init__(self, batch: int, device, enabled: bool = True, compact_at: float = 0.75):
        self.index = torch.arange(batch, device=device)  # row -> position in the caller's batch
        self.live = torch.ones(batch, dtype=torch.bool, device=device)
        self.enabled, self.compact_at = enabled, compact_at

    def retire(self, done: torch.Tensor) -> None:
        self.live &= ~done

    def any_live(self) -> bool:
        return bool(self.live.any())

    def compact(self, state: RowState) -> RowState:
        """``state`` with the finished rows removed from its tensors, if enough rows finished to
        pay for the copy; else unchanged."""
        if not self.enabled:
            return state
        n_live = int(self.live.sum())
        if n_live == len(self.live) or n_live > self.compact_at * len(self.live):
            return state
        keep = self.live.nonzero().squeeze(1)
        self.index, self.live = self.index[keep], self.live[keep]
        return dataclasses.replace(state, **{f.name: getattr(state, f.name)[keep] for f in dataclasses.fields(state)
                                             if isinstance(getattr(state, f.name), torch.Tensor)})


def record(s: RowState, rows: ActiveSet, out, fooled_out, fooled: torch.Tensor, early_stop: bool) -> None:
    """Keep the first fooling point (``s.x_adv``) of each row where the [B] mask ``fooled`` holds,
    in ``out`` / ``fooled_out`` (the caller's rows); with early_stop, fooled rows stop."""
    first = fooled & ~s.fooled
    if not bool(first.any()):  # most steps on robust points: nothing to record
        return
    out[rows.index[first]] = s.x_adv[first]
    fooled_out[rows.index[first]] = True
    s.fooled |= first
    if early_stop:
        rows.retire(s.fooled)


class Iterative(Attack):
    """An attack that runs as the loop above. Subclasses give :meth:`start_state`,
    :meth:`verdict` and :meth:`advance` (and :meth:`finish` where the end point is not the last
    iterate); ``FINAL_CHECK`` judges the point after the last step too."""

    FINAL_CHECK = True

    def iterate(self, ctx: Context, x, y, target, steps: int, **run) -> tuple[torch.Tensor, torch.Tensor]:
        """One run of ``steps`` steps on (x, y[, target]): (x_adv, fooled [B]) per the contract;
        ``run``: the run's own settings, for :meth:`start_state`."""
        s = self.start_state(ctx, x, y, target, **run)
        rows = ActiveSet(x.shape[0], x.device, enabled=self.early_stop and self.active_set)
        out, fooled = s.x_adv.clone(), torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for i in range(steps + 1):
            if i < steps or self.FINAL_CHECK:
                record(s, rows, out, fooled, self.verdict(ctx, s, i), self.early_stop)
            if i == steps or not rows.any_live():
                break
            self.advance(ctx, s, i, rows.live)
            s = rows.compact(s)
        self.finish(s, rows, out, fooled)
        return out, fooled

    def start_state(self, ctx: Context, x, y, target, **run) -> RowState:
        """The run's state at its start point."""
        raise NotImplementedError

    def verdict(self, ctx: Context, s: RowState, i: int) -> torch.Tensor:
        """[B] whether ``s.x_adv`` fools the model at step ``i`` (and whatever the step measures)."""
        raise NotImplementedError

    def advance(self, ctx: Context, s: RowState, i: int, live: torch.Tensor) -> None:
        """Step ``i`` in place on ``s``; rows where ``live`` [B] is False must not move."""
        raise NotImplementedError

    def finish(self, s: RowState, rows: ActiveSet, out, fooled) -> None:
        """Never-fooled rows end at the last iterate."""
        never = ~s.fooled
        out[rows.index[never]] = s.x_adv[never]


def runs_on_unfooled(ctx: Context, x, y, target, ranks, restarts: int, run) -> torch.Tensor:
    """AutoAttack's outer loops: for each target rank (``[None]``: untargeted) and restart,
    ``run(x, y, target, rank, restart) -> (x_adv, fooled)`` on the samples not fooled yet. Fooled
    samples keep their first fooling point; the others the last run's point. Targets are ranked
    at ``ctx.rank_points`` (default: x)."""
    result = x.clone()
    fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for rank in ranks:
        for restart in range(restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                return result
            at = x if ctx.rank_points is None else ctx.rank_points
            t = ctx.oracle.ranked_class(at[todo], rank) if rank is not None else (
                None if target is None else target[todo])
            x_adv, success = run(x[todo], y[todo], t, rank, restart)
            result[todo] = x_adv
            fooled[todo[success]] = True
    return result
