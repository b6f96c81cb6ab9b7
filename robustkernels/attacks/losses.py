"""Per-sample attack objectives, all to be *maximised* by the attacker.

``ce``: cross-entropy (targeted: minus the cross-entropy to the target).
``margin``: the CW-Linf margin, max_{j != y} z_j - z_y (targeted: z_t - max_{j != t} z_j).
``dlr``: Croce & Hein's difference of logits ratio (targeted version with the target);
``dlr-targeted``: the targeted DLR, ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``
with pi sorting the logits in descending order (APGD-T).
``true-logit`` and ``other-logit``: the margin's two terms alone, ``-z_y`` and ``max_{j != y} z_j``
(targeted: ``z_t``) - the MD attack's first stage.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

LOSSES = ("ce", "margin", "dlr", "dlr-targeted", "true-logit", "other-logit")


def _other_max(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """max over j != label of logits[:, j]."""
    masked = logits.scatter(1, labels[:, None], float("-inf"))
    return masked.max(dim=1).values


def _label_logit(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, labels[:, None]).squeeze(1)


def objective(name: str, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """[B] values of objective ``name`` for true labels ``y`` (and ``target`` when targeted)."""
    logits = logits.float()
    if name == "ce":
        return -F.cross_entropy(logits, target, reduction="none") if target is not None else F.cross_entropy(
            logits, y, reduction="none")
    if name == "margin":
        if target is not None:
            return _label_logit(logits, target) - _other_max(logits, target)
        return _other_max(logits, y) - _label_logit(logits, y)
    if name == "true-logit":
        return -_label_logit(logits, y)
    if name == "other-logit":
        return _label_logit(logits, target) if target is not None else _other_max(logits, y)
    if name == "dlr-targeted" and target is None:
        raise ValueError("the targeted DLR loss needs target labels")
    if name in ("dlr", "dlr-targeted"):
        ranked = logits.sort(dim=1, descending=True).values
        if target is not None:
            if logits.shape[1] < 4:
                raise ValueError(f"the targeted DLR loss needs a model with at least 4 classes, got {logits.shape[1]}")
            scale = ranked[:, 0] - (ranked[:, 2] + ranked[:, 3]) / 2 + 1e-12
            return -(_label_logit(logits, y) - _label_logit(logits, target)) / scale
        if logits.shape[1] < 3:
            raise ValueError("the DLR loss needs at least 3 classes")
        return -(_label_logit(logits, y) - _other_max(logits, y)) / (ranked[:, 0] - ranked[:, 2] + 1e-12)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
