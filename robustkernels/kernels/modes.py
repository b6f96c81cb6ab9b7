"""Constants the kernels and the ops share, in a leaf module (the Triton kernels import it; it
imports nothing of ours)."""

from __future__ import annotations

import enum


class LwtaMode(enum.IntEnum):
    """The LWTA kernels' modes, shared by the Python, Triton and C++ (``LwtaMode`` in csrc/lwta/host.h)
    code: relaxed sampling, hard (one-hot, straight-through) sampling, deterministic argmax."""

    SOFT = 0
    HARD = 1
    ARGMAX = 2
