"""Run folders: proven writable before any work starts, and held by one run at a time.

A lock is a file ``.robustkernels.lock`` in the folder, created exclusively, holding the owner's
host and pid. A second run on the folder is refused in one line; a lock whose process is gone
(killed with -9) is stale and taken over."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator

LOCK_NAME = ".robustkernels.lock"


def probe_writable(folder: str, option: str) -> str:
    """Create ``folder`` if needed and write (then remove) a file in it; a ValueError naming
    ``option`` if that fails - so an unwritable place is found before hours of work."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise ValueError(f"{option} {folder!r} is not writable ({exc.strerror or exc})") from None
    return folder


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: cannot be checked, so it is not taken over
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def _read_owner(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written right now, or garbage: treat as held unless it stays so


@contextlib.contextmanager
def run_lock(folder: str, option: str = "--out") -> Iterator[None]:
    """Hold ``folder`` for this process; refuse if a live run holds it, take over a stale lock."""
    path = os.path.join(probe_writable(folder, option), LOCK_NAME)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if owner == {}:  # being written right now, or damaged: look again once
                time.sleep(0.2)
                owner = _read_owner(path)
            if owner is None:
                continue  # released meanwhile
            if not owner or not isinstance(owner, dict) or "pid" not in owner:
                raise ValueError(f"{option} {folder!r}: its lock file {path!r} is damaged (not a robustkernels "
                                 f"lock); if no run uses the folder, delete that file") from None
            if owner and not _alive(owner):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)  # stale: its process died without releasing it
                continue
            who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('since', '?')}"
            raise ValueError(f"{option} {folder!r} is in use by another run ({who}); wait for it or choose "
                             f"another {option}") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise ValueError(f"{option} {folder!r}: could not take its lock {path!r}")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if _read_owner(path) == me:
                os.remove(path)
