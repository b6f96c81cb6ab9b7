"""A resumable AutoAttack run: per-batch verdicts in a JSON state file, written atomically after
every batch and tied to what produced them (the model's weights, the data batch by batch, the
version, attacks, norm, eps, seed and settings). A run killed at any moment (kill -9 included)
and started again with ``resume=True`` skips the batches already done and gives the verdicts of
an uninterrupted run; a state file written for anything else is refused, saying what differs.
JSON holds numbers and strings only: reading it runs no code."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import torch
from torch import nn

FORMAT = "robustkernels-autoattack-state-1"


def model_digest(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (names, dtypes, shapes, values)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def batch_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (x, y):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class RunState:
    """The state of one resumable run (``path`` None: a no-op)."""

    def __init__(self, path, identity: dict, resume: bool):
        self.path, self.identity, self.batches = None if path is None else os.fspath(path), identity, {}
        self.seconds, self.attacked = {}, {}
        self.channels_last: bool | None = None  # the layout "auto" chose, kept for the resumed run (None: none yet)
        self.autocast: str | None = None  # the precision "auto" chose, recorded with the layout
        if self.path is None:
            return
        if os.path.isdir(self.path):
            raise ValueError(f"state_path {self.path!r} is a folder; give the state file's path")
        if os.path.exists(self.path):
            if not resume:
                raise ValueError(f"state_path {self.path!r} exists: pass resume=True (--resume) to continue that "
                                 "run, or remove the file")
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path) as f:
                state = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"state_path {self.path!r} is not a readable AutoAttack state file ({exc})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"state_path {self.path!r} is not an AutoAttack state file of this version")
        differs = sorted(k for k in set(self.identity) | set(state.get("identity", {}))
                         if self.identity.get(k) != state["identity"].get(k))
        if differs:
            raise ValueError(f"state_path {self.path!r} was written by another run: {', '.join(differs)} differ")
        self.batches = {int(k): v for k, v in state["batches"].items()}
        self.seconds, self.attacked = state["seconds"], state["attacked"]
        self.channels_last = state.get("channels_last") is True
        self.autocast = state.get("autocast") if state.get("autocast") in ("bf16", "fp16") else None

    def done(self, index: int, digest: str) -> list | None:
        """The stored records of batch ``index``, or None when it is still to do; a batch whose
        data changed is refused."""
        entry = self.batches.get(index)
        if entry is None:
            return None
        if entry["digest"] != digest:
            raise ValueError(f"state_path {self.path!r}: batch {index} of the data differs from the run that "
                             "wrote the state")
        return [tuple(r) for r in entry["records"]]

    def add(self, index: int, digest: str, records: list, seconds: dict, attacked: dict) -> None:
        if self.path is None:
            return
        self.batches[index] = {"digest": digest, "records": records}
        self.seconds, self.attacked = dict(seconds), dict(attacked)
        payload = {"format": FORMAT, "identity": self.identity, "seconds": self.seconds, "attacked": self.attacked,
                   "channels_last": self.channels_last, "autocast": self.autocast,
                   "batches": {str(k): v for k, v in sorted(self.batches.items())}}
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".aa-state-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
