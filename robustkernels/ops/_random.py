"""Where every op's random state comes from: a seed drawn from a ``torch.Generator``.

The stochastic kernels (LWTA, noise injection) take the seed as a one-element int64 tensor on
their input's device (:func:`seed_tensor`), which they read when they run: drawn on the GPU by
:func:`draw_seed_tensor`, it involves no host sync, and a CUDA graph that captured the draw
replays it, so each replay gets fresh noise rather than the noise of the capture."""

from __future__ import annotations

import torch

from ._validation import INT64_MAX, check_int


def check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A Philox seed in [0, 2**63) drawn from ``generator`` (the default CPU generator if None),
    so ``torch.manual_seed`` makes every op reproducible. Advances the generator by one draw."""
    check_generator(generator)
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, INT64_MAX, (), generator=generator, device=device))


def seed_tensor(seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The key ``seed`` (an int in [0, 2**63)) as the stochastic kernels take it: a 0-dim int64
    tensor on ``device``."""
    check_int("seed", seed, low=0, high=INT64_MAX)
    return torch.tensor(seed, dtype=torch.int64, device=device)


def draw_seed_tensor(generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """A key like :func:`draw_seed`'s as a 0-dim int64 tensor on ``device``, drawn there when
    ``generator`` is None (``device``'s default generator: on a GPU the CUDA one, so a CPU and a
    GPU run after ``torch.manual_seed`` draw different keys) or lives on ``device``: no host
    sync, capturable in a CUDA graph. A generator on another device draws there and the key is
    copied over (a blocking copy). From an explicit generator, the value :func:`draw_seed` gives
    from the same state."""
    check_generator(generator)
    where = generator.device if generator is not None else torch.device(device)
    key = torch.randint(0, INT64_MAX, (), generator=generator, device=where)
    return key.to(device)  # blocking: a CPU kernel reads the key at once


def check_key(seed: object, like: torch.Tensor, op: str) -> None:
    """``seed`` is a stochastic op's key: a one-element int64 tensor on ``like``'s device."""
    if not isinstance(seed, torch.Tensor) or seed.dtype != torch.int64 or seed.numel() != 1:
        got = f"{seed.dtype} with {seed.numel()} elements" if isinstance(seed, torch.Tensor) else type(seed).__name__
        raise TypeError(f"{op}: seed must be a one-element int64 tensor (ops.seed_tensor(n)), got {got}")
    if seed.device != like.device:
        raise ValueError(f"{op}: seed is on {seed.device} but the input is on {like.device}")
