"""``robustkernels merge``: one report from the state files of a sharded run - ``evaluate``'s
(``eval --shard K/N``) or AutoAttack's (``autoattack(..., shard=(K, N))``)."""

from __future__ import annotations

import glob
import json
import os

from .args import command


def add_merge(commands) -> None:
    p = command(commands, "merge", "one report from the state files of a sharded run (eval --shard K/N, or "
                "autoattack(..., shard=(K, N), state_path=...))", run_merge)
    p.add_argument("files", nargs="+", help="the shards' state files, or folders holding them (every *.json inside)")
    p.add_argument("--out", default=None,
                   help="write report.md and report.json here (and an evaluation's plots); default: print only")


def _state_files(paths) -> list[str]:
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "*.json")))
            if not found:
                raise ValueError(f"{path}: no state files (*.json) in this folder")
            files += found
        else:
            files.append(path)
    return files


def _split(files: list[str]) -> tuple[list[str], list[str]]:
    """(evaluate shards, AutoAttack shards); an evaluate shard's AutoAttack part is its own."""
    from ..eval.eval_state import AUTOATTACK_SUFFIX, is_eval_state

    evaluations = [f for f in files if is_eval_state(f)]
    rest = [f for f in files if f not in evaluations and f[: -len(AUTOATTACK_SUFFIX)] not in evaluations]
    if evaluations and rest:
        raise ValueError(f"{rest} are not shards of the evaluation in {evaluations[0]!r}: merge AutoAttack's and "
                         "evaluate's shards separately")
    return evaluations, rest


def run_merge(args) -> int:
    from ..eval import merge_eval_shards, merge_shards

    evaluations, autoattacks = _split(_state_files(args.files))
    report = merge_eval_shards(evaluations) if evaluations else merge_shards(autoattacks)
    print(report.to_markdown())
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "report.json"), "w") as f:
            json.dump(json.loads(report.to_json()) if evaluations else report.to_dict(), f, indent=1)
        with open(os.path.join(args.out, "report.md"), "w") as f:
            f.write(report.to_markdown() + "\n")
        for path in report.plot(args.out) if evaluations else []:
            print(f"wrote {path}")
    return 0
