"""ATTA (Zheng et al. 2020): adversarial perturbations accumulated across epochs. Each training
sample keeps its perturbation in a buffer; every epoch the attack takes ``steps`` (k = 1) steps
from the stored point instead of starting afresh, and writes the result back. With the trainer's
crop-and-flip augmentation the buffer is kept in the zero-padded frame, so the perturbation
follows its sample: the batch's crop and flip are applied to it on the way in and inverted on
the way out (pixels outside this epoch's crop keep their stored values). Every ``reset_every``
epochs the buffer restarts from ``0.001 N(0, 1)``, drawn in one pass from the counter-based
stream keyed by (seed, reset): the same in every process.
``loss="ce"`` (ATTA-k on cross-entropy) or ``"trades"`` (TRADES' objective, ``beta``).
The step size defaults to eps / 2 (4/255 at 8/255)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from ...common import non_negative, positive_int
from ...ops.pgd import pgd_step, project
from ...ops.philox import philox_normal
from ..losses import trades_loss
from ..seeds import mix_seed
from .base import BatchResult, Method, cross_entropy, soft_or_hard, summed_cross_entropy
from .trades import kl_ascent

LOSSES = ("ce", "trades")


class ATTA(Method):
    name = "atta"
    single_step = True

    def __init__(self, *, reset_every: int = 10, loss: str = "ce", beta: float = 6.0, **kwargs):
        kwargs.setdefault("steps", 1)
        alpha_given = kwargs.get("alpha") is not None
        super().__init__(**kwargs)
        if not alpha_given:
            self.target_alpha = self.target_eps / 2
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.reset_every, self.loss = positive_int("reset_every", reset_every), loss
        self.beta = non_negative("beta", beta)
        self.buffer: torch.Tensor | None = None  # [N, C, H + 2p, W + 2p] perturbations, padded frame
        self.touched: torch.Tensor | None = None  # [N] bool: written by this process since the last sync
        self.resets = 0

    def start_epoch(self, epoch, epochs):
        self.resets = epoch // self.reset_every
        if self.buffer is not None and epoch % self.reset_every == 0:
            self.reset()

    def reset(self) -> None:
        """Every stored perturbation back to ``0.001 N(0, 1)`` (the same draws in every process)."""
        noise = philox_normal(self.buffer.numel(), mix_seed(self.seed, self.resets, 11), device=self.buffer.device)
        self.buffer.copy_(0.001 * noise.view_as(self.buffer))

    def stored(self, x: torch.Tensor, ctx) -> torch.Tensor:
        """The batch's stored perturbations in x's frame (crop and flip applied), [n, C, H, W]."""
        pad = ctx.augment.padding if ctx.augment is not None else 0
        if self.buffer is None:
            n, (c, h, w) = self.dataset_size, x.shape[1:]
            self.buffer = torch.empty(n, c, h + 2 * pad, w + 2 * pad, device=x.device)
            self.touched = torch.zeros(n, dtype=torch.bool, device=x.device)
            self.reset()
        padded = self.buffer[ctx.index.to(x.device)]
        return ctx.augment.from_padded(padded) if ctx.augment is not None else padded

    def write_back(self, delta: torch.Tensor, ctx) -> None:
        index = ctx.index.to(delta.device)
        padded = self.buffer[index]
        if ctx.augment is not None:
            ctx.augment.write_back(padded, delta)
        else:
            padded.copy_(delta)
        self.buffer[index] = padded
        self.touched[index] = True

    def perturbed(self, x: torch.Tensor, y: torch.Tensor, ctx) -> torch.Tensor:
        start = project(x + self.stored(x, ctx).to(x.dtype), x, eps=self.eps, norm=self.norm, bounds=self.bounds)
        if self.loss == "trades":
            x_adv = kl_ascent(self, x, start, self.steps)
        else:
            x_adv = start
            for _ in range(self.steps):
                _, grad = self.input_gradient(x_adv, summed_cross_entropy(y))
                x_adv = pgd_step(x_adv, x, grad, step=self.alpha, eps=self.eps, norm=self.norm, bounds=self.bounds)
        self.write_back((x_adv - x).float(), ctx)
        return x_adv.detach()

    def batch_loss(self, model, x, y, ctx):
        if ctx.index is None:
            raise ValueError("method atta keeps a perturbation per training sample: it needs the sample "
                             "indices, their positions in the training set (RobustLoss(...)(x, y, index=...), or fit)")
        with ctx.autocast():
            x_adv = self.run_attack(lambda x, y: self.perturbed(x, y, ctx), x, y)
            logits_adv = self.forward(model, x_adv)
            logits_clean = self.forward(model, x) if self.loss == "trades" else None
        if self.loss == "trades":
            loss = trades_loss(logits_clean.float(), logits_adv.float(), soft_or_hard(y, ctx), self.beta)
        else:
            loss = cross_entropy(logits_adv, y, ctx.targets)
        return BatchResult(loss + self.regularizer(), logits_adv)

    def synchronize(self):
        """Across processes each sample was written by at most one since the last sync: take it from there."""
        if self.buffer is None or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        mask = self.touched.float()
        dist.all_reduce(mask)
        values = self.buffer * self.touched.view(-1, 1, 1, 1)
        dist.all_reduce(values)
        written = mask > 0
        self.buffer[written] = values[written]
        self.touched.zero_()

    def state_dict(self):
        return {"buffer": self.buffer, "resets": self.resets}

    def load_state_dict(self, state):
        self.buffer, self.resets = state.get("buffer"), state.get("resets", 0)
        if self.buffer is not None:
            self.touched = torch.zeros(len(self.buffer), dtype=torch.bool, device=self.buffer.device)
