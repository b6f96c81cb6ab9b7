"""NuAT (Sriramanan et al., NeurIPS 2021, "Towards Efficient and Effective Adversarial Training"):
single-step training with a nuclear-norm regulariser on the batch's logits,

    loss = CE(f(x), y) + lambda * ||f(x_adv) - f(x)||_* / B

(``||.||_*`` the nuclear norm of the [B, K] matrix of logit differences). The attack starts from
Bernoulli noise ``x + (eps/2) * sign(0.5 - U)`` and takes one step of size eps (projected onto
the eps-ball) along the sign of the gradient of ``CE(f(x'), y) + lambda * ||f(x) - f(x')||_* / B``
on every second batch of an epoch (the 2nd, 4th, ...), of plain CE on the others, in eval mode,
``f(x)`` being the clean logits of the training forward. lambda ramps linearly over the epochs:
epoch e (0-based) of E trains with ``nuc_max * min(1, e / (ramp_share * E))``.

Defaults follow the FastAT Benchmark (Pan & Yao 2026, ``fast_at/nu_at.py`` and
``configs/cifar10/nu_at.yaml``: eps 8/255, ``nuc_max`` 4.0 ramped over all 100 epochs, Bernoulli
magnitude eps/2, step eps). The authors' script (val-iisc/NuAT, ``NuAT_cifar10.py``) ramps over the
first ``E - 10`` epochs (``ramp_share=0.9`` at 100 epochs). Soft training targets (label smoothing,
mixup) enter only the clean CE; the attack takes the labels. Linf only."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ...common import non_negative
from ...ops import draw_seed
from ...ops.pgd import pgd_step, project
from ...ops.philox import philox_uniform
from .base import BatchResult, Method, cross_entropy


def share_in_unit(name: str, value) -> float:
    """``value`` in (0, 1] -> float: a share of the training run."""
    value = non_negative(name, value)
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


class SingleStep(Method):
    """A method with one input gradient per batch, whose step is ``step_factor * eps`` unless the
    caller gives ``alpha``; ``steps`` defaults to 1. Linf only."""

    single_step = True

    def __init__(self, *, step_factor: float, **kwargs):
        kwargs.setdefault("steps", 1)
        alpha_given = kwargs.get("alpha") is not None
        super().__init__(**kwargs)
        if self.norm != "linf":
            raise ValueError(f"method {self.name} is defined for norm='linf'")
        step_factor = non_negative("step_factor", step_factor)
        if not alpha_given:
            self.target_alpha = step_factor * self.target_eps


def bernoulli_start(x: torch.Tensor, magnitude: float, bounds, generator: torch.Generator) -> torch.Tensor:
    """``clip_bounds(x + magnitude * sign(0.5 - u))``, u uniform from the shared Philox stream keyed
    by one draw of ``generator``: each pixel moved by +-magnitude with probability 1/2."""
    u = philox_uniform(x.numel(), draw_seed(generator), device=x.device).view(x.shape)
    start = x + magnitude * torch.sign(0.5 - u).to(x.dtype)
    return project(start, x, eps=magnitude, norm="linf", bounds=bounds)


def nuclear_norm(matrix: torch.Tensor) -> torch.Tensor:
    """The sum of the singular values of a [B, K] matrix (in float32 at least)."""
    return torch.linalg.matrix_norm(matrix.float(), ord="nuc")


class AlternatelyGuided(SingleStep):
    """What NuAT and GAT share: one signed-gradient step of size alpha from a Bernoulli start
    (magnitude ``noise_factor * eps``) in eval mode; on every second batch of an epoch the attack
    also maximises ``weight * guidance(clean logits, logits)``.

    Args:
        noise_factor: Bernoulli start magnitude in units of eps (0.5, both benchmark configs).
        step_factor: attack step in units of eps (1.0); an explicit ``alpha`` wins.
        random_start: False starts the attack at x itself.
        other keyword arguments: as for :class:`Method`.

    Running state: the number of batches of the current epoch so far (which batches attack with the
    regulariser), in :meth:`state_dict` for an exact mid-epoch resume.
    """

    def __init__(self, *, noise_factor: float = 0.5, step_factor: float = 1.0, **kwargs):
        super().__init__(step_factor=step_factor, **kwargs)
        self.noise_factor = non_negative("noise_factor", noise_factor)
        self.weight = 0.0  # lambda in force
        self.batches = 0  # batches of this epoch so far: odd ones attack with the regulariser

    def guidance(self, clean: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The term the guided attack adds (summed over the batch), from [B, K] clean and current logits."""
        raise NotImplementedError

    def start_epoch(self, epoch, epochs):
        self.batches = 0

    def guided(self) -> bool:
        """Whether this batch's attack maximises the regulariser too (every second batch)."""
        return self.batches % 2 == 1

    def start(self, x: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return x.detach()
        return bernoulli_start(x, self.noise_factor * self.eps, self.bounds, self.generator)

    def perturbed(self, x: torch.Tensor, y: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
        """One signed-gradient step of size alpha from the Bernoulli start, in the eps-ball."""
        clean = logits_clean.detach().float()

        def loss(logits):  # the authors' batch-mean loss times B: the same sign
            ce = F.cross_entropy(logits, y, reduction="sum")
            return ce + self.weight * self.guidance(clean, logits) if self.guided() else ce

        start = self.start(x)
        _, grad = self.input_gradient(start, loss)
        return pgd_step(start, x, grad, step=self.alpha, eps=self.eps, norm="linf", bounds=self.bounds)

    def clean_and_adversarial(self, model, x, y, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's clean and adversarial training logits; counts the batch."""
        with ctx.autocast():
            logits_clean = self.forward(model, x)
            x_adv = self.run_attack(lambda x, y: self.perturbed(x, y, logits_clean), x, y)
            logits_adv = self.forward(model, x_adv)
        self.batches += 1
        return logits_clean, logits_adv

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        self.batches = int(state.get("batches", 0))


class NuAT(AlternatelyGuided):
    """Nuclear-norm adversarial training (Sriramanan et al., NeurIPS 2021).

    Args:
        nuc_max: the regulariser's weight at the end of the ramp (benchmark: 4.0).
        ramp_share: share of the run over which the weight ramps from 0 (1.0: the benchmark's
            ``nuc_reg += nuc_max / total_epoch`` after every epoch; 0.9: the authors' script).
        other keyword arguments and running state: as for :class:`AlternatelyGuided`.
    """

    name = "nuat"

    def __init__(self, *, nuc_max: float = 4.0, ramp_share: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.nuc_max = non_negative("nuc_max", nuc_max)
        self.ramp_share = share_in_unit("ramp_share", ramp_share)

    def set_progress(self, epochs_done, epochs):
        super().set_progress(epochs_done, epochs)
        self.weight = self.nuc_max * min(1.0, int(epochs_done) / (self.ramp_share * epochs))

    def guided(self) -> bool:
        return super().guided() and self.weight > 0

    def guidance(self, clean, logits):
        return nuclear_norm(clean - logits)

    def batch_loss(self, model, x, y, ctx):
        logits_clean, logits_adv = self.clean_and_adversarial(model, x, y, ctx)
        loss = cross_entropy(logits_clean, y, ctx.targets)
        if self.weight > 0:
            loss = loss + self.weight * nuclear_norm(logits_adv.float() - logits_clean.float()) / len(x)
        return BatchResult(loss + self.regularizer(), logits_adv)

    def epoch_metrics(self):
        return {**super().epoch_metrics(), "nuc_weight": self.weight}
