"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images; no download) as tensors."""

from __future__ import annotations

import torch


def load_digits(*, test_fraction: float = 0.25, seed: int = 0):
    """Returns ``(x_train, y_train, x_test, y_test)``: x float32 [N, 1, 8, 8] in [0, 1], y int64.

    The split is a fixed permutation from ``seed``, stratified by nothing: the same call always
    gives the same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the digits dataset needs scikit-learn: pip install scikit-learn") from exc
    bunch = sklearn_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]
