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
from ...ops.pgd import pgd_step
from .base import BatchResult, Method, cross_entropy
from .nuat import bernoulli_start, share_in_unit, single_step_alpha


def softmax_distance(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """[B] squared L2 distances between the softmax outputs of two [B, K] logit batches."""
    return (F.softmax(logits_a.float(), dim=1) - F.softmax(logits_b.float(), dim=1)).pow(2).sum(1)


class GAT(Method):
    """Guided adversarial training (Sriramanan et al., NeurIPS 2020).

    Args:
        l2_reg: the regulariser's weight (benchmark and authors: 10).
        mul: factor on ``l2_reg`` late in training (4).
        mul_from: share of the run from which the factor applies (0.86: the epoch after 85 of 100).
        noise_factor: Bernoulli start magnitude in units of eps (0.5).
        step_factor: attack step in units of eps (1.0); an explicit ``alpha`` wins.
        random_start: False starts the attack at x itself.
        other keyword arguments: as for :class:`Method`.

    Running state: the number of batches of the current epoch so far (which batches attack with the
    regulariser), in :meth:`state_dict` for an exact mid-epoch resume.
    """

    name = "gat"
    single_step = True

    def __init__(self, *, l2_reg: float = 10.0, mul: float = 4.0, mul_from: float = 0.86, noise_factor: float = 0.5,
                 step_factor: float = 1.0, **kwargs):
        kwargs.setdefault("steps", 1)
        alpha_given = kwargs.get("alpha") is not None
        super().__init__(**kwargs)
        single_step_alpha(self, step_factor, alpha_given)
        self.l2_reg = non_negative("l2_reg", l2_reg)
        self.mul = non_negative("mul", mul)
        self.mul_from = share_in_unit("mul_from", mul_from)
        self.noise_factor = non_negative("noise_factor", noise_factor)
        self.weight = self.l2_reg  # lambda in force
        self.batches = 0  # batches of this epoch so far: odd ones attack with the regulariser

    def set_progress(self, epochs_done, epochs):
        super().set_progress(epochs_done, epochs)
        late = int(epochs_done) / epochs >= self.mul_from  # changes at an epoch boundary
        self.weight = self.l2_reg * (self.mul if late else 1.0)

    def start_epoch(self, epoch, epochs):
        self.batches = 0

    def guided(self) -> bool:
        """Whether this batch's attack maximises the regulariser too (every second batch)."""
        return self.batches % 2 == 1

    def perturbed(self, x: torch.Tensor, y: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
        """One signed-gradient step of size alpha from the Bernoulli start, in the eps-ball."""
        clean = logits_clean.detach().float()

        def loss(logits):  # the authors' batch-mean loss times B: the same sign
            ce = F.cross_entropy(logits, y, reduction="sum")
            return ce + self.weight * softmax_distance(clean, logits).sum() if self.guided() else ce

        start = bernoulli_start(x, self.noise_factor * self.eps, self.bounds, self.generator) \
            if self.random_start else x.detach()
        _, grad = self.input_gradient(start, loss)
        return pgd_step(start, x, grad, step=self.alpha, eps=self.eps, norm="linf", bounds=self.bounds)

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            logits_clean = self.forward(model, x)
            x_adv = self.run_attack(lambda x, y: self.perturbed(x, y, logits_clean), x, y)
            logits_adv = self.forward(model, x_adv)
        self.batches += 1
        loss = cross_entropy(logits_clean, y, ctx.targets) + self.weight * softmax_distance(logits_clean,
                                                                                            logits_adv).mean()
        return BatchResult(loss + self.regularizer(), logits_adv)

    def epoch_metrics(self):
        return {**super().epoch_metrics(), "l2_weight": self.weight}

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        self.batches = int(state.get("batches", 0))
