"""Input-preprocessing defences, each an ``nn.Module`` to put in front of a model
(``nn.Sequential(JPEGCompression(75), model)``), with :class:`BPDA` to attack through the
non-differentiable ones and feature-squeezing detection.

    defended = nn.Sequential(BitDepthReduction(4), model)
    attackable, names = with_bpda(defended)   # same forward, identity backward through the squeezer
"""

from .base import BPDA, Preprocessing, with_bpda
from .detection import DetectionResult, FeatureSqueezing
from .jpeg import JPEGCompression
from .noise import GaussianNoise
from .squeeze import BitDepthReduction, MedianSmoothing

__all__ = ["BPDA", "BitDepthReduction", "DetectionResult", "FeatureSqueezing", "GaussianNoise", "JPEGCompression",
           "MedianSmoothing", "Preprocessing", "with_bpda"]
