"""The baselines: the formulations users run and compare us with - torchattacks' PGD, the LWTA
and PNI papers' own code - written out in eager PyTorch (each ``ops/<op>/reference.py`` holds
our op's exact restatement; these are the other side of every speed ratio)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..nn.lwta import LWTA
from ..nn.pni import PNIConv2d, PNILinear


def torchattacks_step(x_adv, x_nat, grad, step, eps, norm="linf"):
    """The PGD update as torchattacks writes it (PGD / PGDL2)."""
    if norm == "linf":
        x_adv = x_adv + step * grad.sign()
        delta = torch.clamp(x_adv - x_nat, min=-eps, max=eps)
    else:
        g_norm = grad.flatten(1).norm(dim=1).view(-1, *[1] * (grad.dim() - 1)) + 1e-10
        delta = x_adv + step * grad / g_norm - x_nat
        d_norm = delta.flatten(1).norm(dim=1).view(-1, *[1] * (grad.dim() - 1))
        delta = delta * torch.clamp(eps / d_norm, max=1.0)
    return torch.clamp(x_nat + delta, 0, 1)


def torchattacks_pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=10):
    """PGD-k written with eager ops (torchattacks-style), the model as it is."""
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = torchattacks_step(x_adv.detach(), x, grad, alpha, eps)
    return x_adv


def official_lwta(h, competitors=2, temperature=0.67):
    """The LWTA reference code's formulation: Gumbel noise, tempered softmax, product."""
    shape = h.shape
    logits = h.view(shape[0], shape[1] // competitors, competitors, *shape[2:])
    u = torch.rand_like(logits)
    gumbel = -torch.log(-torch.log(u + 1e-8) + 1e-8)
    xi = torch.softmax((logits + gumbel) / temperature, dim=2)
    return (logits * xi).view(shape)


def official_noisy_weight(w, alpha, eta=None):
    """The PNI authors' formulation (elliothe/CVPR_2019_PNI, ``noise_layer.py``): the std (a host
    sync, ``.item()``) and the noise drawn without gradient, then ``w + alpha * noise``; the noise
    is kept for the backward. ``eta``: standard-normal draws to use instead of fresh ones (tests)."""
    if alpha.numel() > 1:  # per output channel, shaped [C, 1, 1, 1] as in the paper's code
        alpha = alpha.view(-1, *[1] * (w.dim() - 1))
    with torch.no_grad():
        std = w.std().item()
        noise = w.clone().normal_(0, std) if eta is None else eta.to(w.dtype) * std
    return w + alpha * noise


class EagerLWTA(LWTA):
    def forward(self, h):
        return official_lwta(h, self.competitors, self.temperature)


class _EagerPNI:
    def noisy_weight(self):
        return official_noisy_weight(self.weight, self.alpha) if self.noise_enabled else self.weight


class EagerPNIConv2d(_EagerPNI, PNIConv2d):
    pass


class EagerPNILinear(_EagerPNI, PNILinear):
    pass


def with_official_layers(model: nn.Module) -> nn.Module:
    """The same model (same parameters) with every fused LWTA / PNI layer on the eager formulation."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LWTA):
                setattr(parent, name, EagerLWTA(child.competitors, child.train_temperature, child.eval_temperature))
            elif isinstance(child, (PNIConv2d, PNILinear)):
                child.__class__ = EagerPNIConv2d if isinstance(child, PNIConv2d) else EagerPNILinear
    return model
