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
from .aa_state import Verdict, read_state_file, stored_batch_problem
from .autoattack import report_from


def _load(path: str) -> dict:
    state = read_state_file(path)
    shard = state.get("identity", {}).get("shard")
    if not (isinstance(shard, list) and len(shard) == 2):
        raise ValueError(f"{path!r} is not a shard's state file (run autoattack with shard=(K, N))")
    return state


def _same(states: list[dict], paths: list[str], what: str, get) -> None:
    """Every file's ``get(state)`` equals the first's, else a ValueError naming ``what`` and the files."""
    first = get(states[0])
    odd = [p for p, s in zip(paths, states) if get(s) != first]
    if odd:
        raise ValueError(f"the shards are not of one run: {what} differs between {paths[0]!r} and {odd}")


def _check_run(states: list[dict], paths: list[str]) -> None:
    """One run's settings, model, data and levers in every file, and each shard once, finished."""
    identities = [{k: v for k, v in s["identity"].items() if k != "shard"} for s in states]
    differ = [k for k in sorted(set().union(*identities)) if len({repr(i.get(k)) for i in identities}) > 1]
    if differ:
        odd = [p for p, i in zip(paths, identities) if any(i.get(k) != identities[0].get(k) for k in differ)]
        raise ValueError(f"the shards are not of one run: {', '.join(differ)} differ between {paths[0]!r} and {odd}")
    _same(states, paths, "N (shard=(K, N))", lambda s: s["identity"]["shard"][1])
    notes = [s.get("notes", {}) for s in states]
    unfinished = [p for p, n in zip(paths, notes) if n.get("complete") is not True]
    if unfinished:
        raise ValueError(f"shards did not finish: {unfinished} (resume them with resume=True and the same settings)")
    _same(states, paths, "the data (its digest, batches or samples)", lambda s: s["notes"].get("data"))
    facts = sorted(set().union(*notes) - {"data", "complete"})  # what the shards noted of the model and the run
    for fact in facts + ["channels_last", "autocast"]:
        _same(states, paths, fact, lambda s, fact=fact: s["notes"].get(fact, s.get(fact)))
    n = states[0]["identity"]["shard"][1]
    ks = [s["identity"]["shard"][0] for s in states]
    twice = sorted({k for k in ks if ks.count(k) > 1})
    if twice:
        raise ValueError(f"shards given twice: {twice} ({[p for p, k in zip(paths, ks) if k in twice]})")
    missing = sorted(set(range(n)) - set(ks))
    if missing:
        raise ValueError(f"shards missing: {missing} of {n}")


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
