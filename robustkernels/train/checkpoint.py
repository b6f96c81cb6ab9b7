"""Checkpoints: written atomically (a temporary file in the same folder, then ``os.replace``) with a
checksum of their contents, read with ``torch.load(weights_only=True)`` so that a crafted file
cannot run code, and verified against that checksum so that a corrupted one is detected."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import zipfile

import torch

from .rundir import probe_writable

FORMAT = "robustkernels-checkpoint-1"


def checksum(state) -> str:
    """SHA-256 over every leaf of ``state`` (tensors by dtype, shape and bytes; other values by
    ``repr``), in order, keys included."""
    digest = hashlib.sha256()

    def walk(value, key: str) -> None:
        digest.update(key.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{t.dtype}{list(value.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        else:
            digest.update(repr(value).encode())

    walk(state, "")
    return digest.hexdigest()


def check_path(path: str | os.PathLike, name: str = "checkpoint_path") -> str:
    """``path`` as a string, refused up front if it names a folder or its folder cannot be
    written (the folder is created and a probe file written, before any training)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a folder; give the checkpoint file's path")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"{name} {path!r}: {parent!r} is a file, not a folder")
    probe_writable(parent, name)
    return path


def save_atomic(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` (tensors, numbers, strings and containers of them) to ``path`` with its
    checksum, atomically."""
    path = check_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "checksum": checksum(state), "state": state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """The state written by :func:`save_atomic`. Only tensors and plain Python values are
    unpickled; anything else, a corrupted file or another kind of file is a ``ValueError``
    naming ``path``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path!r} is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint {path!r} is empty")
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ValueError(f"checkpoint {path!r} holds {found.group(1)}, not only tensors and plain values; "
                             "refusing to load it") from None
        raise ValueError(f"checkpoint {path!r} is not a readable torch checkpoint") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"checkpoint {path!r} is not a readable torch checkpoint ({first})") from None
    if not (isinstance(saved, dict) and saved.get("format") == FORMAT and isinstance(saved.get("state"), dict)):
        raise ValueError(f"checkpoint {path!r} was not written by robustkernels (no {FORMAT!r} marker)")
    if checksum(saved["state"]) != saved.get("checksum"):
        raise ValueError(f"checkpoint {path!r} is corrupted: its contents do not match the checksum stored with it")
    return saved["state"]


MODEL_META = ("model", "activation", "pni", "in_channels", "num_classes", "image_size", "dataset", "eps")


def model_from_checkpoint(path: str, model_spec: str | None = None):
    """(model in eval mode, meta) rebuilt from a checkpoint written by `robustkernels train` (with
    weight averaging: the averaged weights, unless ``keep="best-robust"`` kept the best). A
    model from the user's code (``meta["source"] == "import"``) is rebuilt only when the caller
    names the same ``model_spec`` (``PKG.MODULE:FACTORY``): a checkpoint never chooses code to run."""
    from ..models import build_model, model_from_import

    state = load(path)
    meta = state.get("meta") or {}
    if meta.get("source") == "import":
        if model_spec != meta.get("model"):
            raise ValueError(f"checkpoint {path!r} holds the weights of {meta.get('model')!r} from your own code: "
                             f"pass --model {meta.get('model')} to import it (a checkpoint never names code to run)")
        model = model_from_import(model_spec, meta.get("model_args") or {})
    else:
        if model_spec is not None and model_spec != meta.get("model"):
            raise ValueError(f"checkpoint {path!r} holds a {meta.get('model')!r} model, not {model_spec!r}")
        missing = [k for k in MODEL_META if k not in meta] + ([] if "model" in state else ["the weights"])
        if missing:
            raise ValueError(f"checkpoint {path!r} lacks {', '.join(missing)} (not written by `robustkernels train`)")
        model = build_model(meta["model"], activation=meta["activation"], pni=meta["pni"],
                            in_channels=meta["in_channels"], num_classes=meta["num_classes"],
                            image_size=meta["image_size"])
    if "model" not in state:
        raise ValueError(f"checkpoint {path!r} lacks the weights (not written by `robustkernels train`)")
    weights = state["model"]
    if state.get("weights_for_eval") == "average":  # weight averaging: the average is the trained model
        if not isinstance(state.get("average"), dict) or "model" not in state["average"]:
            raise ValueError(f"checkpoint {path!r} says its weights are averaged but holds no average")
        weights = state["average"]["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path!r}: the weights do not fit the model it describes "
                         f"({str(exc).splitlines()[0]})") from None
    return model.eval(), meta
