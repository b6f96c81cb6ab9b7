"""How an AutoAttack run is set, in one checked record that :func:`~robustkernels.eval.autoattack`,
:class:`~robustkernels.eval.autoattack.AutoAttackRun` and :func:`~robustkernels.eval.evaluate`
(``autoattack=``) share."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, fields

from ..common import flag, positive_int
from ..levers import check_autocast, check_lever
from .aa_versions import ALL_ATTACKS, VERSIONS


@dataclass(frozen=True)
class AutoAttackOptions:
    """Everything an AutoAttack run takes besides the model, the threat model and the data
    (see :func:`~robustkernels.eval.autoattack` for each field). Checked when built: a
    ValueError / TypeError names the field."""

    version: str = "auto"
    attacks: tuple[str, ...] | None = None
    individual: bool = False
    seed: int | None = None
    autocast: str | None = "auto"
    active_set: bool = True
    eot_batched: bool | str = "auto"
    repeats: int | str = "auto"
    steps: int = 100
    n_queries: int = 5000
    n_target_classes: int = 9
    bpda: bool | str = "auto"
    channels_last: bool | str = "auto"
    compile: bool | str = False
    progress: bool = True
    state_path: str | None = None
    resume: bool = False
    batch_size: int | None = None
    shard: tuple[int, int] | None = None

    def __post_init__(self):
        if self.version not in VERSIONS + ("auto",):
            raise ValueError(f"version must be one of {VERSIONS + ('auto',)}, got {self.version!r}")
        object.__setattr__(self, "attacks", _custom_attacks(self.version, self.attacks))
        for name in ("individual", "active_set", "progress", "resume"):
            flag(name, getattr(self, name))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        check_lever("bpda", self.bpda)
        if self.repeats != "auto":
            positive_int("repeats", self.repeats)
        for name in ("steps", "n_queries", "n_target_classes"):
            positive_int(name, getattr(self, name))
        if self.batch_size is not None:
            positive_int("batch_size", self.batch_size)
        check_lever("eot_batched", self.eot_batched)
        check_lever("channels_last", self.channels_last)
        check_lever("compile", self.compile)
        check_autocast(self.autocast)
        if self.state_path is not None and not isinstance(self.state_path, str | os.PathLike):
            raise TypeError(f"state_path must be a path (str or os.PathLike), got {type(self.state_path).__name__}")
        if self.shard is not None:
            object.__setattr__(self, "shard", checked_shard(self.shard))
            if self.state_path is None:
                raise ValueError("shard=(K, N) writes the shard's verdicts to its state file: pass state_path= too")
        if self.resume and self.state_path is None:
            raise ValueError("resume=True continues the run recorded in state_path: pass state_path= too")

    def warn_for(self, norm: str) -> None:
        """The original's caveat for a setting it does not define."""
        if norm == "l1" and self.version == "plus":
            warnings.warn("autoattack: the original defines version='plus' for Linf and L2 only; in L1 it runs its "
                          "attacks at the plus settings without the L1 schedule - check the figures", stacklevel=4)

    def identity(self) -> dict:
        """The settings that make a state file's verdicts this run's (not progress, resume or the
        file's own path)."""
        skip = {"progress", "resume", "state_path"}
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out["attacks"] = list(self.attacks or [])
        out["shard"] = None if self.shard is None else list(self.shard)
        return out


def checked_shard(shard) -> tuple[int, int]:
    """``(K, N)``: this run is shard K (from 0) of N, as two ints with 0 <= K < N."""
    if not (isinstance(shard, tuple | list) and len(shard) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in shard) and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (K, N) with 0 <= K < N, got {shard!r}")
    return int(shard[0]), int(shard[1])


def _custom_attacks(version: str, attacks) -> tuple[str, ...] | None:
    """The checked ``attacks`` of ``version="custom"`` (None for the other versions)."""
    if version != "custom":
        if attacks is not None:
            raise ValueError(f"attacks= lists the attacks of version='custom'; version={version!r} has its own")
        return None
    attacks = (attacks,) if isinstance(attacks, str) else tuple(attacks or ())
    unknown = [a for a in attacks if a not in ALL_ATTACKS]
    if not attacks or unknown or len(set(attacks)) != len(attacks):
        raise ValueError(f"attacks must list distinct names among {ALL_ATTACKS} for version='custom', "
                         f"got {list(attacks)}")
    return attacks
