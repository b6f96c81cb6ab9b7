"""A shard of :func:`~robustkernels.eval.evaluate` (``shard=(K, N), state_path=F``) keeps each of
its batches' values in a JSON state file, written atomically after every batch and tied to what
produced them (the model's weights, modules and outputs, the data batch by batch, the seed and
every setting), as AutoAttack's state files are (:mod:`~robustkernels.eval.aa_state`): a killed
shard resumes with ``resume=True``. :func:`merge_eval_shards` adds the N files' values up in
batch order into the report of the unsharded run. JSON holds numbers and strings only: reading
it runs no code."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from .aa_state import (
    RunState,
    _records_check,
    check_shard_set,
    model_digest,
    outputs_fingerprint,
    read_state_file,
    same_outputs,
    shard_of,
    structure_digest,
)
from .assemble import LeadFigures, ModelFacts, assemble
from .tally import BatchValues, PassTally, values_problem

EVAL_FORMAT = "robustkernels-evaluate-state-1"
AUTOATTACK_SUFFIX = ".autoattack.json"  # beside a shard's file: its AutoAttack part (suite="autoattack")
_NOT_IN_IDENTITY = ("generator", "progress", "title", "state_path", "resume", "surrogate", "autoattack", "shard")


class EvalState(RunState):
    """A shard's state file: per batch, its :class:`~robustkernels.eval.tally.BatchValues`."""

    FORMAT, KIND = EVAL_FORMAT, "evaluate"

    def stored_size(self, entry: dict) -> int:
        records = entry["records"]
        return len(records.get("labels", [])) if isinstance(records, dict) else 0

    def values(self, index: int, digest: str, size: int, passes: int, names) -> BatchValues | None:
        """Batch ``index``'s stored values, or None when it is still to do."""
        entry = self.entry(index, digest, size)
        if entry is None:
            return None
        problem = stored_values_problem(entry, size, passes, names)
        if problem is not None:
            raise self._damaged(f"batch {index}: {problem}")
        return BatchValues.from_json(entry["records"])

    def confirm_model(self, model, setup, x, bounds) -> None:
        """The model's outputs on a fixed input join the identity (the same weights and modules
        computing another function are another model)."""
        self.confirm("model_outputs", outputs_fingerprint(model, setup.forward, x, bounds, setup.stochastic),
                     same_outputs)


def stored_values_problem(entry: dict, size: int, passes: int, names) -> str | None:
    problem = values_problem(entry["records"], size, passes, names)
    if problem is None and entry["check"] != _records_check(entry["digest"], entry["records"]):
        problem = "its values were edited (their checksum differs)"
    return problem


def eval_state(model, threat, opts, seed: int) -> EvalState:
    """The state of shard ``opts.shard`` of an evaluation with ``seed``, in ``opts.state_path``."""
    settings = {k: v for k, v in vars(opts).items() if k not in _NOT_IN_IDENTITY}
    settings.update(attacks=list(opts.attacks), curve_eps=list(opts.curve_eps), bounds=repr(threat.bounds),
                    normalization=repr(threat.normalization), corruptions=list(opts.corruptions))
    aa = opts.autoattack.identity() if opts.suite == "autoattack" else None
    identity = {"model": model_digest(model), "model_structure": structure_digest(model), **settings,
                "autoattack": aa, "surrogate": None if opts.surrogate is None else model_digest(opts.surrogate),
                "seed": seed, "shard": list(opts.shard)}
    return EvalState(opts.state_path, identity, opts.resume, later=("model_outputs",))


