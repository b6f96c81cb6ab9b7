"""Robust training in an ``accelerate`` script: :func:`robust_loss` for a prepared model.

    accelerator = Accelerator()                            # mixed_precision="no"
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    loss_fn = robust_loss(accelerator, model, "pgd-at", eps=8 / 255, steps=10, autocast="bf16")
    for x, y in loader:
        result = loss_fn(x, y)                             # attack on the unwrapped model, fp32
        optimizer.zero_grad()
        accelerator.backward(result.loss)
        optimizer.step()

Under ``accelerate launch`` the prepared model is DDP-wrapped and the attack runs on the module
inside (it never syncs gradients). Accelerate's own ``mixed_precision`` patches the model's
``forward`` with autocast, which would run the attacks in 16 bits too: it is refused; pass
``autocast="bf16"`` here instead (the training forward under autocast, the attacks in fp32, as
:func:`~robustkernels.train.fit`). Needs ``accelerate`` (``pip install robustkernels[accelerate]``).
"""

from __future__ import annotations

from torch import nn

from ..train import RobustLoss


def robust_loss(accelerator, model: nn.Module, method="pgd-at", *, autocast: str | None = None, seed: int = 0,
                dataset_size: int | None = None, **method_kwargs) -> RobustLoss:
    """A :class:`~robustkernels.train.RobustLoss` for ``model`` as ``accelerator.prepare``
    returned it; ``method`` and its keyword arguments as for
    :func:`~robustkernels.train.make_method`. The seed is the same in every process, as
    :func:`~robustkernels.train.fit` keeps it."""
    from accelerate import Accelerator

    if not isinstance(accelerator, Accelerator):
        raise TypeError(f"accelerator must be an accelerate.Accelerator, got {type(accelerator).__name__}")
    if accelerator.mixed_precision != "no":
        raise ValueError(f"accelerator: mixed_precision={accelerator.mixed_precision!r} patches the model's forward, "
                         "so the attacks would run in 16 bits: create the Accelerator with mixed_precision='no' and "
                         "pass autocast='bf16' to robust_loss (the training forward under autocast, attacks in fp32)")
    return RobustLoss(model, method, seed=seed, dataset_size=dataset_size, autocast=autocast, **method_kwargs)
