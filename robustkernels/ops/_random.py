"""Where every op's random state comes from: a seed drawn from a ``torch.Generator``.

The stochastic kernels (LWTA, noise injection) take the seed as a one-element int64 tensor on
their input's device (:func:`seed_tensor`), which they read when they run: drawn on the GPU by
:func:`draw_seed_tensor`, it involves no host sync, and a CUDA graph that captured the draw
replays it, so each replay gets fresh noise rather than the noise of the capture."""

from __future__ import annotations

import torch

from ._validation import INT64_MAX, check_int


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A Philox seed in [0, 2**63) drawn from ``generator`` (the default CPU generator if None),
    so ``torch.manual_seed`` makes every op reproducible. Advances the generator by one draw."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, INT64_MAX, (), generator=generator, device=device))


def seed_tensor(seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The key ``seed`` (an int in [0, 2**63)) as the stochastic kernels take it: a 0-dim int64
    tensor on ``device``."""
    check_int("seed", seed, low=0, high=INT64_MAX)
    return torch.tensor(seed, dtype=torch.int64, device=device)


def draw_seed_tensor(generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """:func:`draw_seed` as a 0-dim int64 tensor on ``device``, drawn there when ``generator`` is
    None (the device's default generator) or lives on ``device``: no host sync, capturable in a
    CUDA graph. A generator on another device draws there and the key is copied over. The
    same value as :func:`draw_seed` from the same generator state."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    where = generator.device if generator is not None else torch.device(device)
    key = torch.randint(0, INT64_MAX, (), generator=generator, device=where)
    return key.to(device, non_blocking=True)
