"""Models from the user's own code: ``PKG.MODULE:FACTORY`` imported (the current directory on the
path) and called with keyword arguments, and weights loaded safely into it (``weights_only``: a
file cannot run code). A plain ``state_dict``, one nested under ``"state_dict"`` or ``"model"``,
and the ``module.`` prefixes of DataParallel / DDP are accepted; a missing or unexpected key is an
error listing the keys."""

from __future__ import annotations

import importlib
import os
import re
import sys
import zipfile

import torch
from torch import nn

_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def model_from_import(spec: str, kwargs: dict | None = None) -> nn.Module:
    """``FACTORY(**kwargs)`` from ``spec = "PKG.MODULE:FACTORY"``; a ValueError / TypeError naming
    what is wrong (bad spec, module not found, not callable, not an nn.Module)."""
    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise ValueError(f"--model {spec!r}: expected PKG.MODULE:FACTORY (e.g. mymodels:resnet)")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"--model-args must be a JSON object of keyword arguments, got {type(kwargs).__name__}")
    module_name, factory_name = spec.split(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"--model {spec!r}: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"--model {spec!r}: {module_name} has no callable {factory_name!r}")
    try:
        model = factory(**(kwargs or {}))
    except Exception as exc:  # noqa: BLE001 (the user's factory failing: one line naming the call)
        given = ", ".join(f"{k}={v!r}" for k, v in (kwargs or {}).items())
        raise ValueError(f"--model {spec!r}: {factory_name}({given}) failed with {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''} (--model-args is JSON: \"8\" is a "
                         f"string, 8 a number)") from None
    if not isinstance(model, nn.Module):
        raise TypeError(f"--model {spec!r}: {factory_name}() returned {type(model).__name__}, not an nn.Module")
    return model


def _state_dict_of(obj, path: str) -> dict:
    if isinstance(obj, dict) and {"format", "checksum", "state"} <= set(obj):
        raise ValueError(f"--weights {path!r} is a checkpoint written by `robustkernels train`: pass it as "
                         f"--checkpoint {path} (with --model for your own model's code)")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"--weights {path!r}: not a state_dict (a dict of tensors, or one under 'state_dict' or "
                         "'model')")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _archive_kind(path: str) -> str | None:
    """What a zip file is when it is not torch.save's archive (NumPy's .npz, TorchScript's, which
    ``torch.load`` would hand to ``torch.jit.load``), None for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(name.endswith(".npy") for name in names):
        return "a NumPy .npz archive"
    if any(name.endswith("constants.pkl") or "/code/" in name for name in names):
        return "a TorchScript archive (torch.jit.save)"
    return None


def _refuse_weights(path: str, kind: str):
    raise ValueError(f"--weights {path!r} is {kind}, not a weights file: accepted is a state_dict saved with "
                     f"torch.save (a dict of tensors, or one under 'state_dict' or 'model'), read with "
                     f"weights_only=True")


def load_weights(model: nn.Module, path: str) -> nn.Module:
    """``model`` with the weights of ``path`` loaded (strict: every key must match)."""
    if not os.path.isfile(path):
        raise ValueError(f"--weights {path!r} does not exist or is not a file")
    kind = _archive_kind(path)
    if kind is not None:  # refused before torch.load, which would run a TorchScript archive's code
        _refuse_weights(path, kind)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (a crafted, corrupt or foreign file: one line naming it)
        _refuse_weights(path, "a torch.save archive holding more than tensors (a whole pickled model?)"
                        if zipfile.is_zipfile(path) else "a pickled object (a whole model?) or a damaged file")
    state = _state_dict_of(obj, path)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"--weights {path!r} does not fit the model: missing {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                         f"{' ...' if len(unexpected) > 8 else ''}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"--weights {path!r}: {str(exc).splitlines()[-1].strip()}") from None
    return model
