"""What one pass of :func:`~robustkernels.eval.evaluate` keeps while the data stream by: each
batch's :class:`BatchValues` (per-sample verdicts, [R, n]: R evaluation passes; the figures
behind the report's columns), summed by :class:`PassTally`; and the :class:`Lead`, the first
samples (the masking checks run on them; the examples come from them) - nothing else of the
data. A batch's values are plain numbers, so a shard can store them and a merge add them up as
the unsharded pass would have."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .values import AttackResult, Stat


@dataclass
class BatchValues:
    """One batch's outcome: ``labels`` [n]; ``clean`` [R, n] correct per pass; ``confidence``
    [n] max softmax (float64); per attack ``robust`` [R, n] (AutoAttack's [1, n]),
    ``confidence_adv`` [n], ``moved`` (the perturbation norms of the samples it fooled) and
    ``seconds``; ``certified`` [n] when a certificate was asked for."""

    labels: torch.Tensor
    clean: torch.Tensor
    confidence: torch.Tensor
    clean_seconds: float
    robust: dict = field(default_factory=dict)
    confidence_adv: dict = field(default_factory=dict)
    moved: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    certified: list | None = None

    def to_json(self) -> dict:
        """JSON values (lists, numbers) that :meth:`from_json` reads back exactly."""
        return {"labels": self.labels.tolist(), "clean": self.clean.tolist(), "confidence": self.confidence.tolist(),
                "clean_seconds": self.clean_seconds, "robust": {k: v.tolist() for k, v in self.robust.items()},
                "confidence_adv": {k: v.tolist() for k, v in self.confidence_adv.items()},
                "moved": {k: v.tolist() for k, v in self.moved.items()}, "seconds": dict(self.seconds),
                "certified": self.certified}

    @classmethod
    def from_json(cls, data: dict) -> BatchValues:
        def f64(v):
            return torch.tensor(v, dtype=torch.float64)

        return cls(torch.tensor(data["labels"], dtype=torch.int64), torch.tensor(data["clean"], dtype=torch.bool),
                   f64(data["confidence"]), float(data["clean_seconds"]),
                   {k: torch.tensor(v, dtype=torch.bool) for k, v in data["robust"].items()},
                   {k: f64(v) for k, v in data["confidence_adv"].items()},
                   {k: f64(v) for k, v in data["moved"].items()},
                   {k: float(v) for k, v in data["seconds"].items()}, data["certified"])


def values_problem(data, size: int, passes: int, attacks) -> str | None:
    """What is wrong with a stored batch of ``size`` samples (``passes`` evaluation passes, the
    crafted ``attacks``), or None: every list the right length, flags bools, numbers numbers."""
    def flags(v, rows):
        return isinstance(v, list) and len(v) == rows and all(
            isinstance(r, list) and len(r) == size and all(isinstance(b, bool) for b in r) for r in v)

    def numbers(v, length=None):
        return isinstance(v, list) and (length is None or len(v) == length) and all(
            isinstance(n, (int, float)) and not isinstance(n, bool) for n in v)

    if not isinstance(data, dict):
        return "its values are not a mapping"
    keys = ("robust", "confidence_adv", "moved", "seconds")
    if not (numbers(data.get("labels"), size) and flags(data.get("clean"), passes)
            and numbers(data.get("confidence"), size) and all(isinstance(data.get(k), dict) for k in keys)):
        return f"its labels, clean verdicts or confidences are not one per sample ({size})"
    robust = data["robust"]
    if sorted(set(robust) - {"autoattack"}) != sorted(attacks) or any(
            not flags(robust[k], 1 if k == "autoattack" else passes) for k in robust):
        return f"its verdicts are not one per sample and pass for the attacks {sorted(attacks)}"
    if not all(numbers(data["confidence_adv"].get(k), size) and numbers(data["moved"].get(k)) for k in attacks):
        return "its per-attack confidences or norms are malformed"
    certified = data.get("certified")
    if certified is not None and not (isinstance(certified, list) and len(certified) == size
                                      and all(isinstance(b, bool) for b in certified)):
        return "its certified flags are not one per sample"
    return None


class PassTally:
    """The :class:`BatchValues` of one evaluation pass, in batch order, and the report's figures
    from them."""

    def __init__(self, names: list[str]):
        self.names = names
        self.clean, self.confidence, self.labels, self.certified = [], [], [], []
        self.robust = {n: [] for n in names}  # name -> [R, n] per batch (AutoAttack: [1, n])
        self.confidence_adv, self.moved = {n: [] for n in names}, {n: [] for n in names}
        self.seconds, self.clean_seconds = dict.fromkeys(names, 0.0), 0.0

    @property
    def n(self) -> int:
        return sum(len(y) for y in self.labels)

    def add(self, v: BatchValues) -> None:
        self.labels.append(v.labels)
        self.clean.append(v.clean)
        self.confidence.append(v.confidence)
        self.clean_seconds += v.clean_seconds
        for name, robust in v.robust.items():
            self.robust.setdefault(name, []).append(robust)
        for name in self.names:
            self.confidence_adv[name].append(v.confidence_adv[name])
            self.moved[name].append(v.moved[name])
            self.seconds[name] += v.seconds[name]
        self.certified += v.certified or []

    def clean_correct(self) -> torch.Tensor:
        return torch.cat(self.clean, dim=1)  # [R, N]

    def masks(self) -> dict[str, torch.Tensor]:
        """name -> robust [R, N] (AutoAttack's [1, N] expanded to R passes)."""
        reps = self.clean[0].shape[0]
        return {n: torch.cat(v, dim=1).expand(reps, -1) for n, v in self.robust.items()}

    def result(self, name: str, masks: dict) -> AttackResult:
        """The report's row for attack ``name``."""
        robust, clean = masks[name], self.clean_correct()
        fooled = (clean & ~robust).sum(dim=1).double() / clean.sum(dim=1).clamp_min(1)
        return AttackResult(robust_accuracy=Stat.of(robust.double().mean(dim=1)), success_rate=float(fooled.mean()),
                            confidence_adv=float(torch.cat(self.confidence_adv[name]).mean()),
                            perturbation_norm=float(torch.cat(self.moved[name]).mean().nan_to_num(0.0)),
                            seconds_per_image=self.seconds[name] / self.n)


class Lead:
    """The first samples of the data: up to ``keep`` inputs whole (the masking checks run on
    them), the first ``show`` adversarial inputs of each attack (the examples), and their
    batches' values (the checks compare with the verdicts)."""

    def __init__(self, names: list[str], keep: int, show: int):
        self.names, self.keep, self.show = names, keep, show
        self.xs, self.values, self.shown = [], [], {n: [] for n in names}

    @property
    def size(self) -> int:
        return max(self.keep, self.show)

    def wants(self) -> bool:
        """Whether the next batch still falls in the lead."""
        return sum(len(v.labels) for v in self.values) < self.size or not self.values

    def add(self, x: torch.Tensor, adversarial: dict, values: BatchValues) -> None:
        kept = sum(len(v) for v in self.xs)
        self.xs.append(x[: max(self.keep - kept, 0)].cpu())
        for name in self.names:
            shown = sum(len(v) for v in self.shown[name])
            self.shown[name].append(adversarial[name][: max(self.show - shown, 0)].cpu())
        self.values.append(values)

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """x [k, ...], y [k], clean [k] (the first pass) and each attack's robust [k] (first pass;
        not AutoAttack's) of the first ``keep`` samples."""
        x = torch.cat(self.xs)
        k = len(x)
        y = torch.cat([v.labels for v in self.values])[:k]
        clean = torch.cat([v.clean for v in self.values], dim=1)[0, :k]
        subset = {n: torch.cat([v.robust[n] for v in self.values], dim=1)[0, :k] for n in self.names}
        return x, y, clean, subset

    def labels(self, k: int) -> torch.Tensor:
        return torch.cat([v.labels for v in self.values])[:k]

    def shown_inputs(self, name: str) -> torch.Tensor:
        return torch.cat(self.shown[name])
