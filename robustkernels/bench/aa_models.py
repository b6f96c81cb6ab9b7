"""Models for the AutoAttack comparison, trained on the real data files in seconds: a PGD-AT
CNN on MNIST (eps 0.3) or CIFAR-10 (eps 8/255), and the same CNN with Stochastic LWTA. Shared by
``robustkernels bench --ops autoattack`` and the peer-agreement tests."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..attacks import PGD
from ..data import load_dataset
from ..models import small_cnn
from ..nn import convert_activations
from ..threat import default_step

EPS = {"mnist": 0.3, "cifar10": 8 / 255}
SHAPES = {"mnist": (1, 28), "cifar10": (3, 32)}


def train_pgd_at(dataset: str, data_dir: str, *, samples: int = 6000, epochs: int = 3, steps: int = 5,
                 lwta: bool = False, seed: int = 0, factory=None) -> torch.nn.Module:
    """A small CNN (width 32; or ``factory(channels, side)``'s model) trained with PGD-``steps``
    AT (Adam 1e-3, batch 128) on the first ``samples`` training images, eps ramped linearly over
    the first epoch (short runs need the ramp at MNIST's eps 0.3). Returns the model in eval mode.
    Deterministic given ``seed``."""
    (x, y), _ = load_dataset(dataset, data_dir)
    x, y = x[:samples], y[:samples]
    channels, side = SHAPES[dataset]
    rng = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        build = factory or (lambda c, s: small_cnn(in_channels=c, image_size=s, width=32))
        model = build(channels, side)
        if lwta:
            convert_activations(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches_per_epoch = (len(y) + 127) // 128
        generator = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            for i, batch in enumerate(torch.randperm(len(y), generator=generator).split(128)):
                ramp = min(1.0, (epoch * batches_per_epoch + i + 1) / batches_per_epoch)
                eps = EPS[dataset] * ramp
                attack = PGD(model, eps=eps, alpha=default_step(eps, steps), steps=steps, generator=generator)
                x_adv = attack(x[batch], y[batch])
                model.train()
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x_adv), y[batch]).backward()
                optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return model.eval()
    finally:
        torch.set_rng_state(rng)
