"""GAT, Guided Adversarial Training (Sriramanan et al., NeurIPS 2020, "Guided Adversarial Attack
for Evaluating and Enhancing Adversarial Defenses"): single-step training with a squared-L2
regulariser on the softmax outputs,

    loss = CE(f(x), y) + lambda * mean_i ||softmax f(x_i) - softmax f(x_adv_i)||^2.

The attack starts from Bernoulli noise ``x + (eps/2) * sign(0.5 - U)`` and takes one step of size
eps (projected onto the eps-ball) along the sign of the gradient of
``CE(f(x'), y) + lambda * mean_i ||softmax f(x_i) - softmax f(x'_i)||^2`` on every second batch of
an epoch (the 2nd, 4th, ...), of plain CE on the others, in eval mode, ``softmax f(x)`` coming
from the clean training forward. lambda is ``l2_reg``, times ``mul`` from epoch
``mul_from * E`` on (0-based epochs; epoch 86 of 100).

Defaults follow the FastAT Benchmark (Pan & Yao 2026, ``fast_at/gat.py`` and
``configs/cifar10/gat.yaml``: eps 8/255, ``l2_reg`` 10, times 4 after epoch 85 of 100) and the
authors' script (val-iisc/GAMA-GAT, ``CIFAR10/GAT_cifar10.py``: ``-l2_reg 10 -mul 4``, Bernoulli
magnitude 4/255, step 8/255). On the batches without guidance the attack maximises CE of the
logits, as in the authors' script (the benchmark's code takes CE of the softmax there). Soft
training targets (label smoothing, mixup) enter only the clean CE; the attack takes the labels.
Linf only."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ...common import non_negative
from .base import BatchResult, cross_entropy
from .nuat import AlternatelyGuided, share_in_unit


def softmax_distance(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """[B] squared L2 distances between the softmax outputs of two [B, K] logit batches."""
    return (F.softmax(logits_a.float(), dim=1) - F.softmax(logits_b.float(), dim=1)).pow(2).sum(1)


class GAT(AlternatelyGuided):
    """Guided adversarial training (Sriramanan et al., NeurIPS 2020).

    Args:
        l2_reg: the regulariser's weight (benchmark and authors: 10).
        mul: factor on ``l2_reg`` late in training (4).
        mul_from: share of the run from which the factor applies (0.86: the epoch after 85 of 100).
        other keyword arguments and running state: as for :class:`AlternatelyGuided`.
    """

    name = "gat"

    def __init__(self, *, l2_reg: float = 10.0, mul: float = 4.0, mul_from: float = 0.86, **kwargs):
        super().__init__(**kwargs)
        self.l2_reg = non_negative("l2_reg", l2_reg)
        self.mul = non_negative("mul", mul)
        self.mul_from = share_in_unit("mul_from", mul_from)
        self.weight = self.l2_reg  # lambda in force

    def set_progress(self, epochs_done, epochs):
        super().set_progress(epochs_done, epochs)
        late = int(epochs_done) / epochs >= self.mul_from  # changes at an epoch boundary
        self.weight = self.l2_reg * (self.mul if late else 1.0)

    def guidance(self, clean, logits):
        return softmax_distance(clean, logits).sum()

    def batch_loss(self, model, x, y, ctx):
        logits_clean, logits_adv = self.clean_and_adversarial(model, x, y, ctx)
        loss = cross_entropy(logits_clean, y, ctx.targets) + self.weight * softmax_distance(logits_clean,
                                                                                            logits_adv).mean()
        return BatchResult(loss + self.regularizer(), logits_adv)

    def epoch_metrics(self):
        return {**super().epoch_metrics(), "l2_weight": self.weight}
