"""What every attack shares: the contract, argument checks, the model wrapper (normalisation,
autocast, batched EOT), the objective and its input gradient, the active set, and leaving the
caller's model and RNG as they were.

The contract, for every attack: ``x_adv = attack(x, y)`` (targeted: ``attack(x, y, target)``)
with x [B, ...] floating point inside ``bounds`` and y [B] integer labels. It returns a detached
tensor of x's shape, dtype and device, inside the eps-ball around x and inside the bounds. Per
sample:

- fooled: a point that fools the model (with ``early_stop=True`` the first one found);
- never fooled: the point the attack ended on: the last iterate (PGD, FGSM, MI-FGSM), the best
  point of the search (APGD: highest loss; Square: lowest margin), or x itself for the
  minimum-norm attacks (CW, FAB), whose iterates beyond eps do not count.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from ..common import dtype_hint, frozen_model, grad_enabled, normal_tensor, positive_int
from ..ops import draw_seed
from ..ops.pgd import pgd_step_prepared
from ..ops.philox import philox_normal, philox_uniform
from ..threat import Bounds, ThreatModel, check_logits_shape, check_norm, normalize, per_sample
from .losses import LOSSES, objective

MODEL_MODES = ("eval", "train", "keep")
AUTOCAST = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}
EOT_MAX_ROWS = 1024  # rows per forward/backward when the EOT copies are batched
STARTS = ("uniform", "stripes")  # random starts: AutoAttack's, or Square's vertex stripes (Linf)


def per_row_noise(model: nn.Module) -> bool:
    """Whether copies of an input in one batch get independent noise: the model's random layers
    are Stochastic LWTA (per element) and none is a PNI layer (one weight draw per call)."""
    from ..nn import LWTA, BatchNormLWTA, PNIConv2d, PNILinear

    modules = list(model.modules())
    return any(isinstance(m, (LWTA, BatchNormLWTA)) for m in modules) and not any(
        isinstance(m, (PNIConv2d, PNILinear)) for m in modules)



def checked_start(start: str, norm: str) -> str:
    """``start`` (one of ``STARTS``) if the threat model ``norm`` allows it."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if start == "stripes" and norm != "linf":
        raise ValueError("start='stripes' is a vertex of the Linf ball: it needs norm='linf'")
    return start


def margin_only(name: str, kwargs: dict) -> dict:
    """``kwargs`` with ``loss="margin"`` for an untargeted attack that ascends the margin loss only
    (MD, SmoothedPGD); a ValueError naming ``targeted`` / ``loss`` when they ask for otherwise."""
    if kwargs.get("targeted"):
        raise ValueError(f"targeted: {name} is untargeted")
    if kwargs.setdefault("loss", "margin") != "margin":
        raise ValueError(f"loss: {name} ascends the margin loss only")
    return kwargs


def copies(t: torch.Tensor, c: int) -> torch.Tensor:
    """``c`` copies of t stacked along dim 0 (t itself, not a copy, when c = 1)."""
    return t if c == 1 else t.repeat(c, *[1] * (t.dim() - 1))


