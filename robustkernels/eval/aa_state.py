"""A resumable AutoAttack run: per-batch verdicts in a JSON state file, written atomically after
every batch and tied to what produced them (the model's weights, modules and outputs, the data
batch by batch, the version, attacks, norm, eps, seed and settings). A run killed at any moment
(kill -9 included) and started again with ``resume=True`` skips the batches already done and
gives the verdicts of an uninterrupted run; a state file written for anything else is refused,
saying what differs, and one whose content does not hold together (a batch's records not one per
sample in order, or edited) is refused as damaged, naming the batch.
JSON holds numbers and strings only: reading it runs no code.

The model is identified three ways, because its weights alone do not fix its function (ReLU and
Sigmoid networks share a ``state_dict``): the weights' digest, the digest of its module tree
(each module's name, class and ``extra_repr``), and its fp32 logits on a fixed input drawn in
the bounds with the data's sample shape from a seeded generator (:func:`outputs_fingerprint`,
compared within :data:`OUTPUT_TOLERANCE` of the logits' scale, so that another thread count or
backend does not refuse a file). A stochastic model's outputs differ from call to call: for it the
fingerprint is the word ``"stochastic"``, and its weights and modules identify it."""

from __future__ import annotations

import hashlib
import json
import operator
import os
import tempfile
from typing import NamedTuple

import torch
from torch import nn

from ..common import frozen_model, is_number
from ..threat import broadcast_bounds

FORMAT = "robustkernels-autoattack-state-2"
FINGERPRINT_ROWS, FINGERPRINT_SEED = 4, 20240607
OUTPUT_TOLERANCE = 1e-2  # of max(1, the largest |logit|): rounding of bf16 models passes, another function not
# what differs, for identity entries that are not autoattack() arguments (those get "pass name=value")
_DESCRIBED = {"model": "the model's weights", "model_structure": "the model's modules: their types or settings",
              "model_outputs": "the model's outputs on a fixed input: the same weights and modules computing "
                               "another function",
              "world": "the number of processes", "fast": "fast's schedule, of another release"}
_SHOWN_AS_WRITTEN = ("bounds", "normalization")  # kept as their repr in the file


