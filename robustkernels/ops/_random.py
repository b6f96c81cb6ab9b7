"""Where every op's random state comes from: a seed drawn from a ``torch.Generator``."""

from __future__ import annotations

import torch

from ._validation import INT64_MAX


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A Philox seed in [0, 2**63) drawn from ``generator`` (the default CPU generator if None),
    so ``torch.manual_seed`` makes every op reproducible. Advances the generator by one draw."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, INT64_MAX, (), generator=generator, device=device))