def is_eval_state(path: str) -> bool:
    """Whether ``path`` holds an evaluate state file (False for anything else, unreadable too)."""
    try:
        with open(path) as f:
            return json.load(f).get("format") == EVAL_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _load(path: str) -> dict:
    """A shard's state file, its parts checked for their types (a ValueError naming the damage)."""
    state = read_state_file(path, "", EVAL_FORMAT, "evaluate")
    shard_of(state, path, "evaluate")
    notes, batches = state.get("notes"), state.get("batches")
    if not isinstance(notes, dict) or not isinstance(batches, dict):
        raise _damaged(path, "its 'notes' or 'batches' are not mappings")
    for key, entry in batches.items():
        if not (key.isdigit() and isinstance(entry, dict) and isinstance(entry.get("digest"), str)
                and isinstance(entry.get("check"), str) and isinstance(entry.get("records"), dict)):
            raise _damaged(path, f"batch {key!r} is not a batch number with its digest, check and values")
    if notes.get("complete") is True and notes.get("check") != notes_check(notes):
        raise _damaged(path, "its notes (the lead, the facts, the title) were edited: their checksum differs")
    return state


def notes_check(notes: dict) -> str:
    """A checksum of what a finished shard notes besides its batches: an edit no longer matches."""
    return _records_check("notes", {k: v for k, v in notes.items() if k != "check"})


def _damaged(path: str, what: str) -> ValueError:
    return ValueError(f"{path!r} is damaged: {what}")


def _check_run(states: list[dict], paths: list[str]) -> None:
    """One run's settings, model, data and findings in every file, each shard once, finished."""
    noted = [("the data", lambda s: s["notes"].get("data")),
             ("the model's facts (set channels_last and autocast explicitly)", lambda s: s["notes"].get("facts")),
             ("the attacks", lambda s: s["notes"].get("names")), ("the title", lambda s: s["notes"].get("title"))]
    check_shard_set(states, paths, noted)


def _values(state: dict, path: str, passes: int, names) -> list[tuple[int, BatchValues]]:
    k, n = state["identity"]["shard"]
    out = []
    for key, entry in state["batches"].items():
        index = int(key)
        if index % n != k:
            raise ValueError(f"{path!r}: shard {k} of {n} holds batch {index}, which is not its own")
        problem = stored_values_problem(entry, len(entry["records"].get("labels", [])), passes, names)
        if problem is not None:
            raise ValueError(f"{path!r} is damaged: batch {index}: {problem}")
        out.append((index, BatchValues.from_json(entry["records"])))
    return out


def merge_eval_shards(paths: Sequence):
    """The :class:`~robustkernels.eval.RobustnessReport` of the unsharded evaluation from its N
    shards' state files (any order); with ``suite="autoattack"`` each file's AutoAttack part
    (``F + ".autoattack.json"``) is merged too.

    Raises:
        ValueError: files of different runs, a shard missing, given twice or unfinished, a
            damaged file, samples missing - each named.
    """
    from .aa_merge import merge_shards
    from .options import EvalOptions

    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(f"paths must be a list of the shards' state files, got one path {os.fspath(paths)!r}")
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("merge_eval_shards needs the shards' state files")
    states = [_load(p) for p in paths]
    _check_run(states, paths)
    notes, identity = states[0]["notes"], states[0]["identity"]
    facts, names = ModelFacts(**notes["facts"]), notes["names"]
    batches = sorted((iv for s, p in zip(states, paths) for iv in _values(s, p, facts.reps, names)),
                     key=lambda iv: iv[0])
    tally = PassTally(names)
    for _, values in batches:
        tally.add(values)
    if tally.n != notes["data"]["samples"]:
        raise ValueError(f"the shards hold {tally.n} samples of the data's {notes['data']['samples']}")
    first = next(i for i, s in enumerate(states) if s["identity"]["shard"][0] == 0)
    lead = states[first]["notes"].get("lead")
    if not (isinstance(lead, dict) and set(lead) == {"shown", "predictions", "labels", "measured"}):
        raise _damaged(paths[first], "its lead (shard 0's examples and check figures) is missing or malformed")
    opts = EvalOptions(eps=identity["eps"], norm=identity["norm"], examples=identity["examples"],
                       checks=identity["checks"], tolerance=identity["tolerance"], certify=identity["certify"],
                       title=states[0].get("notes", {}).get("title", ""))
    autoattack = None
    if identity["autoattack"] is not None:
        autoattack = merge_shards([p + AUTOATTACK_SUFFIX for p in paths]).to_dict()
    return assemble(tally, LeadFigures(**lead), facts, opts, autoattack)
