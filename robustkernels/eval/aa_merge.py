"""Merging the shards of one AutoAttack run: :func:`merge_shards`.

``autoattack(..., shard=(K, N), state_path=F_K)`` attacks batches K, K + N, ... of the data and
keeps their verdicts in ``F_K``. The N files, from any machines at any time, merge into the
report of the unsharded run with the same seed and batch size: the verdicts are per sample and
every random draw is a function of the seed and the global batch index. A merge refuses files of
different runs (settings, model, data), missing shards, shards given twice and shards that did
not finish, naming them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .aa_report import AutoAttackReport
from .aa_state import Verdict, check_shard_set, read_state_file, shard_of, stored_batch_problem
from .autoattack import report_from


def _load(path: str) -> dict:
    state = read_state_file(path)
    shard_of(state, path, "autoattack")
    return state


def _check_run(states: list[dict], paths: list[str]) -> None:
    """One run's settings, model, data and levers in every file, and each shard once, finished."""
    notes = [s["notes"] for s in states if isinstance(s.get("notes"), dict)]
    facts = sorted(set().union(*notes) - {"data", "complete"}) + ["channels_last", "autocast"]
    noted = [("the data (its digest, batches or samples)", lambda s: s["notes"].get("data"))]
    noted += [(fact, lambda s, fact=fact: s["notes"].get(fact, s.get(fact))) for fact in facts]
    check_shard_set(states, paths, noted)


def _verdicts(state: dict, path: str) -> list[Verdict]:
    """The shard's per-sample verdicts, its batches checked complete and unedited."""
    k, n = state["identity"]["shard"]
    total = state["notes"]["data"]["batches"]
    own = sorted(int(i) for i in state["batches"])
    if own != list(range(k, total, n)):
        raise ValueError(f"{path!r}: shard {k} of {n} holds batches {own[:8]}..., not every N-th from {k} of {total}")
    attacks, passes = len(state["notes"]["attacks"]), state["notes"]["repeats"]
    out = []
    for i in own:
        entry = state["batches"][str(i)]
        problem = stored_batch_problem(entry, i, len(entry["records"]), attacks, passes)
        if problem is not None:
            raise ValueError(f"{path!r} is damaged: {problem}")
        out += [Verdict(*r) for r in entry["records"]]
    return out


def merge_shards(paths: Sequence) -> AutoAttackReport:
    """The report of the unsharded run from its N shards' state files (any order).

    Raises:
        ValueError: files of different runs, a shard missing, given twice or unfinished, a
            damaged file - each named.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(f"paths must be a list of the shards' state files, got one path {os.fspath(paths)!r}")
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("merge_shards needs the shards' state files")
    states = [_load(p) for p in paths]
    _check_run(states, paths)
    records = sorted(v for s, p in zip(states, paths) for v in _verdicts(s, p))
    first, notes = states[0], states[0]["notes"]
    seconds = {a: sum(s["seconds"].get(a, 0.0) for s in states) for a in notes["attacks"]}
    attacked = {a: sum(s["attacked"].get(a, 0) for s in states) for a in notes["attacks"]}
    identity = first["identity"]
    return report_from(notes, records, identity["norm"], identity["eps"], identity["individual"], first.get("autocast"),
                       seconds, attacked)
