"""Datasets: scikit-learn's bundled digits by default (no download)."""

from .digits import load_digits

__all__ = ["load_digits"]
