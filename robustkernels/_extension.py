"""Loads the compiled extension ``robustkernels._C``; never lets a failure break the import.

If the extension is missing, fails to load, or ``ROBUSTKERNELS_DISABLE_EXTENSION=1`` is set,
:data:`LOADED` is False, :data:`REASON` says why, and one warning is issued: ops then run on
the reference backend (or Triton where it can run).
"""

from __future__ import annotations

import importlib
import os
import warnings

import torch

LOADED: bool = False
CUDA_BUILT: bool = False
REASON: str = ""


def _load() -> None:
    global LOADED, CUDA_BUILT, REASON
    if os.environ.get("ROBUSTKERNELS_DISABLE_EXTENSION", "") == "1":
        REASON = "disabled by ROBUSTKERNELS_DISABLE_EXTENSION=1"
    else:
        try:
            importlib.import_module("robustkernels._C")
            CUDA_BUILT = bool(torch.ops.robustkernels_C.cuda_built())
            LOADED = True
            return
        except Exception as exc:  # an ImportError, OSError (bad .so), missing symbol...
            REASON = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"robustkernels: the compiled extension is not available ({REASON}); the cpp/cuda "
        "backends are off and ops run on the reference backend. Build it with "
        "`pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=3,
    )


_load()
