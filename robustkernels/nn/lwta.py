"""Stochastic LWTA activations (Panousis, Chatzis & Theodoridis 2021) as modules."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops.lwta import lwta
from ..ops.lwta.batch_norm import batch_norm_lwta
from .conversion import functional_calls, report


class LWTA(nn.Module):
    """Drop-in replacement for ``nn.ReLU``: blocks of ``competitors`` units along ``dim`` sample
    a winner with the Gumbel-softmax relaxation at ``train_temperature`` in training and
    ``eval_temperature`` in evaluation (still sampling, as the paper's code).

    ``kl=True`` keeps the last input so that :meth:`kl` can return the KL divergence of the
    winner posterior ``softmax(h)`` per block from the uniform prior (the ELBO term).
    """

    def __init__(self, competitors: int = 2, train_temperature: float = 0.67, eval_temperature: float = 0.01,
                 dim: int = 1, hard: bool = False, kl: bool = False):
        super().__init__()
        if isinstance(competitors, bool) or not isinstance(competitors, int) or competitors < 2:
            raise ValueError(f"competitors must be an int >= 2, got {competitors!r}")
        for name, value in (("train_temperature", train_temperature), ("eval_temperature", eval_temperature)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a float > 0, got {value!r}")
        self.competitors, self.dim, self.hard, self.track_kl = competitors, dim, hard, kl
        self.train_temperature, self.eval_temperature = float(train_temperature), float(eval_temperature)
        self._last_input: torch.Tensor | None = None

    @property
    def temperature(self) -> float:
        return self.train_temperature if self.training else self.eval_temperature

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.track_kl:
            self._last_input = h
        return lwta(h, competitors=self.competitors, temperature=self.temperature, dim=self.dim, hard=self.hard)

    def kl(self) -> torch.Tensor:
        """KL(softmax(h) per block || uniform) summed over blocks, averaged over the batch."""
        if not self.track_kl or self._last_input is None:
            raise RuntimeError("LWTA.kl() needs kl=True and a forward pass first")
        h = self._last_input.float()
        dim = self.dim % h.dim()
        shape = list(h.shape)
        blocks = h.reshape(shape[:dim] + [shape[dim] // self.competitors, self.competitors] + shape[dim + 1:])
        log_q = torch.log_softmax(blocks, dim=dim + 1)
        kl = (log_q.exp() * (log_q + math.log(self.competitors))).sum()
        return kl / h.shape[0]

    def extra_repr(self) -> str:
        return (f"competitors={self.competitors}, train_temperature={self.train_temperature}, "
                f"eval_temperature={self.eval_temperature}, dim={self.dim}, hard={self.hard}")


class BatchNormLWTA(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` followed by :class:`LWTA` over the channels, fused
    (:func:`robustkernels.ops.batch_norm_lwta`): the pair keeps one activation-sized tensor for
    the backward instead of two. Parameters, buffers and ``state_dict`` keys are those of
    ``nn.BatchNorm2d``; the LWTA settings live in the parameter-free child ``lwta``.

    When ``lwta`` tracks its KL term (``kl=True``) or is replaced by another LWTA class, the pair
    runs unfused: ``lwta(batch_norm(x))``.
    """

    def __init__(self, num_features: int, competitors: int = 2, train_temperature: float = 0.67,
                 eval_temperature: float = 0.01, hard: bool = False, **batch_norm_kwargs):
        super().__init__(num_features, **batch_norm_kwargs)
        self.lwta = LWTA(competitors, train_temperature, eval_temperature, dim=1, hard=hard)
        if num_features % competitors:
            raise ValueError(f"competitors={competitors} must divide num_features={num_features}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self.lwta) is not LWTA or self.lwta.track_kl:
            return self.lwta(super().forward(x))
        self._check_input_dim(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep_running = not self.training or self.track_running_stats
        return batch_norm_lwta(x, self.weight, self.bias, self.running_mean if keep_running else None,
                               self.running_var if keep_running else None, training=batch_stats,
                               momentum=momentum, eps=self.eps, competitors=self.lwta.competitors,
                               temperature=self.lwta.temperature, hard=self.lwta.hard)


def convert_activations(model: nn.Module, *, competitors: int = 2, strict: bool = False, **kwargs) -> nn.Module:
    """Swap every ``nn.ReLU`` module of ``model`` for :class:`LWTA`, **in place**; returns ``model``.
    The layer before each ReLU must have a multiple of ``competitors`` channels.

    ReLUs called as functions in a ``forward`` (``F.relu``, ``torch.relu``, ``x.relu()``) cannot be
    swapped: they are listed in a ``UserWarning`` (a ``ValueError`` with ``strict=True``), as is
    a model without any ``nn.ReLU``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.ReLU):
        return LWTA(competitors, **kwargs)
    converted = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, LWTA(competitors, **kwargs))
                converted += 1
    report("convert_activations", converted, functional_calls(model, ("relu",)), "ReLU", strict)
    return model


def lwta_kl(model: nn.Module) -> torch.Tensor:
    """Sum of :meth:`LWTA.kl` over the LWTA layers of ``model`` that track it."""
    terms = [m.kl() for m in model.modules() if isinstance(m, LWTA) and m.track_kl]
    return torch.stack(terms).sum() if terms else torch.zeros(())
