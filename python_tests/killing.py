"""Killing a resumable run with SIGKILL mid-way, as kill -9 would (shared by the shard tests)."""

import json
import signal
import subprocess
import sys
import time


def batches_done(state) -> int:
    """Batches stored in a state file so far (0 while it does not exist or is being replaced)."""
    try:
        return len(json.loads(state.read_text())["batches"])
    except (OSError, ValueError, KeyError):
        return 0


def kill_after(script: str, state, batches: int, timeout: float = 120.0) -> int:
    """Run ``script`` in a new Python process and SIGKILL it once its ``state`` file holds
    ``batches`` batches; the batches done when it died."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while batches_done(state) < batches and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # kill -9, at whatever point it is
    proc.wait()
    return batches_done(state)
