"""Robust training in a Lightning module: :class:`RobustTrainingMixin` gives ``training_step``
one call, ``self.robust_loss(batch)``, that returns the method's loss and logits.

    class Classifier(RobustTrainingMixin, L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = make_net()
            self.robust_training("pgd-at", eps=8 / 255, steps=10)   # any make_method name

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            result = self.robust_loss(batch, batch_idx)   # batch: (x, y) or (x, y, index)
            self.log("train_loss", result.loss)
            return result.loss

The attack runs on the module itself in eval mode (BatchNorm statistics untouched) and in fp32
even under ``precision="bf16-mixed"`` / ``"16-mixed"``, whose autocast then covers the training
forward only, as in :func:`~robustkernels.train.fit`; the 16-bit gradient scaler is passed on.
With ``batch_idx``, the position in training (``current_epoch`` + ``batch_idx`` /
``num_training_batches``, of ``max_epochs``) reaches the methods that ramp eps or keep per-epoch
state. Under Lightning's DDP the attack never syncs
gradients (it differentiates the inputs only). Needs ``lightning`` (``pip install
robustkernels[lightning]``).
"""

from __future__ import annotations

import contextlib

import torch

from ..train import RobustLoss
from ..train.robust_loss import loop_method

# Lightning's precision setting -> (RobustLoss autocast, whether a GradScaler may be present)
_PRECISIONS = {"32-true": None, "32": None, "bf16-mixed": "bf16", "16-mixed": "fp16", "64-true": None}


class RobustTrainingMixin:
    """Mix in before ``LightningModule``; call :meth:`robust_training` once (in ``__init__``)
    and :meth:`robust_loss` in ``training_step``."""

    def robust_training(self, method="pgd-at", *, seed: int = 0, dataset_size: int | None = None,
                        **method_kwargs) -> None:
        """Choose the method: a :func:`~robustkernels.train.make_method` name with its keyword
        arguments (eps, steps, norm, normalization ...) or a ``Method``; ``seed`` fixes the
        attacks' draws; ``dataset_size`` for the methods with a per-example KL term."""
        loop_method(method, **method_kwargs)  # a bad name, argument or method fails here, not at the first step
        self._robust_spec = (method, seed, dataset_size, method_kwargs)
        self._robust_loss = None

    def _robust(self) -> RobustLoss:
        if getattr(self, "_robust_spec", None) is None:
            raise RuntimeError("call self.robust_training(method, eps=...) in __init__ before robust_loss")
        if self._robust_loss is None:
            method, seed, dataset_size, kwargs = self._robust_spec
            precision = str(self.trainer.precision)
            if precision not in _PRECISIONS:
                raise ValueError(f"Trainer(precision={precision!r}): robust_loss supports {sorted(_PRECISIONS)}")
            scaler = getattr(self.trainer.precision_plugin, "scaler", None)
            self._robust_loss = RobustLoss(self, method, seed=seed, dataset_size=dataset_size,
                                           autocast=_PRECISIONS[precision], scaler=scaler, **kwargs)
        return self._robust_loss

    def robust_loss(self, batch, batch_idx: int | None = None):
        """The method's :class:`~robustkernels.train.methods.base.BatchResult` (``.loss``,
        ``.logits``) for ``batch`` = ``(x, y)`` or ``(x, y, index)`` (``index``: the samples'
        positions in the training set, which ATTA and FGSM-PGI need); ``batch_idx`` (training_step's)
        gives the methods that ramp eps or keep per-epoch state their position in training."""
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise TypeError("batch must be (x, y) or (x, y, index) for robust_loss; unpack other batches and call "
                            "self.robust_loss((x, y))")
        x, y, *index = batch
        loss_fn, trainer = self._robust(), self.trainer
        batches = trainer.num_training_batches
        known = batch_idx is not None and isinstance(batches, int) and batches > 0 and (trainer.max_epochs or 0) > 0
        progress = (trainer.current_epoch + batch_idx / batches, trainer.max_epochs) if known else None
        outside = torch.autocast(x.device.type, enabled=False) if torch.is_autocast_enabled(x.device.type) else (
            contextlib.nullcontext())
        with outside:  # Lightning's autocast is re-entered by the loss for the training forward only
            return loss_fn(x, y, index=index[0] if index else None, progress=progress)