def _tensor_digest(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too (BatchNorm's count)


def model_digest(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (names, dtypes, shapes, values)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(f"{name}:".encode())
        _tensor_digest(h, tensor)
    return h.hexdigest()


def structure_digest(model: nn.Module) -> str:
    """SHA-256 of the module tree: each module's name, class and ``extra_repr`` (a ReLU swapped
    for a Sigmoid, or an LWTA of another temperature, changes it; the weights do not enter)."""
    h = hashlib.sha256()
    for name, module in model.named_modules():
        kind = type(module)
        h.update(f"{name}:{kind.__module__}.{kind.__qualname__}({module.extra_repr()})\n".encode())
    return h.hexdigest()


def batch_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (x, y):
        _tensor_digest(h, t)
    return h.hexdigest()


class DataDigest:
    """A running digest of a whole data stream, batch by batch: the shards of one run must read
    the same data, and each sees all of it (its own batches and the others')."""

    def __init__(self):
        self._hash, self.batches, self.samples = hashlib.sha256(), 0, 0

    def add(self, x: torch.Tensor, y: torch.Tensor, index: int) -> None:
        self._hash.update(f"{index}:{batch_digest(x, y)};".encode())
        self.batches, self.samples = self.batches + 1, self.samples + len(y)

    def summary(self) -> dict:
        return {"digest": self._hash.hexdigest(), "batches": self.batches, "samples": self.samples}


def outputs_fingerprint(model: nn.Module, forward, x: torch.Tensor, bounds, stochastic: bool) -> list | str:
    """The fp32 logits (a list of rows) of ``forward`` (the model behind its normalisation), in
    eval mode, on :data:`FINGERPRINT_ROWS` inputs with ``x``'s sample shape, dtype and device,
    uniform in ``bounds`` from a generator seeded with :data:`FINGERPRINT_SEED` (the global RNG
    untouched; the data's values play no part: a changed batch is told by its digest);
    ``"stochastic"`` for a stochastic model, whose outputs differ from call to call."""
    if stochastic:
        return "stochastic"
    u = torch.rand((FINGERPRINT_ROWS, *x.shape[1:]), generator=torch.Generator().manual_seed(FINGERPRINT_SEED))
    u = u.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    lo, hi = broadcast_bounds(bounds, u)
    with frozen_model(model, "eval"), torch.no_grad():
        return forward((lo + (hi - lo) * u).to(u.dtype)).float().cpu().tolist()


def same_outputs(written, now) -> bool:
    """Whether two :func:`outputs_fingerprint` values agree (logits within the tolerance)."""
    if not (isinstance(written, list) and isinstance(now, list)):
        return written == now
    try:
        a, b = torch.tensor(written, dtype=torch.float64), torch.tensor(now, dtype=torch.float64)
    except (TypeError, ValueError):  # not a table of numbers
        return False
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    return a.shape == b.shape and bool(((a - b).abs() <= OUTPUT_TOLERANCE * scale).all())


def _records_check(digest: str, records: list) -> str:
    """A checksum of a batch's records and data digest: an edited record no longer matches it."""
    return hashlib.sha256(json.dumps([digest, records], separators=(",", ":")).encode()).hexdigest()


class Verdict(NamedTuple):
    """One sample's AutoAttack verdict, as the state file holds it (a JSON list in this order)."""

    batch: int
    row: int  # position in its batch
    fell_at: int  # 0 clean-misclassified, i first fooled by attack i, attacks + 1 robust
    clean: list  # [passes] classified correctly, clean
    passes: list  # [passes] robust in each evaluation pass
    fooled_by: list  # [attacks] which attacks fooled it


def _is_flags(value, length: int) -> bool:
    return isinstance(value, list) and len(value) == length and all(isinstance(v, bool) for v in value)


def records_problem(records, index: int, size: int, attacks: int, passes: int) -> str | None:
    """What is wrong with the stored records of batch ``index`` (``size`` samples), or None: one
    record per sample, in order - ``[index, j, fell_at (0 .. attacks + 1), clean [passes],
    robust [passes], fooled_by [attacks]]``."""
    if not isinstance(records, list) or len(records) != size:
        held = len(records) if isinstance(records, list) else type(records).__name__
        return f"batch {index} holds {held} records for its {size} samples"
    for j, r in enumerate(records):
        if not isinstance(r, list) or len(r) != 6 or r[:2] != [index, j]:
            return f"batch {index}: record {j} is not sample {j} of the batch ({json.dumps(r)[:60]})"
        v = Verdict(*r)
        if not (isinstance(v.fell_at, int) and not isinstance(v.fell_at, bool) and 0 <= v.fell_at <= attacks + 1
                and _is_flags(v.clean, passes) and _is_flags(v.passes, passes) and _is_flags(v.fooled_by, attacks)):
            return f"batch {index}: record {j} is malformed ({json.dumps(r)[:60]})"
    return None


def read_state_file(path: str, label: str = "", fmt: str = FORMAT, kind: str = "AutoAttack") -> dict:
    """The JSON of a ``kind`` state file of format ``fmt`` (``label`` prefixes the path in the
    errors, e.g. ``"state_path "``)."""
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{label}{path!r} is not a readable {kind} state file ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        article = "an" if kind[0].lower() in "aeiou" else "a"
        raise ValueError(f"{label}{path!r} is not {article} {kind} state file of this version")
    return state


def stored_batch_problem(entry: dict, index: int, size: int, attacks: int, passes: int) -> str | None:
    """What is wrong with a state file's batch ``index`` of ``size`` samples (its records not one
    per sample in order, or edited after writing), or None."""
    records = entry["records"]
    problem = records_problem(records, index, size, attacks, passes)
    if problem is None and entry["check"] != _records_check(entry["digest"], records):
        problem = f"batch {index}: its records were edited (their checksum differs)"
    return problem


def shard_of(state: dict, path: str, run: str) -> tuple[int, int]:
    """(K, N) of a shard's state file (``run``: the function that writes one, for the error)."""
    identity = state.get("identity")
    shard = identity.get("shard") if isinstance(identity, dict) else None
    if not (isinstance(shard, list) and len(shard) == 2 and all(type(v) is int for v in shard)
            and 0 <= shard[0] < shard[1]):
        raise ValueError(f"{path!r} is not a shard's state file (run {run} with shard=(K, N))")
    return shard[0], shard[1]


def same_in_shards(states: list[dict], paths: list[str], what: str, get) -> None:
    """Every file's ``get(state)`` equals the first's, else a ValueError naming ``what`` and the files."""
    first = get(states[0])
    odd = [p for p, s in zip(paths, states) if get(s) != first]
    if odd:
        raise ValueError(f"the shards are not of one run: {what} differs between {paths[0]!r} and {odd}")


def check_shard_set(states: list[dict], paths: list[str], noted) -> None:
    """The files (checked by :func:`shard_of`) are the N shards of one run, each once and
    finished: the same N, identity (settings, model) and what ``noted`` reads of them - pairs
    ``(what, get)`` - else a ValueError naming what differs, what is missing or given twice."""
    same_in_shards(states, paths, "N (shard=(K, N))", lambda s: s["identity"]["shard"][1])
    identities = [{k: v for k, v in s["identity"].items() if k != "shard"} for s in states]
    differ = [k for k in sorted(set().union(*identities)) if len({repr(i.get(k)) for i in identities}) > 1]
    if differ:
        odd = [p for p, i in zip(paths, identities) if any(i.get(k) != identities[0].get(k) for k in differ)]
        raise ValueError(f"the shards are not of one run: {', '.join(differ)} differ between {paths[0]!r} and {odd}")
    unfinished = [p for p, s in zip(paths, states) if not isinstance(s.get("notes"), dict)
                  or s["notes"].get("complete") is not True]
    if unfinished:
        raise ValueError(f"shards did not finish: {unfinished} (resume them with resume=True and the same settings)")
    for what, get in noted:
        same_in_shards(states, paths, what, get)
    n = states[0]["identity"]["shard"][1]
    ks = [s["identity"]["shard"][0] for s in states]
    twice = sorted({k for k in ks if ks.count(k) > 1})
    if twice:
        raise ValueError(f"shards given twice: {twice} ({[p for p, k in zip(paths, ks) if k in twice]})")
    missing = sorted(set(range(n)) - set(ks))
    if missing:
        raise ValueError(f"shards missing: {missing} of {n}")


class RunState:
    """The state of one resumable run (``path`` None: a no-op). ``later``: identity entries known
    only once data arrive (:meth:`confirm`); a loaded file is compared on the others at once.
    A batch's ``records`` are AutoAttack's verdicts here; a subclass stores other JSON values
    under its own ``FORMAT`` and checks them in :meth:`done`."""

    FORMAT, KIND = FORMAT, "AutoAttack"

    def __init__(self, path, identity: dict, resume: bool, later: tuple[str, ...] = ()):
        self.path, self.identity, self.batches = None if path is None else os.fspath(path), identity, {}
        self.seconds, self.attacked, self.written = {}, {}, None
        self.notes: dict = {}  # what a merge of shards needs besides the verdicts (see note())
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
            self._load(later)

    @property
    def active(self) -> bool:
        """Whether a state file is kept."""
        return self.path is not None

    def _damaged(self, what: str) -> ValueError:
        return ValueError(f"the state file {self.path!r} is damaged: {what}; remove it to start the run afresh")

    def _load(self, later: tuple[str, ...]) -> None:
        self._parse(read_state_file(self.path, "state_path ", self.FORMAT, self.KIND))
        differs = sorted(k for k in set(self.identity) | set(self.written)
                         if k not in later and self.identity.get(k) != self.written.get(k))
        if differs:
            raise self._another_run(differs)

    def _parse(self, state: dict) -> None:
        """The loaded file's parts, each checked for its type (not yet against the batches)."""
        identity, batches = state.get("identity"), state.get("batches")
        if not isinstance(identity, dict):
            raise self._damaged("its 'identity' is missing or not a mapping")
        if not isinstance(batches, dict):
            raise self._damaged("its 'batches' are missing or not a mapping")
        for key, entry in batches.items():
            if not key.isdigit():
                raise self._damaged(f"batch {key!r} is not a batch number")
            if not (isinstance(entry, dict) and isinstance(entry.get("digest"), str)
                    and isinstance(entry.get("check"), str) and isinstance(entry.get("records"), (list, dict))):
                raise self._damaged(f"batch {key} lacks its digest, check or records")
        counters = [state.get("seconds"), state.get("attacked")]
        if not all(isinstance(c, dict) and all(is_number(v) and v >= 0 for v in c.values()) for c in counters):
            raise self._damaged("its 'seconds' and 'attacked' must map attacks to numbers >= 0")
        if state.get("channels_last") not in (True, False, None) or state.get("autocast") not in ("bf16", "fp16", None):
            raise self._damaged("its 'channels_last' or 'autocast' holds no lever's value")
        self.written, self.batches = identity, {int(k): v for k, v in batches.items()}
        self.seconds, self.attacked = counters
        self.channels_last, self.autocast = state.get("channels_last"), state.get("autocast")
        self.notes = state.get("notes") if isinstance(state.get("notes"), dict) else {}

    def _another_run(self, keys) -> ValueError:
        """The refusal of a file written by another run: each entry that differs, and for a
        setting of autoattack() the value to pass."""
        parts = []
        for key in keys:
            written = self.written.get(key)
            if key in _DESCRIBED:
                parts.append(f"{key} differs ({_DESCRIBED[key]})")
            else:
                shown = written if key in _SHOWN_AS_WRITTEN else repr(written)
                parts.append(f"{key} differs (pass {key}={shown} as when the state file was written)")
        return ValueError(f"state_path {self.path!r} was written by another run: {'; '.join(parts)}")

    def confirm(self, key: str, value, same=operator.eq) -> None:
        """Add ``key`` (one of ``later``) to the identity; a loaded file must agree with it
        (``same(written, value)``)."""
        if not self.active:
            return
        if self.written is not None and not same(self.written.get(key), value):
            raise self._another_run([key])
        self.identity[key] = value

    def check_counters(self, attacks) -> None:
        """A resumed file's time and point counts are the ``attacks``' (none before a first batch)."""
        names = set(attacks) if self.batches else set()
        if self.active and not set(self.seconds) == set(self.attacked) == names:
            raise self._damaged(f"its 'seconds' and 'attacked' name {sorted(self.seconds)} and "
                                f"{sorted(self.attacked)}, not the run's attacks {sorted(names)}")

    def done(self, index: int, digest: str, size: int, attacks: int, passes: int) -> list[Verdict] | None:
        """The stored records of batch ``index`` (``size`` samples, ``attacks`` attacks and
        ``passes`` evaluation passes), or None when it is still to do. A batch whose data changed
        is refused; records that are not one per sample in order, or were edited, are damage."""
        entry = self.entry(index, digest, size)
        if entry is None:
            return None
        problem = stored_batch_problem(entry, index, size, attacks, passes)
        if problem is not None:
            raise self._damaged(problem)
        return [Verdict(*r) for r in entry["records"]]

    def stored_size(self, entry: dict) -> int:
        """How many samples a stored batch holds."""
        return len(entry["records"])

    def entry(self, index: int, digest: str, size: int) -> dict | None:
        """Batch ``index``'s stored entry (None: still to do); refused if its data changed."""
        entry = self.batches.get(index)
        if entry is None or entry["digest"] == digest:
            return entry
        stored = self.stored_size(entry)
        sizes = "" if stored == size else (f" ({size} samples here, {stored} there: pass the batch size of the run "
                                           "that wrote it)")
        raise ValueError(f"state_path {self.path!r}: batch {index} of the data differs from the run that "
                         f"wrote the state{sizes}")

    def add(self, index: int, digest: str, records: list, seconds: dict, attacked: dict) -> None:
        if self.path is None:
            return
        records = json.loads(json.dumps(records))  # as the file holds them (lists), for the checksum
        self.batches[index] = {"digest": digest, "check": _records_check(digest, records), "records": records}
        self.seconds, self.attacked = dict(seconds), dict(attacked)
        self._write()

    def note(self, **entries) -> None:
        """Record ``entries`` (JSON values) beside the verdicts: the run's model facts and, at
        the end, that it completed - what merging shards needs."""
        if self.path is None:
            return
        self.notes.update(json.loads(json.dumps(entries)))
        self._write()

    def _write(self) -> None:
        """The whole state, written atomically (a temporary file, then a rename)."""
        payload = {"format": self.FORMAT, "identity": self.identity, "seconds": self.seconds, "attacked": self.attacked,
                   "channels_last": self.channels_last, "autocast": self.autocast, "notes": self.notes,
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
