"""Robust training inside other training frameworks: :mod:`~robustkernels.integrations.lightning`
(a ``LightningModule`` mixin) and :mod:`~robustkernels.integrations.accelerate` (a loss for an
``accelerate``-prepared model). Each needs its package (the ``[lightning]`` / ``[accelerate]``
extras); importing this package needs neither."""
