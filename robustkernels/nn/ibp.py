"""Indian Buffet Process connection masks: the full Bayesian version of the Stochastic LWTA
networks (Panousis et al. 2019, 2021).

Each connection (j -> k) of a layer is kept by a binary utility ``z_jk`` with an IBP prior:
``z_jk ~ Bernoulli(pi_k)``, ``pi_k = prod_{i <= k} v_i``, ``v_i ~ Beta(alpha, 1)``
(stick-breaking over the output units). Variational posterior: ``q(v_k) = Kumaraswamy(a_k, b_k)``
(sampled by its inverse CDF) and ``q(z_jk) = Bernoulli(sigmoid(logit_jk))``, relaxed in training
by a binary concrete sample at temperature ``tau``. At test time a connection is kept when its
posterior probability exceeds ``threshold``. The KL terms are in closed form for ``v`` and
Monte Carlo (at the sampled ``pi``) for ``z``; :func:`elbo_loss` adds them to the data term.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .lwta import lwta_kl

EULER_GAMMA = 0.5772156649015329


def kumaraswamy_sample(a: torch.Tensor, b: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse CDF of Kumaraswamy(a, b): F(x) = 1 - (1 - x^a)^b, so x = (1 - (1 - u)^(1/b))^(1/a)."""
    return (1 - (1 - u).pow(1 / b)).pow(1 / a)


def kl_kumaraswamy_beta(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """KL(Kumaraswamy(a, b) || Beta(alpha, 1)), elementwise (Nalisnick & Smyth 2017, with beta = 1
    the infinite series vanishes)."""
    return ((a - alpha) / a * (-EULER_GAMMA - torch.digamma(b) - 1 / b) + torch.log(a * b) - math.log(alpha)
            - (b - 1) / b)


def kl_bernoulli(q: torch.Tensor, p: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    q, p = q.clamp(eps, 1 - eps), p.clamp(eps, 1 - eps)
    return q * (q.log() - p.log()) + (1 - q) * ((1 - q).log() - (1 - p).log())


def _inverse_softplus(x: float) -> float:
    return math.log(math.expm1(x))


class _IBPMask(nn.Module):
    """Shared parameters and sampling; ``connections`` is the mask shape, broadcast on the weight."""

    def _init_ibp(self, units: int, connections: tuple[int, ...], prior_alpha: float, temperature: float,
                  threshold: float, init_keep: float) -> None:
        for name, value, low, high in (
            ("prior_alpha", prior_alpha, 0, math.inf),
            ("temperature", temperature, 0, math.inf),
            ("threshold", threshold, 0, 1),
            ("init_keep", init_keep, 0, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
                raise ValueError(f"{name} must be in ({low}, {high}), got {value!r}")
        device = self.weight.device
        self.prior_alpha, self.temperature, self.threshold = float(prior_alpha), float(temperature), float(threshold)
        # q(v) starts near the prior mean alpha / (alpha + 1): Kumaraswamy(alpha, 1) has that mean
        self.raw_a = nn.Parameter(torch.full((units,), _inverse_softplus(prior_alpha), device=device))
        self.raw_b = nn.Parameter(torch.full((units,), _inverse_softplus(1.0), device=device))
        self.mask_logits = nn.Parameter(torch.full(connections, math.log(init_keep / (1 - init_keep)), device=device))
        self.register_buffer("last_kl", torch.zeros((), device=device), persistent=False)

    def keep_probability(self) -> torch.Tensor:
        return torch.sigmoid(self.mask_logits)

    def mask(self) -> torch.Tensor:
        """Training: a relaxed sample of z (and the KL of this sample in ``last_kl``).
        Evaluation: the deterministic mask ``keep_probability() > threshold``."""
        if not self.training:
            return (self.keep_probability() > self.threshold).to(self.weight.dtype)
        a, b = F.softplus(self.raw_a), F.softplus(self.raw_b)
        v = kumaraswamy_sample(a, b, torch.rand_like(a).clamp(1e-6, 1 - 1e-6))
        pi = torch.cumprod(v, dim=0).view(-1, *[1] * (self.mask_logits.dim() - 1))
        u = torch.rand_like(self.mask_logits).clamp(1e-6, 1 - 1e-6)
        z = torch.sigmoid((self.mask_logits + u.log() - (1 - u).log()) / self.temperature)
        self.last_kl = (
            kl_kumaraswamy_beta(a, b, self.prior_alpha).sum() + kl_bernoulli(self.keep_probability(), pi).sum()
        )
        return z.to(self.weight.dtype)


class IBPLinear(_IBPMask, nn.Linear):
    """``nn.Linear`` whose connections carry IBP utility masks (one per weight entry)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, prior_alpha: float = 5.0,
                 temperature: float = 0.67, threshold: float = 1e-3, init_keep: float = 0.95, **kwargs):
        super().__init__(in_features, out_features, bias, **kwargs)
        self._init_ibp(out_features, (out_features, in_features), prior_alpha, temperature, threshold, init_keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask(), self.bias)


class IBPConv2d(_IBPMask, nn.Conv2d):
    """``nn.Conv2d`` whose (output, input) channel connections carry IBP utility masks."""

    def __init__(self, *args, prior_alpha: float = 5.0, temperature: float = 0.67, threshold: float = 1e-3,
                 init_keep: float = 0.95, **kwargs):
        super().__init__(*args, **kwargs)
        out_channels, in_per_group = self.weight.shape[:2]
        self._init_ibp(out_channels, (out_channels, in_per_group, 1, 1), prior_alpha, temperature, threshold,
                       init_keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask(), self.bias)


def ibp_kl(model: nn.Module) -> torch.Tensor:
    """Sum of the KL terms of the IBP layers' last training forward."""
    terms = [m.last_kl for m in model.modules() if isinstance(m, _IBPMask)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def elbo_loss(logits: torch.Tensor, y: torch.Tensor, model: nn.Module, dataset_size: int,
              kl_weight: float = 1.0) -> torch.Tensor:
    """Negative ELBO per example: cross-entropy + kl_weight * (IBP + LWTA KL terms) / dataset_size."""
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, int) or dataset_size < 1:
        raise ValueError(f"dataset_size must be an int >= 1, got {dataset_size!r}")
    kl = ibp_kl(model).to(logits.device) + lwta_kl(model).to(logits.device)
    return F.cross_entropy(logits, y) + kl_weight * kl / dataset_size
