"""The trainer's settings, checked once: :class:`FitOptions` and :func:`check_options`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..common import AUTOCAST as PRECISIONS
from ..common import non_negative, non_negative_int, positive_int
from . import checkpoint as ckpt
from .augment import Augmentation, make_augmentation
from .averaging import check_tau
from .schedules import LR_SCHEDULES

OPTIMIZERS = ("sgd", "adam")
AUTOCAST = {**PRECISIONS, "none": None}  # the common precisions, "none" spelled out too
ON_OVERFIT = ("warn", "stop", "restore")
VAL_ATTACKS = ("pgd", "autoattack-fast")  # autoattack-fast: autoattack(version="fast") joins the validation
KEEP = ("last", "best-robust")


@dataclass
class FitOptions:
    """Everything :func:`~robustkernels.train.fit` takes besides the model, method and data."""

    epochs: int = 10
    batch_size: int | None = None  # None: a DataLoader's own batch_size, else 128
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str | None = None
    augment: bool = False
    augmentations: tuple = ()
    val_attack_steps: int = 10
    val_attack: str = "pgd"
    keep: str = "last"
    autocast: str | None = None
    channels_last: bool = False
    compile: bool = False
    auto_levers: bool = False
    seed: int = 0
    log_path: str | os.PathLike | None = None
    checkpoint_path: str | os.PathLike | None = None
    checkpoint_every: int | None = None
    resume: bool | str = False
    on_overfit: str = "warn"
    progress: bool = True
    callback: Callable[[dict], None] | None = None
    on_epoch: Callable[[dict], None] | None = None
    weight_average: float | None = None
    meta: dict | None = None


def check_options(options: FitOptions, default_schedule: str, has_val: bool) -> FitOptions:
    """Validate ``options`` (a ``ValueError`` / ``TypeError`` naming the argument) and fill in the
    schedule's default; paths are checked to be writable files."""
    o = options
    o.epochs, o.batch_size = positive_int("epochs", o.epochs), positive_int("batch_size", o.batch_size)
    o.val_attack_steps = positive_int("val_attack_steps", o.val_attack_steps)
    if not non_negative("lr", o.lr) > 0:
        raise ValueError(f"lr must be > 0, got {o.lr}")
    non_negative("weight_decay", o.weight_decay)
    if o.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {o.optimizer!r}")
    o.schedule = o.schedule or default_schedule
    if o.schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {o.schedule!r}")
    if o.autocast not in AUTOCAST:
        raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {o.autocast!r}")
    if o.checkpoint_every is not None:
        positive_int("checkpoint_every", o.checkpoint_every)
    if o.resume not in (False, True, "force"):
        raise ValueError(f"resume must be True, False or 'force', got {o.resume!r}")
    if o.resume and o.checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path")
    if o.on_overfit not in ON_OVERFIT:
        raise ValueError(f"on_overfit must be one of {ON_OVERFIT}, got {o.on_overfit!r}")
    if o.on_overfit != "warn" and not has_val:
        raise ValueError(f"on_overfit={o.on_overfit!r} needs val_data: the guard watches validation accuracy")
    if o.val_attack not in VAL_ATTACKS:
        raise ValueError(f"val_attack must be one of {VAL_ATTACKS}, got {o.val_attack!r}")
    if o.keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {o.keep!r}")
    if (o.keep != "last" or o.val_attack != "pgd") and not has_val:
        raise ValueError(f"keep={o.keep!r} / val_attack={o.val_attack!r} need val_data: they use the validation")
    o.augmentations = tuple(make_augmentation(a) if isinstance(a, str) else a for a in o.augmentations)
    bad = [a for a in o.augmentations if not isinstance(a, Augmentation)]
    if bad:
        raise TypeError(f"augmentations must be names or robustkernels.train.augment objects, got {bad[0]!r}")
    o.weight_average = check_tau(o.weight_average)
    o.seed = non_negative_int("seed", o.seed)
    for name in ("callback", "on_epoch"):
        if getattr(o, name) is not None and not callable(getattr(o, name)):
            raise TypeError(f"{name} must be callable, got {type(getattr(o, name)).__name__}")
    if not isinstance(o.auto_levers, bool):
        raise TypeError(f"auto_levers must be a bool, got {type(o.auto_levers).__name__}")
    if o.checkpoint_path is not None:
        o.checkpoint_path = ckpt.check_path(o.checkpoint_path)
    if o.log_path is not None:
        o.log_path = ckpt.check_path(o.log_path, "log_path")
    return o
