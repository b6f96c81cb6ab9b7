"""The contract every attack keeps, its argument checks, and the call that builds one call's
:class:`~robustkernels.attacks.context.Context` (bounds, model oracle, generator) and leaves the
caller's model and RNG as they were.

The contract, for every attack: ``x_adv = attack(x, y)`` (targeted: ``attack(x, y, target)``)
with x [B, ...] floating point inside ``bounds`` and y [B] integer labels. It returns a detached
tensor of x's shape, dtype and device, inside the eps-ball around x and inside the bounds - for
16-bit x too, measured exactly (:mod:`~robustkernels.attacks.contract`). Per sample:

- fooled: a point that fools the model (with ``early_stop=True`` the first one found);
- never fooled: the point the attack ended on: the last iterate (PGD, FGSM, MI-FGSM), the best
  point of the search (APGD: highest loss; Square: lowest margin), or x itself for the
  minimum-norm attacks (CW, FAB), whose iterates beyond eps do not count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, Unpack

import torch
from torch import nn

from ..common import AUTOCAST, dtype_hint, flag, frozen_model, grad_enabled, is_number, normal_tensor, positive_int
from ..ops import draw_seed
from ..threat import Bounds, ThreatModel, check_norm, per_sample
from .context import Context
from .contract import held_to_contract
from .losses import LOSSES
from .oracle import Oracle, per_row_noise

MODEL_MODES = ("eval", "train", "keep")


class AttackLevers(TypedDict, total=False):
    """How the model runs inside an attack (each documented on :class:`Attack`): the cost levers
    ``eot_batched`` and ``active_set`` (off only to measure them), ``autocast`` and ``model_mode``."""

    eot_batched: bool | str
    active_set: bool
    autocast: str | None
    model_mode: str


def finite_eps(eps, attack: str, why: str = "its step size is derived from eps") -> None:
    """A ValueError naming eps for the attacks that cannot run at eps = inf (an unbounded ball)."""
    if is_number(eps) and eps == float("inf"):
        raise ValueError(f"eps must be finite for {attack}: {why}")


def margin_only(name: str, kwargs: dict) -> dict:
    """``kwargs`` with ``loss="margin"`` for an untargeted attack that ascends the margin loss only
    (MD, SmoothedPGD); a ValueError naming ``targeted`` / ``loss`` when they ask for otherwise."""
    if kwargs.get("targeted"):
        raise ValueError(f"targeted: {name} is untargeted")
    if kwargs.setdefault("loss", "margin") != "margin":
        raise ValueError(f"loss: {name} ascends the margin loss only")
    return kwargs


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
        eot_batched: (a lever: this, ``active_set``, ``autocast`` and ``model_mode`` are the
            keywords :class:`AttackLevers` lists) run the EOT passes as one forward/backward over a
            k-fold batch (in chunks of at most 1024 rows) instead of k passes; the same average
            only if the model draws
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
                 early_stop: bool = False, generator: torch.Generator | None = None, **levers: Unpack[AttackLevers]):
        unknown = sorted(set(levers) - set(AttackLevers.__annotations__))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {unknown[0]!r}")
        eot_batched, active_set = levers.get("eot_batched", "auto"), levers.get("active_set", True)
        autocast, model_mode = levers.get("autocast"), levers.get("model_mode", "eval")
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
        self.targeted, self.early_stop = flag("targeted", targeted), flag("early_stop", early_stop)
        self.active_set = flag("active_set", active_set)
        self.model_mode, self.autocast = model_mode, autocast
        if eot_batched not in (True, False, "auto"):
            raise ValueError(f"eot_batched must be True, False or 'auto', got {eot_batched!r}")
        self.eot_iter = positive_int("eot_iter", eot_iter)
        self.eot_batched = per_row_noise(model) if eot_batched == "auto" else eot_batched
        self.generator = generator if generator is not None else torch.Generator().manual_seed(draw_seed())

    # the threat model's fields, read-only
    eps = property(lambda self: self.threat.eps)
    norm = property(lambda self: self.threat.norm)
    bounds = property(lambda self: self.threat.bounds)
    normalization = property(lambda self: self.threat.normalization)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None, *,
                 rank_at: torch.Tensor | None = None) -> torch.Tensor:
        """x_adv [B, ...] per the contract above. ``rank_at``: for the attacks that pick their
        own targets (APGD-T, FAB-T), the inputs (x's shape, e.g. an earlier attack's end points)
        at which they rank them, instead of x; the other attacks ignore it."""
        bounds = check_call(self.threat, x, y, target, self.targeted)
        if rank_at is not None and (not isinstance(rank_at, torch.Tensor) or rank_at.shape != x.shape
                                    or rank_at.dtype != x.dtype or rank_at.device != x.device):
            raise ValueError(f"rank_at must be a tensor of x's shape {list(x.shape)}, dtype and device")
        if rank_at is not None and not bool(rank_at.isfinite().all()):
            raise ValueError("rank_at contains NaN or infinity")
        with grad_enabled(), frozen_model(self.model, self.model_mode), dtype_hint(self.model, x):
            x, y, target = (normal_tensor(t) for t in (x, y, target))
            ctx = Context(self.threat, bounds, self.oracle(), self.generator,
                          None if rank_at is None else rank_at.detach())
            x_adv = self.perturb(ctx, x.detach(), y, target)
        return held_to_contract(self.threat, x_adv.detach(), x, bounds, type(self).__name__)

    def oracle(self) -> Oracle:
        """A fresh :class:`~robustkernels.attacks.oracle.Oracle`: the model as this attack queries
        it (its loss, EOT passes, precision and mode)."""
        oracle = Oracle(self.model, normalization=self.normalization, loss=self.loss, targeted=self.targeted,
                        eot_iter=self.eot_iter, eot_batched=self.eot_batched, autocast=self.autocast,
                        training=self.model_mode == "train")
        ranks = self.target_ranks()
        if ranks:  # the last rank is checked on the call's first logits, whatever the data
            oracle.classes_needed = max(ranks)
        return oracle

    def target_ranks(self) -> range:
        """The target ranks an attack that picks its own targets runs (APGD-T, FAB-T: the 2nd,
        3rd, ... class); empty for the others."""
        return range(0)

    def perturb(self, ctx: Context, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """The attack itself, on checked inputs: x_adv [B, ...] per the contract."""
        raise NotImplementedError

    @staticmethod
    def step_sizes(value, x) -> torch.Tensor:
        """[B] step sizes from a number or per-sample tensor ``value``."""
        return per_sample(value, "step", x, finite=True)


def check_call(threat: ThreatModel, x, y, target, targeted: bool) -> Bounds:
    """The call's inputs checked against the contract; the threat model's bounds prepared for x."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point Tensor")
    if x.dim() < 2:
        raise ValueError(f"x must be batched [B, ...], got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (B = 0)")
    if x[0].numel() == 0:
        raise ValueError(f"x has no features per sample (shape {list(x.shape)})")
    for name, labels in (("y", y), ("target", target)):
        if labels is not None:
            _check_labels(name, labels, x)
    if targeted and target is None:
        raise ValueError("a targeted attack needs target labels: attack(x, y, target)")
    if not targeted and target is not None:
        raise ValueError("target labels given to an attack that takes none: an untargeted one (build it with "
                         "targeted=True), or one that picks its own targets (APGD-T, FAB-T: call it as atk(x, y))")
    if bool(x.isnan().any()):
        raise ValueError("x contains NaN")
    bounds = threat.prepare(x)
    if bool((x < bounds.lo_b).any()) or bool((x > bounds.hi_b).any()):
        raise ValueError(f"x must lie within bounds {threat.bounds}")
    return bounds


def _check_labels(name: str, labels, x) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer Tensor of class labels")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"{name} must have shape [{x.shape[0]}] to match x, got {list(labels.shape)}")
    if labels.device != x.device:
        raise ValueError(f"{name} is on {labels.device} but x is on {x.device}")
    if int(labels.min()) < 0:
        raise ValueError(f"{name} has negative labels")
