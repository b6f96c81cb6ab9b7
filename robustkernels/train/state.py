"""What a training run carries between its steps: the running sums of an epoch and the run's
components and position (for checkpoints and resume)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .averaging import WeightAverage
from .distributed import all_sum
from .methods import Method, StepContext


@dataclass
class EpochSums:
    """Running sums over an epoch's batches on this process (fp16 steps the scaler skipped excluded)."""

    loss: float = 0.0  # sum of batch loss x batch size
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    def add(self, loss: float, correct: int, seen: int, seconds: float) -> None:
        self.loss += loss * seen
        self.correct += correct
        self.seen += seen
        self.seconds += seconds

    def over_ranks(self, device: torch.device) -> EpochSums:
        """The sums over every process (identity on one)."""
        return EpochSums(*all_sum([self.loss, self.correct, self.seen, self.seconds], device))

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state) -> EpochSums:
        if isinstance(state, (list, tuple)):  # checkpoints before the sums were named
            return cls(*state)
        return cls(**state)


@dataclass
class Run:
    """The components :func:`~robustkernels.train.trainer.fit` builds and its position in training."""

    model: nn.Module  # the caller's module (its state is checkpointed)
    net: nn.Module  # compiled or not; attacks and validation run on it
    trained: nn.Module  # what the optimizer step runs: ``net`` or its DDP wrapper
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: object
    ctx: StepContext
    device: torch.device
    rank: int
    world: int
    batches_per_epoch: int
    fingerprint: dict
    epoch: int = 0
    batch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    sums: EpochSums = field(default_factory=EpochSums)
    classes: int | None = None  # the model's outputs, once an augmentation needed them
    best: dict | None = None  # keep="best-robust": {"epoch", "score", "model"} of the best validation so far
    average: WeightAverage | None = None  # weight_average: the EMA of the weights (validated and kept)
    kept_best: bool = False  # keep="best-robust" put the best weights into ``model`` at the end

    @property
    def evaluated(self) -> nn.Module:
        """The model validation and the final figures read: the average if there is one."""
        return self.average.model if self.average is not None else self.net