def input_gradient(value: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
    """``d value / d x_in``, zeros where ``value`` does not depend on ``x_in`` (a front-end that cuts
    the graph, e.g. JPEG): what a naive attack sees there, rather than an error."""
    if not value.requires_grad:
        return torch.zeros_like(x_in)
    (grad,) = torch.autograd.grad(value, x_in, allow_unused=True)
    return torch.zeros_like(x_in) if grad is None else grad

@dataclasses.dataclass
class RowState:
    """Base of an attack's working state: tensors with the batch's rows first (or None), kept in
    step by :meth:`ActiveSet.compact`."""

    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None


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


class Attack:
    """Base class: ``x_adv = attack(x, y)`` (targeted: ``attack(x, y, target)``).

    Args:
        model: returns logits [B, K] for inputs in the normalised space.
        eps: radius of the threat model, in input units (inputs in [0, 1] by default).
        norm: ``"linf"`` or ``"l2"``; ``"l1"`` for the attacks that list it in ``NORMS`` (APGD,
            APGD-T, FAB, Square).
        bounds: the valid input range ``(lo, hi)``, floats or per-channel tensors.
        normalization: ``(mean, std)`` per channel: the model sees ``(x - mean) / std``.
        loss: ``"ce"``, ``"margin"`` (CW-Linf) or ``"dlr"`` (the targeted DLR when targeted).
        targeted: if True, ``target`` labels are required and the attack pushes towards them.
        eot_iter: gradients averaged over this many forward passes (stochastic models).
        eot_batched: run the EOT passes as one forward/backward over a k-fold batch (in chunks
            of at most 1024 rows) instead of k passes; the same average only if the model draws
            its noise per row. ``"auto"`` (default): batched for models whose randomness is
            Stochastic LWTA (per element) and has no PNI layer (weight noise is one draw per
            call, shared by the batch); sequential otherwise. Never in ``"train"`` mode, where
            BatchNorm would see the copies.
        early_stop: stop moving samples that are already misclassified (for evaluation).
        active_set: with ``early_stop``, samples that are fooled leave the batch, so the model
            runs only on those still being attacked (False: they stay in, frozen).
        autocast: ``"bf16"`` or ``"fp16"`` runs the model under autocast inside the attack; a
            sample counts as fooled (and stops, with ``early_stop``) only if an fp32 pass agrees.
        model_mode: run the model in ``"eval"`` (default), ``"train"`` or ``"keep"`` mode.
        generator: source of the random starts (default: one seeded from the default generator
            when the attack is built). The global RNG state is restored after every call.
    """

    NORMS = ("linf", "l2")  # the threat models this attack handles

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", bounds=(0.0, 1.0),
                 normalization: Sequence | None = None, loss: str = "ce", targeted: bool = False, eot_iter: int = 1,
                 eot_batched="auto", early_stop: bool = False, active_set: bool = True, autocast=None,
                 model_mode: str = "eval", generator: torch.Generator | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        check_norm(norm, self.NORMS, type(self).__name__)
        self.threat = ThreatModel.build(eps, norm, bounds, normalization)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if model_mode not in MODEL_MODES:
            raise ValueError(f"model_mode must be one of {MODEL_MODES}, got {model_mode!r}")
        if autocast not in AUTOCAST:
            raise ValueError(f"autocast must be one of {tuple(AUTOCAST)}, got {autocast!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.model, self.loss = model, loss
        self.targeted, self.early_stop, self.active_set = bool(targeted), bool(early_stop), bool(active_set)
        self.model_mode, self.autocast = model_mode, autocast
        if eot_batched not in (True, False, "auto"):
            raise ValueError(f"eot_batched must be True, False or 'auto', got {eot_batched!r}")
        self.eot_iter = positive_int("eot_iter", eot_iter)
        self.eot_batched = per_row_noise(model) if eot_batched == "auto" else eot_batched
        self.generator = generator if generator is not None else torch.Generator().manual_seed(draw_seed())
        self._bounds: Bounds | None = None
        self._unchecked_labels = True
        self._rank_points: torch.Tensor | None = None

    # the threat model's fields, read-only
    eps = property(lambda self: self.threat.eps)
    norm = property(lambda self: self.threat.norm)
    bounds = property(lambda self: self.threat.bounds)
    normalization = property(lambda self: self.threat.normalization)

    # -- the public call -------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(x, y, target)
        try:
            with grad_enabled(), frozen_model(self.model, self.model_mode), dtype_hint(self.model, x):
                x, y, target = (normal_tensor(t) for t in (x, y, target))
                x_adv = self.perturb(x.detach(), y, target)
        finally:
            self._rank_points = None
        return x_adv.detach()

    def rank_targets_at(self, points: torch.Tensor) -> Attack:
        """For the next call only: the attacks that pick their own targets (APGD-T, FAB-T) rank
        them by the logits at ``points`` (x's shape, e.g. an earlier attack's end points) instead
        of at the clean inputs. Returns the attack."""
        self._rank_points = points.detach()
        return self

    def perturb(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    # -- helpers for subclasses ------------------------------------------------------------
    def logits(self, x: torch.Tensor, fp32: bool = False) -> torch.Tensor:
        """The model's logits on x (inputs in ``bounds``), under the attack's autocast unless ``fp32``."""
        dtype = None if fp32 else AUTOCAST[self.autocast]
        context = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with context:
            return self.model(normalize(x, self.normalization))

    def check_output(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> None:
        """Once per call: the model returns [B, K] logits and the labels are classes of it."""
        if not self._unchecked_labels:
            return
        self._check_shape(logits, y.shape[0])
        classes = logits.shape[1]
        for name, labels in (("y", y), ("target", target)):
            if labels is not None and labels.numel() and int(labels.max()) >= classes:
                raise ValueError(f"{name} has labels >= the model's {classes} classes")
        self._unchecked_labels = False

    def _check_shape(self, logits, rows: int) -> None:
        if self._unchecked_labels:
            check_logits_shape(logits, rows)

    def objective(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                  loss: str | None = None) -> torch.Tensor:
        """[B] the attack's objective (or ``loss``, one of ``LOSSES``) on ``logits``."""
        self.check_output(logits, y, target)
        return objective(loss or self.loss, logits, y, target)

    def loss_and_grad(self, x_adv: torch.Tensor, y, target, loss: str | None = None):
        """Per-sample objective [B] (the attack's, or ``loss``), its input gradient and logits,
        averaged over ``eot_iter`` passes (batched: the copies go through the model together, in
        chunks)."""
        batch = x_adv.shape[0]
        chunks = self._eot_chunks(batch)
        if chunks == [1]:  # one pass (a deterministic model): no sums to build, per step
            return self._pass(x_adv, y, target, 1, loss)
        total_loss, total_grad, total_logits = 0.0, torch.zeros_like(x_adv), 0.0
        for c in chunks:
            value, grad, logits = self._pass(x_adv, y, target, c, loss)
            total_grad += grad.view(c, *x_adv.shape).sum(0)
            total_loss = total_loss + value.view(c, batch).sum(0)
            total_logits = total_logits + logits.view(c, batch, -1).sum(0)
        k = self.eot_iter
        return total_loss / k, total_grad / k, total_logits / k

    def _pass(self, x_adv: torch.Tensor, y, target, c: int, loss: str | None = None):
        """One forward and backward pass over ``c`` stacked copies of x_adv: (objective [c B],
        input gradient [c B, ...], fp32 logits [c B, K]), detached."""
        x_in = copies(x_adv.detach(), c).requires_grad_(True)
        ys, ts = copies(y, c), None if target is None else copies(target, c)
        with torch.enable_grad():
            logits = self.logits(x_in)
            value = self.objective(logits, ys, ts, loss)
            grad = input_gradient(value.sum(), x_in)
        return value.detach(), grad, logits.detach().float()

    @torch.no_grad()
    def mean_logits(self, x: torch.Tensor, fp32: bool = False) -> torch.Tensor:
        """Logits (as fp32; computed in fp32 if ``fp32``, else under the attack's autocast)
        averaged over ``eot_iter`` passes (batched like :meth:`loss_and_grad`)."""
        batch, total = x.shape[0], 0.0
        if self.eot_iter == 1:  # one pass: no sum to build (Square calls this once per query)
            logits = self.logits(x, fp32=fp32)
            self._check_shape(logits, batch)
            return logits.float()
        for c in self._eot_chunks(batch):
            logits = self.logits(copies(x, c), fp32=fp32)
            self._check_shape(logits, c * batch)
            total = total + logits.float().view(c, batch, -1).sum(0)
        return total / self.eot_iter

    def _eot_chunks(self, batch: int) -> list[int]:
        """Copies per forward pass for the ``eot_iter`` passes over a batch: all in passes of at
        most ``EOT_MAX_ROWS`` rows when batched, else one per pass."""
        k = self.eot_iter
        per_pass = 1
        if k > 1 and self.eot_batched and self.model_mode != "train":
            per_pass = max(1, min(k, EOT_MAX_ROWS // max(batch, 1)))
        return [min(per_pass, k - done) for done in range(0, k, per_pass)]

    def random_direction(self, x: torch.Tensor) -> torch.Tensor:
        """[B, ...] like x, of unit norm per sample, from the shared Philox stream (one seed from
        the attack's generator): uniform in [-1, 1] over its Linf norm, or a normal over its L2
        (L1) norm. The random starts of APGD and FAB (scaled by eps and eps / 2)."""
        seed, n, batch = draw_seed(self.generator), x.numel(), x.shape[0]
        if self.norm in ("l2", "l1"):
            t = philox_normal(n, seed, 0, device=x.device, per_block=4).view(batch, -1)
            scale = t.norm(dim=1, keepdim=True) if self.norm == "l2" else t.abs().sum(dim=1, keepdim=True)
        else:
            t = (2 * philox_uniform(n, seed, 0, device=x.device, per_block=4) - 1).view(batch, -1)
            scale = t.abs().amax(dim=1, keepdim=True)
        return (t / (scale + 1e-12)).view(x.shape).to(x.dtype)

    def random_signs(self, shape: tuple, like: torch.Tensor) -> torch.Tensor:
        """Random +-1 of ``shape`` from the attack's generator, on ``like``'s device and dtype."""
        return (torch.randint(0, 2, shape, generator=self.generator) * 2 - 1).to(like)

    def stripes_start(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] moved by +-eps per (sample, channel, column), in bounds: Square's start,
        a vertex of the Linf ball."""
        b, c, _, w = x.shape
        return self._bounds.clamp(x + self.eps * self.random_signs((b, c, 1, w), x))

    def start_point(self, x: torch.Tensor, how: str) -> torch.Tensor:
        """A random start (``how`` in ``STARTS``): ``"uniform"``, AutoAttack's - uniform in
        [-1, 1] scaled to Linf norm eps (L2 / L1: a normal direction scaled to norm eps), clamped
        to the bounds; ``"stripes"``, Square's vertical stripes of +-eps (images)."""
        if not x.numel():
            return x.clone()
        if how == "stripes":
            if x.dim() != 4:
                raise ValueError(f"x: start='stripes' needs images [B, C, H, W], got shape {list(x.shape)}")
            return self.stripes_start(x)
        return self._bounds.clamp(x + self.eps * self.random_direction(x))

    def record_fooled(self, s: RowState, rows: ActiveSet, out, fooled_out, logits) -> None:
        """Keep the first fooling point of each row of the state ``s`` (its ``x_adv`` [B, ...]
        and ``fooled`` [B]) in ``out`` / ``fooled_out`` (the caller's rows); with early_stop,
        fooled rows stop."""
        first = self.succeeded(logits, s.y, s.target, s.x_adv) & ~s.fooled
        if not bool(first.any()):  # most steps on robust points: nothing to record
            return
        out[rows.index[first]] = s.x_adv[first]
        fooled_out[rows.index[first]] = True
        s.fooled |= first
        if self.early_stop:
            rows.retire(s.fooled)

    @torch.no_grad()
    def ranked_class(self, x: torch.Tensor, rank: int) -> torch.Tensor:
        """[B] the class with the ``rank``-th highest logit on x (1 = the top one): AutoAttack's
        targets for APGD-T and FAB-T are ranks 2, 3, ... of the clean input."""
        logits = self.mean_logits(x)
        if rank > logits.shape[1]:
            raise ValueError(f"n_target_classes: target rank {rank} needs more than {logits.shape[1]} classes")
        return logits.argsort(dim=1, descending=True)[:, rank - 1]

    def runs_on_unfooled(self, x, y, target, ranks, restarts: int, run) -> torch.Tensor:
        """AutoAttack's outer loops: for each target rank (``[None]``: untargeted) and restart,
        ``run(x, y, target, rank, restart) -> (x_adv, fooled)`` on the samples not fooled yet. Fooled
        samples keep their first fooling point; the others the last run's point."""
        result = x.clone()
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for rank in ranks:
            for restart in range(restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if todo.numel() == 0:
                    return result
                at = x if self._rank_points is None else self._rank_points
                t = self.ranked_class(at[todo], rank) if rank is not None else (
                    None if target is None else target[todo])
                x_adv, success = run(x[todo], y[todo], t, rank, restart)
                result[todo] = x_adv
                fooled[todo[success]] = True
        return result

    def succeeded(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                  x: torch.Tensor | None = None) -> torch.Tensor:
        """[B] whether ``logits`` (of inputs ``x``) fool the model. Under autocast, with ``x``
        given, a row counts only if an fp32 forward pass on it agrees: a low-precision verdict
        near the boundary would otherwise stop the attack on a point fp32 does not misclassify."""
        prediction = logits.argmax(dim=1)
        fooled = prediction == target if self.targeted else prediction != y
        recheck = None if x is None else self.fp32_recheck(fooled, x)
        if recheck is None:
            return fooled
        rows, precise = recheck
        fooled[rows] = self.succeeded(precise, y[rows], None if target is None else target[rows])
        return fooled

    def fp32_recheck(self, flagged: torch.Tensor, x: torch.Tensor):
        """Under autocast, ``(rows, logits)``: the rows of the [B] mask ``flagged`` (where the
        low-precision pass says fooled) and fp32 mean logits of x at them, so that only a verdict
        fp32 agrees with counts. None without autocast or without flagged rows."""
        if self.autocast is None or not bool(flagged.any()):
            return None
        rows = flagged.nonzero().squeeze(1)
        return rows, self.mean_logits(x[rows], fp32=True)

    def step(self, x_adv, x, grad, step, out=None, eps=None):
        """The fused step with this call's prepared bounds: ``step`` (and ``eps``) [B] tensors."""
        eps_t = self.eps_like(x) if eps is None else eps
        return pgd_step_prepared(x_adv, x, grad.to(x_adv.dtype), step, eps_t, self._bounds.lo, self._bounds.hi,
                                 self.threat.l2, out=out)

    def project(self, x_adv, x):
        return self.step(x_adv, x, x_adv, torch.zeros(x.shape[0], dtype=self._bounds.lo.dtype, device=x.device))

    def eps_like(self, x) -> torch.Tensor:
        return torch.full((x.shape[0],), self.eps, dtype=self._bounds.lo.dtype, device=x.device)

    def step_sizes(self, value, x) -> torch.Tensor:
        return per_sample(value, "step", x, finite=True)

    # -- checks ----------------------------------------------------------------------------
    def _check_inputs(self, x, y, target) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating-point Tensor")
        if x.dim() < 2:
            raise ValueError(f"x must be batched [B, ...], got shape {list(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("x is an empty batch (B = 0)")
        if x[0].numel() == 0:
            raise ValueError(f"x has no features per sample (shape {list(x.shape)})")
        for name, labels in (("y", y), ("target", target)):
            if labels is None:
                continue
            if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"{name} must be an integer Tensor of class labels")
            if labels.shape != (x.shape[0],):
                raise ValueError(f"{name} must have shape [{x.shape[0]}] to match x, got {list(labels.shape)}")
            if labels.device != x.device:
                raise ValueError(f"{name} is on {labels.device} but x is on {x.device}")
            if int(labels.min()) < 0:
                raise ValueError(f"{name} has negative labels")
        if self.targeted and target is None:
            raise ValueError("a targeted attack needs target labels: attack(x, y, target)")
        if not self.targeted and target is not None:
            raise ValueError("target labels given to an untargeted attack (build it with targeted=True)")
        if bool(x.isnan().any()):
            raise ValueError("x contains NaN")
        self._bounds = self.threat.prepare(x)
        if bool((x < self._bounds.lo_b).any()) or bool((x > self._bounds.hi_b).any()):
            raise ValueError(f"x must lie within bounds {self.bounds}")
        self._unchecked_labels = True
