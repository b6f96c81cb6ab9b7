"""``robustkernels merge``: the report of an AutoAttack run from its shards' state files."""

from __future__ import annotations

import glob
import json
import os

from .args import command


def add_merge(commands) -> None:
    p = command(commands, "merge", "one AutoAttack report from the state files of its shards "
                "(autoattack(..., shard=(K, N), state_path=...))", run_merge)
    p.add_argument("files", nargs="+", help="the shards' state files, or folders holding them (every *.json inside)")
    p.add_argument("--out", default=None, help="write report.md and report.json here")


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


def run_merge(args) -> int:
    from ..eval import merge_shards

    report = merge_shards(_state_files(args.files))
    print(report.to_markdown())
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "report.json"), "w") as f:
            json.dump(report.to_dict(), f, indent=1)
        with open(os.path.join(args.out, "report.md"), "w") as f:
            f.write(report.to_markdown() + "\n")
    return 0
